"""The access log: a line per request (``POST /score 200 1.2ms``), buffered and written to stderr a few times a
second in one write, so that at thousands of requests a second logging costs an append, not a write each.
``EDGEPACK_ACCESS_LOG=0`` turns it off. Internal failures (status 500) are also logged at once through
``logging``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import TextIO

log = logging.getLogger("edgepack.runtime.access")
FLUSH_SECONDS = 0.2


class AccessLog:
    """Collects access lines and writes them in batches."""

    def __init__(self, *, enabled: bool | None = None, stream: TextIO | None = None) -> None:
        self.enabled = (os.environ.get("EDGEPACK_ACCESS_LOG", "1").lower() not in ("0", "false", "no", "off")
                        if enabled is None else enabled)
        self.stream = stream
        self.lines: list[str] = []
        self._flushed = time.monotonic()

    def record(self, method: str, path: str, status: int, millis: float) -> None:
        """Note one answered request."""
        if status == 500:  # a failure worth a look; 503s under overload are not, one by one
            log.warning("%s %s %d %.1fms", method, path, status, millis)
        if self.enabled:
            self.lines.append(f"{method} {path} {status} {millis:.1f}ms")
            if len(self.lines) >= 4096 or time.monotonic() - self._flushed >= FLUSH_SECONDS:
                self.flush()

    def flush(self) -> None:
        """Write the buffered lines, each stamped with the time of the write."""
        self._flushed = time.monotonic()
        if not self.lines:
            return
        lines, self.lines = self.lines, []
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        stream = self.stream or sys.stderr
        try:
            stream.write("".join(f"{stamp} {log.name} {line}\n" for line in lines))
            stream.flush()
        except (OSError, ValueError):
            pass
