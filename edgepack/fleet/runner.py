"""Running a rollout: plan it, then look, decide and act until it succeeds or aborts, under the rollout's lease.

Each step is recorded as pending in the state file before it is sent and cleared once it went through, so a
controller killed between the two sends it again on restart (steps are idempotent) and never skips or doubles
one. ``pause``, ``resume`` and ``abort`` reach a running controller through the rollout's control file; with no
controller running, ``abort`` takes the lease and rolls back itself.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from edgepack.deploy.iotedge import check_limits
from edgepack.errors import FleetError, RolloutSpecError
from edgepack.fleet.controller import (ABORTED, PAUSED, RUNNING, SUCCEEDED, Step, decide, layer_id,
                                       rollback_steps, shadow_layer_id, step_done, tag_key, wave_counts)
from edgepack.fleet.hub import HubClient
from edgepack.fleet.plan import plan_waves, split_gate, view_device, view_image, view_shadow
from edgepack.fleet.spec import AbortPolicy, Condition, WavePolicy
from edgepack.fleet.state import RolloutStore

@dataclass(frozen=True)
class RolloutRequest:
    """What ``fleet rollout`` was asked."""

    name: str
    model: dict[str, Any]  # the agents' desired ``model``: version, digest, uri, sizeBytes
    module: str
    rings: tuple[str, ...] | None
    target_condition: str | None
    wave: WavePolicy
    gate: tuple[Condition, ...]
    soak_s: float
    abort: AbortPolicy
    timeout_s: float
    shadow_s: float = 0.0  # with it, the model first scores beside the served one this long per wave
    image: dict[str, Any] | None = None  # a new agent image instead: {"ref": REF@DIGEST, "module": its spec}


def _condition(request: RolloutRequest) -> str:
    if request.target_condition:
        return request.target_condition
    if request.rings and "all" not in request.rings:
        return "tags.edgepack.ring IN [" + ", ".join(f"'{r}'" for r in request.rings) + "]"
    return "*"


def plan(hub: HubClient, store: RolloutStore, request: RolloutRequest, now: float) -> dict[str, Any]:
    """The rollout's first state: its waves over the devices it targets, and its deployment's priority.

    Raises:
        FleetError: the name is in use, or the target matches no device (nothing is sent to the hub).
        DeployError: the layers' content breaks the hub's twin limits.
    """
    if store.exists(request.name):
        raise FleetError(f"starting rollout '{request.name}': the name is in use",
                         hint=f"Choose another name, or follow it with 'edgepack fleet status {request.name}'.")
    if request.image is not None and request.shadow_s:
        raise RolloutSpecError("--shadow compares models; an image rollout has none to compare",
                               hint="Roll the image out without --shadow.")
    if request.shadow_s and not any(c.metric == "agreement" for c in request.gate):
        raise RolloutSpecError("--shadow: the gate names no agreement condition, so a model that answers "
                               "differently could serve", hint="Add one, e.g. --gate \"agreement>0.98\".")
    existing = {c.id for c in hub.layers()}
    taken = [i for i in (layer_id(request.name), shadow_layer_id(request.name)) if i in existing]
    if taken:
        raise FleetError(f"starting rollout '{request.name}': the hub has a deployment '{taken[0]}' already (an "
                         "earlier rollout of that name, perhaps from another machine)",
                         hint="Choose another name, or delete that deployment if it is stale.")
    devices = hub.edge_devices(_condition(request))
    rings = {d: ((tags.get("edgepack") or {}).get("ring") if isinstance(tags.get("edgepack"), dict) else None)
             for d, tags in devices.items()}
    waves = [w for w in plan_waves(request.name, rings, request.wave, request.rings) if w.devices]
    if not waves:
        raise FleetError(f"starting rollout '{request.name}': the target matches no IoT Edge device "
                         f"({_condition(request)})", hint="Check --rings or --target-condition against the twins' "
                                                          "tags (tags.edgepack.ring).")
    top = max([int(c.priority or 0) for c in hub.layers()] + [0])
    state = {"name": request.name, "phase": RUNNING, "started": now,
             "priority": top + (2 if request.shadow_s else 1), "shadow_priority": top + 1,
             "model": request.model, "image": request.image, "module": request.module, "key": tag_key(request.name),
             "gate": [asdict(c) for c in request.gate],
             "spec": {"soak_s": request.soak_s, "timeout_s": request.timeout_s, "shadow_s": request.shadow_s,
                      "abort_share": request.abort.failed_share, "abort_min": request.abort.min_devices,
                      "condition": _condition(request), "rings": list(request.rings or [])},
             "waves": [{"number": w.number, "ring": w.ring, "devices": list(w.devices), "status": "waiting",
                        "soak_since": None} for w in waves],
             "steps": 0, "pending": None, "reason": ""}
    check_layers(state)
    return state


def layer_content(state: dict[str, Any], *, shadow: bool = False) -> dict[str, Any]:
    """The modules content of a rollout's layered deployment (or of its shadow layer): the agents' desired model,
    or, for a new agent image, the module itself in edgeAgent's desired modules (a full module spec: the devices
    pull the image and restart the module)."""
    if state.get("image"):
        return {"$edgeAgent": {f"properties.desired.modules.{state['module']}": state["image"]["module"]}}
    if shadow:
        desired: dict[str, Any] = {"properties.desired.shadow": state["model"]}
    else:
        desired = {"properties.desired.model": state["model"]}
        if state["spec"].get("shadow_s"):
            desired["properties.desired.shadow"] = None  # serving it ends its shadow
    return {"$edgeAgent": {}, state["module"]: desired}


def check_layers(state: dict[str, Any]) -> None:
    """The layers' desired properties within IoT Hub's twin rules (32 KB a twin, 4 KB a value, no lists, ...).

    Raises:
        DeployError: a rule broken, named.
    """
    for shadow in (False,) if state.get("image") else (False, True):
        for module, body in layer_content(state, shadow=shadow).items():
            desired: dict[str, Any] = {}
            for key, value in body.items():  # "properties.desired.a.b": value -> {"a": {"b": value}}
                node = desired
                *path, last = key[len("properties.desired."):].split(".")
                for part in path:
                    node = node.setdefault(part, {})
                node[last] = value
            check_limits({"modulesContent": {module: {"properties.desired": desired}}})


def _execute(hub: HubClient, state: dict[str, Any], step: Step) -> None:
    labels = {"edgepack-rollout": state["name"], "edgepack-module": state["module"], "edgepack-kind": _kind(state)}
    if step.kind == "create-layer":
        hub.create_layer(step.layer, layer_content(state),
                         target_condition=f"IS_DEFINED(tags.edgepack.rollouts.{state['key']})",
                         priority=state["priority"], labels=labels)
    elif step.kind == "create-shadow-layer":
        hub.create_layer(step.layer, layer_content(state, shadow=True),
                         target_condition=f"IS_DEFINED(tags.edgepack.shadows.{state['key']})",
                         priority=state["shadow_priority"], labels={**labels, "edgepack-shadow": "true"})
    elif step.kind in ("tag", "shadow-tag"):
        group = "shadows" if step.kind == "shadow-tag" else "rollouts"
        for device in step.devices:
            hub.tag(device, {"edgepack": {group: {state["key"]: step.wave}}})
    elif step.kind == "delete-layer":
        hub.delete_layer(step.layer)


def _send(hub: HubClient, store: RolloutStore, state: dict[str, Any], steps: list[Step],
          clock: Callable[[], float]) -> dict[str, Any]:
    """Send ``steps`` in order, each recorded as pending before it goes and cleared after."""
    for step in steps:
        state["pending"] = {**asdict(step), "devices": list(step.devices)}
        store.save(state["name"], state)
        _execute(hub, state, step)
        state = {**step_done(state, step, clock()), "pending": None}
        store.save(state["name"], state)
    return state


def _views(state: dict[str, Any], reports: dict[str, Any]) -> dict[str, Any]:
    serving, shadowing = split_gate(tuple(Condition(**c) for c in state["gate"]))
    in_shadow = {d for w in state["waves"] if w["status"] == "shadowing" for d in w["devices"]}
    if state.get("image"):
        ref = state["image"]["ref"]
        return {d: view_image(d, r.reported, image=ref, gate=serving, connected=r.connected)
                for d, r in reports.items()}
    digest = state["model"]["digest"]
    return {d: (view_shadow(d, r.reported, digest=digest, gate=shadowing, connected=r.connected) if d in in_shadow
                else view_device(d, r.reported, digest=digest, gate=serving, connected=r.connected))
            for d, r in reports.items()}


def _take_control(store: RolloutStore, name: str) -> tuple[str | None, Path | None]:
    """An operator's request and the file it is held in until the state that applies it is saved (a request
    written meanwhile is a new control file; one a killed controller had taken is taken again)."""
    taken = store.folder / f"{name}.control.taken"
    if not taken.exists():
        try:
            (store.folder / f"{name}.control").rename(taken)
        except FileNotFoundError:
            return None, None
    try:
        return json.loads(taken.read_text()).get("request"), taken
    except (OSError, ValueError):
        taken.unlink(missing_ok=True)
        return None, None


def request_control(store: RolloutStore, name: str, request: str) -> None:
    """Ask the rollout's controller to ``pause``, ``resume`` or ``abort``."""
    store.load(name)  # names a missing rollout
    path = store.folder / f"{name}.control"
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps({"request": request}))
    partial.replace(path)


def _kind(state: dict[str, Any]) -> str:
    """What a rollout's layer sets: the agents' ``model``, or the module's ``image``."""
    return "image" if state.get("image") else "model"


def _collect(hub: HubClient, state: dict[str, Any]) -> list[str]:
    """Delete earlier rollouts' layers of this module and kind (a model layer never covers an image layer, nor
    the other way) whose devices this one reached, oldest first (the hub holds at most 100 configurations);
    returns their ids."""
    ours = {d for w in state["waves"] for d in w["devices"]}
    tags = hub.edge_devices("*")
    older = sorted((c for c in hub.layers() if (c.labels or {}).get("edgepack-module") == state["module"]
                    and (c.labels or {}).get("edgepack-kind", "model") == _kind(state)
                    and c.id != layer_id(state["name"]) and int(c.priority or 0) < state["priority"]),
                   key=lambda c: int(c.priority or 0))
    deleted = []
    for config in older:
        key = tag_key((config.labels or {}).get("edgepack-rollout", ""))
        covered = {d for d, t in tags.items() if key in (((t.get("edgepack") or {}).get("rollouts")) or {})}
        if covered <= ours:
            hub.delete_layer(config.id)
            deleted.append(config.id)
    return deleted


Progress = Callable[[dict[str, Any]], None]


def run(hub: HubClient, store: RolloutStore, name: str, *, poll_s: float = 2.0, progress: Progress | None = None,
        clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
        until: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """Drive the rollout to its end (or until ``until(state)``); returns the last state.

    Raises:
        LeaseHeld: another controller runs it. FleetError: the hub refused a step (the state keeps it pending).
    """
    with store.lease(name):
        state = store.load(name)
        while True:
            request, held = _take_control(store, name)
            if request == "pause" and state["phase"] == RUNNING:
                state.update(phase=PAUSED, paused_at=clock())
            elif request == "resume" and state["phase"] == PAUSED:
                state.update(phase=RUNNING, paused_s=state.get("paused_s", 0.0) + clock() - state.get(
                    "paused_at", clock()))
            elif request == "abort" and state["phase"] != ABORTED:
                state.update(phase=ABORTED, reason="aborted by the operator")
            if held is not None:
                store.save(name, state)
                held.unlink(missing_ok=True)
            if state.get("pending"):
                step = Step(**{**state["pending"], "devices": tuple(state["pending"]["devices"])})
                state = _send(hub, store, state, [step], clock)
            views = _views(state, hub.module_reports(state["module"]))
            state, steps = decide(state, views, clock())
            state = _send(hub, store, state, steps, clock)
            state["devices"] = {d: {"state": v.state, "reason": v.reason} for d, v in views.items()
                                if any(d in w["devices"] for w in state["waves"])}
            state["counts"] = {str(w["number"]): wave_counts(w, views) for w in state["waves"]}
            if state["phase"] == SUCCEEDED and not state.get("collected"):
                state["collected"] = _collect(hub, state)
            state["requests"] = state.get("requests", 0) + hub.requests
            hub.requests = 0
            store.save(name, state)
            if progress is not None:
                progress(state)
            if state["phase"] == SUCCEEDED or (state["phase"] == ABORTED and state.get("layer_deleted")):
                return state
            if until is not None and until(state):
                return state
            if not steps:
                sleep(poll_s)


def status(store: RolloutStore, name: str | None = None) -> list[dict[str, Any]]:
    """The recorded state of one rollout, or of all."""
    return [store.load(n) for n in ([name] if name else store.names())]


def abort_now(hub: HubClient, store: RolloutStore, name: str, now: float) -> dict[str, Any]:
    """Roll a rollout back with no controller running: delete its deployments, record why.

    Raises:
        LeaseHeld: a controller runs it (ask it with the control file instead).
    """
    with store.lease(name):
        state = store.load(name)
        if state["phase"] == ABORTED and state.get("layer_deleted"):
            return state
        state.update(phase=ABORTED, reason=state.get("reason") or "aborted by the operator")
        return _send(hub, store, state, rollback_steps(state), lambda: now)


def folder(home: Path) -> Path:
    """Where a home keeps its rollouts."""
    return home / "fleet"
