"""The HTTP/1.1 protocol of the in-image servers, over real loopback sockets."""

from __future__ import annotations

import json
import socket
import threading
import time

from edgepack.runtime.http import Request
from edgepack.runtime.response import Response, error_response
from tests.servers import serve_in_thread


class EchoApp:
    """Answers POST /echo with the body and GET /slow after a delay (in a thread); 404 elsewhere."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def admit(self, request: Request) -> Response | None:
        if request.path not in ("/echo", "/slow"):
            return error_response(404, f"no route for '{request.path}'")
        return None

    def respond(self, request: Request):
        if request.path == "/slow":
            import asyncio

            return asyncio.get_running_loop().run_in_executor(None, _slow, request)
        self.bodies.append(request.body)
        return Response(200, json.dumps({"echo": request.body.decode()}).encode())


def _slow(request: Request) -> Response:
    time.sleep(0.2)
    return Response(200, b'{"slow": true}')


def _connect(url: str) -> socket.socket:
    host, port = url.rsplit("/", 1)[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def _read_responses(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    data, out = b"", []
    while len(out) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return out
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        while len(data) < length:
            data += sock.recv(65536)
        out.append((int(lines[0].split()[1]), headers, data[:length]))
        data = data[length:]
    return out


def _post(path: str, body: bytes, extra: str = "") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def test_pipelined_requests_are_answered_in_order_even_when_one_is_slow():
    app = EchoApp()
    url, stop = serve_in_thread(app)
    try:
        with _connect(url) as sock:
            sock.sendall(_post("/echo", b"one") + b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n" + _post("/echo", b"two"))
            answers = _read_responses(sock, 3)
        assert [(status, body) for status, _, body in answers] == [
            (200, b'{"echo": "one"}'), (200, b'{"slow": true}'), (200, b'{"echo": "two"}')]
        assert all(headers["connection"] == "keep-alive" for _, headers, _ in answers)
    finally:
        stop()


def test_a_body_split_across_packets_is_reassembled():
    app = EchoApp()
    url, stop = serve_in_thread(app)
    try:
        with _connect(url) as sock:
            request = _post("/echo", b"x" * 70000)
            for i in range(0, len(request), 999):
                sock.sendall(request[i:i + 999])
            [(status, _, body)] = _read_responses(sock, 1)
        assert status == 200 and json.loads(body)["echo"] == "x" * 70000
    finally:
        stop()


def test_malformed_requests_get_a_json_400_and_the_connection_closes():
    url, stop = serve_in_thread(EchoApp())
    try:
        for raw in (b"NONSENSE\r\n\r\n", b"POST /echo HTTP/1.1\r\nContent-Length: ten\r\n\r\n",
                    b"POST /echo HTTP/1.1\r\nno colon here\r\n\r\n",
                    b"GET /echo HTTP/1.1\r\nX-Big: " + b"a" * (70 << 10) + b"\r\n\r\n"):
            with _connect(url) as sock:
                sock.sendall(raw)
                [(status, headers, body)] = _read_responses(sock, 1)
                assert status == 400 and headers["connection"] == "close"
                assert json.loads(body)["error"].startswith("malformed HTTP request")
                assert sock.recv(10) == b""
    finally:
        stop()


def test_an_early_answer_with_an_unread_body_closes_and_http10_closes():
    url, stop = serve_in_thread(EchoApp())
    try:
        with _connect(url) as sock:
            sock.sendall(_post("/elsewhere", b"0123456789"))
            [(status, headers, _)] = _read_responses(sock, 1)
            assert status == 404 and headers["connection"] == "close" and sock.recv(10) == b""
        with _connect(url) as sock:
            sock.sendall(b"POST /echo HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi")
            [(status, headers, body)] = _read_responses(sock, 1)
            assert (status, headers["connection"], body) == (200, "close", b'{"echo": "hi"}')
        with _connect(url) as sock:
            sock.sendall(b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
            [(status, _, body)] = _read_responses(sock, 1)
            assert status == 411 and "Content-Length" in json.loads(body)["error"]
    finally:
        stop()


def test_idle_and_stalled_connections_are_closed_after_the_read_timeout_others_go_on():
    url, stop = serve_in_thread(EchoApp(), read_timeout=0.4)
    try:
        idle, stalled = _connect(url), _connect(url)
        stalled.sendall(b"POST /echo HTTP/1.1\r\nContent-Length: 100\r\n\r\nonly part")
        started = time.monotonic()
        with _connect(url) as busy:
            for i in range(5):
                busy.sendall(_post("/echo", str(i).encode()))
                assert _read_responses(busy, 1)[0][0] == 200
        assert idle.recv(10) == b"" and stalled.recv(10) == b""
        assert 0.3 < time.monotonic() - started < 5
        idle.close()
        stalled.close()
    finally:
        stop()


def test_many_connections_at_once():
    app = EchoApp()
    url, stop = serve_in_thread(app)
    failures: list = []

    def client(n: int) -> None:
        try:
            with _connect(url) as sock:
                for i in range(20):
                    sock.sendall(_post("/echo", f"{n}-{i}".encode()))
                    [(status, _, body)] = _read_responses(sock, 1)
                    if status != 200 or json.loads(body)["echo"] != f"{n}-{i}":
                        failures.append((n, i, status, body))
        except OSError as exc:
            failures.append((n, exc))

    try:
        threads = [threading.Thread(target=client, args=(n,)) for n in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert failures == [] and len(app.bodies) == 32 * 20
    finally:
        stop()


def test_the_access_log_is_buffered_and_written_in_one_go(caplog):
    import io

    from edgepack.runtime.accesslog import AccessLog

    stream = io.StringIO()
    access = AccessLog(enabled=True, stream=stream)
    access.record("POST", "/score", 200, 1.25)
    access.record("GET", "/health", 503, 0.5)
    access.record("POST", "/score", 500, 3.0)
    access.flush()
    lines = stream.getvalue().splitlines()
    assert [line.split(" ", 3)[3] for line in lines] == ["POST /score 200 1.2ms", "GET /health 503 0.5ms",
                                                         "POST /score 500 3.0ms"]
    assert all(line.split(" ")[2] == "edgepack.runtime.access" for line in lines)
    assert [r.getMessage() for r in caplog.records] == ["POST /score 500 3.0ms"]
    quiet = io.StringIO()
    off = AccessLog(enabled=False, stream=quiet)
    off.record("POST", "/score", 200, 1.0)
    off.flush()
    assert quiet.getvalue() == ""


def test_head_gets_headers_without_a_body_and_the_connection_stays_usable():
    class Health(EchoApp):
        def admit(self, request):
            return Response(200, b'{"status": "alive"}') if request.path == "/" else super().admit(request)

    url, stop = serve_in_thread(Health())
    try:
        with _connect(url) as sock:
            sock.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" + _post("/echo", b"after"))
            data = b""
            while data.count(b"\r\n\r\n") < 2 or not data.endswith(b'{"echo": "after"}'):
                data += sock.recv(4096)
        first, rest = data.split(b"\r\n\r\n", 1)
        assert b"Content-Length: 19" in first and rest.startswith(b"HTTP/1.1 200 OK")
    finally:
        stop()


def test_expect_100_continue_is_answered_before_the_body_is_sent():
    url, stop = serve_in_thread(EchoApp())
    try:
        with _connect(url) as sock:
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(b"hello")
            [(status, _, body)] = _read_responses(sock, 1)
            assert status == 200 and body == b'{"echo": "hello"}'
        with _connect(url) as sock:  # refused up front: no 100, and the body is never wanted
            sock.sendall(b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            [(status, headers, _)] = _read_responses(sock, 1)
            assert status == 404 and headers["connection"] == "close"
    finally:
        stop()
