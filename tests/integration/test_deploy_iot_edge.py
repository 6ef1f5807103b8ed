"""``edgepack deploy iot-edge --dry-run`` on a module image and a model pushed to the real registry: the manifest
is made from the image's own labels and the model artifact's manifest, and prints no secret."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.project import make_model, make_project, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def pushed(tmp_path, edgepack_home, capsys, base_image_ref, dev_registry):
    config = make_project(tmp_path / "proj")
    assert run_cli(["model", "register", "m", str(make_model(tmp_path / "m.onnx", seed=8))], capsys)[0] == 0
    assert run_cli(["model", "register", "m", str(make_model(tmp_path / "m2.onnx", seed=9))], capsys)[0] == 0
    repo = f"{dev_registry}/edgepack-test/module-{uuid.uuid4().hex[:8]}"
    code, out, err = run_cli(["package", "--model", "m:1", "--inference-config", str(config), "--target", "iot-edge",
                              "--module-output", "scores", "--base-image", base_image_ref, "--tag", f"{repo}:1",
                              "--push"], capsys)
    assert code == 0, err
    image = out.strip().splitlines()[0]
    code, out, err = run_cli(["model", "push", "m:2", "--to", f"{dev_registry}/edgepack-test/models-m", "--json"],
                             capsys)
    assert code == 0, err
    return image, json.loads(out)["ref"], config


def test_dry_run_prints_the_manifest_from_the_image_labels_and_the_model(pushed, capsys, monkeypatch):
    image, model, _ = pushed
    monkeypatch.setenv("REG_PASSWORD", "pull-secret-1")
    monkeypatch.setenv("MODEL_PASSWORD", "model-secret-2")
    code, out, err = run_cli(["deploy", "iot-edge", "--image", image, "--device", "dev-1", "--model", model,
                              "--registry-username", "robot", "--registry-password-env", "REG_PASSWORD",
                              "--model-registry-username", "reader", "--model-registry-password-env",
                              "MODEL_PASSWORD", "--env", "EDGEPACK_REPORT_SECONDS=5", "--dry-run"], capsys)
    assert code == 0, err
    assert "pull-secret-1" not in out + err and "model-secret-2" not in out + err
    content = json.loads(out)["modulesContent"]
    agent = content["$edgeAgent"]["properties.desired"]
    module = agent["modules"]["edgepack-agent"]
    assert module["settings"]["image"] == image
    assert module["env"]["EDGEPACK_REPORT_SECONDS"] == {"value": "5"}
    assert module["env"]["EDGEPACK_MODEL_REGISTRY_USERNAME"] == {"value": "reader"}
    assert module["env"]["EDGEPACK_MODEL_REGISTRY_PASSWORD"] == {"value": "<redacted>"}
    (cred,) = agent["runtime"]["settings"]["registryCredentials"].values()
    assert cred == {"username": "robot", "password": "<redacted>", "address": image.split("/", 1)[0]}
    routes = content["$edgeHub"]["properties.desired"]["routes"]
    assert routes["upstream"]["route"] == "FROM /messages/modules/edgepack-agent/outputs/scores INTO $upstream"
    desired = content["edgepack-agent"]["properties.desired"]["model"]
    assert desired["uri"] == model and desired["digest"] == model.split("@", 1)[1]
    assert desired["version"] == 2 and desired["sizeBytes"] > 0


def test_what_cannot_be_deployed_is_named(pushed, capsys, dev_registry, base_image_ref, tmp_path):
    image, model, config = pushed
    code, _, err = run_cli(["deploy", "iot-edge", "--image", image.split("@")[0] + ":1", "--device", "d",
                            "--dry-run"], capsys)
    assert code == 1 and "a tag without a digest" in err
    code, _, err = run_cli(["deploy", "iot-edge", "--image", image, "--device", "d", "--route",
                            "r=FROM /messages/modules/camera/* INTO $upstream", "--dry-run"], capsys)
    assert code == 1 and "names module 'camera'" in err
    code, _, err = run_cli(["deploy", "iot-edge", "--image", image, "--model", image, "--device", "d", "--dry-run"],
                           capsys)
    assert code == 1 and "not an edgepack model" in err
    code, _, err = run_cli(["deploy", "iot-edge", "--image", image, "--dry-run"], capsys)
    assert code == 2 and "--device ID or --target-condition" in err
    code, _, err = run_cli(["deploy", "iot-edge", "--image", image, "--device", "d"], capsys)
    assert code == 2 and "IOTHUB_CONNECTION_STRING" in err
    repo = f"{dev_registry}/edgepack-test/ws-{uuid.uuid4().hex[:8]}"
    code, out, err = run_cli(["package", "--model", "m:1", "--inference-config", str(config), "--target",
                              "webservice", "--base-image", base_image_ref, "--tag", f"{repo}:1", "--push"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["deploy", "iot-edge", "--image", out.strip(), "--device", "d", "--dry-run"], capsys)
    assert code == 1 and "it is a webservice image" in err and "--target iot-edge" in err
