"""Kubernetes + KEDA manifests from indexed function metadata, validated against the schemas."""

from __future__ import annotations

import base64

import pytest
import yaml

from edgepack.deploy.kubernetes import KubernetesOptions, redact, render_manifests, validate_manifests
from edgepack.errors import DeployError
from edgepack.packagers.function_index import index_function_app
from edgepack.packagers.functions import render_function_app
from edgepack.targets import parse_target
from tests.project import make_model, make_project, run_cli

IMAGE = "registry.example/fn@sha256:" + "a" * 64


def _indexed(name: str, **options):
    return index_function_app(render_function_app(parse_target(name, **options)))


def test_blob_function_gets_a_deployment_and_a_keda_scaled_object():
    functions = _indexed("functions-blob", input_path="input/{blobname}.json", output_path="output/{blobname}.json",
                         connection="STORAGE")
    manifests = render_manifests(functions, IMAGE, KubernetesOptions(name="digits", min_replicas=0, max_replicas=4,
                                                                     settings={"STORAGE": "conn-string"}))
    assert [m["kind"] for m in manifests] == ["Secret", "Deployment", "ScaledObject"]
    secret, deployment, scaled = manifests
    assert base64.b64decode(secret["data"]["STORAGE"]) == b"conn-string"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == IMAGE and deployment["spec"]["replicas"] == 0
    assert {"name": "AzureFunctionsJobHost__functions__0", "value": "score"} in container["env"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"] == {"name": "digits"}
    assert scaled["spec"]["triggers"] == [{"type": "azure-blob", "metadata": {
        "blobContainerName": "input", "blobCount": "5", "connectionFromEnv": "STORAGE"}}]
    assert redact(manifests)[0]["data"]["STORAGE"] == "<redacted>"


def test_servicebus_queue_from_an_app_setting():
    functions = _indexed("functions-servicebus", input_queue="%IN_QUEUE%", output_queue="scores")
    with pytest.raises(DeployError, match="'%IN_QUEUE%'") as info:
        render_manifests(functions, IMAGE, KubernetesOptions(name="sb"))
    assert "--setting IN_QUEUE=NAME" in info.value.hint
    manifests = render_manifests(functions, IMAGE, KubernetesOptions(name="sb", settings={"IN_QUEUE": "requests"}))
    assert manifests[-1]["spec"]["triggers"] == [{"type": "azure-servicebus", "metadata": {
        "queueName": "requests", "messageCount": "5", "connectionFromEnv": "AzureWebJobsServiceBus"}}]


def test_http_function_gets_service_and_hpa():
    manifests = render_manifests(_indexed("functions-http", auth_level="function"), IMAGE,
                                 KubernetesOptions(name="web", max_replicas=3))
    assert [m["kind"] for m in manifests] == ["Secret", "Deployment", "Service", "HorizontalPodAutoscaler"]
    assert manifests[2]["spec"]["selector"] == {"app": "web-http"}
    assert manifests[3]["spec"]["maxReplicas"] == 3


def test_tags_without_digest_and_invalid_manifests_are_refused():
    with pytest.raises(DeployError, match="a tag without a digest"):
        render_manifests([], "registry.example/fn:1", KubernetesOptions(name="x"))
    broken = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
              "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "a", "image": "i", "bogus": 1}]}}}}
    with pytest.raises(DeployError, match="validating Deployment/x: .*'bogus'"):
        validate_manifests([broken])
    scaled = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "x"},
              "spec": {"scaleTargetRef": {"name": "x"}, "triggers": [{"type": "azure-blob", "metadata": {}}]}}
    with pytest.raises(DeployError, match="validating ScaledObject/x: 'blobContainerName' is a required property"):
        validate_manifests([scaled])


@pytest.mark.integration
def test_cli_reads_the_metadata_from_the_pushed_image(tmp_path, edgepack_home, capsys, dev_registry,
                                                      functions_base_image_ref):
    config = make_project(tmp_path / "proj")
    assert run_cli(["model", "register", "m", str(make_model(tmp_path / "m.onnx", seed=51))], capsys)[0] == 0
    code, out, err = run_cli(["package", "--model", "m", "--inference-config", str(config), "--target",
                              "functions-blob", "--input-path", "requests/{name}.json", "--output-path",
                              "scores/{name}.json", "--base-image", functions_base_image_ref, "--tag",
                              f"{dev_registry}/k8s/fn:1", "--push"], capsys)
    assert code == 0, err
    ref = out.strip().splitlines()[0]
    code, out, err = run_cli(["deploy", "k8s", "--image", ref, "--name", "fn", "--setting",
                              "AzureWebJobsStorage=secret-conn", "--dry-run"], capsys)
    assert code == 0, err
    docs = list(yaml.safe_load_all(out))
    assert [d["kind"] for d in docs] == ["Secret", "Deployment", "ScaledObject"]
    assert docs[2]["spec"]["triggers"][0]["metadata"]["blobContainerName"] == "requests"
    assert "secret-conn" not in out and base64.b64encode(b"secret-conn").decode() not in out
    code, _, err = run_cli(["deploy", "k8s", "--image", f"{dev_registry}/k8s/fn:1", "--name", "fn"], capsys)
    assert code == 1 and "a tag without a digest" in err and "hint: " in err
