"""How ``run()`` is called, as Azure ML's inference server calls it, decided once when the script is loaded.

- plain ``run(raw_data)``: the body as text (a GET passes its query string as a JSON object, ``"{}"`` without one);
- ``run(data, request_headers)``: any of the modes below also gets the request headers as a dict;
- inference_schema-decorated ``run(a, b=...)``: the JSON body must be an object; each parameter of ``run`` gets
  the value of the key of its name (or its default), and the decorators convert it (to a numpy array, a pandas
  DataFrame...) with the real ``inference_schema`` package;
- ``@rawhttp`` ``run(request)``: a werkzeug request (``AMLRequest``) for GET, POST and OPTIONS; an
  ``AMLResponse`` (any werkzeug response) is answered as it is;
- ``async def run``: awaited.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import parse_qsl

from edgepack.runtime.settings import RuntimeSetupError

TEXT, SCHEMA, RAW = "text", "schema", "raw"


@dataclass(frozen=True)
class CallInfo:
    """The parts of an HTTP request beyond its body: method, target (path and query) and lower-cased headers."""

    method: str = "POST"
    target: str = "/score"
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def query(self) -> str:
        """The query string, without the ``?``."""
        return self.target.partition("?")[2]


class BadCall(Exception):
    """The request cannot be mapped onto run()'s parameters: a client error with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _schema_decorated(run: Callable[..., Any]) -> bool:
    if "inference_schema" not in sys.modules or not hasattr(run, "__wrapped__"):
        return False
    from inference_schema.schema_util import is_schema_decorated

    return bool(is_schema_decorated(run))


def _raw_requested(run: Callable[..., Any]) -> bool:
    module = sys.modules.get("azureml.contrib.services.aml_request")
    return bool(getattr(run, "__edgepack_rawhttp__", False) or getattr(module, "_rawHttpRequested", False))


def header_dict(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers as ``request_headers`` shows them: ``Content-Type``, ``X-Request-Id``..."""
    return {"-".join(part.capitalize() for part in name.split("-")): value for name, value in headers.items()}


def query_object(query: str) -> dict[str, Any]:
    """A query string as Azure ML's server reads it: JSON values where they parse, repeated keys as lists."""
    out: dict[str, Any] = {}
    for key, raw in parse_qsl(query, keep_blank_values=True):
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        if key in out:
            out[key] = out[key] + [value] if isinstance(out[key], list) else [out[key], value]
        else:
            out[key] = value
    return out


def _wsgi_environ(body: bytes, call: CallInfo) -> dict[str, Any]:
    path, _, query = call.target.partition("?")
    host, _, port = call.headers.get("host", "localhost").partition(":")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": call.method, "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": query,
        "SERVER_NAME": host or "localhost", "SERVER_PORT": port or "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0), "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True,
        "wsgi.run_once": False, "REMOTE_ADDR": "127.0.0.1",
    }
    for name, value in call.headers.items():
        if name == "content-type":
            environ["CONTENT_TYPE"] = value
        elif name != "content-length":
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


class RunCaller:
    """Calls one entry script's ``run`` in the mode its signature and decorators ask for."""

    def __init__(self, run: Callable[..., Any]) -> None:
        self.run = run
        self.is_async = inspect.iscoroutinefunction(run)
        raw, schema = _raw_requested(run), _schema_decorated(run)
        if raw and schema:
            raise RuntimeSetupError("run() is both @rawhttp and inference_schema-decorated; Azure ML does not allow "
                                    "both")
        self.mode = RAW if raw else SCHEMA if schema else TEXT
        try:
            params = list(inspect.signature(run).parameters.values())
        except (TypeError, ValueError):
            params = []
        self.headers = any(p.name == "request_headers" for p in params)
        self.params = [p for p in params if p.name != "request_headers"]
        if self.mode != TEXT and any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY)
                                     for p in self.params):
            raise RuntimeSetupError("run() cannot take positional-only arguments, *args or **kwargs in this mode")
        if self.headers and not self.params:
            raise RuntimeSetupError("run() takes only request_headers; it needs a parameter for the request data")

    @property
    def plain(self) -> bool:
        """True for a synchronous ``run(raw_data)`` with nothing else: the fast path."""
        return self.mode == TEXT and not self.headers and not self.is_async

    def call(self, data: Any, value: Any, body: bytes, call: CallInfo | None) -> Any:
        """Call run() for one request: ``data`` is what a plain run() gets, ``value`` the parsed JSON body.

        Raises:
            BadCall: the request does not fit run()'s parameters (400, 415).
            Exception: whatever run() raised.
        """
        call = call or CallInfo()
        extra = {"request_headers": header_dict(call.headers)} if self.headers else {}
        if self.mode == RAW:
            from azureml.contrib.services.aml_request import AMLRequest

            request = AMLRequest(_wsgi_environ(body, call))
            try:
                result = self.run(request, **extra)
            finally:
                request.close()  # uploaded files' spooled temporary files
        elif self.mode == SCHEMA:
            result = self.run(**self._arguments(value, call), **extra)
        elif extra:
            result = self.run(data, **extra)
        else:
            result = self.run(data)
        if inspect.isawaitable(result):
            result = asyncio.run(_awaited(result))
        return result

    def _arguments(self, value: Any, call: CallInfo) -> dict[str, Any]:
        if call.method == "GET":
            value = query_object(call.query)
        elif value is None:
            raise BadCall(415, "Expects Content-Type to be application/json")
        if not isinstance(value, dict):
            raise BadCall(400, "the JSON body must be an object whose keys name run()'s parameters")
        args = {}
        for param in self.params:
            given = value.get(param.name, param.default)
            if given is inspect.Parameter.empty:
                raise BadCall(400, f"A value is not provided for the '{param.name}' parameter.")
            args[param.name] = given
        return args


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
