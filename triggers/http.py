"""Serving HTTP-triggered functions locally: routes with ``{param}`` templates, methods, auth levels and keys.

Keys: auth level ``function`` accepts the primary, secondary or master key, ``admin`` only the master key,
sent as the ``x-functions-key`` header or the ``code`` query parameter; keys are compared in constant time.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl

import azure.functions as func

from edgepack.runtime.keys import KeyRing
from edgepack.runtime.response import Response, error_response, internal_error, json_response
from edgepack.runtime.http import Request
from triggers.host import IndexedFunction

log = logging.getLogger("triggers.http")
LEVEL_KEYS = {"ANONYMOUS": (), "FUNCTION": ("primary", "secondary", "master"), "ADMIN": ("master",)}


def route_regex(template: str) -> re.Pattern[str]:
    """Compile an ASP.NET-style route template (``items/{id:int?}``) into a regex with named groups."""
    out, pos = "", 0
    for m in re.finditer(r"/?\{(\*?)(\w+)(?::[^}?]*)?(\?)?\}", template):
        out += re.escape(template[pos:m.start()])
        slash = "/" if m.group(0).startswith("/") else ""
        body = ".+" if m.group(1) else "[^/]+"
        piece = f"{re.escape(slash)}(?P<{m.group(2)}>{body})"
        out += f"(?:{piece})?" if m.group(3) else piece
        pos = m.end()
    return re.compile("^" + out + re.escape(template[pos:]) + "/?$", re.IGNORECASE)


class HttpFunctions:
    """The HTTP routes of an indexed app."""

    def __init__(self, functions: list[IndexedFunction], keys: KeyRing, *, prefix: str = "api") -> None:
        self.keys = keys
        self.prefix = prefix.strip("/")
        self.routes = []
        for fn in functions:
            trig = fn.trigger
            if trig["type"] != "httpTrigger":
                continue
            methods = tuple(m.upper() for m in trig.get("methods") or ())
            self.routes.append((route_regex(trig.get("route") or fn.name), methods,
                                trig.get("authLevel", "FUNCTION"), fn))
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fn")

    def needs_keys(self) -> bool:
        """True when a route requires a key."""
        return any(level != "ANONYMOUS" for _, _, level, _ in self.routes)

    def match(self, request: Request) -> tuple[Response | None, Any]:
        """Find the function for a request: (error, None) or (None, (fn, route params))."""
        path = request.path.strip("/")
        if self.prefix:
            if not (path == self.prefix or path.startswith(self.prefix + "/")):
                return error_response(404, f"no function at '{request.path}'"), None
            path = path[len(self.prefix):].strip("/")
        allowed: list[str] = []
        for regex, methods, level, fn in self.routes:
            m = regex.match(path)
            if not m:
                continue
            if methods and request.method not in methods:
                allowed += methods
                continue
            if not self._authorized(request, level):
                return error_response(401, f"missing or wrong key for function '{fn.name}': send it as the "
                                         "x-functions-key header or the code query parameter"), None
            return None, (fn, {k: v for k, v in m.groupdict().items() if v is not None})
        if allowed:
            result = error_response(405, f"method {request.method} is not allowed on '{request.path}'")
            result.headers["Allow"] = ", ".join(sorted(set(allowed)))
            return result, None
        return error_response(404, f"no function at '{request.path}'"), None

    def _authorized(self, request: Request, level: str) -> bool:
        names = LEVEL_KEYS.get(level.upper(), LEVEL_KEYS["FUNCTION"])
        if not names:
            return True
        presented = request.headers.get("x-functions-key") or dict(parse_qsl(request.query)).get("code")
        return self.keys.matches(presented, names)

    def invoke(self, fn: IndexedFunction, request: Request, route_params: dict[str, str]) -> Response:
        """Call the user function with a real func.HttpRequest and convert what it returns."""
        started = time.perf_counter()
        req = func.HttpRequest(method=request.method, url=f"http://localhost{request.target}",
                               headers=request.headers, params=dict(parse_qsl(request.query)),
                               route_params=route_params, body=request.body)
        try:
            out = fn.call(req)
            if inspect.iscoroutine(out):
                out = asyncio.run(out)
            result = _convert(out)
            outcome = "succeeded"
        except Exception:
            result = internal_error(f"function '{fn.name}' failed", f"function {fn.name} failed",
                                    traceback.format_exc())
            outcome = "failed"
        log.info("invoked %s: %s, status %d, %.1fms", fn.name, outcome, result.status,
                 (time.perf_counter() - started) * 1000)
        return result


def _convert(out: Any) -> Response:
    if isinstance(out, func.HttpResponse):
        headers = {k: v for k, v in out.headers.items() if k.lower() not in ("content-type", "content-length")}
        mime = out.mimetype or "text/plain"
        if out.charset and mime.startswith("text/"):
            mime += f"; charset={out.charset}"
        return Response(out.status_code, out.get_body(), mime, headers)
    if isinstance(out, (str, bytes)):
        return Response(200, out.encode() if isinstance(out, str) else out, "text/plain")
    if out is None:
        return Response(204, b"", "text/plain")
    return Response(200, json.dumps(out).encode())


class HttpHost:
    """The HTTP front of the local host, on the runtime's HTTP/1.1 protocol."""

    max_body = 100 << 20  # the Functions host's default request size limit

    def __init__(self, routes: HttpFunctions, functions: list[IndexedFunction]) -> None:
        self.routes, self.functions = routes, functions

    def admit(self, request: Request) -> Response | None:
        """Answer liveness, unknown routes, wrong methods or keys and oversized bodies before the body is read."""
        if request.path in ("", "/") and request.method in ("GET", "HEAD"):
            return json_response(200, {"status": "alive", "functions": [f.name for f in self.functions]})
        if request.length > self.max_body:
            return error_response(413, f"request body of {request.length} bytes exceeds the limit of "
                                     f"{self.max_body} bytes")
        error, found = self.routes.match(request)
        if error is not None:
            return error
        request.route = found
        return None

    def respond(self, request: Request) -> asyncio.Future:
        """Invoke the matched function in the worker pool."""
        fn, params = request.route
        return asyncio.get_running_loop().run_in_executor(self.routes.pool, self.routes.invoke, fn, request, params)
