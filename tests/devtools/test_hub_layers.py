"""The local hub's layered deployments and custom metrics, on its state (IoT Hub's merge rules)."""

from __future__ import annotations

from edgepack.devtools.iothub.state import HubState, is_layered, merge_layer

AGENT = "edgepack-agent"
BASE = {"$edgeAgent": {"properties.desired": {"schemaVersion": "1.1", "modules": {AGENT: {"type": "docker"}}}},
        "$edgeHub": {"properties.desired": {"routes": {"up": "FROM /messages/* INTO $upstream"}}},
        AGENT: {"properties.desired": {"model": {"version": 1, "digest": "sha256:one"}, "reportSeconds": 30}}}
LAYER = {"$edgeAgent": {}, AGENT: {"properties.desired.model": {"version": 2, "digest": "sha256:two"}}}


def _config(name: str, content: dict, condition: str, priority: int, created: str) -> dict:
    return {"id": name, "content": {"modulesContent": content}, "targetCondition": condition, "priority": priority,
            "createdTimeUtc": created, "metrics": {"queries": {}}}


def _desired(hub: HubState, device: str) -> dict:
    return {k: v for k, v in hub.twin(device, AGENT)["properties"]["desired"].items() if not k.startswith("$")}


def test_a_layer_sets_one_path_over_the_base_and_its_removal_falls_back():
    assert not is_layered(BASE) and is_layered(LAYER)
    merged = merge_layer(BASE, LAYER)
    assert merged[AGENT]["properties.desired"] == {"model": {"version": 2, "digest": "sha256:two"},
                                                    "reportSeconds": 30}
    assert merged["$edgeHub"] == BASE["$edgeHub"] and BASE[AGENT]["properties.desired"]["model"]["version"] == 1
    replaced = merge_layer(BASE, {"$edgeAgent": {}, AGENT: {"properties.desired": {"model": {"version": 3}}}})
    assert replaced[AGENT]["properties.desired"] == {"model": {"version": 3}}
    nested = merge_layer(BASE, {"$edgeAgent": {"properties.desired.modules.other": {"type": "docker"}}})
    assert set(nested["$edgeAgent"]["properties.desired"]["modules"]) == {AGENT, "other"}


def test_layers_apply_by_target_and_priority_and_count():
    hub = HubState()
    for device, ring in (("d1", "canary"), ("d2", "ring1"), ("d3", None)):
        hub.add_device(device, edge=True)
        if ring:
            hub.update_twin(device, None, {"tags": {"edgepack": {"ring": ring}}})
    hub.set_configuration("base", _config("base", BASE, "*", 10, "2026-01-01T00:00:00Z"))
    assert {d: _desired(hub, d)["model"]["version"] for d in ("d1", "d2", "d3")} == {"d1": 1, "d2": 1, "d3": 1}
    hub.set_configuration("v2", _config("v2", LAYER, "tags.edgepack.ring = 'canary'", 20, "2026-01-02T00:00:00Z"))
    assert _desired(hub, "d1")["model"] == {"version": 2, "digest": "sha256:two"}
    assert _desired(hub, "d1")["reportSeconds"] == 30  # the rest of the base stays
    assert _desired(hub, "d2")["model"]["version"] == 1
    below = _config("low", {"$edgeAgent": {}, AGENT: {"properties.desired.model": {"version": 9}}}, "*", 5,
                    "2026-01-03T00:00:00Z")
    hub.set_configuration("low", below)  # under the base's priority: never applied
    assert _desired(hub, "d3")["model"]["version"] == 1
    results = {c["id"]: c["systemMetrics"]["results"] for c in hub.configurations.values()}
    assert results["v2"] == {"targetedCount": 1, "appliedCount": 1}
    assert results["low"] == {"targetedCount": 3, "appliedCount": 0}
    assert results["base"] == {"targetedCount": 3, "appliedCount": 3}
    hub.set_configuration("v2", None)  # rollback: the layer goes, the base's model comes back
    assert _desired(hub, "d1")["model"] == {"version": 1, "digest": "sha256:one"}


def test_custom_metrics_count_the_rows_of_their_queries():
    hub = HubState()
    for device in ("d1", "d2"):
        hub.add_device(device, edge=True)
        hub.add_module(device, AGENT)
    hub.patch_reported("d1", AGENT, {"edgepack": {"model": {"version": 2}, "errorRate": 0.0}})
    hub.patch_reported("d2", AGENT, {"edgepack": {"model": {"version": 1}, "errorRate": 0.5}})
    config = _config("v2", LAYER, "*", 20, "2026-01-02T00:00:00Z")
    config["metrics"] = {"queries": {
        "onNew": f"SELECT deviceId FROM devices.modules WHERE moduleId = '{AGENT}' AND "
                 "properties.reported.edgepack.model.version = 2",
        "failing": "SELECT deviceId FROM devices.modules WHERE properties.reported.edgepack.errorRate > 0.1"}}
    assert hub.metric_results(config) == {"onNew": 1, "failing": 1}
