"""Rollouts through the real azure-iot-hub clients against the local hub's service API, with devices simulated at
the twin level (each reports the model its desired properties name, as the agent does). The same controller
drives Azure IoT Hub."""

from __future__ import annotations

import time

import pytest

from edgepack.devtools.iothub.hub import LocalHub
from edgepack.errors import FleetError, LeaseHeld, RolloutSpecError
from edgepack.fleet import runner
from edgepack.fleet.controller import ABORTED, SUCCEEDED, layer_id
from edgepack.fleet.hub import HubClient
from edgepack.fleet.spec import AbortPolicy, WavePolicy, parse_gate
from edgepack.fleet.state import RolloutStore
from tests.fleet.simulated import AGENT, V1, V2, Fleet


@pytest.fixture
def local(tmp_path):
    hub = LocalHub(tmp_path / "hub", device_port=0, service_port=0).start()
    yield hub
    hub.stop()


def _client(hub: LocalHub) -> HubClient:
    return HubClient(hub.service.connection_string, ca_file=str(hub.certs.ca))


def _request(name: str = "cnn-v2", **changes) -> runner.RolloutRequest:
    values = dict(name=name, model=V2, module=AGENT, rings=("canary", "all"), target_condition=None,
                  wave=WavePolicy(2, 2, 10), gate=parse_gate("error_rate<0.05,p99_ms<50", shadow=False), soak_s=0.2,
                  abort=AbortPolicy(0.10, 2), timeout_s=120)
    values.update(changes)
    return runner.RolloutRequest(**values)


def _start(hub, store, request):
    client = _client(hub)
    store.create(request.name, runner.plan(client, store, request, time.time()))
    return client


def test_a_healthy_model_reaches_every_device_in_waves_and_offline_ones_stay_pending(local, tmp_path):
    fleet = Fleet(local, 30, canary=3)
    fleet.offline = {"dev-020", "dev-021", "dev-022"}  # 10% offline through the rollout
    store = RolloutStore(tmp_path / "fleet")
    try:
        client = _start(local, store, _request())
        state = runner.run(client, store, "cnn-v2", poll_s=0.05)
        assert state["phase"] == SUCCEEDED, state["reason"]
        waves = state["waves"]
        assert [(w["ring"], len(w["devices"])) for w in waves] == [("canary", 2), ("canary", 1), ("all", 2),
                                                                   ("all", 4), ("all", 8), ("all", 10), ("all", 3)]
        assert all(w["status"] == "promoted" for w in waves)
        online = [d for d in fleet.devices if d not in fleet.offline]
        assert all(fleet.desired(d) == V2 for d in online)
        assert {state["devices"][d]["state"] for d in fleet.offline} == {"offline"}  # never counted healthy
        assert {state["devices"][d]["state"] for d in online} == {"healthy"}
        assert state["steps"] == 1 + len(waves)  # the layer once, then one tagging per wave
        fleet.offline.clear()  # back online: they get the model from the same deployment
        assert fleet.wait_all(V2)
        assert state["requests"] > 0
    finally:
        fleet.stop()


def test_a_model_that_errors_stops_at_the_first_wave_and_is_rolled_back(local, tmp_path):
    fleet = Fleet(local, 20, canary=4)
    fleet.error_rate[V2["digest"]] = 0.4
    store = RolloutStore(tmp_path / "fleet")
    try:
        client = _start(local, store, _request(wave=WavePolicy(4, 2, 10)))
        state = runner.run(client, store, "cnn-v2", poll_s=0.05)
        assert state["phase"] == ABORTED
        assert state["reason"].startswith("wave 1:") and "error_rate 0.4 (gate error_rate<0.05)" in state["reason"]
        assert [w["status"] for w in state["waves"]][:2] == ["failed", "waiting"]
        assert layer_id("cnn-v2") not in local.state.configurations
        assert fleet.wait_all(V1)  # the last good model everywhere
        later = [d for w in state["waves"][1:] for d in w["devices"]]
        assert later and all("rollouts" not in (local.state.twin(d)["tags"].get("edgepack") or {}) for d in later)
    finally:
        fleet.stop()


def test_a_killed_controller_resumes_without_double_steps_and_one_lease_at_a_time(local, tmp_path):
    fleet = Fleet(local, 24, canary=2)
    store = RolloutStore(tmp_path / "fleet")
    try:
        client = _start(local, store, _request())
        first = runner.run(client, store, "cnn-v2", poll_s=0.05,
                           until=lambda s: s["waves"][1]["status"] == "promoted")
        steps = first["steps"]
        with store.lease("cnn-v2"):
            with pytest.raises(LeaseHeld):
                runner.run(client, store, "cnn-v2", poll_s=0.05)
        state = runner.run(_client(local), store, "cnn-v2", poll_s=0.05)
        assert state["phase"] == SUCCEEDED
        assert state["steps"] == 1 + len(state["waves"]) and steps < state["steps"]
    finally:
        fleet.stop()


def test_what_cannot_start_is_named_and_nothing_is_sent(local, tmp_path):
    Fleet(local, 4, canary=0).stop()
    store = RolloutStore(tmp_path / "fleet")
    client = _client(local)
    before = dict(local.state.configurations)
    with pytest.raises(FleetError, match="matches no IoT Edge device"):
        runner.plan(client, store, _request(rings=("canary",)), time.time())
    with pytest.raises(FleetError, match="matches no IoT Edge device"):
        runner.plan(client, store, _request(rings=None, target_condition="tags.edgepack.ring = 'nowhere'"),
                    time.time())
    store.create("cnn-v2", runner.plan(client, store, _request(), time.time()))
    with pytest.raises(FleetError, match="the name is in use"):
        runner.plan(client, store, _request(), time.time())
    assert local.state.configurations == before
    assert all("rollouts" not in (local.state.twin(d)["tags"].get("edgepack") or {}) for d in local.state.devices)


def test_abort_with_no_controller_rolls_back(local, tmp_path):
    fleet = Fleet(local, 10, canary=2)
    store = RolloutStore(tmp_path / "fleet")
    try:
        client = _start(local, store, _request())
        runner.run(client, store, "cnn-v2", poll_s=0.05, until=lambda s: s["waves"][0]["status"] == "promoted")
        assert layer_id("cnn-v2") in local.state.configurations
        state = runner.abort_now(client, store, "cnn-v2", time.time())
        assert state["phase"] == ABORTED and state["reason"] == "aborted by the operator"
        assert layer_id("cnn-v2") not in local.state.configurations
    finally:
        fleet.stop()


def test_shadow_mode_serves_only_a_model_that_agrees(local, tmp_path):
    fleet = Fleet(local, 10, canary=2)
    store = RolloutStore(tmp_path / "fleet")
    gate = parse_gate("error_rate<0.05,agreement>0.98", shadow=True)
    try:
        fleet.agreement[V2["digest"]] = 0.7  # answers differently on live inputs
        client = _start(local, store, _request(name="disagrees", gate=gate, shadow_s=0.2))
        state = runner.run(client, store, "disagrees", poll_s=0.05)
        assert state["phase"] == ABORTED and "agreement 0.7 (gate agreement>0.98)" in state["reason"]
        assert state["waves"][0]["status"] == "failed"
        assert all(fleet.desired(d) == V1 for d in fleet.devices)  # it never served anywhere
        assert not [c for c in local.state.configurations if c.startswith(layer_id("disagrees"))]

        fleet.agreement[V2["digest"]] = 1.0
        client = _start(local, store, _request(name="agrees", gate=gate, shadow_s=0.2))
        state = runner.run(client, store, "agrees", poll_s=0.05)
        assert state["phase"] == SUCCEEDED, state["reason"]
        assert all(w.get("shadow-tagged") and w.get("tagged") for w in state["waves"])
        assert all(fleet.desired(d) == V2 for d in fleet.devices)
        shadows = [local.state.twin(d, AGENT)["properties"]["desired"].get("shadow") for d in fleet.devices]
        assert shadows == [None] * len(fleet.devices)  # serving it ended the shadow
    finally:
        fleet.stop()


def test_pause_holds_the_next_wave_and_resume_goes_on(local, tmp_path):
    fleet = Fleet(local, 10, canary=2)
    store = RolloutStore(tmp_path / "fleet")
    try:
        client = _start(local, store, _request())
        runner.request_control(store, "cnn-v2", "pause")
        state = runner.run(client, store, "cnn-v2", poll_s=0.05, until=lambda s: s["phase"] == "paused")
        assert state["phase"] == "paused" and state["waves"][0]["status"] == "waiting"
        assert not any("rollouts" in (local.state.twin(d)["tags"].get("edgepack") or {}) for d in fleet.devices)
        runner.request_control(store, "cnn-v2", "resume")
        assert runner.run(client, store, "cnn-v2", poll_s=0.05)["phase"] == SUCCEEDED
    finally:
        fleet.stop()


class _Killed(Exception):
    pass


def test_a_step_sent_before_a_kill_is_sent_again_and_counted_once(local, tmp_path):
    fleet = Fleet(local, 12, canary=2)
    store = RolloutStore(tmp_path / "fleet")
    try:
        client = _start(local, store, _request())
        tags = []
        real_tag = client.tag

        def tag_then_die(device, tags_patch):  # the controller dies after its second wave's first tag went out
            real_tag(device, tags_patch)
            tags.append(device)
            if len(tags) == 3:
                raise _Killed()

        client.tag = tag_then_die
        with pytest.raises(_Killed):
            runner.run(client, store, "cnn-v2", poll_s=0.05)
        recorded = store.load("cnn-v2")
        assert recorded["pending"]["kind"] == "tag" and recorded["pending"]["wave"] == 2
        state = runner.run(_client(local), store, "cnn-v2", poll_s=0.05)
        assert state["phase"] == SUCCEEDED and state["pending"] is None
        assert state["steps"] == 1 + len(state["waves"])  # the interrupted step once, not twice
        assert all(fleet.desired(d) == V2 for d in fleet.devices)
    finally:
        fleet.stop()


def test_names_the_hub_knows_and_a_shadow_without_agreement_are_refused(local, tmp_path):
    fleet = Fleet(local, 4, canary=2)
    fleet.stop()
    store = RolloutStore(tmp_path / "fleet")
    client = _client(local)
    with pytest.raises(RolloutSpecError, match="names no agreement condition"):
        runner.plan(client, store, _request(shadow_s=1.0), time.time())
    other_home = RolloutStore(tmp_path / "elsewhere")  # the same name started from another machine
    client.create_layer(layer_id("cnn-v2"), {"$edgeAgent": {}, AGENT: {"properties.desired.model": V2}},
                        target_condition="IS_DEFINED(tags.x)", priority=50, labels={})
    with pytest.raises(FleetError, match="has a deployment 'edgepack-rollout-cnn-v2' already"):
        runner.plan(client, other_home, _request(), time.time())


def _module(image: str) -> dict:
    return {"version": image[-6:], "type": "docker", "status": "running", "restartPolicy": "always",
            "settings": {"image": image, "createOptions": "{}"}, "env": {"EDGEPACK_IMAGE": {"value": image}}}


IMAGE_V1 = "127.0.0.1:5000/agent@sha256:" + "a" * 64
IMAGE_V2 = "127.0.0.1:5000/agent@sha256:" + "b" * 64
IMAGE_BAD = "127.0.0.1:5000/agent@sha256:" + "c" * 64


def test_a_new_agent_image_is_a_full_module_layer_rolled_out_in_waves_and_rolled_back(local, tmp_path):
    fleet = Fleet(local, 16, canary=2, modules={AGENT: _module(IMAGE_V1)})
    fleet.error_rate[IMAGE_BAD] = 0.5
    store = RolloutStore(tmp_path / "fleet")
    try:
        image = {"ref": IMAGE_V2, "module": _module(IMAGE_V2)}
        client = _start(local, store, _request(name="agent-v2", model={}, image=image))
        state = runner.run(client, store, "agent-v2", poll_s=0.05)
        assert state["phase"] == SUCCEEDED, state["reason"]
        layer = local.state.configurations[layer_id("agent-v2")]
        assert layer["content"]["modulesContent"] == {
            "$edgeAgent": {f"properties.desired.modules.{AGENT}": _module(IMAGE_V2)}}
        assert layer["labels"]["edgepack-kind"] == "image"
        assert {fleet.image(d) for d in fleet.devices} == {IMAGE_V2}
        assert all(fleet.desired(d) == V1 for d in fleet.devices)  # the model the base names is left alone

        # a model rollout afterwards does not collect the image layer (nor an image rollout a model layer)
        model_state = runner.run(_start(local, store, _request(name="cnn-v2")), store, "cnn-v2", poll_s=0.05)
        assert model_state["phase"] == SUCCEEDED and model_state["collected"] == []
        assert layer_id("agent-v2") in local.state.configurations
        assert {fleet.image(d) for d in fleet.devices} == {IMAGE_V2} and fleet.wait_all(V2)

        bad = {"ref": IMAGE_BAD, "module": _module(IMAGE_BAD)}
        state = runner.run(_start(local, store, _request(name="agent-bad", model={}, image=bad)), store,
                           "agent-bad", poll_s=0.05)
        assert state["phase"] == ABORTED and state["reason"].startswith("wave 1:")
        deadline = time.time() + 10
        while {fleet.image(d) for d in fleet.devices} != {IMAGE_V2}:
            assert time.time() < deadline, "the devices did not fall back to the last good image"
            time.sleep(0.05)
        with pytest.raises(RolloutSpecError, match="--shadow"):
            runner.plan(client, store, _request(name="agent-v3", model={}, image=image, shadow_s=5.0,
                                                gate=parse_gate("agreement>0.9", shadow=True)), time.time())
    finally:
        fleet.stop()
