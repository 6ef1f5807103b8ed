"""Scoring: import the entry script, call ``init()`` once and ``run(data)`` per request, shape the response.

``run`` receives a ``str`` for JSON requests and ``bytes`` for binary ones (Azure ML's raw-data mode). Every
outcome is a ScoreResult (status, JSON body), so the web server and the function adapters answer alike.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any

from edgepack.runtime import parsed, schema
from edgepack.runtime.parsed import ParsedText, real_loads
from edgepack.runtime.settings import RuntimeConfig, RuntimeSetupError

log = logging.getLogger("edgepack.runtime")
# Bodies of these types reach run() as bytes (Azure ML's raw-data mode); anything else is JSON text, including
# curl's default form type and requests without a Content-Type, as Azure ML's server treats them.
BINARY_PREFIXES = ("application/octet-stream", "application/x-npy", "image/", "audio/", "video/",
                   "application/x-protobuf", "application/pdf")


@dataclass(frozen=True)
class ScoreResult:
    """An HTTP-shaped outcome: status, body bytes and content type."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def error_result(status: int, message: str, **extra: Any) -> ScoreResult:
    """A JSON error body ``{"error": message, ...}``."""
    return ScoreResult(status, json.dumps({"error": message, **extra}).encode())


def internal_error(public: str, what: str, detail: str) -> ScoreResult:
    """A 500 that tells the client ``public`` and an error id; the details go only to the log, under that id."""
    error_id = uuid.uuid4().hex
    log.error("%s (error id %s):\n%s", what, error_id, detail)
    return error_result(500, public, error_id=error_id)


def _default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()  # numpy arrays and scalars
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_ENCODER = json.JSONEncoder(default=_default)


def _import_entry(config: RuntimeConfig) -> Any:
    if config.source_dir and config.source_dir not in sys.path:
        sys.path.insert(0, config.source_dir)
    name = os.path.splitext(os.path.basename(config.entry_script))[0]
    spec = importlib.util.spec_from_file_location(name, config.entry_script)
    if spec is None or spec.loader is None:
        raise RuntimeSetupError(f"loading entry script '{config.entry_script}': not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    for fn in ("init", "run"):
        if not callable(getattr(module, fn, None)):
            raise RuntimeSetupError(f"loading entry script '{config.entry_script}': no {fn}() function")
    try:
        inspect.signature(module.run).bind(None)
    except TypeError as exc:
        raise RuntimeSetupError(f"loading entry script '{config.entry_script}': run() cannot take the request "
                                f"data as its one argument: {exc}") from exc
    return module


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

    def typical_cost(self) -> float:
        """Recent typical time of one score() call in seconds (infinite before there is enough to tell)."""
        return self._cost

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
        parsed.install()
        try:
            self._module = _import_entry(self.config)
            self._module.init()
            run_batch = getattr(self._module, "run_batch", None)
            self.run_batch = run_batch if callable(run_batch) else None
        except RuntimeSetupError:
            raise
        except Exception as exc:
            raise RuntimeSetupError(f"initializing entry script '{self.config.entry_script}': "
                                    f"{type(exc).__name__}: {exc}") from exc
        self.ready.set()

    def openapi(self) -> dict[str, Any] | None:
        """The OpenAPI document, when the config has an input sample."""
        if self.config.input_sample is None:
            return None
        model = self.config.model or {}
        return schema.openapi(self.config.input_sample, self.config.output_sample,
                              title=f"{model.get('name', 'model')} scoring", version=str(model.get("version", "1")),
                              path="/api/score" if self.config.target.startswith("functions") else "/score")

    def score(self, body: bytes, content_type: str | None) -> ScoreResult:
        """Score one request body; never raises (failures become 4xx/5xx results)."""
        if not self.ready.is_set():
            return error_result(503, "the model is not loaded yet")
        if len(body) > self.config.max_request_bytes:
            return error_result(413, f"request body of {len(body)} bytes exceeds the limit of "
                                     f"{self.config.max_request_bytes} bytes")
        mime = (content_type or "").split(";")[0].strip().lower()
        if not mime.startswith(BINARY_PREFIXES):
            try:
                text = body.decode("utf-8")
                value = real_loads(text)
            except (UnicodeDecodeError, ValueError) as exc:
                return error_result(400, f"request body is not valid JSON: {exc}")
            if self._fits is not None and not self._fits(value):
                problem = schema.validate(value, self._schema)
                return error_result(400, f"request does not match the input schema: {problem}")
            data: Any = ParsedText(text, value)
        else:
            data = body
        started = time.perf_counter()
        result = self._call(data)
        self._note_cost(time.perf_counter() - started)
        return result

    def _call(self, data: Any) -> ScoreResult:
        try:
            output = self._module.run(data)
        except Exception:
            return internal_error("the entry script's run() failed", "run() failed", traceback.format_exc())
        if isinstance(output, (bytes, bytearray)):
            return ScoreResult(200, bytes(output), "application/octet-stream")
        if isinstance(output, str):
            try:
                real_loads(output)
                return ScoreResult(200, output.encode())
            except ValueError:
                pass
        try:
            return ScoreResult(200, _ENCODER.encode(output).encode())
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
