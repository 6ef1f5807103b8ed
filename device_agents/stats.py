"""The agent's counters and latency percentiles, and the small reported-properties document made of them
(the twin's 32 KB is shared with everything else, so it stays a few hundred bytes)."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any


class Stats:
    """Thread-safe counters; latencies of the last ``window`` messages for p50/p99."""

    def __init__(self, window: int = 2048) -> None:
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.messages_in = self.messages_out = self.errors = 0
        self._latencies: deque[float] = deque(maxlen=window)
        self._recent: deque[bool] = deque(maxlen=window)

    def new_window(self) -> None:
        """Start the error rate and latency windows afresh (a new model serves: what they say is its own)."""
        with self._lock:
            self._latencies.clear()
            self._recent.clear()

    def received(self) -> None:
        with self._lock:
            self.messages_in += 1

    def scored_one(self, seconds: float, failed: bool) -> None:
        with self._lock:
            self.errors += failed
            self._latencies.append(seconds)
            self._recent.append(failed)

    def sent(self, count: int = 1) -> None:
        with self._lock:
            self.messages_out += count

    def snapshot(self) -> dict[str, Any]:
        """Counters and recent error rate and latency (milliseconds)."""
        with self._lock:
            latencies = sorted(self._latencies)
            recent = list(self._recent)
            counts = {"messagesIn": self.messages_in, "messagesOut": self.messages_out, "errors": self.errors}

        def pick(q: float) -> float | None:
            return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 3) if latencies else None

        return {**counts, "errorRate": round(sum(recent) / len(recent), 4) if recent else 0.0,
                "p50Ms": pick(0.50), "p99Ms": pick(0.99), "uptimeSeconds": int(time.monotonic() - self.started)}
