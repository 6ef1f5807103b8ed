"""Scoring: import the entry script, call ``init()`` once and ``run()`` per request, shape the response.

A plain ``run`` receives a ``str`` for JSON and text requests and ``bytes`` for binary ones (edgepack's raw-data
mode); ``edgepack.runtime.calling`` covers the other ways Azure ML calls it (request headers, inference_schema
parameters, ``@rawhttp``, ``async``). Answers are encoded as Azure ML's server encodes them: the value as JSON
(a returned ``str`` too, so ``return json.dumps(x)`` answers a JSON string, as in Azure), ``None`` as ``{}``,
bytes as they are, and a werkzeug/``AMLResponse`` response with its own status and headers. Every outcome is a
Response, so the web server and the function adapters answer alike.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import traceback
from typing import Any

from edgepack.runtime import compat, parsed, schema
from edgepack.runtime.modules import load_file
from edgepack.runtime.calling import RAW, SCHEMA, BadCall, CallInfo, RunCaller, query_object
from edgepack.runtime.parsed import ParsedText, real_loads
from edgepack.runtime.response import Response, error_response, internal_error
from edgepack.runtime.settings import RuntimeConfig, RuntimeSetupError

log = logging.getLogger("edgepack.runtime")
# Bodies of these types reach run() as bytes (Azure ML's raw-data mode); anything else is JSON text, including
# curl's default form type and requests without a Content-Type, as Azure ML's server treats them.
BINARY_PREFIXES = ("application/octet-stream", "application/x-npy", "image/", "audio/", "video/",
                   "application/x-protobuf", "application/pdf")
# Text bodies that are not JSON reach run() as text, as in Azure ML (CSV, plain text).
TEXT_PREFIXES = ("text/",)
# Response headers that the HTTP layer writes itself.
_OWN_HEADERS = {"content-type", "content-length", "connection", "transfer-encoding"}


def _default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()  # numpy arrays and scalars
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_ENCODER = json.JSONEncoder(default=_default, allow_nan=False)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None: JSON has no such numbers (a bare ``NaN`` breaks parsers)."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "tolist"):
        return _finite(value.tolist())
    return value


def encode_json(value: Any) -> bytes:
    """JSON bytes of an answer; non-finite floats become null.

    Raises:
        TypeError, ValueError: the value is not JSON serializable.
    """
    try:
        return _ENCODER.encode(value).encode()
    except ValueError:
        return _ENCODER.encode(_finite(value)).encode()


def _import_entry(config: RuntimeConfig) -> Any:
    if config.source_dir and config.source_dir not in sys.path:
        sys.path.insert(0, config.source_dir)
    name = os.path.splitext(os.path.basename(config.entry_script))[0]
    schemas = getattr(sys.modules.get("inference_schema.schema_util"), "__functions_schema__", {})
    for stale in [key for key in schemas if key.startswith(f"{name}.")]:
        del schemas[stale]  # inference_schema keys schemas by module name: forget another script's of that name
    try:
        module = load_file(name, config.entry_script)
    except RuntimeSetupError as exc:
        raise RuntimeSetupError(f"loading entry script '{config.entry_script}': not a Python file") from exc
    for fn in ("init", "run"):
        if not callable(getattr(module, fn, None)):
            raise RuntimeSetupError(f"loading entry script '{config.entry_script}': no {fn}() function")
    return module


def _response(output: Any) -> Response | None:
    """A werkzeug response (AMLResponse) as a Response; None for any other value."""
    if not (hasattr(output, "status_code") and hasattr(output, "get_data") and hasattr(output, "headers")):
        return None
    headers: dict[str, str] = {}
    for name, value in output.headers.items():
        if name.lower() not in _OWN_HEADERS:
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return Response(int(output.status_code), output.get_data(),
                       output.headers.get("Content-Type") or "text/html; charset=utf-8", headers)


class Runtime:
    """A loaded entry script plus the request rules (size limit, schema) from the runtime config."""

    def __init__(self, config: RuntimeConfig) -> None:
        self.config = config
        self.ready = threading.Event()
        self._module: Any = None
        # The entry script's optional run_batch(array): scores stacked binary tensor requests (see batching).
        self.run_batch: Any = None
        self._schema = schema.infer_schema(config.input_sample) if config.input_sample is not None else None
        self._fits = schema.compile_check(self._schema) if self._schema is not None else None
        # An exponential moving average of score() time in seconds; infinite until a few requests were timed.
        self._cost, self._timed, self._warmup = float("inf"), 0, 0.0
        self.caller: RunCaller | None = None
        # What an image adds to /info (an FPGA image: the execution provider that runs and why); a callable
        # value is called at each request.
        self.details: dict[str, Any] = {}

    def info(self) -> dict[str, Any]:
        """What ``GET /info`` answers: the target, the models, the model folder in use, readiness, details."""
        models = [{"name": m.name, "version": m.version, "sha256": m.sha256} for m in self.config.models]
        return {"target": self.config.target, "ready": self.ready.is_set(), "models": models,
                "model_dir": self.config.model_dir,
                **{k: v() if callable(v) else v for k, v in self.details.items()}}

    def typical_cost(self) -> float:
        """Recent typical time of one score() call in seconds (infinite before there is enough to tell).

        Scripts whose run() is a coroutine are never cheap enough to score on the event loop.
        """
        return self._cost if self.caller is None or not self.caller.is_async else float("inf")

    @property
    def mode(self) -> str:
        """How run() is called (``text``, ``schema`` or ``raw``; see edgepack.runtime.calling)."""
        return self.caller.mode if self.caller else "text"

    def _note_cost(self, seconds: float) -> None:
        self._timed += 1
        if self._timed < 8:
            self._warmup = max(self._warmup, seconds)
        elif self._timed == 8:
            self._cost = max(self._warmup, seconds)  # the slowest of the first calls, to be safe
        else:
            self._cost += (seconds - self._cost) * 0.05

    def start(self) -> None:
        """Import the entry script and call ``init()`` once; ``ready`` is set when it returned.

        Raises:
            RuntimeSetupError: the script cannot be imported or init() raised (the cause is chained).
        """
        os.environ["AZUREML_MODEL_DIR"] = self.config.model_dir
        os.environ["EDGEPACK_MODEL_DIR"] = self.config.model_dir
        if self.config.app_root:
            os.environ.setdefault("AML_APP_ROOT", self.config.app_root)
        if compat.PATH not in sys.path:
            sys.path.append(compat.PATH)  # after the image's packages: a real Azure ML package would win
        parsed.install()
        aml_request = sys.modules.get("azureml.contrib.services.aml_request")
        if aml_request is not None:
            setattr(aml_request, "_rawHttpRequested", False)  # @rawhttp marks the process; this script decides anew
        try:
            self._module = _import_entry(self.config)
            try:
                self.caller = RunCaller(self._module.run)
            except RuntimeSetupError as exc:
                raise RuntimeSetupError(f"loading entry script '{self.config.entry_script}': {exc}") from exc
            self._module.init()
            run_batch = getattr(self._module, "run_batch", None)
            self.run_batch = run_batch if callable(run_batch) else None
        except RuntimeSetupError:
            raise
        except Exception as exc:
            raise RuntimeSetupError(f"initializing entry script '{self.config.entry_script}': "
                                    f"{type(exc).__name__}: {exc}") from exc
        self.ready.set()

    def openapi(self, version: str = "2") -> dict[str, Any]:
        """The scoring endpoint's Swagger 2.0 or OpenAPI 3 document (``version`` as ``/swagger.json?version=``).

        A swagger file the project ships wins; else the schemas come from the run() decorators
        (inference_schema), else from the config's samples, else any JSON object, as Azure ML's server
        describes an undecorated script.

        Raises:
            ValueError: an unknown version, or one the decorators do not support.
        """
        wanted = schema.SWAGGER_VERSIONS.get(version)
        if wanted is None:
            raise ValueError(f"Swagger version [{version}] is not valid. Supported versions: [2, 3, 3.1].")
        own = self._own_swagger(wanted)
        if own is not None:
            return own
        model = self.config.model or {}
        inputs, outputs = schema.from_samples(self.config.input_sample), schema.from_samples(self.config.output_sample)
        if self.mode == SCHEMA:
            from inference_schema.schema_util import get_input_schema, get_output_schema, get_supported_versions

            run = self._module.run
            supported = {schema.SWAGGER_VERSIONS.get(v, v) for v in get_supported_versions(run)}
            if wanted not in supported:
                raise ValueError(f"Swagger version [{version}] is not supported for the scoring script. "
                                 f"Supported versions: {sorted(supported)}.")
            inputs, outputs = get_input_schema(run) or inputs, get_output_schema(run) or outputs
        return schema.document(wanted, title=f"{model.get('name', 'model')} scoring",
                               service_version=str(model.get("version", "1")), input_schema=inputs,
                               output_schema=outputs,
                               path="/api/score" if self.config.target.startswith("functions") else "/score")

    def _own_swagger(self, version: str) -> dict[str, Any] | None:
        """A swagger file the project ships, which Azure ML's server serves instead of generating one:
        ``swagger.json`` or ``swagger2.json`` (version 2), ``swagger3.json``, ``swagger3.1.json``."""
        names = {"2": ("swagger.json", "swagger2.json"), "3": ("swagger3.json",), "3.1": ("swagger3.1.json",)}
        for folder in dict.fromkeys(filter(None, (self.config.source_dir, self.config.app_root))):
            for name in names[version]:
                path = os.path.join(folder, name)
                if os.path.isfile(path):
                    with open(path, encoding="utf-8") as f:
                        return json.load(f)
        return None

    def score(self, body: bytes, content_type: str | None, call: CallInfo | None = None) -> Response:
        """Score one request body (``call``: its method, target and headers); never raises (failures become
        4xx/5xx results)."""
        if not self.ready.is_set():
            return error_response(503, "the model is not loaded yet")
        if len(body) > self.config.max_request_bytes:
            return error_response(413, f"request body of {len(body)} bytes exceeds the limit of "
                                     f"{self.config.max_request_bytes} bytes")
        data: Any = body
        value: Any = None
        mime = (content_type or "").split(";")[0].strip().lower()
        if self.caller is not None and self.caller.mode == RAW:
            pass  # run() reads the request itself
        elif call is not None and call.method == "GET":
            value = query_object(call.query)
            data = json.dumps(value)
        elif not mime.startswith(BINARY_PREFIXES):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                return error_response(400, f"request body is not valid UTF-8 text: {exc}")
            try:
                value = real_loads(text)
            except RecursionError:
                return error_response(400, "request body is not valid JSON: nested too deeply")
            except ValueError as exc:
                if not mime.startswith(TEXT_PREFIXES) or self._fits is not None or self.mode == SCHEMA:
                    return error_response(400, f"request body is not valid JSON: {exc}")
                value, data = None, text
            else:
                data = ParsedText(text, value)
            if value is not None and self._fits is not None and self._schema is not None and not self._fits(value):
                problem = schema.validate(value, self._schema)
                return error_response(400, f"request does not match the input schema: {problem}")
        started = time.perf_counter()
        result = self._call(data, value, body, call)
        self._note_cost(time.perf_counter() - started)
        return result

    def _call(self, data: Any, value: Any, body: bytes, call: CallInfo | None) -> Response:
        try:
            if self.caller is None or self.caller.plain:
                output = self._module.run(data)
            else:
                output = self.caller.call(data, value, body, call)
        except BadCall as exc:
            return error_response(exc.status, str(exc))
        except Exception:
            return internal_error("the entry script's run() failed", "run() failed", traceback.format_exc())
        if isinstance(output, (bytes, bytearray)):
            return Response(200, bytes(output), "application/octet-stream")
        if output is None:
            return Response(200, b"{}")
        response = _response(output)
        if response is not None:
            return response
        try:
            return Response(200, encode_json(output))
        except (TypeError, ValueError) as exc:
            return internal_error("the entry script returned a value that is not JSON serializable",
                                  "run() returned a value that is not JSON serializable", str(exc))


def load_runtime(config_path: str | None = None, *, start: bool = True) -> Runtime:
    """Read the runtime config and (by default) load the entry script.

    Raises:
        RuntimeSetupError: as ``RuntimeConfig.from_file`` and ``Runtime.start``.
    """
    runtime = Runtime(RuntimeConfig.from_file(config_path))
    if start:
        runtime.start()
    return runtime
