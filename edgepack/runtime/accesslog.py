"""The access log: a summary line per interval instead of a line per request, which at thousands of requests a
second would cost more than the scoring. ``EDGEPACK_ACCESS_LOG=1`` logs every request as well. Failed requests
(status 500 and up) are always logged one by one.
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger("edgepack.runtime.access")


class AccessLog:
    """Counts requests by status class and keeps the latencies of the current interval."""

    def __init__(self, *, interval: float = 60.0, every_request: bool | None = None) -> None:
        self.interval = interval
        self.every_request = (os.environ.get("EDGEPACK_ACCESS_LOG", "") in ("1", "true", "yes")
                              if every_request is None else every_request)
        self._start = time.monotonic()
        self._latencies: list[float] = []
        self._classes = [0, 0, 0, 0, 0, 0]

    def record(self, method: str, path: str, status: int, millis: float) -> None:
        """Note one answered request."""
        self._latencies.append(millis)
        self._classes[min(status // 100, 5)] += 1
        if self.every_request or status >= 500:
            log.info("%s %s %d %.1fms", method, path, status, millis)
        if time.monotonic() - self._start >= self.interval:
            self.flush()

    def flush(self) -> None:
        """Log the interval's summary (if it served anything) and start a new interval."""
        now = time.monotonic()
        if self._latencies:
            ordered = sorted(self._latencies)
            p50, p99 = ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
            c = self._classes
            log.info("served %d requests in %.0fs (2xx %d, 4xx %d, 5xx %d); latency p50 %.1fms p99 %.1fms",
                     len(ordered), now - self._start, c[2], c[4], c[5], p50, p99)
        self._start, self._latencies, self._classes = now, [], [0, 0, 0, 0, 0, 0]
