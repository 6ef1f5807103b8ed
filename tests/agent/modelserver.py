"""A model file server for hot-swap tests: plain HTTP on loopback, byte ranges, a cut in the middle on demand, and
a count of the bytes it sent."""

from __future__ import annotations

import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ModelServer:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.bytes_sent = 0
        self.requests: list[str | None] = []  # each GET's Range header
        self.cut_after: int | None = None  # the next response stops after this many bytes (then none is cut)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                body = server.files.get(self.path.lstrip("/"))
                if body is None:
                    self.send_error(404)
                    return
                wanted = self.headers.get("Range")
                server.requests.append(wanted)
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", wanted or "")
                if match:
                    start = int(match.group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                chunk = body[start:]
                cut, server.cut_after = server.cut_after, None
                if cut is not None:
                    chunk = chunk[:cut]
                self.wfile.write(chunk)
                server.bytes_sent += len(chunk)
                if cut is not None:
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
