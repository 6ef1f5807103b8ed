"""The scoring web server: routes, keys, admission and where each request is scored.

Routes: ``POST /score``, ``GET /`` (liveness), ``GET /health`` (readiness: 200 once init() returned),
``GET /info`` (target, models, model folder; an FPGA image adds the execution provider that runs and why),
``GET /swagger.json`` (``?version=2`` by default, ``3`` or ``3.1``). ``GET /score`` calls run() too, with the
query string (as Azure ML's server does); ``OPTIONS /score`` reaches a ``@rawhttp`` run(). Errors are JSON
``{"error": ..., "message": ...}`` with 400/401/404/405/411/413/415/500/503 statuses.

A request is scored on the event loop itself while the entry script's run() typically takes under
``inline_budget`` (a hop to a worker thread and back costs more than such a model), else in the worker pool.
Binary tensor requests go to the micro-batcher when the entry script defines ``run_batch``. Under overload
the server sheds with 503 + ``Retry-After`` instead of queueing without bound; a slow client only ever holds
its own connection (see ``edgepack.runtime.http``).
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl
from concurrent.futures import ThreadPoolExecutor
from typing import Awaitable

from edgepack.runtime.accesslog import AccessLog
from edgepack.runtime.batching import Batcher
from edgepack.runtime.calling import RAW, CallInfo
from edgepack.runtime.http import Listener, Request, listen
from edgepack.runtime.keys import KeyRing
from edgepack.runtime.response import Response, error_response, json_response
from edgepack.runtime.scoring import Runtime

WEB_KEYS = ("primary", "secondary")
ROUTES = {"/": ("GET",), "/health": ("GET",), "/info": ("GET",), "/swagger.json": ("GET",),
          "/score": ("POST", "GET", "OPTIONS")}

__all__ = ["ScoringServer", "serve"]


class ScoringServer:
    """Serves one Runtime; ``auth_enabled`` requires ``Authorization: Bearer <primary|secondary>``."""

    def __init__(self, runtime: Runtime, keys: KeyRing, *, auth_enabled: bool, workers: int | None = None,
                 max_pending: int = 64, read_timeout: float = 30.0, inline_budget: float = 0.001,
                 batching: dict | None = None) -> None:
        self.runtime, self.keys, self.auth_enabled = runtime, keys, auth_enabled
        self.pool = ThreadPoolExecutor(max_workers=workers or 8, thread_name_prefix="score")
        # Scoring requests admitted at once (running or waiting for a worker or a batch). Past that the server
        # sheds load with 503 + Retry-After rather than queueing without bound and answering everyone late.
        self.max_pending = max_pending
        self.pending = 0
        self.read_timeout = read_timeout
        self.worker = 0  # which of several server processes this is (EDGEPACK_PROCESSES)
        # Requests run inline on the event loop while run() typically takes less than this (seconds).
        self.inline_budget = inline_budget
        batching = batching or {}
        self.batcher = Batcher(lambda: runtime.run_batch, self.pool,
                               max_batch=int(batching.get("max_batch_size", 32)),
                               max_wait=float(batching.get("max_wait_ms", 0)) / 1000)

    def _authorized(self, request: Request) -> bool:
        if not self.auth_enabled:
            return True
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.keys.matches(token.strip(), WEB_KEYS)

    def admit(self, request: Request) -> Response | None:
        """Answer what needs no body (every route but scoring, and scoring's refusals); None to read it."""
        path = request.path.rstrip("/") or "/"
        methods = ROUTES.get(path)
        if methods is None:
            return error_response(404, f"no route for '{request.path}'")
        head_ok = request.method == "HEAD" and "GET" in methods and path != "/score"
        if request.method not in methods and not head_ok:
            result = error_response(405, f"method {request.method} is not allowed on '{path}'")
            result.headers["Allow"] = ", ".join(methods)
            return result
        if path == "/":
            return json_response(200, {"status": "alive"})
        if path == "/health":
            ready = self.runtime.ready.is_set()
            return json_response(200 if ready else 503, {"status": "ready" if ready else "loading",
                                                       "model": self.runtime.config.model, "worker": self.worker})
        if path == "/info":
            return json_response(200, self.runtime.info())
        if path == "/swagger.json":
            version = next((v for k, v in parse_qsl(request.query) if k == "version"), "2")
            try:
                return json_response(200, self.runtime.openapi(version))
            except ValueError as exc:
                return error_response(404, str(exc))
        if request.method == "OPTIONS" and self.runtime.mode != RAW:
            return Response(200, b"", "text/html; charset=utf-8", {"Allow": "GET, POST, OPTIONS"})
        if not self._authorized(request):
            result = error_response(401, "missing or wrong key: send 'Authorization: Bearer <key>'")
            result.headers["WWW-Authenticate"] = "Bearer"
            return result
        limit = self.runtime.config.max_request_bytes
        if request.length > limit:
            return error_response(413, f"request body of {request.length} bytes exceeds the limit of {limit} bytes")
        if self.pending >= self.max_pending:
            result = error_response(503, f"overloaded: {self.pending} requests in progress; retry shortly")
            result.headers["Retry-After"] = "1"
            return result
        return None

    def respond(self, request: Request) -> Response | Awaitable[Response]:
        """Score a request whose body has arrived."""
        content_type = request.headers.get("content-type")
        if self.batcher.accepts(content_type, request.body):
            queued = self.batcher.submit(request.body, request.headers.get("accept"))
            return queued if isinstance(queued, Response) else self._counted(queued)
        caller = self.runtime.caller
        plain = request.method == "POST" and (caller is None or caller.plain)
        call = None if plain else CallInfo(request.method, request.target, request.headers)
        if self.runtime.typical_cost() < self.inline_budget:
            # A model this fast costs less than the hop to a worker thread and back: score on the loop.
            return self.runtime.score(request.body, content_type, call)
        loop = asyncio.get_running_loop()
        return self._counted(loop.run_in_executor(self.pool, self.runtime.score, request.body, content_type, call))

    def _counted(self, work: Awaitable[Response]) -> asyncio.Future:
        self.pending += 1
        future = asyncio.ensure_future(work)
        future.add_done_callback(self._release)
        return future

    def _release(self, _: asyncio.Future) -> None:
        self.pending -= 1


async def serve(server: ScoringServer, host: str, port: int, *, access: AccessLog | None = None,
                reuse_port: bool = False) -> Listener:
    """Start listening (returns at once; the caller keeps the loop running)."""
    return await listen(server, host, port, read_timeout=server.read_timeout, access=access, reuse_port=reuse_port)
