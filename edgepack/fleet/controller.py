"""The rollout's decisions: from its state and what the devices report, the next steps (pure).

How a model reaches devices: one *layered* deployment per rollout sets only the agent module's desired ``model`` (a
hot swap: no image pull, no module restart), above every earlier layer of the module, targeting
``IS_DEFINED(tags.edgepack.rollouts.<key>)`` (the key is the name with '_' for '-'). A wave starts when its devices
get that tag (its value is the wave number), so promoting a wave is tagging devices, and the deployment's content
never changes (IoT Hub's content is immutable). Aborting deletes the layer: every device falls back to the layer (or
base deployment) below it, the last good model. Earlier rollouts keep their own tags, so they stay the fallback
until a later rollout has reached all of their devices; then their layers are deleted (the hub holds at most 100
configurations).

With ``--shadow``, a second layer puts the model beside the served one (the agents' desired ``shadow``): a wave's
devices first get that layer's tag (``tags.edgepack.shadows.<key>``), and only once they agreed with the served
model (the gate's agreement and shadow latency) for the shadow time do they get the serving tag. A wave is promoted
once each of its devices is healthy or offline (at least one healthy) and that has held for the soak time; it fails
when failing and failed devices pass the abort share once enough have reported. Offline devices are never counted
healthy: they show as pending, and get the model when they are back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgepack.fleet.plan import FAILED, FAILING, HEALTHY, OFFLINE, PENDING, DeviceView

RUNNING, PAUSED, SUCCEEDED, ABORTED = "running", "paused", "succeeded", "aborted"
LAYER_PREFIX = "edgepack-rollout-"


def tag_key(name: str) -> str:
    """The rollout's tag under ``tags.edgepack.rollouts`` (query paths take no '-')."""
    return name.replace("-", "_")


def layer_id(name: str) -> str:
    """The rollout's layered deployment id."""
    return f"{LAYER_PREFIX}{name}"


def shadow_layer_id(name: str) -> str:
    """The layered deployment that puts the model beside the served one (``--shadow``; '_' cannot be in a
    rollout's name, so no other rollout's id is this one)."""
    return f"{LAYER_PREFIX}{name}_shadow"


@dataclass(frozen=True)
class Step:
    """One thing to do on the hub. ``kind``: create-layer, create-shadow-layer, shadow-tag, tag, delete-layer."""

    kind: str
    wave: int = 0
    devices: tuple[str, ...] = ()
    layer: str = ""


def wave_counts(wave: dict[str, Any], views: dict[str, DeviceView]) -> dict[str, int]:
    """How many of the wave's devices are in each state."""
    counts = {PENDING: 0, HEALTHY: 0, FAILING: 0, FAILED: 0, OFFLINE: 0}
    for device in wave["devices"]:
        counts[views[device].state if device in views else PENDING] += 1
    return counts


def decide(state: dict[str, Any], views: dict[str, DeviceView], now: float) -> tuple[dict[str, Any], list[Step]]:
    """The state after looking at ``views`` at ``now``, and the steps to send (each recorded before it is sent).

    ``state`` holds ``spec`` (soak, timeout, abort share and minimum), ``waves`` (number, devices, status:
    waiting, applying, promoted, failed), ``phase``, ``started``, ``layer_created``, ``reason``."""
    state = {**state, "waves": [dict(w) for w in state["waves"]]}
    if state["phase"] == ABORTED and not state.get("layer_deleted"):
        return state, rollback_steps(state)  # again after a restart: deleting is idempotent
    if state["phase"] != RUNNING:
        return state, []
    spec = state["spec"]
    shadow = bool(spec.get("shadow_s"))
    if not state.get("layer_created"):
        return state, [Step("create-layer", layer=layer_id(state["name"]))]
    if shadow and not state.get("shadow_layer_created"):
        return state, [Step("create-shadow-layer", layer=shadow_layer_id(state["name"]))]
    if now - state["started"] - state.get("paused_s", 0.0) > spec["timeout_s"]:  # time paused does not count
        return _abort(state, f"the rollout timed out after {spec['timeout_s']:g} s")
    current = next((w for w in state["waves"] if w["status"] != "promoted"), None)
    if current is None:
        state["phase"], state["finished"] = SUCCEEDED, now
        return state, []
    if current["status"] == "waiting":
        return state, [Step("shadow-tag" if shadow else "tag", wave=current["number"],
                            devices=tuple(current["devices"]))]
    counts = wave_counts(current, views)
    reported = counts[HEALTHY] + counts[FAILING] + counts[FAILED]
    bad = counts[FAILING] + counts[FAILED]
    needed = min(spec["abort_min"], len(current["devices"]))
    if reported >= needed and reported and bad / reported > spec["abort_share"]:
        why = "; ".join(f"{d}: {views[d].reason}" for d in current["devices"]
                        if d in views and views[d].state in (FAILING, FAILED))[:2000]
        current["status"] = "failed"
        return _abort(state, f"wave {current['number']}: {bad} of {reported} devices failing or failed "
                             f"(over {spec['abort_share']:.0%}): {why}")
    settled = counts[HEALTHY] > 0 and counts[HEALTHY] + counts[OFFLINE] == len(current["devices"])
    if not settled:
        current["soak_since"] = None
        return state, []
    if current.get("soak_since") is None:
        current["soak_since"] = now
    if current["status"] == "shadowing":  # agreed long enough beside the served model: now it serves
        if now - current["soak_since"] >= spec["shadow_s"]:
            return state, [Step("tag", wave=current["number"], devices=tuple(current["devices"]))]
        return state, []
    if now - current["soak_since"] >= spec["soak_s"]:
        current["status"], current["promoted"] = "promoted", now
        current["offline_at_promotion"] = counts[OFFLINE]
        return decide(state, views, now)  # the next wave starts at once
    return state, []


def _abort(state: dict[str, Any], reason: str) -> tuple[dict[str, Any], list[Step]]:
    state["phase"], state["reason"] = ABORTED, reason
    return state, rollback_steps(state)


def rollback_steps(state: dict[str, Any]) -> list[Step]:
    """What rolls a rollout back: its deployments deleted (the shadow's first, so none serves a moment)."""
    steps = [Step("delete-layer", layer=shadow_layer_id(state["name"]))] if state["spec"].get("shadow_s") else []
    return steps + [Step("delete-layer", layer=layer_id(state["name"]))]


def step_done(state: dict[str, Any], step: Step, now: float) -> dict[str, Any]:
    """The state once ``step`` went through."""
    state = {**state, "waves": [dict(w) for w in state["waves"]], "steps": state.get("steps", 0) + 1}
    if step.kind == "create-layer":
        state["layer_created"] = True
    elif step.kind == "create-shadow-layer":
        state["shadow_layer_created"] = True
    elif step.kind in ("tag", "shadow-tag"):
        for wave in state["waves"]:
            if wave["number"] == step.wave:
                wave["status"] = "applying" if step.kind == "tag" else "shadowing"
                wave["soak_since"], wave[f"{step.kind}ged"] = None, now
    elif step.kind == "delete-layer" and step.layer == layer_id(state["name"]):
        state["layer_deleted"] = True
    return state
