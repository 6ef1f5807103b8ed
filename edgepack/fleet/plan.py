"""Which devices go in which wave, and what a device's reported state says about the rollout (pure).

Devices are spread over waves in an order fixed by a hash of the rollout's name and the device id: stable across
controller restarts, and not alphabetical, so a canary wave is not always the same corner of the fleet. With
rings, each ring's devices are waved in turn (``all`` takes every targeted device no earlier ring named).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from edgepack.fleet.spec import GATE_METRICS, SHADOW_METRICS, Condition, WavePolicy

PENDING, HEALTHY, FAILING, FAILED, OFFLINE = "pending", "healthy", "failing", "failed", "offline"
MIN_COMPARED = 20  # inputs a shadow must have scored before its agreement counts


@dataclass(frozen=True)
class Wave:
    """One wave: its number (from 1), the ring it belongs to (None without rings) and its devices."""

    number: int
    ring: str | None
    devices: tuple[str, ...]


def _order(name: str, devices: list[str]) -> list[str]:
    return sorted(devices, key=lambda d: hashlib.sha256(f"{name}\0{d}".encode()).hexdigest())


def plan_waves(name: str, devices: dict[str, str | None], policy: WavePolicy,
               rings: tuple[str, ...] | None = None) -> list[Wave]:
    """Waves over ``devices`` (device id -> its ring tag, None when it has none)."""
    groups: list[tuple[str | None, list[str]]]
    if rings is None:
        groups = [(None, list(devices))]
    else:
        named = set(rings) - {"all"}
        groups = [(ring, [d for d, tag in devices.items() if tag == ring]) for ring in rings if ring != "all"]
        if "all" in rings:
            groups.append(("all", [d for d, tag in devices.items() if tag not in named]))
    waves: list[Wave] = []
    for ring, members in groups:
        ordered = _order(name, members)
        at = 0
        for size in policy.sizes(len(ordered)):
            waves.append(Wave(len(waves) + 1, ring, tuple(ordered[at:at + size])))
            at += size
    return waves


def _metric(report: dict[str, Any], metric: str) -> Any:
    value: Any = report
    for part in GATE_METRICS[metric].split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


@dataclass(frozen=True)
class DeviceView:
    """A device's place in the rollout, from its module's reported ``edgepack`` properties."""

    device: str
    state: str  # pending, healthy, failing, failed, offline
    reason: str = ""


def view_device(device: str, report: dict[str, Any] | None, *, digest: str, gate: tuple[Condition, ...],
                connected: bool) -> DeviceView:
    """Where ``device`` stands: ``failed`` when its agent refused the model, ``pending`` until it serves it,
    then ``healthy`` or ``failing`` by the gate. A device that is not connected is ``offline``, never healthy."""
    if not connected:
        return DeviceView(device, OFFLINE, "not connected")
    model = (report or {}).get("model") or {}
    if model.get("digest") != digest:
        if model.get("desiredDigest") == digest and model.get("refused"):
            return DeviceView(device, FAILED, str(model.get("lastError") or "the agent refused the model"))
        if model.get("desiredDigest") == digest and model.get("status") == "failed":  # a transient failure: retried
            return DeviceView(device, PENDING, f"retrying: {model.get('lastError')}")
        return DeviceView(device, PENDING, f"serving {model.get('digest') or 'the image model'}")
    return _judge(device, report, gate)


def view_image(device: str, report: dict[str, Any] | None, *, image: str, gate: tuple[Condition, ...],
               connected: bool) -> DeviceView:
    """Where ``device`` stands in a rollout of a new agent image: ``pending`` until its agent reports running
    ``image`` (the deployment tells it in EDGEPACK_IMAGE), then ``healthy`` or ``failing`` by the gate on what the
    new agent measured. Not connected: ``offline``."""
    if not connected:
        return DeviceView(device, OFFLINE, "not connected")
    running = (report or {}).get("image")
    if running != image:
        return DeviceView(device, PENDING, f"running {running or 'an image that does not name itself'}")
    return _judge(device, report, gate)


def _judge(device: str, report: dict[str, Any] | None, gate: tuple[Condition, ...]) -> DeviceView:
    """``healthy`` when every condition holds, ``failing`` naming those that do not, ``pending`` while one is
    not reported yet."""
    problems = []
    for condition in gate:
        measured = _metric(report or {}, condition.metric)
        if measured is None:
            return DeviceView(device, PENDING, f"{condition.metric} not reported yet")
        if not condition.holds(float(measured)):
            problems.append(f"{condition.metric} {measured:g} (gate {condition})")
    return DeviceView(device, FAILING, "; ".join(problems)) if problems else DeviceView(device, HEALTHY)


def split_gate(gate: tuple[Condition, ...]) -> tuple[tuple[Condition, ...], tuple[Condition, ...]]:
    """The gate's conditions on the served model, and those on a shadow (agreement, shadow latency)."""
    return (tuple(c for c in gate if c.metric not in SHADOW_METRICS),
            tuple(c for c in gate if c.metric in SHADOW_METRICS))


def view_shadow(device: str, report: dict[str, Any] | None, *, digest: str, gate: tuple[Condition, ...],
                connected: bool) -> DeviceView:
    """Where ``device`` stands while the model scores beside the served one: ``failed`` when the agent refused
    it, ``pending`` until it compared ``MIN_COMPARED`` inputs, then ``healthy`` or ``failing`` by the shadow
    conditions of the gate (agreement, shadow_p99_ms)."""
    if not connected:
        return DeviceView(device, OFFLINE, "not connected")
    shadow = (report or {}).get("shadow") or {}
    if shadow.get("digest") != digest:
        if shadow.get("desiredDigest") == digest and shadow.get("refused"):
            return DeviceView(device, FAILED, str(shadow.get("lastError") or "the agent refused the model"))
        return DeviceView(device, PENDING, f"loading the model beside the served one {shadow.get('lastError') or ''}"
                          .strip())
    if (shadow.get("compared") or 0) < MIN_COMPARED:
        return DeviceView(device, PENDING, f"{shadow.get('compared') or 0} inputs compared so far")
    return _judge(device, report, gate)
