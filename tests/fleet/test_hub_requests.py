"""What the controller sends to IoT Hub, asserted at the transport: every HTTP request azure-iot-hub's clients
make for a rollout and its abort, recorded as they reach the local hub's HTTPS endpoint (the same requests reach
Azure IoT Hub, whose host the connection string names instead)."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from edgepack.devtools.iothub.hub import LocalHub
from edgepack.errors import DeployError
from edgepack.fleet import runner
from edgepack.fleet.controller import ABORTED, SUCCEEDED
from edgepack.fleet.hub import HubClient
from edgepack.fleet.spec import AbortPolicy, WavePolicy, parse_gate
from edgepack.fleet.state import RolloutStore
from tests.fleet.simulated import AGENT, V2, Fleet


@pytest.fixture
def local(tmp_path):
    hub = LocalHub(tmp_path / "hub", device_port=0, service_port=0).start()
    yield hub
    hub.stop()


def _request(**changes) -> runner.RolloutRequest:
    values = dict(name="cnn-v2", model=V2, module=AGENT, rings=("canary", "all"), target_condition=None,
                  wave=WavePolicy(2, 2, 10), gate=parse_gate("error_rate<0.05", shadow=False), soak_s=0.0,
                  abort=AbortPolicy(0.10, 2), timeout_s=120)
    values.update(changes)
    return runner.RolloutRequest(**values)


def _requests(local: LocalHub) -> list[dict]:
    out = []
    for method, target, headers, body in local.service.recorded or []:
        url = urlsplit(target)
        out.append({"method": method, "path": url.path, "query": parse_qs(url.query),
                    "headers": {k.lower(): v for k, v in headers.items()},
                    "body": json.loads(body) if body else None})
    return out


def test_a_rollout_and_its_abort_are_iot_hubs_own_requests(local, tmp_path):
    fleet = Fleet(local, 12, canary=2)
    store = RolloutStore(tmp_path / "fleet")
    local.service.recorded = []
    try:
        client = HubClient(local.service.connection_string, ca_file=str(local.certs.ca))
        store.create("cnn-v2", runner.plan(client, store, _request(), time.time()))
        state = runner.run(client, store, "cnn-v2", poll_s=0.05)
        assert state["phase"] == SUCCEEDED, state["reason"]
        sent = _requests(local)
        for request in sent:
            assert request["query"]["api-version"] == ["2021-04-12"]
            auth = request["headers"]["authorization"]
            assert auth.startswith("SharedAccessSignature sr=") and "skn=iothubowner" in auth and "&se=" in auth
            assert local.service.connection_string.split("SharedAccessKey=")[1] not in json.dumps(request)
        creates = [r for r in sent if r["method"] == "PUT" and r["path"].startswith("/configurations/")]
        assert len(creates) == 1
        layer = creates[0]
        assert layer["path"] == "/configurations/edgepack-rollout-cnn-v2"
        body = layer["body"]
        assert body["id"] == "edgepack-rollout-cnn-v2" and body["schemaVersion"] == "1.0"
        assert body["content"] == {"modulesContent": {"$edgeAgent": {}, AGENT: {"properties.desired.model": V2}}}
        assert body["targetCondition"] == "IS_DEFINED(tags.edgepack.rollouts.cnn_v2)"
        assert body["priority"] == 11  # above the base deployment's 10
        assert body["labels"] == {"edgepack-rollout": "cnn-v2", "edgepack-module": AGENT, "edgepack-kind": "model"}
        tags = [r for r in sent if r["method"] == "PATCH" and r["path"].startswith("/twins/")]
        assert sorted(r["path"].rsplit("/", 1)[1] for r in tags) == sorted(fleet.devices)  # each device once
        waves = {d: w["number"] for w in state["waves"] for d in w["devices"]}
        for request in tags:
            device = request["path"].rsplit("/", 1)[1]
            assert request["headers"]["if-match"] == '"*"'
            assert request["body"] == {"tags": {"edgepack": {"rollouts": {"cnn_v2": waves[device]}}}}
        queries = [r for r in sent if r["path"] == "/devices/query"]
        assert queries and all(r["method"] == "POST" and set(r["body"]) == {"query"} for r in queries)
        assert {r["body"]["query"] for r in queries} >= {
            "SELECT * FROM devices WHERE capabilities.iotEdge = true",
            f"SELECT * FROM devices.modules WHERE moduleId = '{AGENT}'"}
        assert {r["method"] for r in sent} <= {"GET", "PUT", "PATCH", "POST"}  # nothing deleted on success

        local.service.recorded = []
        assert runner.abort_now(client, store, "cnn-v2", time.time())["phase"] == ABORTED
        deletes = [r for r in _requests(local) if r["method"] == "DELETE"]
        assert [(r["path"], r["headers"].get("if-match")) for r in deletes] == [
            ("/configurations/edgepack-rollout-cnn-v2", "*")]
    finally:
        fleet.stop()


def test_a_model_too_big_for_a_twin_value_is_refused_before_anything_is_sent(local, tmp_path):
    Fleet(local, 4, canary=1).stop()
    local.service.recorded = []
    client = HubClient(local.service.connection_string, ca_file=str(local.certs.ca))
    model = {**V2, "uri": V2["uri"] + "#" + "x" * 5000}  # one value over the hub's 4 KB
    with pytest.raises(DeployError, match="4"):
        runner.plan(client, RolloutStore(tmp_path / "fleet"), _request(model=model), time.time())
    assert {r["method"] for r in _requests(local)} <= {"GET", "POST"}  # reads only: the devices, the layers
