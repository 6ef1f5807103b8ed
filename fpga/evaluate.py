"""FP32 against its quantized and fallback artifacts on held-out data (build side), on onnxruntime's CPU provider.

Accuracy of each with its 95% Wilson interval; the accuracy difference to the reference with Newcombe's interval
for paired proportions (method 10: the same samples score both, so the interval is much narrower than two
independent ones would give, and a one-sample difference shows as the noise it is); top-1 agreement; the largest
absolute difference of the scored output; file size; CPU latency at batch 1 and 32 (one thread, median).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.errors import CalibrationDataError

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Artifact:
    """One model file to evaluate, and what it is for."""

    role: str  # "reference", "accelerator" or "cpu-fallback"
    ref: str  # NAME:VERSION
    path: Path


def wilson(correct: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of ``correct`` out of ``n``."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    denominator = 1 + Z95 ** 2 / n
    centre = (p + Z95 ** 2 / (2 * n)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def paired_difference(test: np.ndarray, reference: np.ndarray) -> tuple[float, float, float]:
    """Accuracy of ``test`` minus that of ``reference`` (both arrays of per-sample correctness) and its 95%
    interval, by Newcombe's method 10 for paired proportions."""
    n = len(test)
    a = int(np.sum(test & reference))
    b = int(np.sum(test & ~reference))
    c = int(np.sum(~test & reference))
    d = n - a - b - c
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson(a + b, n)
    l2, u2 = wilson(a + c, n)
    product = math.sqrt((a + b) * (c + d) * (a + c) * (b + d))
    cross = a * d - b * c
    phi = 0.0 if product == 0 else (max(cross - n / 2, 0) if cross > 0 else cross) / product
    delta = p1 - p2
    lower = delta - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    upper = delta + math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    return delta, max(-1.0, lower), min(1.0, upper)


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _scored_output(session, output: str | None) -> int:
    outputs = session.get_outputs()
    if output is not None:
        names = [o.name for o in outputs]
        if output not in names:
            raise CalibrationDataError(f"evaluating: the model has no output '{output}'",
                                       hint=f"Name one of: {', '.join(names)}.")
        return names.index(output)
    for index, spec in enumerate(outputs):
        if spec.type in ("tensor(float)", "tensor(double)", "tensor(float16)") and spec.shape and len(spec.shape) >= 2:
            return index
    raise CalibrationDataError("evaluating: the model has no float output of class scores",
                               hint="Name the output of class scores with --output.")


def _run(session, inputs: dict[str, np.ndarray], index: int, batch: int) -> np.ndarray:
    count = len(next(iter(inputs.values())))
    chunks = [session.run(None, {k: v[at:at + batch] for k, v in inputs.items()})[index]
              for at in range(0, count, batch)]
    return np.concatenate(chunks).astype(np.float64)


def _latency_ms(session, inputs: dict[str, np.ndarray], batch: int, budget: float = 0.4) -> float:
    feed = {k: np.ascontiguousarray(v[:batch]) for k, v in inputs.items()}
    session.run(None, feed)  # warm up
    times: list[float] = []
    deadline = time.perf_counter() + budget
    while len(times) < 5 or (time.perf_counter() < deadline and len(times) < 500):
        started = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def evaluate(artifacts: tuple[Artifact, ...], inputs: dict[str, np.ndarray], labels: np.ndarray, *,
             max_drop: float, output: str | None = None, batch: int = 64) -> dict[str, Any]:
    """Score every artifact on ``inputs`` and compare each with the first (the reference); ``passed`` is False
    when an artifact's accuracy is more than ``max_drop`` below the reference's."""
    results, failures = [], []
    reference_scores: np.ndarray | None = None
    reference_correct: np.ndarray | None = None
    count = len(labels)
    for artifact in artifacts:
        session = _session(artifact.path)
        index = _scored_output(session, output)
        scores = _run(session, inputs, index, batch)
        if scores.shape[0] != count:
            raise CalibrationDataError(f"evaluating '{artifact.ref}': {scores.shape[0]} results for {count} labels",
                                       hint="Give one label per sample.")
        predictions = scores.reshape(count, -1).argmax(axis=1)
        correct = predictions == labels
        row: dict[str, Any] = {
            "role": artifact.role, "model": artifact.ref, "file": artifact.path.name,
            "size_bytes": artifact.path.stat().st_size,
            "accuracy": float(correct.mean()), "accuracy_interval": list(wilson(int(correct.sum()), count)),
            "latency_ms": {"batch1": _latency_ms(session, inputs, 1), "batch32": _latency_ms(session, inputs, 32)},
        }
        if reference_scores is None or reference_correct is None:
            reference_scores, reference_correct = scores, correct
        else:
            delta, lower, upper = paired_difference(correct, reference_correct)
            row.update(delta=delta, delta_interval=[lower, upper],
                       agreement=float(np.mean(predictions == reference_scores.reshape(count, -1).argmax(axis=1))),
                       max_abs_diff=float(np.max(np.abs(scores - reference_scores))) if scores.shape ==
                       reference_scores.shape else None)
            if -delta > max_drop:
                failures.append(f"{artifact.role} {artifact.ref}: accuracy {row['accuracy']:.4f} is "
                                f"{-delta:.4f} below the reference's, more than --max-drop {max_drop}")
        results.append(row)
    return {"samples": count, "max_drop": max_drop, "passed": not failures, "failures": failures,
            "artifacts": results}
