"""What a fleet rollout asks for, parsed from the CLI's expressions into pure values (no I/O).

    --wave  "start=5,factor=2,max=500"              devices per wave: 5, 10, 20, ... capped at 500
    --gate  "error_rate<0.01,p99_ms<50,agreement>0.98"
    --abort "failed>10%,min=20"                     a wave fails past 10% failing devices, once 20 have reported
    --soak 5m  --timeout 30m  --shadow 10m          durations: 90, 90s, 5m, 1h, 1h30m

A malformed expression is refused with the option, the character position and what was expected there.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from edgepack.errors import RolloutSpecError

# What a gate may read, from the agents' reported ``edgepack`` properties (agreement needs --shadow).
GATE_METRICS = {"error_rate": "errorRate", "p99_ms": "p99Ms", "p50_ms": "p50Ms", "outbox_depth": "outboxDepth",
                "agreement": "shadow.agreement", "shadow_p99_ms": "shadow.p99Ms"}
SHADOW_METRICS = ("agreement", "shadow_p99_ms")
_OPS = ("<=", ">=", "<", ">")
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?$")
_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$")


@dataclass(frozen=True)
class WavePolicy:
    """Devices per wave: ``start``, then each wave ``factor`` times the last, never more than ``max``."""

    start: int = 5
    factor: float = 2.0
    max: int = 500

    def sizes(self, total: int) -> list[int]:
        """The wave sizes that cover ``total`` devices (the last wave takes what is left)."""
        sizes: list[int] = []
        size = float(self.start)
        while sum(sizes) < total:
            sizes.append(min(int(size), self.max, total - sum(sizes)))
            size = min(size * self.factor, float(self.max))
        return sizes


@dataclass(frozen=True)
class Condition:
    """One gate condition: ``metric op value``."""

    metric: str
    op: str
    value: float

    def holds(self, measured: float) -> bool:
        """Whether ``measured`` meets the condition."""
        return {"<": measured < self.value, "<=": measured <= self.value, ">": measured > self.value,
                ">=": measured >= self.value}[self.op]

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


@dataclass(frozen=True)
class AbortPolicy:
    """A wave fails when more than ``failed_share`` of its devices fail, once ``min_devices`` of it reported."""

    failed_share: float = 0.10
    min_devices: int = 20


def _fail(option: str, text: str, at: int, expected: str) -> RolloutSpecError:
    pointer = f"{text}\n{' ' * at}^"
    return RolloutSpecError(f"{option} '{text}': at character {at + 1}: expected {expected}\n{pointer}",
                            hint=f"See 'edgepack fleet rollout --help' for the form of {option}.")


def _pairs(option: str, text: str) -> list[tuple[str, str, int]]:
    """``key=value`` items of a comma list, with where each value starts."""
    out, at = [], 0
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise _fail(option, text, at, "KEY=VALUE")
        out.append((key.strip(), value.strip(), at + len(key) + 1))
        at += len(item) + 1
    return out


def parse_wave(text: str) -> WavePolicy:
    """``start=N,factor=F,max=M`` (each optional).

    Raises:
        RolloutSpecError: naming the position of what does not parse.
    """
    values: dict[str, float] = {}
    for key, value, at in _pairs("--wave", text):
        if key not in ("start", "factor", "max"):
            raise _fail("--wave", text, at - len(key) - 1, "start, factor or max")
        try:
            number = float(value) if key == "factor" else int(value)
        except ValueError:
            raise _fail("--wave", text, at, "a number" if key == "factor" else "a whole number") from None
        if not math.isfinite(number) or number < 1:
            raise _fail("--wave", text, at, f"{key} of at least 1")
        values[key] = number
    policy = WavePolicy(int(values.get("start", 5)), float(values.get("factor", 2.0)), int(values.get("max", 500)))
    if policy.max < policy.start:
        raise RolloutSpecError(f"--wave '{text}': max {policy.max} is below start {policy.start}",
                               hint="Make max at least start.")
    return policy


def parse_gate(text: str, *, shadow: bool) -> tuple[Condition, ...]:
    """``metric<value,...`` with metrics from GATE_METRICS (agreement and shadow_p99_ms need --shadow).

    Raises:
        RolloutSpecError: naming the position of what does not parse.
    """
    conditions, at = [], 0
    for item in text.split(","):
        match = re.match(r"^\s*([a-z_0-9]+)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*$", item)
        if match is None:
            name = re.match(r"^\s*([a-z_0-9]*)", item)
            where = at + (name.end() if name else 0)
            raise _fail("--gate", text, where, "METRIC<VALUE or METRIC>VALUE" if name and name.group(1) else
                        "a metric name")
        metric, op, value = match.groups()
        if metric not in GATE_METRICS:
            raise _fail("--gate", text, at + match.start(1), f"one of {', '.join(GATE_METRICS)}")
        if metric in SHADOW_METRICS and not shadow:
            raise RolloutSpecError(f"--gate '{text}': {metric} is measured only in shadow mode",
                                   hint="Add --shadow DURATION, or drop the condition.")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise _fail("--gate", text, at + match.start(3), "a finite number")
        conditions.append(Condition(metric, op, number))
        at += len(item) + 1
    return tuple(conditions)


def parse_abort(text: str) -> AbortPolicy:
    """``failed>P%[,min=N]``.

    Raises:
        RolloutSpecError: naming the position of what does not parse.
    """
    share, minimum, at = None, 20, 0
    for item in text.split(","):
        match = re.match(r"^\s*failed\s*>\s*([0-9.]+)\s*%\s*$", item)
        if match is not None:
            share = float(match.group(1)) / 100
            if share >= 1:
                raise _fail("--abort", text, at + match.start(1), "a share below 100%")
        else:
            key, sep, value = item.partition("=")
            if key.strip() != "min" or not sep:
                raise _fail("--abort", text, at, "failed>P% or min=N")
            if not value.strip().isdigit():
                raise _fail("--abort", text, at + len(key) + 1, "a whole number")
            minimum = int(value)
        at += len(item) + 1
    if share is None:
        raise _fail("--abort", text, 0, "failed>P%")
    return AbortPolicy(share, minimum)


def parse_duration(option: str, text: str) -> float:
    """Seconds in ``90``, ``90s``, ``5m``, ``1h``, ``1h30m``.

    Raises:
        RolloutSpecError: not such a duration.
    """
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None or not any(match.groups()):
        raise RolloutSpecError(f"{option} '{text}': not a duration", hint="Use seconds, or forms like 90s, 5m, 1h30m.")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


def check_name(name: str) -> str:
    """A rollout name: lowercase letters, digits and '-', up to 48 (it becomes part of a deployment id and a tag).

    Raises:
        RolloutSpecError: anything else.
    """
    if not _NAME.fullmatch(name):
        raise RolloutSpecError(f"rollout name '{name}': not a valid name",
                               hint="Use lowercase letters, digits and '-', up to 48 characters.")
    return name


def parse_rings(text: str) -> tuple[str, ...]:
    """``canary,ring1,all``: ring tags in rollout order (``all`` is every other targeted device).

    Raises:
        RolloutSpecError: an empty or repeated ring, or ``all`` before the end.
    """
    rings = tuple(r.strip() for r in text.split(","))
    if not all(rings) or len(set(rings)) != len(rings):
        raise RolloutSpecError(f"--rings '{text}': rings must be named once each",
                               hint="For example --rings canary,ring1,all.")
    if "all" in rings[:-1]:
        raise RolloutSpecError(f"--rings '{text}': 'all' takes every remaining device, so it comes last",
                               hint="For example --rings canary,ring1,all.")
    for ring in rings:
        if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", ring):
            raise RolloutSpecError(f"--rings '{text}': '{ring}' is not a ring tag value",
                                   hint="Letters, digits, '-', '_' and '.'.")
    return rings
