"""A profiling session: start the scoring runtime for a model and config as a local process, check the sample is
accepted, load it at each concurrency, and read the process tree's CPU time and resident memory from /proc."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgepack.config.schema import InferenceConfig
from edgepack.deploy.local import free_port
from edgepack.errors import ProfileError
from edgepack.models.artifact import ModelArtifact
from edgepack.packagers.layers import runtime_config
from edgepack.runtime.settings import MODELS_FOLDER, ModelEntry
from edgepack.profiling.advice import Level, Recommendation, recommend
from edgepack.profiling.load import build_request, run_load
from edgepack.profiling.procs import cpu_seconds, rss_bytes

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Sample:
    """One request body and its content type."""

    body: bytes
    content_type: str


@dataclass(frozen=True)
class ProfileReport:
    """Every level measured, the recommendation drawn from them, and how long the runtime took to get ready."""

    model: str
    levels: tuple[Level, ...]
    recommendation: Recommendation
    startup_seconds: float
    idle_rss_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "startup_seconds": round(self.startup_seconds, 3),
                "idle_rss_bytes": self.idle_rss_bytes, "levels": [lv.to_dict() for lv in self.levels],
                "recommendation": self.recommendation.to_dict()}


def read_samples(path: Path) -> list[Sample]:
    """Request bodies from a file: ``.json`` (one body), ``.jsonl`` (one per line), ``.npy`` (a tensor), else raw.

    Raises:
        ProfileError: the file is missing, empty or not what its name says.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ProfileError(f"reading sample '{path}': {exc.strerror or exc}",
                           hint="Pass a JSON request body (like samples/digits/sample-request.json).") from exc
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            json.loads(data)
            samples = [Sample(data, "application/json")]
        elif suffix == ".jsonl":
            lines = [line for line in data.splitlines() if line.strip()]
            for line in lines:
                json.loads(line)
            samples = [Sample(line, "application/json") for line in lines]
        elif suffix == ".npy":
            samples = [Sample(data, "application/x-npy")]
        else:
            samples = [Sample(data, "application/octet-stream")]
    except ValueError as exc:
        raise ProfileError(f"reading sample '{path}': not valid JSON: {exc}",
                           hint="A .json sample is one request body; a .jsonl sample has one body per line.") from exc
    if not samples or not samples[0].body:
        raise ProfileError(f"reading sample '{path}': it is empty", hint="Give at least one request body.")
    return samples


def write_runtime_config(model: ModelArtifact, config: InferenceConfig, workdir: Path, *,
                         target: str = "webservice") -> Path:
    """The ``target`` image's runtime settings and model entry, under ``workdir`` as the app root: the model is
    linked into ``azureml-models/NAME/VERSION`` as in the image, the source is used where it is."""
    source = config.source_directory or config.entry_script.parent
    settings = runtime_config((model,), config, target=target, app_root=str(workdir),
                              source_dest=str(source), auth_enabled=False)
    models_dir = Path(settings.model_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    if model.folder:
        (models_dir / model.folder).symlink_to(model.root, target_is_directory=True)
    else:
        for f in model.files:
            (models_dir / f.path).parent.mkdir(parents=True, exist_ok=True)
            (models_dir / f.path).symlink_to(model.root / f.path)
    entries = workdir / MODELS_FOLDER
    entries.mkdir(exist_ok=True)
    entry = settings.models[0]
    (entries / ModelEntry.file_name(entry.name, entry.version)).write_bytes(entry.to_json())
    path = workdir / "runtime.json"
    path.write_bytes(settings.to_json())
    return path


class RuntimeProcess:
    """``python -m edgepack.runtime`` for one model and config, on a free loopback port."""

    def __init__(self, model: ModelArtifact, config: InferenceConfig, workdir: Path, python: str,
                 extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.log = workdir / "runtime.log"
        runtime_json = write_runtime_config(model, config, workdir)
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, **config.environment_variables, "EDGEPACK_RUNTIME_CONFIG": str(runtime_json),
               "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
               "PYTHONDONTWRITEBYTECODE": "1",  # the entry script runs from the user's folder: no __pycache__ there
               **(extra_env or {})}
        self.python = python
        with open(self.log, "wb") as log:
            self.started = time.monotonic()
            self.proc = subprocess.Popen([python, "-m", "edgepack.runtime", "--host", "127.0.0.1", "--port",
                                          str(self.port)], env=env, stdout=log, stderr=subprocess.STDOUT)

    def log_tail(self, lines: int = 12) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, timeout: float) -> float:
        """Seconds from start until /health answered 200.

        Raises:
            ProfileError: the process exited or never got ready.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ProfileError(f"starting the entry script: the runtime exited with code {self.proc.returncode}"
                                   f"\n{self.log_tail()}",
                                   hint=f"edgepack profile runs the entry script with {self.python}; install the "
                                        "model's requirements there, or fix the error above.")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return time.monotonic() - self.started
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.02)
        raise ProfileError(f"starting the entry script: not ready after {timeout:.0f}s\n{self.log_tail()}",
                           hint="A slow init() needs a longer --startup-timeout.")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _check_samples(proc: RuntimeProcess, samples: list[Sample]) -> None:
    for i, sample in enumerate(samples):
        request = urllib.request.Request(f"http://127.0.0.1:{proc.port}/score", data=sample.body, method="POST",
                                         headers={"Content-Type": sample.content_type})
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:500]
            raise ProfileError(f"scoring sample {i + 1}: the runtime answered {exc.code}: {detail}",
                               hint="Profile with a request body the model accepts (it must answer 200).") from exc


async def _measure(proc: RuntimeProcess, requests: list[bytes], concurrency: int, seconds: float) -> Level:
    peak = rss_bytes(proc.proc.pid)

    async def watch_memory() -> None:
        nonlocal peak
        while True:
            await asyncio.sleep(0.05)
            peak = max(peak, rss_bytes(proc.proc.pid))

    watcher = asyncio.create_task(watch_memory())
    cpu_before = cpu_seconds(proc.proc.pid)
    result = await run_load("127.0.0.1", proc.port, requests, concurrency=concurrency, seconds=seconds)
    cpu = cpu_seconds(proc.proc.pid) - cpu_before
    watcher.cancel()
    return Level(concurrency=concurrency, requests=len(result.latencies), errors=result.errors,
                 seconds=result.seconds, p50_ms=result.percentile(0.5) * 1000, p99_ms=result.percentile(0.99) * 1000,
                 cpu_cores=cpu / result.seconds if result.seconds else 0.0, peak_rss_bytes=peak)


def profile(model: ModelArtifact, config: InferenceConfig, samples: list[Sample], *,
            concurrencies: tuple[int, ...] = (1, 2, 4, 8), seconds: float = 5.0, warmup: float = 1.0,
            startup_timeout: float = 120.0, python: str | None = None,
            progress: Progress | None = None) -> ProfileReport:
    """Measure the model at each concurrency and recommend CPU and memory.

    Raises:
        ProfileError: the runtime would not start, a sample was refused, or every level had errors.
    """
    say = progress or (lambda _: None)
    requests = [build_request("127.0.0.1", 0, "/score", s.body, s.content_type) for s in samples]
    with tempfile.TemporaryDirectory(prefix="edgepack-profile-") as tmp:
        # Admit every request the load sends: profiling measures capacity, not the overload shedding.
        admit = {"EDGEPACK_MAX_PENDING": str(max((64, *concurrencies)))}
        proc = RuntimeProcess(model, config, Path(tmp), python or sys.executable, admit)
        try:
            startup = proc.wait_ready(startup_timeout)
            say(f"runtime ready in {startup:.2f}s")
            _check_samples(proc, samples)
            idle = rss_bytes(proc.proc.pid)
            levels = []
            for concurrency in concurrencies:
                asyncio.run(run_load("127.0.0.1", proc.port, requests, concurrency=concurrency, seconds=warmup))
                level = asyncio.run(_measure(proc, requests, concurrency, seconds))
                say(f"concurrency {concurrency}: {level.rps:,.0f} req/s, p99 {level.p99_ms:.1f} ms, "
                    f"{level.cpu_cores:.2f} cores")
                levels.append(level)
        finally:
            proc.stop()
    try:
        advice = recommend(levels)
    except ValueError as exc:
        raise ProfileError(f"profiling '{model.ref}': {exc}",
                           hint="Lower --concurrency, or look at the runtime's errors with a single request.") from exc
    return ProfileReport(model.ref, tuple(levels), advice, startup, idle)
