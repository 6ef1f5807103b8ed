"""The recommendation drawn from measured levels: pure values."""

from __future__ import annotations

import pytest

from edgepack.profiling.advice import Level, recommend

MiB = 1 << 20


def _level(c: int, rps: float, cores: float, rss_mib: int = 100, errors: int = 0) -> Level:
    return Level(concurrency=c, requests=int(rps * 2) + errors, errors=errors, seconds=2.0, p50_ms=1.0 * c,
                 p99_ms=3.0 * c, cpu_cores=cores, peak_rss_bytes=rss_mib * MiB)


def test_the_knee_sets_cpu_and_the_peak_sets_memory_with_headroom():
    levels = [_level(1, 1000, 0.30), _level(2, 1900, 0.55), _level(4, 2300, 0.72, rss_mib=300), _level(8, 2400, 0.80)]
    rec = recommend(levels)
    assert rec.concurrency == 4  # 2300 >= 0.9 * 2400; 1900 is not
    assert rec.cpu == 0.9  # 0.72 * 1.25 = 0.9
    assert rec.memory_gb == 0.4  # 300 MiB * 1.25 = 375 MiB = 0.366 GiB, rounded up to tenths
    assert rec.expected_rps == 2300 and rec.expected_p99_ms == 12.0
    assert "concurrency 4" in rec.reason and "0.72 cores" in rec.reason and rec.note == ""
    busy = recommend([_level(1, 1000, 0.95), _level(2, 1100, 1.1)])
    assert busy.cpu == 1.2 and "EDGEPACK_PROCESSES" in busy.note  # 0.95 cores at the knee (c=1), +25%


def test_levels_with_errors_do_not_count_and_minimums_hold():
    levels = [_level(1, 50, 0.01, rss_mib=10), _level(2, 5000, 2.0, rss_mib=20, errors=3)]
    rec = recommend(levels)
    assert (rec.concurrency, rec.cpu, rec.memory_gb) == (1, 0.1, 0.1)
    with pytest.raises(ValueError, match="without errors"):
        recommend([_level(1, 10, 0.1, errors=1)])
