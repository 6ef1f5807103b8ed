"""Models on the device: the desired model from the twin, the models kept on disk, and the hot swap.

The twin's desired ``model`` is ``{version, digest, uri, sizeBytes}`` (``uri``: an OCI model reference or an
HTTPS URL; ``digest``: the artifact manifest's digest, or the file's sha256 for HTTPS). The swapper downloads it
in the background (resuming), loads it into a new Runtime (the same entry script, ``init()`` with the new
folder), probes it, and only then installs it; messages already being scored finish on the old model. Whatever
fails, the old model keeps serving and the status says why. ``state.json`` in the models folder records the
current and the previous model (for ``rollback``, also after a restart) and the digests refused, so a restart
does not try a bad model again; it is replaced atomically.

Side effects: files under ``<state>/models``, a thread, the network (``device_agents.fetch``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgepack.runtime.files import write_atomic
from edgepack.runtime.scoring import Runtime
from edgepack.runtime.settings import ModelEntry, RuntimeConfig, RuntimeSetupError

from device_agents.fetch import Fetcher, FetchError, fetch_model, is_digest, parse_uri

log = logging.getLogger("device_agents.models")
_START_LOCK = threading.Lock()  # Runtime.start sets AZUREML_MODEL_DIR for the process: one at a time


class ModelSpecError(ValueError):
    """The desired ``model`` property is malformed (the field is named)."""


@dataclass(frozen=True)
class DesiredModel:
    """What the twin asks the agent to serve."""

    version: int
    digest: str
    uri: str
    size: int | None = None
    file: str = ""  # HTTPS: the file's name in the model folder (default: the URL's last segment)

    @classmethod
    def parse(cls, value: Any) -> "DesiredModel":
        if not isinstance(value, dict):
            raise ModelSpecError("desired 'model' is not an object {version, digest, uri, sizeBytes}")
        digest, uri = value.get("digest"), value.get("uri")
        try:
            version = int(value["version"])
        except (KeyError, TypeError, ValueError):
            raise ModelSpecError(f"desired model 'version' {value.get('version')!r} is not a number") from None
        if not isinstance(digest, str) or not is_digest(digest.lower()):
            raise ModelSpecError(f"desired model 'digest' {digest!r} is not sha256:<64 hex digits>")
        size = value.get("sizeBytes")
        if size is not None and (not isinstance(size, int) or size < 0):
            raise ModelSpecError(f"desired model 'sizeBytes' {size!r} is not a byte count")
        if not isinstance(uri, str):
            raise ModelSpecError(f"desired model 'uri' {uri!r} is not a string")
        try:
            parse_uri(uri)
        except FetchError as exc:
            raise ModelSpecError(str(exc)) from None
        return cls(version, digest.lower(), uri, size, str(value.get("file") or ""))


@dataclass(frozen=True)
class Installed:
    """A model the agent can serve: what it is and the folder holding it."""

    name: str
    version: int
    sha256: str
    digest: str  # "" for the model baked into the image
    dir: str

    def config(self, base: RuntimeConfig) -> RuntimeConfig:
        """``base`` serving this model."""
        return base.with_models((ModelEntry(self.name, self.version, self.sha256, self.dir),))


def _installed(data: Any) -> Installed | None:
    try:
        return Installed(**data) if data else None
    except TypeError:
        return None


class ModelStore:
    """``<state>/models``: one folder per model digest and ``state.json``."""

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, exist_ok=True)
        self.path = os.path.join(root, "state.json")

    def dir_for(self, digest: str) -> str:
        return os.path.join(self.root, digest.replace(":", "-"))

    def load(self) -> dict[str, Any]:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            data = {}
        return data if isinstance(data, dict) else {}

    def save(self, data: dict[str, Any]) -> None:
        write_atomic(Path(self.path), json.dumps(data, sort_keys=True), fsync=True)

    def collect(self, keep: set[str]) -> None:
        """Delete model folders (and unfinished downloads) other than ``keep`` and ``.partial`` of those."""
        wanted = keep | {f"{k}.partial" for k in keep}
        for name in os.listdir(self.root):
            path = os.path.join(self.root, name)
            if os.path.isdir(path) and name.startswith("sha256-") and path not in wanted:
                shutil.rmtree(path, ignore_errors=True)


def _zeros(spec: Any) -> np.ndarray:
    dims = [d if isinstance(d, int) and d > 0 else 1 for d in (spec.shape or [])]
    kind = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
            "tensor(int32)": np.int32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8,
            "tensor(bool)": np.bool_, "tensor(float16)": np.float16}.get(spec.type, np.float32)
    return np.zeros(dims, dtype=kind)


def probe(runtime: Runtime) -> str | None:
    """None when ``runtime`` answers a health probe; else why not. The probe is the config's input sample
    through the entry script, or, without one, each ONNX file of the model run on zeros of its own input specs."""
    sample = runtime.config.input_sample
    if sample is not None:
        response = runtime.score(json.dumps(sample).encode(), "application/json")
        if response.status >= 400:
            return f"the sample request answered {response.status}: {response.body[:200].decode('utf-8', 'replace')}"
        return None
    import onnxruntime as ort

    for folder, _, names in os.walk(runtime.config.model_dir):
        for name in sorted(n for n in names if n.endswith(".onnx")):
            try:
                session = ort.InferenceSession(os.path.join(folder, name), providers=["CPUExecutionProvider"])
                session.run(None, {i.name: _zeros(i) for i in session.get_inputs()})
            except Exception as exc:  # onnxruntime raises its own exception types
                return f"{name} does not run on zeros of its input specs: {type(exc).__name__}: {exc}"[:300]
    return None


class ModelSwapper:
    """Keeps the desired model serving: downloads, loads, probes and installs in a thread of its own.

    ``install(runtime)`` makes the agent score with ``runtime`` from its next batch on; ``changed()`` asks for a
    report. ``fetcher()`` makes the downloader (credentials and CA from the settings).
    """

    def __init__(self, base: Runtime, store: ModelStore, *, install: Callable[[Runtime], None],
                 changed: Callable[[], None], fetcher: Callable[[threading.Event], Fetcher]) -> None:
        model = base.config.model or {}
        self.base_config = base.config
        self.baked = Installed(str(model.get("name", "")), int(model.get("version", 0) or 0),
                               str(model.get("sha256", "")), "", base.config.model_dir)
        self.store, self._install, self._changed, self._fetcher = store, install, changed, fetcher
        self.current: Installed = self.baked
        self.previous: Installed | None = None
        self.rejected: dict[str, str] = {}
        self.status, self.last_error = "serving", ""
        self.timings: dict[str, float] = {}
        self.bytes_fetched = 0
        self._desired: DesiredModel | None = None
        self._lock = threading.Lock()  # one load-and-install (a swap's or a rollback's) at a time
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None

    # -- start-up
    def restore(self, base: Runtime) -> Runtime:
        """The runtime to serve at start: the model swapped in last time, else the previous one, else ``base``.

        A state written for another image's model is forgotten (a new image brings its own model).
        """
        data = self.store.load()
        self.rejected = {str(k): str(v) for k, v in (data.get("rejected") or {}).items()}
        if data.get("image") != self.baked.sha256:
            self._save()
            return self._started(base)
        current, previous = _installed(data.get("current")), _installed(data.get("previous"))
        if current is None:  # the image's own model served last (a swapped one before it stays for rollback)
            self.current, self.previous = self.baked, previous
            self._save()
            return self._started(base)
        for candidate, before in ((current, previous), (previous, None)):
            if candidate is None or not candidate.digest:
                continue
            try:
                runtime = self._load(candidate)
            except RuntimeSetupError as exc:
                log.warning("model version %d (%s) does not load any more: %s", candidate.version, candidate.digest,
                            exc)
                continue
            self.current, self.previous = candidate, before
            self._save()
            return runtime
        self.current, self.previous = self.baked, None
        self._save()
        return self._started(base)

    @staticmethod
    def _started(runtime: Runtime) -> Runtime:
        if not runtime.ready.is_set():
            with _START_LOCK:  # init() reads the process's AZUREML_MODEL_DIR: one start at a time per process
                runtime.start()
        return runtime

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="agent-models", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(10)

    # -- requests (any thread; never block)
    def forget(self) -> None:
        """Drop the wanted model and what was installed (a shadow that ended): the next want() starts afresh."""
        with self._lock:
            self._desired, self.current, self.previous = None, self.baked, None
            self.status, self.last_error = "serving", ""

    def want(self, value: Any) -> None:
        """The twin's desired ``model``; None (the property is gone, as when the rollout deployment that set it
        was deleted) asks for the image's own model again."""
        if value is None:
            self._desired = None
            self._wake.set()
            return
        try:
            desired = DesiredModel.parse(value)
        except ModelSpecError as exc:
            self._fail(str(exc))
            return
        self._desired = desired
        self._wake.set()

    def rollback(self) -> tuple[int, dict[str, Any]]:
        """Serve the previous model again and refuse the current one's digest until the twin names another."""
        with self._lock:
            previous, current = self.previous, self.current
            if previous is None:
                return 409, {"error": "there is no previous model to roll back to"}
            try:
                runtime = self._load(previous)
            except RuntimeSetupError as exc:
                return 500, {"error": f"the previous model does not load: {exc}"}
            self._install(runtime)
            if current.digest:
                self.rejected[current.digest] = f"rolled back from version {current.version} by the rollback method"
            self.current, self.previous = previous, None
            self.status, self.last_error = "serving", ""
            self._save()
        self._changed()
        return 200, {"model": {"version": previous.version, "digest": previous.digest or None}}

    # -- the worker
    def _loop(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            if not self._wake.wait(1.0):
                continue
            self._wake.clear()
            desired = self._desired
            if desired is None and self.current.digest:
                self._serve_baked()
                continue
            if desired is None or desired.digest == self.current.digest:
                if self.status != "serving":  # what it serves is what the twin asks (a refusal is past)
                    self.status, self.last_error = "serving", ""
                    self._changed()
                continue
            if desired.digest in self.rejected:
                self._fail(f"model {desired.digest} was refused: {self.rejected[desired.digest]}; set another digest")
                continue
            transient = self._update(desired)
            if transient and not self._stop.wait(min(60.0, 2.0 * 2 ** min(attempt, 5))):
                attempt += 1
                self._wake.set()  # try again (the twin may have named another model meanwhile)
            else:
                attempt = 0

    def _update(self, desired: DesiredModel) -> bool:
        """Fetch, load, probe and install ``desired``; True when a transient failure is worth another try."""
        self.status, self.last_error = "downloading", ""
        self._changed()
        dest = self.store.dir_for(desired.digest)
        started = time.perf_counter()
        fetcher = self._fetcher(self._stop)
        try:
            manifest = fetch_model(fetcher, parse_uri(desired.uri), desired.digest, dest, size=desired.size,
                                   file_name=desired.file)
        except FetchError as exc:
            self.bytes_fetched += fetcher.bytes_fetched
            self._fail(f"downloading version {desired.version}: {exc}", refuse=None if exc.transient else desired)
            return exc.transient
        except OSError as exc:
            self._fail(f"downloading version {desired.version}: {exc}")
            return True
        self.bytes_fetched += fetcher.bytes_fetched
        downloaded = time.perf_counter()
        if manifest is not None and manifest.version != desired.version:
            self._fail(f"the artifact {desired.digest} holds version {manifest.version}, not {desired.version}")
            return False
        name = manifest.name if manifest else self.current.name or self.baked.name
        sha256 = manifest.sha256 if manifest else desired.digest[7:]
        candidate = Installed(name, desired.version, sha256, desired.digest, dest)
        self.status = "loading"
        self._changed()
        with self._lock:  # not while downloading: a rollback need not wait for a slow link
            if self._desired is not desired:  # the twin named another model (or none) meanwhile
                self.status = "serving"
                return False
            try:
                runtime = self._load(candidate)
            except RuntimeSetupError as exc:
                self._fail(f"version {desired.version} does not load: {exc}", refuse=desired)
                return False
            problem = probe(runtime)
            if problem:
                self._fail(f"version {desired.version} failed its probe and was rolled back: {problem}",
                           refuse=desired)
                return False
            if self._desired is not desired:  # superseded while it loaded: not installed
                self.status = "serving"
                return False
            self._install(runtime)
            done = time.perf_counter()
            self.previous, self.current = self.current, candidate
            self.timings = {"downloadSeconds": round(downloaded - started, 3),
                            "swapSeconds": round(done - downloaded, 3)}
            self.status, self.last_error = "serving", ""
            self._save()
        log.info("now serving model version %d (%s): downloaded in %.2f s, loaded and probed in %.2f s",
                 desired.version, desired.digest, downloaded - started, done - downloaded)
        self._changed()
        return False

    def _serve_baked(self) -> None:
        """Serve the image's own model again (the twin names none any more)."""
        with self._lock:
            if self._desired is not None or not self.current.digest:
                return
            try:
                runtime = self._load(self.baked)
            except RuntimeSetupError as exc:
                self._fail(f"the image's own model does not load: {exc}")
                return
            self._install(runtime)
            self.previous, self.current = self.current, self.baked
            self.status, self.last_error = "serving", ""
            self._save()
        log.info("the twin names no model: serving the image's own model (version %d) again", self.baked.version)
        self._changed()

    def _load(self, model: Installed) -> Runtime:
        runtime = Runtime(model.config(self.base_config))
        with _START_LOCK:
            runtime.start()
        return runtime

    def _fail(self, message: str, *, refuse: DesiredModel | None = None) -> None:
        log.warning("model update: %s", message)
        self.status, self.last_error = "failed", message[:512]
        if refuse is not None:
            self.rejected[refuse.digest] = message[:256]
            self._save()  # which also deletes the refused model's files
        self._changed()

    def _save(self) -> None:
        self.store.save({"image": self.baked.sha256, "current": asdict(self.current) if self.current.digest else None,
                         "previous": asdict(self.previous) if self.previous else None,
                         "rejected": dict(list(self.rejected.items())[-20:])})
        self.store.collect({m.dir for m in (self.current, self.previous) if m is not None and m.digest})

    def reported(self) -> dict[str, Any]:
        """The model's part of the reported properties."""
        desired = self._desired
        return {"name": self.current.name, "version": self.current.version, "sha256": self.current.sha256,
                "digest": self.current.digest or None, "status": self.status, "lastError": self.last_error,
                "desiredVersion": desired.version if desired else None,
                "desiredDigest": desired.digest if desired else None,
                "refused": bool(desired and desired.digest in self.rejected),
                "previousVersion": self.previous.version if self.previous else None,
                "bytesFetched": self.bytes_fetched, **self.timings}
