"""An FPGA image on the real engine and registry: quantize the digits CNN, package it on the local Debian base,
run it (no FPGA here: the CPU fallback, said in its log and /info), score, and write its Kubernetes manifests."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
import yaml

from edgepack.oci.layout import read_layout
from tests.project import run_cli

pytestmark = pytest.mark.integration
SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "digits-cnn"


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def _post(url: str, body: bytes) -> dict:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.fixture
def quantized(edgepack_home, capsys):
    assert run_cli(["model", "register", "cnn", str(SAMPLE / "model" / "model.onnx")], capsys)[0] == 0
    code, out, err = run_cli(["fpga", "quantize", "--model", "cnn:1", "--calibration",
                              str(SAMPLE / "data" / "calibration.npy")], capsys)
    assert code == 0, err
    return "cnn:2"


def test_fpga_image_runs_on_the_cpu_fallback_and_says_so(quantized, base_image_ref, dev_registry, docker_daemon,
                                                         tmp_path, capsys):
    tag = f"{dev_registry}/tests/fpga-cnn:1"
    code, out, err = run_cli(["package", "--model", quantized, "--target", "fpga", "--inference-config",
                              str(SAMPLE / "inferenceconfig.json"), "--base-image", base_image_ref, "--no-auth",
                              "--output", str(tmp_path / "layout"), "--tag", tag, "--push", "--json"], capsys)
    assert code == 0, err
    digest = json.loads(out)["digest"]
    layout = read_layout(tmp_path / "layout")
    config = json.loads(layout.blob_path(layout.config.digest).read_bytes())
    labels = config["config"]["Labels"]
    assert labels["io.edgepack.target"] == "fpga"
    assert labels["io.edgepack.fpga.profile"] == "kv260-dpuczdx8g"
    assert labels["io.edgepack.fpga.provider"] == "VitisAIExecutionProvider"
    assert labels["io.edgepack.fpga.status"].startswith("accelerator unverified")
    assert "power-of-two" in labels["io.edgepack.fpga.quantization"]
    assert (labels["io.edgepack.fpga.accelerated-model"], labels["io.edgepack.fpga.cpu-model"]) == ("cnn:2", "cnn:1")
    assert config["config"]["Entrypoint"] == ["python3", "-m", "fpga.runtime"]

    code, out, err = run_cli(["run", str(tmp_path / "layout"), "--json"], capsys)
    assert code == 0, err
    run = json.loads(out)
    try:
        base = run["url"].rsplit("/", 1)[0]
        info = _get(f"{base}/info")
        execution = info["execution"]
        assert execution["provider"] == "CPUExecutionProvider" and execution["accelerated"] is False
        assert "VitisAIExecutionProvider not in this onnxruntime build" in execution["reason"]
        assert execution["model_file"] == "/app/azureml-models/cnn/1/model.onnx"
        assert execution["verified_on_hardware"] is False
        answer = _post(run["url"], (SAMPLE / "sample-request.json").read_bytes())
        assert answer["predictions"] == [2, 0, 4]
        logs = docker_daemon.logs(run["name"])
        fallback = [line for line in logs.splitlines() if "execution provider=" in line]
        assert len(fallback) == 1, logs
        assert "accelerator NOT used: VitisAIExecutionProvider not in this onnxruntime build" in fallback[0]
    finally:
        run_cli(["stop", run["name"]], capsys)

    image = f"{tag}@{digest}"
    code, out, err = run_cli(["deploy", "k8s", "--image", image, "--name", "cnn"], capsys)
    assert code == 1 and "no accelerator resource named" in err and "kubectl describe node" in err
    resource = "amd.com/xilinx_u50_gen3x16_xdma_201920_3-0"
    code, out, err = run_cli(["deploy", "k8s", "--image", image, "--name", "cnn", "--accelerator-resource",
                              resource, "--node-selector", "edgepack.io/accelerator=vitis-ai", "--dry-run"], capsys)
    assert code == 0, err
    manifests = {m["kind"]: m for m in yaml.safe_load_all(out)}
    assert set(manifests) == {"Secret", "Deployment", "Service", "HorizontalPodAutoscaler"}
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == image
    assert container["resources"] == {"limits": {resource: "1"},
                                      "requests": {resource: "1", "cpu": "250m", "memory": "256Mi"}}
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": 5001}
    assert pod["nodeSelector"] == {"edgepack.io/accelerator": "vitis-ai"}
    code, out, err = run_cli(["deploy", "k8s", "--image", image, "--name", "cnn", "--accelerator-resource",
                              "not a resource", "--dry-run"], capsys)
    assert code == 1 and "is not an extended resource name" in err
    code, out, err = run_cli(["deploy", "k8s", "--image", image, "--name", "cnn", "--accelerator-resource",
                              resource, "--cpu-request", "lots", "--dry-run"], capsys)
    assert code == 1 and "--cpu-request 'lots': not a CPU quantity" in err


def test_a_float_model_is_refused_for_an_fpga_image(edgepack_home, capsys):
    assert run_cli(["model", "register", "cnn", str(SAMPLE / "model" / "model.onnx")], capsys)[0] == 0
    code, out, err = run_cli(["plan", "--model", "cnn:1", "--target", "fpga", "--cpu-model", "cnn:1",
                              "--inference-config", str(SAMPLE / "inferenceconfig.json")], capsys)
    assert code == 1 and "the model is not quantized" in err and "edgepack fpga quantize" in err
    code, out, err = run_cli(["plan", "--model", "cnn:1", "--target", "fpga", "--inference-config",
                              str(SAMPLE / "inferenceconfig.json")], capsys)
    assert code == 1 and "no CPU fallback model" in err and "--cpu-model" in err
