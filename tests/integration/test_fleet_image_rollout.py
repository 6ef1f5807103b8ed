"""A new agent image rolled out like a model, through the CLI: two devices of the local hub run the module
image in containers (its base deployment made by ``deploy iot-edge --target-condition``), a second image is
packaged and pushed, and ``fleet rollout --image`` replaces the module device by device, in waves, while inputs
flow; each agent reports the image it runs."""

from __future__ import annotations

import json
import threading
import time
import uuid

import docker
import pytest

from edgepack.fleet.state import RolloutStore
from tests.project import make_model, make_project, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]

DEVICES, MODULE = ("img-canary", "img-main"), "edgepack-agent"


def _package(capsys, config, base_image_ref: str, tag: str) -> str:
    code, out, err = run_cli(["package", "--model", "roll:1", "--inference-config", str(config), "--target",
                              "iot-edge", "--base-image", base_image_ref, "--tag", tag, "--push"], capsys)
    assert code == 0, err
    return out.strip().splitlines()[-1]


def _reported(capsys, device: str) -> dict:
    code, out, err = run_cli(["edge", "twin", device, "--module", MODULE], capsys)
    return json.loads(out)["properties"]["reported"].get("edgepack", {}) if code == 0 else {}


def test_a_new_agent_image_replaces_the_module_in_waves(tmp_path, edgepack_home, capsys, base_image_ref,
                                                        dev_registry):
    config = make_project(tmp_path / "proj")
    assert run_cli(["model", "register", "roll", str(make_model(tmp_path / "m" / "model.onnx", seed=3))],
                   capsys)[0] == 0
    repo = f"{dev_registry}/fleet-image/{uuid.uuid4().hex[:8]}"
    first = _package(capsys, config, base_image_ref, f"{repo}:v1")
    score = tmp_path / "proj" / "src" / "score.py"
    score.write_text(score.read_text() + "\n# the agent's second release\n")  # another source layer
    second = _package(capsys, config, base_image_ref, f"{repo}:v2")
    assert first != second

    code, out, err = run_cli(["edge", "hub", "start", *[a for d in DEVICES for a in ("--device", d)],
                              "--service-port", "0"], capsys)
    assert code == 0, err
    client = docker.from_env()
    stop = threading.Event()
    try:
        for device, ring in zip(DEVICES, ("canary", "main")):
            code, out, err = run_cli(["edge", "twin", device, "--tags", json.dumps({"edgepack": {"ring": ring}})],
                                     capsys)
            assert code == 0, err
        code, out, err = run_cli(["deploy", "iot-edge", "--image", first, "--target-condition",
                                  "tags.edgepack.ring IN ['canary', 'main']", "--name", "agents-base",
                                  "--priority", "10", "--local", "--env", "EDGEPACK_REPORT_SECONDS=1"], capsys)
        assert code == 0, err + (edgepack_home / "hub" / "hub.log").read_text()[-3000:]
        deadline = time.monotonic() + 120
        while any(_reported(capsys, d).get("image") != first for d in DEVICES):
            assert time.monotonic() < deadline, [_reported(capsys, d) for d in DEVICES]
            time.sleep(1.0)

        lines = tmp_path / "in.jsonl"
        lines.write_text(json.dumps({"data": [[1.0, 2.0, 3.0, 4.0]]}) + "\n")

        def traffic() -> None:  # inputs to both devices throughout, so each new agent measures an error rate
            from tests.project import run_cli as call

            while not stop.wait(0.5):
                for device in DEVICES:
                    call(["edge", "send", "--device", device, "--module", MODULE, "--input", "input1",
                          str(lines)], capsys)

        sender = threading.Thread(target=traffic, daemon=True)
        sender.start()
        code, out, err = run_cli(["fleet", "rollout", "--image", second, "--env", "EDGEPACK_REPORT_SECONDS=1",
                                  "--name", "agent-v2", "--rings",
                                  "canary,all", "--wave", "start=1,factor=2,max=10", "--soak", "2s", "--poll",
                                  "0.5", "--gate", "error_rate<0.05", "--abort", "failed>50%,min=1",
                                  "--timeout", "4m", "--local"], capsys)
        stop.set()
        sender.join(30)
        assert code == 0, out + err
        assert f"image {second}" in out and "succeeded" in out
        state = RolloutStore(edgepack_home / "fleet").load("agent-v2")
        assert [(w["ring"], w["devices"]) for w in state["waves"]] == [("canary", ["img-canary"]),
                                                                        ("all", ["img-main"])]
        for device in DEVICES:
            report = _reported(capsys, device)
            assert report["image"] == second and report["status"] == "running"
            running = client.containers.list(filters={"label": f"edgepack.hub.device={device}"})
            assert [c.attrs["Config"]["Image"] for c in running] == [second]
    finally:
        stop.set()
        run_cli(["edge", "hub", "stop"], capsys)
        client.close()
