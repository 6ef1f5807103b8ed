"""Calibration and evaluation data: the user's own arrays, checked against the model's inputs (build side).

Accepted: a ``.npy`` file (a single-input model), a ``.npz`` file (arrays named after the inputs, or one array
for a single-input model), or a directory of those, read in name order and joined along the batch axis. A file
may hold a batch ``(N, ...)`` or one sample of the input's shape without its batch axis. Nothing is cast: a
dtype other than the input's is refused, so what is calibrated is what the model is fed. Labels are a ``.npy``
of integer class ids, one per sample. There is no random calibration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepack.errors import CalibrationDataError

ONNX_TO_NUMPY = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
                 "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
                 "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


@dataclass(frozen=True)
class InputSpec:
    """A model input: its name, element type (numpy) and shape (None for a dynamic dimension)."""

    name: str
    dtype: type
    shape: tuple[int | None, ...]


def input_specs(session) -> tuple[InputSpec, ...]:
    """The inputs of an onnxruntime session."""
    return tuple(InputSpec(i.name, ONNX_TO_NUMPY.get(i.type, np.float32),
                           tuple(d if isinstance(d, int) and d > 0 else None for d in i.shape))
                 for i in session.get_inputs())


def _files(path: Path) -> list[Path]:
    if not path.exists():
        raise CalibrationDataError(f"reading data '{path}': no such file or directory",
                                   hint="Give a .npy or .npz file, or a directory of them, with real samples.")
    files = sorted(p for p in path.iterdir() if p.suffix in (".npy", ".npz")) if path.is_dir() else [path]
    if not files:
        raise CalibrationDataError(f"reading data '{path}': no .npy or .npz files in it",
                                   hint="edgepack never calibrates on random data: give real samples.")
    for file in files:
        if file.suffix not in (".npy", ".npz"):
            raise CalibrationDataError(f"reading data '{file}': not a .npy or .npz file",
                                       hint="Save the samples with numpy.save or numpy.savez.")
    return files


def _read(file: Path, specs: tuple[InputSpec, ...]) -> dict[str, np.ndarray]:
    try:
        loaded = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CalibrationDataError(f"reading data '{file}': {exc}", hint="Save the samples with numpy.save.") from exc
    if isinstance(loaded, np.ndarray):
        if len(specs) != 1:
            raise CalibrationDataError(
                f"reading data '{file}': one array for a model with {len(specs)} inputs",
                hint=f"Use a .npz file with arrays named {', '.join(s.name for s in specs)}.")
        return {specs[0].name: loaded}
    with loaded:
        names = list(loaded.files)
        if len(specs) == 1 and len(names) == 1:
            return {specs[0].name: loaded[names[0]]}
        missing = [s.name for s in specs if s.name not in names]
        if missing:
            raise CalibrationDataError(f"reading data '{file}': no array for input(s) {', '.join(missing)}",
                                       hint=f"Name the arrays after the model's inputs ({', '.join(names)} given).")
        return {s.name: loaded[s.name] for s in specs}


def _batch(name: str, array: np.ndarray, spec: InputSpec, file: Path) -> np.ndarray:
    if array.dtype != spec.dtype:
        raise CalibrationDataError(
            f"reading data '{file}': input '{name}' is {np.dtype(spec.dtype).name} but the data is {array.dtype}",
            hint=f"Convert it as the model is fed in production, e.g. array.astype(numpy.{np.dtype(spec.dtype).name}).")
    rank = len(spec.shape)
    if array.ndim == rank - 1:
        array = array[None, ...]  # one sample
    if array.ndim != rank or any(want is not None and got != want
                                 for got, want in zip(array.shape[1:], spec.shape[1:])):
        wanted = "x".join("N" if i == 0 else str(d or "?") for i, d in enumerate(spec.shape))
        raise CalibrationDataError(f"reading data '{file}': input '{name}' has shape {wanted} but the data is "
                                   f"{'x'.join(map(str, array.shape))}",
                                   hint="Give samples of the shape the model takes (a batch or single samples).")
    return array


def load_inputs(path: Path, specs: tuple[InputSpec, ...], *, limit: int | None = None) -> dict[str, np.ndarray]:
    """The samples at ``path`` as one batch per input (first ``limit`` samples when given).

    Raises:
        CalibrationDataError: nothing there, unreadable, or of the wrong dtype or shape for the model's inputs.
    """
    parts: dict[str, list[np.ndarray]] = {s.name: [] for s in specs}
    for file in _files(path):
        arrays = _read(file, specs)
        counts = set()
        for spec in specs:
            batch = _batch(spec.name, arrays[spec.name], spec, file)
            parts[spec.name].append(batch)
            counts.add(len(batch))
        if len(counts) > 1:
            raise CalibrationDataError(f"reading data '{file}': the inputs hold different numbers of samples",
                                       hint="Give every input the same number of samples.")
    joined = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    count = len(next(iter(joined.values())))
    if count == 0:
        raise CalibrationDataError(f"reading data '{path}': no samples", hint="Give real samples.")
    if limit is not None:
        joined = {name: array[:limit] for name, array in joined.items()}
    return joined


def check_inputs(inputs: dict[str, np.ndarray], specs: tuple[InputSpec, ...], source: Path,
                 limit: int | None = None) -> dict[str, np.ndarray]:
    """Inputs made elsewhere (recorded from requests), checked as files are: every input there, of its dtype and
    shape; the first ``limit`` samples when given.

    Raises:
        CalibrationDataError: an input missing, or of the wrong dtype or shape.
    """
    missing = [s.name for s in specs if s.name not in inputs]
    if missing:
        raise CalibrationDataError(f"reading data '{source}': nothing was fed to input(s) {', '.join(missing)}",
                                   hint="Give samples for every input of the model.")
    checked = {s.name: _batch(s.name, inputs[s.name], s, source) for s in specs}
    return {name: array[:limit] for name, array in checked.items()} if limit is not None else checked


def sample_count(inputs: dict[str, np.ndarray]) -> int:
    """How many samples ``inputs`` holds."""
    return len(next(iter(inputs.values())))


def load_labels(path: Path, count: int) -> np.ndarray:
    """Class ids, one per sample.

    Raises:
        CalibrationDataError: not a .npy of integers, or not ``count`` of them.
    """
    if path.suffix != ".npy" or not path.is_file():
        raise CalibrationDataError(f"reading labels '{path}': not a .npy file",
                                   hint="Save the class ids with numpy.save (one integer per sample).")
    try:
        labels = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CalibrationDataError(f"reading labels '{path}': {exc}", hint="Save them with numpy.save.") from exc
    return _checked_labels(labels, f"'{path}'", count)


def _checked_labels(labels: np.ndarray, where: str, count: int) -> np.ndarray:
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise CalibrationDataError(f"reading labels {where}: expected a 1-D array of integer class ids, got "
                                   f"{labels.dtype} of shape {labels.shape}",
                                   hint="Give one integer class id per sample.")
    if len(labels) != count:
        raise CalibrationDataError(f"reading labels {where}: {len(labels)} labels for {count} samples",
                                   hint="Give exactly one label per sample, in the data's order.")
    return labels


def load_labels_for(data: Path, labels: Path | None, count: int) -> np.ndarray:
    """The labels for the samples at ``data``: the ``.npy`` at ``labels``, else a ``labels`` array in ``data``
    (a ``.npz`` file).

    Raises:
        CalibrationDataError: none given and none in the data, or they do not match it.
    """
    if labels is not None:
        return load_labels(labels, count)
    if data.is_file() and data.suffix == ".npz":
        with np.load(data, allow_pickle=False) as loaded:
            if "labels" in loaded.files:
                return _checked_labels(loaded["labels"], f"'labels' in '{data}'", count)
    raise CalibrationDataError(f"evaluating on '{data}': no labels",
                               hint="Pass --labels FILE.npy (one class id per sample), or put a 'labels' array "
                                    "in the .npz file.")
