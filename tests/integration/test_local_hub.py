"""The local hub with the real SDKs on both sides: azure-iot-hub's registry manager on its service API and
azure-iot-device's module clients through its gateway (behind a link on 127.0.0.1:8883, the SDK's only port)."""

from __future__ import annotations

import base64
import gc
import json
import os
import threading

import pytest
from azure.iot.device import IoTHubModuleClient, Message, MethodResponse
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import CloudToDeviceMethod, QuerySpecification, Twin, TwinProperties
from msrest.exceptions import HttpOperationError

from edgepack.deploy.iotedge import EdgeDeploymentOptions, ModuleImage, render_manifest
from edgepack.deploy.iotedge_apply import create_deployment
from edgepack.devtools.iothub.hub import LocalHub
from edgepack.devtools.iothub.linkproxy import LinkProxy

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


@pytest.fixture
def local(tmp_path, monkeypatch):
    hub = LocalHub(tmp_path / "hub", device_port=0, service_port=0).start()
    link = LinkProxy(8883, hub.device_port)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(hub.certs.ca))  # msrest's requests session verifies with it
    yield hub
    link.close()
    hub.stop()
    gc.collect()  # paho's socket pairs are closed here, inside the test, where the warning is ignored


def _registry(hub) -> IoTHubRegistryManager:
    return IoTHubRegistryManager.from_connection_string(hub.service.connection_string)


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _module_client(hub, device, module, key=None):
    key = key or hub.state.identity(device, module)["primaryKey"]
    client = IoTHubModuleClient.create_from_connection_string(
        f"HostName=localhost;DeviceId={device};ModuleId={module};SharedAccessKey={key}",
        server_verification_cert=hub.certs.ca.read_text(), connection_retry=False)
    client.connect()
    return client


def test_identities_twins_and_queries_through_the_registry_manager(local):
    registry = _registry(local)
    device = registry.create_device_with_sas("edge-a", _key(), _key(), "enabled", iot_edge=True)
    assert device.device_id == "edge-a" and device.capabilities.iot_edge is True
    registry.create_device_with_sas("edge-b", _key(), _key(), "enabled", iot_edge=True)
    with pytest.raises(HttpOperationError) as err:
        registry.create_device_with_sas("edge-a", _key(), _key(), "enabled")
    assert err.value.response.status_code == 409
    module = registry.create_module_with_sas("edge-a", "scorer", None, _key(), _key())
    assert module.module_id == "scorer" and [m.module_id for m in registry.get_modules("edge-a")] == ["scorer"]

    twin = registry.update_twin("edge-a", Twin(tags={"ring": "canary", "site": {"city": "lyon"}}))
    assert twin.tags == {"ring": "canary", "site": {"city": "lyon"}}
    twin = registry.update_twin("edge-a", Twin(tags={"site": {"city": None, "floor": 2}}), twin.etag)
    assert twin.tags == {"ring": "canary", "site": {"floor": 2}}
    with pytest.raises(HttpOperationError) as err:
        registry.update_twin("edge-a", Twin(tags={"x": 1}), "stale-etag")
    assert err.value.response.status_code == 412
    registry.update_module_twin("edge-a", "scorer", Twin(properties=TwinProperties(desired={"threshold": 0.5})))
    assert registry.get_module_twin("edge-a", "scorer").properties.desired["threshold"] == 0.5

    found = registry.query_iot_hub(QuerySpecification(query="SELECT * FROM devices WHERE tags.ring = 'canary'"))
    assert [t.device_id for t in found.items] == ["edge-a"]
    counted = registry.query_iot_hub(QuerySpecification(query="SELECT COUNT() AS n FROM devices WHERE "
                                                              "capabilities.iotEdge = true AND NOT tags.ring = 'x'"))
    assert counted.items[0].additional_properties == {"n": 2}  # the SDK reads every row as a Twin
    page = registry.query_iot_hub(QuerySpecification(query="SELECT * FROM devices"), None, 1)
    assert len(page.items) == 1 and page.continuation_token
    rest = registry.query_iot_hub(QuerySpecification(query="SELECT * FROM devices"), page.continuation_token, 1)
    assert {page.items[0].device_id, rest.items[0].device_id} == {"edge-a", "edge-b"}
    with pytest.raises(HttpOperationError) as err:
        registry.query_iot_hub(QuerySpecification(query="SELECT * FROM jobs"))
    assert err.value.response.status_code == 400

    # the state survives a restart of the hub
    local.stop()
    again = LocalHub(local.home, device_port=0, service_port=0)
    assert again.state.twin("edge-a")["tags"] == {"ring": "canary", "site": {"floor": 2}}
    assert again.state.identity("edge-a", "scorer")["primaryKey"] == module.authentication.symmetric_key.primary_key
    again.state.close()


def test_each_module_gets_its_own_twin_patches_and_methods_and_only_with_its_key(local):
    registry = _registry(local)
    for device in ("edge-a", "edge-b"):
        registry.create_device_with_sas(device, _key(), _key(), "enabled", iot_edge=True)
        registry.create_module_with_sas(device, "scorer", None, _key(), _key())
    a, b = _module_client(local, "edge-a", "scorer"), _module_client(local, "edge-b", "scorer")
    try:
        patches = {"a": [], "b": []}
        a.on_twin_desired_properties_patch_received = patches["a"].append
        b.on_twin_desired_properties_patch_received = patches["b"].append
        calls = {"a": [], "b": []}

        def answer(name, client):
            def handler(request):
                calls[name].append(request.payload)
                client.send_method_response(MethodResponse.create_from_method_request(request, 200, {"me": name}))
            return handler
        a.on_method_request_received = answer("a", a)
        b.on_method_request_received = answer("b", b)
        a.patch_twin_reported_properties({"health": "good"})
        assert local.responder.wait_for(lambda: local.state.is_connected("edge-b", "scorer"), 5)

        registry.update_module_twin("edge-a", "scorer", Twin(properties=TwinProperties(desired={"model": "v2"})))
        assert local.responder.wait_for(lambda: patches["a"], 10)
        assert patches["a"][0]["model"] == "v2" and patches["b"] == []
        assert a.get_twin()["desired"]["model"] == "v2" and "model" not in b.get_twin()["desired"]
        assert registry.get_module_twin("edge-a", "scorer").properties.reported["health"] == "good"
        assert "health" not in registry.get_module_twin("edge-b", "scorer").properties.reported

        result = registry.invoke_device_module_method("edge-b", "scorer", CloudToDeviceMethod(
            method_name="ping", payload={"n": 1}, response_timeout_in_seconds=10))
        assert result.status == 200 and result.payload == {"me": "b"} and calls == {"a": [], "b": [{"n": 1}]}
    finally:
        a.shutdown()
        b.shutdown()
    with pytest.raises(HttpOperationError) as err:
        registry.invoke_device_module_method("edge-a", "scorer", CloudToDeviceMethod(method_name="ping"))
    assert err.value.response.status_code == 404 and "DeviceNotOnline" in err.value.response.text
    with pytest.raises(Exception):  # the SDK's ConnectionFailedError: the gateway refused the token
        _module_client(local, "edge-a", "scorer", key=_key()).shutdown()
    assert not local.state.is_connected("edge-a", "scorer")


def test_a_module_cannot_use_another_identitys_topics(local):
    local.state.add_device("edge-a", edge=True)
    local.state.add_module("edge-a", "scorer")
    local.state.add_module("edge-a", "other")
    spy = _module_client(local, "edge-a", "other")
    got = threading.Event()
    spy.on_message_received = lambda message: got.set()
    client = _module_client(local, "edge-a", "scorer")
    try:
        client.send_message_to_output(Message(json.dumps({"x": 1})), "out1")
        assert local.responder.wait_for(lambda: len(local.responder.messages) == 1, 10)
        message = local.responder.messages[0]
        assert (message.device, message.module, message.output) == ("edge-a", "scorer", "out1")
        assert message.json() == {"x": 1}
        local.responder.send_input("edge-a", "scorer", "in1", b"{}")
        assert not got.wait(1), "a module received another module's input"
    finally:
        client.shutdown()
        spy.shutdown()


def test_a_configuration_targets_devices_by_tags_and_routes_carry_messages_between_modules(local):
    registry = _registry(local)
    for device in ("edge-a", "edge-b"):
        registry.create_device_with_sas(device, _key(), _key(), "enabled", iot_edge=True)
    registry.update_twin("edge-a", Twin(tags={"ring": "canary"}))
    image = ModuleImage("127.0.0.1:5000/m@sha256:" + "ab" * 32, "iot-edge", "input1", "output1")
    manifest = render_manifest(image, EdgeDeploymentOptions(
        module="scorer", model={"version": 2, "digest": "sha256:" + "0" * 64, "uri": "https://x/m.onnx"}))
    # a second module, written in by hand (edgepack's manifests hold one), between the scorer and $upstream
    content = manifest["modulesContent"]
    content["sink"] = {"properties.desired": {}}
    content["$edgeHub"]["properties.desired"]["routes"] = {
        "toSink": {"route": "FROM /messages/modules/scorer/outputs/output1 "
                            'INTO BrokeredEndpoint("/modules/sink/inputs/in")'},
        "up": "FROM /messages/modules/sink/* INTO $upstream"}
    create_deployment(manifest, "canary-v2", target_condition="tags.ring='canary'", priority=10,
                      connection_string=local.service.connection_string, ca_file=str(local.certs.ca))
    assert local.state.devices["edge-a"]["content"] == manifest["modulesContent"]
    assert local.state.devices["edge-b"]["content"] is None
    assert local.state.twin("edge-a", "scorer")["properties"]["desired"]["model"]["version"] == 2
    assert local.state.configurations["canary-v2"]["systemMetrics"]["results"] == {"targetedCount": 1,
                                                                                 "appliedCount": 1}
    registry.update_twin("edge-b", Twin(tags={"ring": "canary"}))
    assert local.state.devices["edge-b"]["content"] == manifest["modulesContent"]

    sink = _module_client(local, "edge-a", "sink")
    scorer = _module_client(local, "edge-a", "scorer")
    try:
        received = []
        done = threading.Event()

        def on_input(message):
            received.append((message.input_name, json.loads(message.data), message.message_id))
            sink.send_message_to_output(Message(message.data, message_id="fwd-" + message.message_id), "out")
            done.set()
        sink.on_message_received = on_input
        scorer.send_message_to_output(Message(json.dumps({"y": 3}), message_id="m-1"), "output1")
        assert done.wait(10), "the route did not carry the message to the sink module"
        assert received == [("in", {"y": 3}, "m-1")]
        assert local.responder.wait_for(lambda: len(local.responder.messages) == 1, 10)
        upstream = local.responder.messages[0]
        assert (upstream.module, upstream.message_id) == ("sink", "fwd-m-1")  # the scorer's own output went to the sink
        lines = (local.home / "upstream.jsonl").read_text().splitlines()
        assert [json.loads(line)["message_id"] for line in lines] == ["fwd-m-1"]
    finally:
        scorer.shutdown()
        sink.shutdown()
