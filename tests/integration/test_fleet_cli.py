"""``edgepack fleet`` from the CLI: a model pushed to the real registry rolled out on the local hub (in this
process, found through its endpoints file as ``--local`` finds a daemon), with twin-level simulated devices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgepack.devtools.iothub.hub import LocalHub
from tests.fleet.simulated import V1, Fleet
from tests.project import run_cli

pytestmark = pytest.mark.integration
MODEL = Path(__file__).resolve().parents[2] / "samples" / "digits-cnn" / "model" / "model.onnx"
FAST = ["--wave", "start=2,factor=2,max=8", "--soak", "0", "--poll", "0.05", "--gate", "error_rate<0.05",
        "--abort", "failed>10%,min=2", "--local"]


@pytest.fixture
def hub(edgepack_home):
    local = LocalHub(edgepack_home / "hub", device_port=0, service_port=0).start()
    local.write_endpoints()
    yield local
    local.stop()


def _pushed(capsys, dev_registry: str) -> str:
    assert run_cli(["model", "register", "cnn", str(MODEL)], capsys)[0] == 0
    code, out, err = run_cli(["model", "push", "cnn:1", "--to", f"{dev_registry}/tests/fleet-cnn"], capsys)
    assert code == 0, err
    return out.strip().splitlines()[-1]


def test_rollout_status_and_refusals(hub, dev_registry, capsys):
    ref = _pushed(capsys, dev_registry)
    fleet = Fleet(hub, 12, canary=2)
    try:
        code, out, err = run_cli(["fleet", "rollout", "--model", ref, "--name", "cnn-v1", "--rings", "canary,all",
                                  "--dry-run", *FAST], capsys)
        assert code == 0, err
        assert "wave  1 canary       2 devices" in out and "cnn-v1: running" in out
        assert "edgepack-rollout-cnn-v1" not in hub.state.configurations
        code, out, err = run_cli(["fleet", "rollout", "--model", ref, "--name", "cnn-v1", "--rings", "canary,all",
                                  *FAST], capsys)
        assert code == 0, out + err
        assert "cnn-v1: succeeded" in out and "wave 1 (canary): promoted" in err
        digest = ref.split("@", 1)[1]
        assert all(fleet.desired(d)["digest"] == digest for d in fleet.devices)
        assert fleet.desired(fleet.devices[0])["uri"] == ref
        code, out, err = run_cli(["fleet", "status", "cnn-v1", "--json"], capsys)
        state = json.loads(out)
        assert state["phase"] == "succeeded" and all(w["status"] == "promoted" for w in state["waves"])
        before = json.dumps(hub.state.configurations, sort_keys=True)
        refusals = [
            (["--model", ref.split("@")[0] + ":1", "--name", "x"], "digest"),
            (["--model", ref, "--name", "x", "--gate", "error_rate<0.05,p99<3"], "at character 17: expected one of"),
            (["--model", ref, "--name", "x", "--wave", "start=two"], "at character 7: expected a whole number"),
            (["--model", ref, "--name", "x", "--rings", "nowhere"], "matches no IoT Edge device"),
            (["--model", ref, "--name", "cnn-v1"], "the name is in use"),
            (["--model", ref, "--name", "Bad_Name"], "not a valid name"),
        ]
        for args, text in refusals:
            code, out, err = run_cli(["fleet", "rollout", *FAST, *args], capsys)
            assert code == 1 and text in err and "hint:" in err and "Traceback" not in err, (args, err)
        assert json.dumps(hub.state.configurations, sort_keys=True) == before  # nothing sent
        code, out, err = run_cli(["fleet", "abort", "cnn-v1"], capsys)  # no controller runs it, no hub named
        assert code == 1 and "no controller is running it" in err and "--local" in err
        code, out, err = run_cli(["fleet", "abort", "cnn-v1", "--local"], capsys)
        assert code == 0 and "rolled back" in out, err
        assert fleet.wait_all(V1)  # the base's model, not the one rolled out
        assert "edgepack-rollout-cnn-v1" not in hub.state.configurations
    finally:
        fleet.stop()
