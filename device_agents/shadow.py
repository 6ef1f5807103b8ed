"""Shadow scoring: a candidate model scores every input beside the serving one, whose answer alone is sent; the
agent reports how often the two agree and the candidate's latency, so a rollout can trust a model on live inputs
before it serves.

The twin's desired ``shadow`` names the candidate as ``model`` does (version, digest, uri); it is downloaded,
checked, loaded and probed the same way (a ModelSwapper of its own, in ``<state>/models-shadow``), and ``null``
ends the shadow. Two answers agree when their decisions do: the value of a ``predictions`` (or ``prediction``,
``labels``, ``label``, ``classes``, ``class``) field when the answers are JSON objects holding one, the index of the
largest value of each row when they are lists of numbers, else the whole answer.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from typing import Any

from device_agents.scoring import Scored

DECISION_KEYS = ("predictions", "prediction", "labels", "label", "classes", "class")
WINDOW = 2000


def _argmax_rows(value: Any) -> Any:
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        return max(range(len(value)), key=lambda i: value[i])
    if isinstance(value, list):
        return [_argmax_rows(v) for v in value]
    return value


def decision(body: bytes) -> Any:
    """What an answer decides (see the module docstring)."""
    try:
        value = json.loads(body)
    except ValueError:
        return body
    if isinstance(value, dict):
        for key in DECISION_KEYS:
            if key in value:
                return value[key]
        return value
    return _argmax_rows(value)


class ShadowStats:
    """Agreement and latency of the candidate over the last ``WINDOW`` inputs (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._agreed: deque[bool] = deque(maxlen=WINDOW)
        self._latencies: deque[float] = deque(maxlen=WINDOW)
        self.compared = 0
        self.errors = 0

    def reset(self) -> None:
        with self._lock:
            self._agreed.clear()
            self._latencies.clear()
            self.compared = self.errors = 0

    def compare(self, served: list[Scored], candidate: list[Scored]) -> None:
        """Count one batch: each served result against the candidate's for the same input."""
        with self._lock:
            for mine, theirs in zip(served, candidate):
                self.compared += 1
                self.errors += theirs.failed
                self._agreed.append(not theirs.failed and decision(mine.result.body) == decision(theirs.result.body))
                self._latencies.append(theirs.seconds)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            agreed, latencies = list(self._agreed), sorted(self._latencies)
            compared, errors = self.compared, self.errors
        p99 = round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000, 3) if latencies else None
        return {"compared": compared, "errors": errors,
                "agreement": round(sum(agreed) / len(agreed), 4) if agreed else None, "p99Ms": p99}
