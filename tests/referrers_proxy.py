"""The referrers API in front of a real registry: Debian's distribution registry 2.8 does not implement
``GET /v2/<name>/referrers/<digest>`` and no registry that does can be installed here, so this proxy adds
just that endpoint (and the ``OCI-Subject`` answer header), from the manifests with a ``subject`` it passed on.
Everything else goes to the real registry unchanged."""

from __future__ import annotations

import http.client
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_REFERRERS = re.compile(r"^/v2/(?P<repo>.+)/referrers/(?P<digest>sha256:[0-9a-f]{64})$")
_MANIFEST = re.compile(r"^/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)$")


class ReferrersProxy:
    """``with ReferrersProxy("127.0.0.1:5000") as address:`` a registry address with the referrers API."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.referrers: dict[tuple[str, str], list[dict]] = {}
        self.listed = 0  # referrers API requests answered
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _forward(self, body: bytes | None) -> tuple[int, dict, bytes]:
                conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                conn.close()
                return response.status, dict(response.getheaders()), data

            def _answer(self, status: int, headers: dict, data: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _handle(self) -> None:
                path = self.path.split("?", 1)[0]
                if self.command == "GET" and (m := _REFERRERS.match(path)):
                    proxy.listed += 1
                    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                             "manifests": proxy.referrers.get((m["repo"], m["digest"]), [])}
                    self._answer(200, {"Content-Type": "application/vnd.oci.image.index.v1+json"},
                                 json.dumps(index).encode())
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                status, headers, data = self._forward(body)
                if self.command == "PUT" and status == 201 and body and (m := _MANIFEST.match(path)):
                    manifest = json.loads(body)
                    if "subject" in manifest:
                        entry = {"mediaType": manifest["mediaType"], "digest": headers.get("Docker-Content-Digest"),
                                 "size": len(body), "artifactType": manifest.get("artifactType")}
                        proxy.referrers.setdefault((m["repo"], manifest["subject"]["digest"]), []).append(entry)
                        headers["OCI-Subject"] = manifest["subject"]["digest"]
                self._answer(status, headers, data)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

    def __enter__(self) -> str:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
