"""HTTP/1.1 for the in-image servers, on an asyncio Protocol: keep-alive, pipelining in order, timeouts,
back-pressure, and no coroutine, task or timer per request on the fast path.

An ``App`` answers in two steps. ``admit(request)`` sees the head before the body is read and may answer at
once (404, 401, 413, 503...); a request it answers early with a body still unsent closes the connection, since
the next request's head would start inside that body. ``respond(request)`` gets the request with its body and
returns a Response, or an awaitable of one for work done elsewhere (a thread pool, a batch).

A head, or a body once its head arrived, must arrive within ``read_timeout``; an idle keep-alive connection
is closed after it too. A slow client thus only ever holds its own connection.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from http import HTTPStatus
from typing import Any, Awaitable, Protocol, cast

from edgepack.runtime.accesslog import FLUSH_SECONDS, AccessLog
from edgepack.runtime.response import Response, error_response, internal_error

MAX_HEADER_BYTES = 64 << 10
# Headers that say where a request ends: two different values would let peers disagree about it (smuggling).
_SINGLE = {"content-length", "transfer-encoding", "host"}
_PAUSE_READING_BYTES = 1 << 20
_REASONS = {status.value: status.phrase for status in HTTPStatus}


class Request:
    """A parsed request head plus its body."""

    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> None:
        self.method, self.target, self.headers, self.body = method, target, headers, body
        self.path, _, self.query = target.partition("?")
        self.length = int(headers.get("content-length") or 0)
        self.keep_alive = headers.get("connection", "").lower() != "close"
        self.route: Any = None  # what the app's admit() matched, for its respond()


class App(Protocol):
    """What an HttpProtocol serves."""

    def admit(self, request: Request) -> Response | None: ...

    def respond(self, request: Request) -> Response | Awaitable[Response]: ...


def parse_head(raw: bytes) -> Request:
    """Parse a request line and headers (``raw`` ends with the blank line).

    Raises:
        ValueError: a malformed request line, header line or Content-Length.
    """
    lines = raw.decode("latin-1").lstrip("\r\n").split("\r\n")
    parts = lines[0].split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ValueError("malformed request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep or "\n" in line:
                raise ValueError("malformed header line")
            key = name.strip().lower()
            if key in _SINGLE and key in headers and headers[key] != value.strip():
                raise ValueError(f"conflicting {key} headers")  # one reading of the body for every peer
            headers[key] = value.strip()
    if not headers.get("content-length", "0").isdigit():
        raise ValueError("malformed Content-Length")
    if parts[2] == "HTTP/1.0" and headers.get("connection", "").lower() != "keep-alive":
        headers["connection"] = "close"
    return Request(parts[0].upper(), parts[1], headers)


def encode(result: Response, *, keep_alive: bool, head_only: bool = False) -> bytes:
    """Serialize a response (``head_only`` for HEAD requests: the headers of the body, without it)."""
    head = (f"HTTP/1.1 {result.status} {_REASONS.get(result.status, '')}\r\nContent-Type: {result.content_type}"
            f"\r\nContent-Length: {len(result.body)}\r\nConnection: {'keep-alive' if keep_alive else 'close'}\r\n")
    for name, value in result.headers.items():
        head += f"{name}: {value}\r\n"
    return (head + "\r\n").encode("latin-1") + (b"" if head_only else result.body)


class HttpProtocol(asyncio.Protocol):
    """One connection."""

    transport: asyncio.Transport  # set by connection_made, before anything else is called

    def __init__(self, app: App, watch: "Connections", access: AccessLog) -> None:
        self.app, self.watch, self.access = app, watch, access
        self.buffer = bytearray()
        self.request: Request | None = None  # head read, body awaited
        self.busy = False  # a response is being computed; later pipelined requests wait
        self.write_paused = False
        self.reading_paused = False
        self.closed = False
        self.deadline: float | None = None
        self.started = 0.0
        self.eof = False  # the client half-closed: answer what it sent, then close

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream server's are
        self.deadline = time.monotonic() + self.watch.read_timeout
        self.watch.open.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.watch.open.discard(self)

    def eof_received(self) -> bool:
        """The client sent all it will (a half-close): keep the connection open to answer, then close it."""
        self.eof = True
        if not self.busy and self.request is not None and len(self.buffer) < self.request.length:
            self._fail("the connection was half-closed before the body ended")
        elif not self.busy and self.request is None:
            self._finish()
        return True

    def _finish(self) -> None:
        if not self.closed:
            self.watch.write(self.transport, b"", close=True)  # after every answer queued before it
            self.closed = True

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._process()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.busy or self.write_paused:
            if len(self.buffer) > _PAUSE_READING_BYTES + (self.request.length if self.request else 0):
                self.transport.pause_reading()
                self.reading_paused = True
            return
        self._process()

    def close(self) -> None:
        """Close the connection (deadline passed, or the server stops)."""
        if not self.closed:
            self.closed = True
            self.transport.close()

    def _process(self) -> None:
        while not (self.busy or self.write_paused or self.closed):
            request = self.request
            if request is None:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buffer) > MAX_HEADER_BYTES:
                        self._fail("request head too large")
                    elif b"\n\n" in self.buffer or b"\n\r\n" in self.buffer:
                        self._fail("lines must end with CRLF")
                    elif not self.buffer.strip():
                        self.buffer.clear()
                    break
                if end > MAX_HEADER_BYTES:
                    self._fail("request head too large")
                    break
                try:
                    request = parse_head(bytes(self.buffer[:end + 4]))
                except ValueError as exc:
                    self._fail(str(exc))
                    break
                del self.buffer[:end + 4]
                self.started = time.perf_counter()
                early = self._early(request)
                if early is not None:
                    # a body left unread would be parsed as the next request: close unless there is none
                    unread = request.length > 0 or "transfer-encoding" in request.headers
                    self._send(request, early, keep=request.keep_alive and not unread)
                    continue
                self.request = request
                self.deadline = time.monotonic() + self.watch.read_timeout
                if request.headers.get("expect", "").lower() == "100-continue" and len(self.buffer) < request.length:
                    # curl and others wait (curl: a second) for this before sending a body over 1 KiB.
                    self.watch.write(self.transport, b"HTTP/1.1 100 Continue\r\n\r\n", close=False)
            if len(self.buffer) < request.length:
                break
            request.body = bytes(self.buffer[:request.length])
            del self.buffer[:request.length]
            self.request = None
            self.deadline = None
            self._answer(request)
        if self.eof and not self.busy and self.request is None:
            self._finish()
        if self.reading_paused and not self.busy and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    def _early(self, request: Request) -> Response | None:
        if "chunked" in request.headers.get("transfer-encoding", "").lower():
            return error_response(411, "send a Content-Length; chunked request bodies are not accepted")
        return self.app.admit(request)

    def _answer(self, request: Request) -> None:
        try:
            result = self.app.respond(request)
        except Exception:  # a bug in the app: answer (the details go to the log, under an error id)
            result = internal_error("internal error", "answering a request failed", traceback.format_exc())
        if isinstance(result, Response):
            self._send(request, result, keep=request.keep_alive)
            return
        self.busy = True
        future = asyncio.ensure_future(result)
        future.add_done_callback(lambda done: self._answered(request, done))

    def _answered(self, request: Request, done: asyncio.Future) -> None:
        self.busy = False
        if done.cancelled():
            result = error_response(503, "the request was cancelled")
        elif done.exception() is not None:
            error = done.exception()
            result = internal_error("internal error", "answering a request failed",
                                    "".join(traceback.format_exception(error)))
        else:
            result = done.result()
        if self.closed:
            return
        self._send(request, result, keep=request.keep_alive)
        self._process()
        if self.eof and not self.busy:
            self._finish()

    def _send(self, request: Request, result: Response, *, keep: bool) -> None:
        self.watch.write(self.transport, encode(result, keep_alive=keep, head_only=request.method == "HEAD"),
                         close=not keep)
        self.access.record(request.method, request.path, result.status, (time.perf_counter() - self.started) * 1000)
        if keep:
            self.deadline = time.monotonic() + self.watch.read_timeout
        else:
            self.closed = True

    def _fail(self, reason: str) -> None:
        self.watch.write(self.transport, encode(error_response(400, f"malformed HTTP request: {reason}"),
                                                keep_alive=False), close=True)
        self.closed = True


class Connections:
    """The open connections of a server, and the sweep that closes those past their read deadline."""

    def __init__(self, read_timeout: float) -> None:
        self.read_timeout = read_timeout
        self.open: set[HttpProtocol] = set()
        self._writes: list[tuple[asyncio.Transport, bytes, bool]] = []
        self._flush_scheduled = False

    def write(self, transport: asyncio.Transport, data: bytes, *, close: bool) -> None:
        """Queue a response (and the close after it). What one turn of the event loop answered is written
        together at the start of the next, in order: a client waiting on several connections is then woken
        once for the lot rather than once per response, which on loopback costs more than the response."""
        self._writes.append((transport, data, close))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_writes)

    def _flush_writes(self) -> None:
        self._flush_scheduled = False
        writes, self._writes = self._writes, []
        for transport, data, close in writes:
            if not transport.is_closing():
                transport.write(data)
                if close:
                    transport.close()

    def sweep(self) -> None:
        """Close every connection whose head or body is overdue or that sat idle too long."""
        now = time.monotonic()
        for conn in [c for c in self.open if c.deadline is not None and c.deadline < now]:
            conn.close()

    async def run(self) -> None:
        """Sweep until cancelled, several times per read timeout."""
        while True:
            await asyncio.sleep(min(1.0, self.read_timeout / 4))
            self.sweep()


class Listener:
    """A listening server plus its deadline sweeper; closing it closes every open connection too."""

    def __init__(self, server: asyncio.Server, watch: Connections, access: AccessLog) -> None:
        self.server, self.watch, self.access = server, watch, access
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(watch.run()), loop.create_task(self._flush_access_log())]

    async def _flush_access_log(self) -> None:
        try:
            while True:
                await asyncio.sleep(FLUSH_SECONDS)
                self.access.flush()
        finally:
            self.access.flush()

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return self.server.sockets[0].getsockname()[1]

    def close(self) -> None:
        """Stop accepting and close every connection."""
        for task in self.tasks:
            task.cancel()
        self.server.close()
        for conn in list(self.watch.open):
            conn.close()

    async def __aenter__(self) -> "Listener":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.server.wait_closed()


async def listen(app: App, host: str, port: int, *, read_timeout: float = 30.0,
                 access: AccessLog | None = None, reuse_port: bool = False) -> Listener:
    """Start serving ``app``; returns at once (the caller keeps the loop running). ``reuse_port`` lets several
    processes listen on the same port (SO_REUSEPORT)."""
    watch = Connections(read_timeout)
    log = access or AccessLog()
    server = await asyncio.get_running_loop().create_server(lambda: HttpProtocol(app, watch, log), host, port,
                                                           backlog=1024, reuse_port=reuse_port or None)
    return Listener(server, watch, log)
