"""The whole edge loop on one machine, through the CLI as a user runs it: package an iot-edge module and push it,
start the local hub, deploy to a device with --local (the hub starts the module on the Docker engine), send
inputs, read what reached $upstream, call a method, update the model through the twin, stop the hub."""

from __future__ import annotations

import json
import time
import uuid

import docker
import pytest

from tests.project import expected, make_model, make_project, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]

DEVICE, MODULE = "edge-loop-1", "edgepack-agent"


def _messages(capsys) -> list[dict]:
    code, out, err = run_cli(["edge", "messages", "--device", DEVICE, "--json"], capsys)
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def _wait_messages(capsys, count: int, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _messages(capsys)
        if len(found) >= count:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{len(found)} of {count} messages reached $upstream")


def _send(tmp_path, capsys, rows) -> list[str]:
    lines = tmp_path / f"in-{uuid.uuid4().hex[:6]}.jsonl"
    lines.write_text("".join(json.dumps({"data": r}) + "\n" for r in rows))
    code, out, err = run_cli(["edge", "send", "--device", DEVICE, "--module", MODULE, "--input", "input1",
                              str(lines)], capsys)
    assert code == 0, err
    return out.split()


def test_package_hub_deploy_local_send_messages_and_a_model_update(tmp_path, edgepack_home, capsys,
                                                                  base_image_ref, dev_registry):
    config = make_project(tmp_path / "proj")
    first, second = make_model(tmp_path / "m1" / "model.onnx", seed=5), make_model(tmp_path / "m2" / "model.onnx",
                                                                                     seed=6)
    for path in (first, second):
        assert run_cli(["model", "register", "loop", str(path)], capsys)[0] == 0
    repo = f"{dev_registry}/edge-loop/{uuid.uuid4().hex[:8]}"
    code, out, err = run_cli(["package", "--model", "loop:1", "--inference-config", str(config), "--target",
                              "iot-edge", "--base-image", base_image_ref, "--tag", f"{repo}:v1", "--push"], capsys)
    assert code == 0, err
    image = out.strip().splitlines()[-1]
    assert "@sha256:" in image
    code, out, err = run_cli(["model", "push", "loop:2", "--to", f"{repo}-model:2", "--json"], capsys)
    assert code == 0, err
    model_ref = json.loads(out)["ref"]

    code, out, err = run_cli(["deploy", "iot-edge", "--image", image, "--device", DEVICE, "--local"], capsys)
    assert code == 1 and "no local hub is running" in err and "edge hub start" in err

    code, out, err = run_cli(["edge", "hub", "start", "--device", DEVICE, "--service-port", "0", "--json"], capsys)
    assert code == 0, err
    client = docker.from_env()
    try:
        assert json.loads(out)["devicePort"] == 8883
        code, out, err = run_cli(["deploy", "iot-edge", "--image", image, "--device", DEVICE, "--local",
                                  "--env", "EDGEPACK_REPORT_SECONDS=1"], capsys)
        assert code == 0, err + (edgepack_home / "hub" / "hub.log").read_text()[-3000:]
        assert f"applied on device {DEVICE}" in out and "running" in err
        containers = client.containers.list(filters={"label": f"edgepack.hub.device={DEVICE}"})
        assert [c.labels["edgepack.hub.module"] for c in containers] == [MODULE]

        rows = [[[float(i), 0.5, -1.0, 2.0]] for i in range(5)]
        ids = _send(tmp_path, capsys, rows)
        assert len(ids) == 5
        got = {m["correlation_id"]: m for m in _wait_messages(capsys, 5)}
        assert set(got) == set(ids)
        for mid, r in zip(ids, rows):
            assert got[mid]["body"]["result"][0] == pytest.approx(expected(first, r)[0], rel=1e-5)
            assert got[mid]["properties"]["modelVersion"] == "1"

        code, out, err = run_cli(["edge", "method", DEVICE, MODULE, "ping"], capsys)
        assert code == 0, err
        assert json.loads(out)["status"] == 200

        digest = model_ref.split("@", 1)[1]
        code, out, err = run_cli(["edge", "twin", DEVICE, "--module", MODULE, "--desired",
                                  json.dumps({"model": {"version": 2, "digest": digest, "uri": model_ref}})], capsys)
        assert code == 0, err
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            code, out, err = run_cli(["edge", "twin", DEVICE, "--module", MODULE], capsys)
            model = json.loads(out)["properties"]["reported"].get("edgepack", {}).get("model", {})
            if model.get("version") == 2 and model.get("status") == "serving":
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"the model update was not served: {model}")
        ids = _send(tmp_path, capsys, rows[:2])
        got = {m["correlation_id"]: m for m in _wait_messages(capsys, 7)}
        assert got[ids[1]]["body"]["result"][0] == pytest.approx(expected(second, rows[1])[0], rel=1e-5)
        assert got[ids[1]]["properties"]["modelVersion"] == "2"
        assert [c.id for c in client.containers.list(filters={"label": f"edgepack.hub.device={DEVICE}"})] == \
            [containers[0].id], "a model update restarted the module"

        code, out, err = run_cli(["edge", "method", DEVICE, MODULE, "nope"], capsys)
        assert code == 1 and json.loads(out)["status"] != 200
        code, out, err = run_cli(["edge", "twin", "no-such-device"], capsys)
        assert code == 1 and "no-such-device" in err and "hint:" in err
    finally:
        code, out, err = run_cli(["edge", "hub", "stop"], capsys)
        assert code == 0 and "stopped" in out
        left = client.containers.list(all=True, filters={"label": f"edgepack.hub.device={DEVICE}"})
        client.close()
    assert left == [], "the hub left its module containers behind"
