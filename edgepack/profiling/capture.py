"""Model inputs from request bodies: run the entry script in this process, as the image would, send it each body of
a JSON-lines file and record what it feeds the model's onnxruntime sessions (calibration and evaluation data for
models whose users hold requests, not tensors).

Every ``session.run`` on a file of the model's folder is recorded; the feeds of one request are what one body
became. A label field named by the caller is taken out of each body before the script sees it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.config.schema import InferenceConfig
from edgepack.errors import CalibrationDataError
from edgepack.models.artifact import ModelArtifact
from edgepack.profiling.session import write_runtime_config


def read_bodies(path: Path, label_field: str | None) -> tuple[list[bytes], list[Any]]:
    """The request bodies of a JSON-lines file and, with ``label_field``, each body's label (taken out of it).

    Raises:
        CalibrationDataError: unreadable, empty, a line that is not a JSON object, or a body without the label.
    """
    try:
        lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    except OSError as exc:
        raise CalibrationDataError(f"reading requests '{path}': {exc.strerror or exc}",
                                   hint="Give a JSON-lines file: one request body per line.") from exc
    if not lines:
        raise CalibrationDataError(f"reading requests '{path}': no request bodies",
                                   hint="edgepack never calibrates on random data: give real requests.")
    bodies, labels = [], []
    for number, line in enumerate(lines, 1):
        try:
            body = json.loads(line)
        except ValueError as exc:
            raise CalibrationDataError(f"reading requests '{path}': line {number} is not JSON: {exc}",
                                       hint="One request body per line.") from exc
        if label_field is not None:
            if not isinstance(body, dict) or label_field not in body:
                raise CalibrationDataError(f"reading requests '{path}': line {number} has no '{label_field}' field",
                                           hint="Give every request its label, or pass --labels FILE.npy.")
            labels.append(body.pop(label_field))
            line = json.dumps(body).encode()
        bodies.append(line)
    return bodies, labels


def capture_inputs(model: ModelArtifact, config: InferenceConfig, bodies: list[bytes]) -> list[dict[str, np.ndarray]]:
    """What the entry script feeds the model for each body (one dict of input arrays per request).

    Raises:
        CalibrationDataError: the script would not start, refused a body, or fed the model nothing for one.
    """
    import onnxruntime as ort

    from edgepack.runtime.scoring import Runtime
    from edgepack.runtime.settings import RuntimeConfig, RuntimeSetupError

    recorded: list[dict[str, np.ndarray]] = []
    original = ort.InferenceSession
    with tempfile.TemporaryDirectory(prefix="edgepack-capture-") as tmp:
        try:
            settings = RuntimeConfig.from_file(str(write_runtime_config(model, config, Path(tmp))))
        except RuntimeSetupError as exc:
            raise CalibrationDataError(f"preparing entry script '{config.entry_script.name}' to read requests: "
                                       f"{exc}", hint="Check the inference config.") from exc
        folder = os.path.abspath(settings.model_dir)  # its files are links into the store: compare unresolved

        class Recording(original):  # type: ignore[misc, valid-type]
            def __init__(self, path_or_bytes: Any, *args: Any, **kwargs: Any) -> None:
                super().__init__(path_or_bytes, *args, **kwargs)
                path = os.fspath(path_or_bytes) if isinstance(path_or_bytes, (str, os.PathLike)) else ""
                self._edgepack_record = bool(path) and os.path.abspath(path).startswith(folder + os.sep)

            def run(self, output_names: Any, input_feed: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
                if self._edgepack_record:
                    recorded.append({k: np.array(v) for k, v in input_feed.items()})
                return super().run(output_names, input_feed, *args, **kwargs)

        ort.InferenceSession = Recording
        try:
            runtime = Runtime(settings)
            try:
                runtime.start()
            except RuntimeSetupError as exc:
                raise CalibrationDataError(f"running entry script '{config.entry_script.name}' to read requests: "
                                           f"{exc}", hint="The script must start with the model in this Python "
                                                          "(its requirements installed).") from exc
            out = []
            for number, body in enumerate(bodies, 1):
                before = len(recorded)
                response = runtime.score(body, "application/json")
                if response.status >= 400:
                    raise CalibrationDataError(f"request {number}: the entry script answered {response.status}: "
                                               f"{response.body[:200].decode('utf-8', 'replace')}",
                                               hint="Give request bodies the entry script accepts.")
                feeds = recorded[before:]
                if not feeds:
                    raise CalibrationDataError(f"request {number}: the entry script ran no session on the model",
                                               hint="Give .npy or .npz samples of the model's inputs instead.")
                out.append({name: np.concatenate([f[name] for f in feeds]) for name in feeds[0]})
            return out
        finally:
            ort.InferenceSession = original


def join_inputs(feeds: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The recorded feeds of every request as one batch per input."""
    return {name: np.concatenate([f[name] for f in feeds]) for name in feeds[0]}


def request_labels(labels: list[Any], feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    """One class id per recorded sample: a request's label is a class id (one sample) or a list (one per row).

    Raises:
        CalibrationDataError: a label that is not an integer, or a count that does not match the request's rows.
    """
    out: list[int] = []
    for number, (label, feed) in enumerate(zip(labels, feeds), 1):
        rows = len(next(iter(feed.values())))
        values = label if isinstance(label, list) else [label]
        if len(values) != rows or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise CalibrationDataError(f"request {number}: label {label!r} for {rows} sample(s)",
                                       hint="Give a class id per request, or a list of one per row it holds.")
        out += values
    return np.array(out, dtype=np.int64)
