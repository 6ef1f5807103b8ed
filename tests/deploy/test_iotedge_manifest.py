"""IoT Edge deployment manifests: the schema 1.1 shape, chunked createOptions, routes, limits and redaction."""

from __future__ import annotations

import json

import pytest

from edgepack.deploy.iotedge import (EdgeDeploymentOptions, ModuleImage, RegistryCredential, check_limits,
                                     chunk_create_options, redact, render_manifest)
from edgepack.errors import DeployError

IMAGE = ModuleImage(ref="reg.example.com/digits-module@sha256:" + "ab" * 32, target="iot-edge",
                    module_input="input1", module_output="output1")
MODEL = {"version": 2, "digest": "sha256:" + "cd" * 32, "uri": "reg.example.com/models/digits@sha256:" + "cd" * 32,
         "sizeBytes": 1234}


def _desired(manifest, module):
    return manifest["modulesContent"][module]["properties.desired"]


def test_the_manifest_has_both_system_modules_the_module_its_route_and_its_model():
    manifest = render_manifest(IMAGE, EdgeDeploymentOptions(model=MODEL, ttl=600, env={"A": "1"}))
    agent = _desired(manifest, "$edgeAgent")
    assert agent["schemaVersion"] == "1.1"
    assert agent["systemModules"]["edgeAgent"]["settings"]["image"] == "mcr.microsoft.com/azureiotedge-agent:1.6"
    hub_module = agent["systemModules"]["edgeHub"]
    assert (hub_module["status"], hub_module["restartPolicy"]) == ("running", "always")
    module = agent["modules"]["edgepack-agent"]
    assert module["settings"]["image"] == IMAGE.ref and module["version"] == "ab" * 6
    assert module["env"] == {"A": {"value": "1"}, "EDGEPACK_STATE_DIR": {"value": "/var/lib/edgepack"},
                             "EDGEPACK_IMAGE": {"value": IMAGE.ref}}
    assert json.loads(module["settings"]["createOptions"]) == {
        "HostConfig": {"Binds": ["/var/lib/edgepack/edgepack-agent:/var/lib/edgepack"]}}
    hub = _desired(manifest, "$edgeHub")
    route = "FROM /messages/modules/edgepack-agent/outputs/output1 INTO $upstream"
    assert hub["routes"] == {"upstream": {"route": route, "priority": 0, "timeToLiveSecs": 600}}
    assert hub["storeAndForwardConfiguration"] == {"timeToLiveSecs": 600}
    assert _desired(manifest, "edgepack-agent") == {"model": MODEL}
    older = render_manifest(IMAGE, EdgeDeploymentOptions(runtime="1.5"))
    assert "edgepack-agent" not in older["modulesContent"]  # no model: the module's desired is left alone
    assert _desired(older, "$edgeAgent")["systemModules"]["edgeHub"]["settings"]["image"].endswith(":1.5")


def test_create_options_are_minified_and_split_into_512_character_chunks():
    options = {"HostConfig": {"Binds": [f"/data/{i:03d}:/mnt/{i:03d}" for i in range(60)]}}
    chunks = chunk_create_options(options)
    text = json.dumps(options, separators=(",", ":"))
    assert len(text) > 1024 and list(chunks) == ["createOptions", "createOptions01", "createOptions02"]
    assert all(len(c) <= 512 for c in chunks.values())
    assert json.loads("".join(chunks[k] for k in sorted(chunks))) == options
    with pytest.raises(DeployError, match="more than 8 chunks"):
        chunk_create_options({"HostConfig": {"Binds": ["x" * 100] * 60}})


def test_routes_are_checked_for_shape_and_for_modules_the_deployment_lacks():
    ok = ("toOther", 'FROM /messages/modules/edgepack-agent/outputs/* WHERE $body.x > 1 '
                     'INTO BrokeredEndpoint("/modules/edgepack-agent/inputs/input1")')
    manifest = render_manifest(IMAGE, EdgeDeploymentOptions(routes=(ok,)))
    assert list(_desired(manifest, "$edgeHub")["routes"]) == ["toOther"]
    with pytest.raises(DeployError, match="route 'r' names module 'camera', which this deployment does not have"):
        render_manifest(IMAGE, EdgeDeploymentOptions(routes=(("r", "FROM /messages/modules/camera/* INTO $upstream"),)))
    with pytest.raises(DeployError, match="is not 'FROM <source>"):
        render_manifest(IMAGE, EdgeDeploymentOptions(routes=(("r", "SEND everything"),)))
    with pytest.raises(DeployError, match="neither \\$upstream nor BrokeredEndpoint"):
        render_manifest(IMAGE, EdgeDeploymentOptions(routes=(("r", "FROM /* INTO somewhere"),)))


def test_the_hubs_limits_are_named_before_anything_is_sent():
    with pytest.raises(DeployError, match=r"edgepack-agent.model.uri: 5000 bytes, over the hub's 4096"):
        render_manifest(IMAGE, EdgeDeploymentOptions(model={**MODEL, "uri": "x" * 5000}))
    with pytest.raises(DeployError, match="edgepack-agent.model.tags: a list"):
        render_manifest(IMAGE, EdgeDeploymentOptions(model={**MODEL, "tags": ["a"]}))
    with pytest.raises(DeployError, match="over the hub's 32768 bytes per twin"):
        render_manifest(IMAGE, EdgeDeploymentOptions(env={f"V{i}": "y" * 3000 for i in range(12)}))
    with pytest.raises(DeployError, match="the key 'a b' is not a twin key"):
        check_limits({"modulesContent": {"m": {"properties.desired": {"a b": 1}}}})
    with pytest.raises(DeployError, match="a non-edgepack image|a webservice image"):
        render_manifest(ModuleImage(IMAGE.ref, "webservice", "", ""), EdgeDeploymentOptions())
    with pytest.raises(DeployError, match="module name"):
        render_manifest(IMAGE, EdgeDeploymentOptions(module="no/slash"))


def test_redaction_hides_registry_passwords_and_secret_env_only():
    options = EdgeDeploymentOptions(
        credentials=(RegistryCredential("reg.example.com", "robot", "s3cret"),),
        env={"EDGEPACK_MODEL_REGISTRY_PASSWORD": "hunter2", "EDGEPACK_REPORT_SECONDS": "10"})
    manifest = render_manifest(IMAGE, options)
    printed = json.dumps(redact(manifest))
    assert "s3cret" not in printed and "hunter2" not in printed and '"robot"' in printed and '"10"' in printed
    assert "s3cret" in json.dumps(manifest)  # the manifest sent keeps them
