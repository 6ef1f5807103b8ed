"""Sending deployments with the real azure-iot-hub client to the local hub's service side over HTTPS."""

from __future__ import annotations

import base64

import pytest

from edgepack.deploy.iotedge import EdgeDeploymentOptions, ModuleImage, render_manifest
from edgepack.deploy.iotedge_apply import apply_on_device, create_deployment
from edgepack.devtools.iothub.certs import ensure_certificates
from edgepack.devtools.iothub.service import HubService
from edgepack.errors import DeployError

IMAGE = ModuleImage("127.0.0.1:5000/m@sha256:" + "ab" * 32, "iot-edge", "input1", "output1")


@pytest.fixture
def service(tmp_path):
    hub = HubService(ensure_certificates(tmp_path / "certs")).start()
    yield hub, str(tmp_path / "certs" / "ca.pem")
    hub.stop()


def test_a_manifest_is_applied_on_a_registered_edge_device(service):
    hub, ca = service
    hub.add_device("dev-1")
    manifest = render_manifest(IMAGE, EdgeDeploymentOptions(model={"version": 2, "digest": "sha256:" + "0" * 64,
                                                                   "uri": "https://x/m.onnx"}))
    apply_on_device(manifest, "dev-1", connection_string=hub.connection_string, ca_file=ca)
    assert hub.state.devices["dev-1"]["content"] == manifest["modulesContent"]
    with pytest.raises(DeployError, match="device 'nope'.*does not know it") as err:
        apply_on_device(manifest, "nope", connection_string=hub.connection_string, ca_file=ca)
    assert "device-identity create" in err.value.hint


def test_an_automatic_deployment_is_created_once(service):
    hub, ca = service
    manifest = render_manifest(IMAGE, EdgeDeploymentOptions())
    created = create_deployment(manifest, "digits-v1", target_condition="tags.site='lyon'", priority=20,
                                connection_string=hub.connection_string, ca_file=ca)
    assert created == "digits-v1"
    stored = hub.state.configurations["digits-v1"]
    assert stored["targetCondition"] == "tags.site='lyon'" and stored["priority"] == 20
    assert stored["content"]["modulesContent"] == manifest["modulesContent"]
    assert stored["labels"] == {"createdBy": "edgepack"}
    with pytest.raises(DeployError, match="exists already") as err:
        create_deployment(manifest, "digits-v1", target_condition="*", priority=1,
                          connection_string=hub.connection_string, ca_file=ca)
    assert "new --name" in err.value.hint
    with pytest.raises(DeployError, match="deployment name 'Has Spaces'"):
        create_deployment(manifest, "Has Spaces", target_condition="*", priority=1,
                          connection_string=hub.connection_string, ca_file=ca)


def test_a_wrong_key_or_an_untrusted_hub_is_refused(service, tmp_path):
    hub, ca = service
    hub.add_device("dev-1")
    manifest = render_manifest(IMAGE, EdgeDeploymentOptions())
    wrong = hub.connection_string.rsplit("=", 2)[0] + "=" + base64.b64encode(b"x" * 32).decode()
    with pytest.raises(DeployError, match="refused the credentials"):
        apply_on_device(manifest, "dev-1", connection_string=wrong, ca_file=ca)
    with pytest.raises(DeployError):  # without the CA, TLS verification fails: nothing is sent
        apply_on_device(manifest, "dev-1", connection_string=hub.connection_string)
    assert hub.state.devices["dev-1"]["content"] is None
