"""From measurements to a recommendation. Pure values: no processes, no clocks."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

HEADROOM = 1.25
KNEE = 0.9


@dataclass(frozen=True)
class Level:
    """What one concurrency level measured."""

    concurrency: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_cores: float  # server CPU seconds per wall second
    peak_rss_bytes: int

    @property
    def rps(self) -> float:
        """Successful requests per second."""
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rps": round(self.rps, 1)}


@dataclass(frozen=True)
class Recommendation:
    """CPU (cores) and memory (GiB) for one replica, and what it should then deliver."""

    cpu: float
    memory_gb: float
    concurrency: int
    expected_rps: float
    expected_p99_ms: float
    reason: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _up(value: float, step: float) -> float:
    return round(math.ceil(value / step - 1e-9) * step, 3)


def recommend(levels: list[Level], *, headroom: float = HEADROOM) -> Recommendation:
    """The smallest concurrency reaching 90% of the best throughput (the knee) sets the CPU: what the server
    used there, plus ``headroom``, in tenths of a core. Memory is the peak resident size plus the same headroom,
    in tenths of a GiB.

    Raises:
        ValueError: no level answered without errors.
    """
    clean = sorted((lv for lv in levels if lv.errors == 0 and lv.requests > 0), key=lambda lv: lv.concurrency)
    if not clean:
        raise ValueError("no concurrency level completed without errors")
    best = max(lv.rps for lv in clean)
    knee = next(lv for lv in clean if lv.rps >= KNEE * best)
    cpu = max(0.1, _up(knee.cpu_cores * headroom, 0.1))
    peak = max(lv.peak_rss_bytes for lv in levels)
    memory = max(0.1, _up(peak * headroom / (1 << 30), 0.1))
    reason = (f"throughput levels off at concurrency {knee.concurrency} ({knee.rps:,.0f} req/s, "
              f"{KNEE:.0%} of the best {best:,.0f}), where the server used {knee.cpu_cores:.2f} cores; "
              f"peak memory {peak / (1 << 20):,.0f} MiB; both with {headroom - 1:.0%} headroom")
    note = ""
    if cpu > 1:
        note = ("more than one core: one server process runs its Python on one core at a time, so "
                "EDGEPACK_PROCESSES=2 may serve more per replica than a bigger CPU limit")
    return Recommendation(cpu, memory, knee.concurrency, round(knee.rps, 1), knee.p99_ms, reason, note)
