"""Requests that must not smuggle, hang or crash the in-image HTTP server (raw loopback sockets)."""

from __future__ import annotations

import json
import socket

from edgepack.runtime.keys import KeyRing
from edgepack.runtime.response import Response
from edgepack.runtime.scoring import encode_json
from tests.runtime.test_http import EchoApp, _connect, _post, _read_responses
from tests.servers import serve_in_thread


def _all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_refused_chunked_body_closes_the_connection_so_nothing_is_smuggled():
    app = EchoApp()
    url, stop = serve_in_thread(app)
    try:
        smuggled = b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"
        body = f"{len(smuggled):x}\r\n".encode() + smuggled + b"\r\n0\r\n\r\n"
        with _connect(url) as sock:
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
            answers = _all(sock)
        assert answers.count(b"HTTP/1.1 ") == 1 and answers.startswith(b"HTTP/1.1 411")
        assert b"Connection: close" in answers
        assert app.bodies == []
    finally:
        stop()


def test_conflicting_content_lengths_and_bare_lf_are_refused():
    url, stop = serve_in_thread(EchoApp())
    try:
        with _connect(url) as sock:
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 5\r\n\r\nhello")
            assert _all(sock).startswith(b"HTTP/1.1 400")
        with _connect(url) as sock:
            sock.sendall(b"GET /echo HTTP/1.1\nHost: x\n\n")
            reply = _all(sock)
            assert reply.startswith(b"HTTP/1.1 400") and b"CRLF" in reply
    finally:
        stop()


def test_a_half_closed_client_gets_its_answer_even_from_the_pool():
    url, stop = serve_in_thread(EchoApp())
    try:
        with _connect(url) as sock:
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n" + _post("/echo", b"after"))
            sock.shutdown(socket.SHUT_WR)
            answers = _read_responses(sock, 2)
        assert [(status, body) for status, _, body in answers] == [(200, b'{"slow": true}'),
                                                                   (200, b'{"echo": "after"}')]
    finally:
        stop()


class _Broken(EchoApp):
    def respond(self, request):
        raise RuntimeError("secret detail")


def test_an_app_failure_is_a_500_with_an_error_id_and_a_log_line(caplog):
    url, stop = serve_in_thread(_Broken())
    try:
        with _connect(url) as sock:
            sock.sendall(_post("/echo", b"x"))
            [(status, _, body)] = _read_responses(sock, 1)
        answer = json.loads(body)
        assert status == 500 and answer["error_id"] and "secret" not in body.decode()
        assert any(answer["error_id"] in r.getMessage() and "secret detail" in r.getMessage()
                   for r in caplog.records)
    finally:
        stop()


def test_a_keys_file_holding_a_list_refuses_every_key_and_drops_nothing(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(["primary", "p-key"]))
    ring = KeyRing(str(path), env={})
    assert ring.keys() == {} and not ring.matches("p-key", ("primary",))


def test_json_answers_never_carry_bare_nan():
    assert json.loads(encode_json({"a": float("nan"), "b": [1.0, float("inf")], "c": 2.5})) == {
        "a": None, "b": [1.0, None], "c": 2.5}
    assert isinstance(Response(200, encode_json([1])).body, bytes)
