"""The scoring web server: HTTP/1.1 on asyncio streams, keep-alive, scoring in a thread pool.

Routes: ``POST /score``, ``GET /`` (liveness), ``GET /health`` (readiness: 200 once init() returned),
``GET /swagger.json``. Errors are JSON ``{"error": ...}`` with 400/401/404/405/411/413/500/503 statuses. Under
overload it sheds with 503 + ``Retry-After`` instead of queueing without bound, and a slow client only ever
holds its own connection (reads have a timeout).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any, Awaitable, Callable

from edgepack.runtime.keys import KeyRing
from edgepack.runtime.scoring import Runtime, ScoreResult, error_result

log = logging.getLogger("edgepack.runtime.server")
MAX_HEADER_BYTES = 64 << 10
WEB_KEYS = ("primary", "secondary")


def json_result(status: int, value: Any) -> ScoreResult:
    """A JSON response."""
    return ScoreResult(status, json.dumps(value).encode())


class Request:
    """A parsed request head plus its body."""

    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> None:
        self.method, self.target, self.headers, self.body = method, target, headers, body
        self.path, _, self.query = target.partition("?")


async def read_head(reader: asyncio.StreamReader) -> Request | None:
    """Read a request line and headers; None at a clean end of the connection.

    Raises:
        ValueError: a malformed or oversized head.
    """
    line = await reader.readline()
    if not line:
        return None
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ValueError("malformed request line")
    headers: dict[str, str] = {}
    size = len(line)
    while True:
        raw = await reader.readline()
        size += len(raw)
        if size > MAX_HEADER_BYTES:
            raise ValueError("request head too large")
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if parts[2] == "HTTP/1.0" and headers.get("connection", "").lower() != "keep-alive":
        headers.setdefault("connection", "close")
    return Request(parts[0].upper(), parts[1], headers)


def encode(result: ScoreResult, *, keep_alive: bool) -> bytes:
    """Serialize a response."""
    reason = HTTPStatus(result.status).phrase if result.status in HTTPStatus._value2member_map_ else ""
    head = [f"HTTP/1.1 {result.status} {reason}", f"Content-Type: {result.content_type}",
            f"Content-Length: {len(result.body)}", f"Connection: {'keep-alive' if keep_alive else 'close'}"]
    head += [f"{k}: {v}" for k, v in result.headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + result.body


class ScoringServer:
    """Serves one Runtime; ``auth_enabled`` requires ``Authorization: Bearer <primary|secondary>``."""

    def __init__(self, runtime: Runtime, keys: KeyRing, *, auth_enabled: bool, workers: int | None = None,
                 max_pending: int = 64, read_timeout: float = 30.0) -> None:
        self.runtime, self.keys, self.auth_enabled = runtime, keys, auth_enabled
        self.pool = ThreadPoolExecutor(max_workers=workers or 8, thread_name_prefix="score")
        # Scoring requests admitted at once (running or waiting for a worker). Past that the server sheds
        # load with 503 + Retry-After rather than queueing without bound and answering everyone late.
        self.max_pending = max_pending
        self.pending = 0
        self.read_timeout = read_timeout

    def _authorized(self, request: Request) -> bool:
        if not self.auth_enabled:
            return True
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.keys.matches(token.strip(), WEB_KEYS)

    async def respond(self, request: Request, reader: asyncio.StreamReader) -> ScoreResult:
        """Route a request whose body has not been read yet."""
        path = request.path.rstrip("/") or "/"
        routes = {"/": "GET", "/health": "GET", "/swagger.json": "GET", "/score": "POST"}
        if path not in routes:
            return error_result(404, f"no route for '{request.path}'")
        if request.method != routes[path] and not (request.method == "HEAD" and routes[path] == "GET"):
            result = error_result(405, f"method {request.method} is not allowed on '{path}'")
            result.headers["Allow"] = routes[path]
            return result
        if path == "/":
            return json_result(200, {"status": "alive"})
        if path == "/health":
            ready = self.runtime.ready.is_set()
            return json_result(200 if ready else 503, {"status": "ready" if ready else "loading",
                                                       "model": self.runtime.config.model})
        if path == "/swagger.json":
            doc = self.runtime.openapi()
            return json_result(200, doc) if doc else error_result(404, "no input sample was given, so no schema")
        return await self._score(request, reader)

    async def _score(self, request: Request, reader: asyncio.StreamReader) -> ScoreResult:
        if not self._authorized(request):
            result = error_result(401, "missing or wrong key: send 'Authorization: Bearer <key>'")
            result.headers["WWW-Authenticate"] = "Bearer"
            return result
        if "chunked" in request.headers.get("transfer-encoding", "").lower():
            return error_result(411, "send a Content-Length; chunked request bodies are not accepted")
        length = int(request.headers.get("content-length") or 0)
        if length > self.runtime.config.max_request_bytes:
            return error_result(413, f"request body of {length} bytes exceeds the limit of "
                                     f"{self.runtime.config.max_request_bytes} bytes")
        if self.pending >= self.max_pending:
            result = error_result(503, f"overloaded: {self.pending} requests in progress; retry shortly")
            result.headers["Retry-After"] = "1"
            return result
        self.pending += 1
        try:
            # A slow sender only holds its own connection: the body must arrive within the read timeout.
            request.body = await asyncio.wait_for(reader.readexactly(length), self.read_timeout) if length else b""
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.pool, self.runtime.score, request.body,
                                              request.headers.get("content-type"))
        finally:
            self.pending -= 1

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection until the client closes it or asks to."""
        await serve_connection(reader, writer, self.respond, read_timeout=self.read_timeout)


Responder = Callable[[Request, asyncio.StreamReader], Awaitable[ScoreResult]]


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, respond: Responder, *,
                           read_timeout: float = 30.0) -> None:
    """The HTTP/1.1 keep-alive loop shared by every in-image server: read a head, let ``respond`` answer (it
    reads the body when it wants it), write the response, log one line. A body left unread closes the
    connection, since the next request's head would start inside it. A request head that does not arrive
    within ``read_timeout`` (an idle keep-alive or a slow client) closes the connection."""
    try:
        while True:
            try:
                request = await asyncio.wait_for(read_head(reader), read_timeout)
            except (ValueError, asyncio.LimitOverrunError):
                writer.write(encode(error_result(400, "malformed HTTP request"), keep_alive=False))
                break
            except asyncio.TimeoutError:
                break
            if request is None:
                break
            started = time.perf_counter()
            result = await respond(request, reader)
            body_unread = not request.body and int(request.headers.get("content-length") or 0) > 0
            keep = request.headers.get("connection", "").lower() != "close" and not body_unread
            writer.write(encode(result, keep_alive=keep))
            await writer.drain()
            log.info("%s %s %d %.1fms", request.method, request.path, result.status,
                     (time.perf_counter() - started) * 1000)
            if not keep:
                break
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError):
        pass
    finally:
        writer.close()


async def serve(server: ScoringServer, host: str, port: int) -> asyncio.AbstractServer:
    """Start listening (returns at once; the caller keeps the loop running)."""
    return await asyncio.start_server(server.handle, host, port, limit=MAX_HEADER_BYTES, backlog=1024)
