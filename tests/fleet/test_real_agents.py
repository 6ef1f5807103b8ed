"""Rollouts to 200 real agents: ``edgepack fleet simulate``'s fleet (``device_agents`` on the real device SDK,
25 per process) on the local hub, models fetched from the real registry, inputs flowing throughout, the
controller run as the CLI (and killed). The tests run in order on one fleet; each names the models it expects.

Agents connect to 127.0.0.1:8883, the port the device SDK always uses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgepack import api
from edgepack.devtools.fleetsim.simulator import MODULE, SimSpec
from edgepack.devtools.iothub import control
from edgepack.devtools.iothub.hub import free_port
from edgepack.devtools.projects import SCORE_PY, expected, make_model
from edgepack.fleet.hub import HubClient
from edgepack.fleet.state import RolloutStore
from edgepack.home import Home

pytestmark = [
    pytest.mark.integration,
    # the local hub runs on in the background (its Popen object is let go while the process runs)
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

DEVICES = 200
ROWS = [[0.5, -0.5, 0.25, 1.0]]
BODY = json.dumps({"data": ROWS}).encode()
WAVES = ["--rings", "canary,ring1,all", "--wave", "start=10,factor=3,max=100", "--soak", "2s", "--poll", "0.5",
         "--abort", "failed>10%,min=5", "--timeout", "4m", "--local"]


class Fleet:
    """The simulation, the controller's home and the pushed models (version -> REF@DIGEST)."""

    def __init__(self, home: Home, simulation, refs: dict[int, str], digests: dict[int, str]) -> None:
        self.home, self.sim, self.refs, self.digests = home, simulation, refs, digests
        endpoints = control.endpoints(home.hub)
        self.hub = HubClient(endpoints.service_connection_string, ca_file=endpoints.ca_file)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._traffic = threading.Thread(target=self._send, daemon=True)
        self._traffic.start()

    def _send(self) -> None:
        while not self._stop.wait(2.0):
            with self._lock:
                self.sim.send()
                self.sim.collect()

    def tally(self) -> dict:
        with self._lock:
            self.sim.collect()
            return self.sim.tally.summary(self.sim.away())

    def served(self, version: int) -> set[str]:
        with self._lock:
            self.sim.collect()
            return set(self.sim.tally.served.get(str(version), set()))

    def reports(self) -> dict:
        return self.hub.module_reports(MODULE)

    def wait_serving(self, version: int, devices: set[str], timeout: float = 120.0) -> set[str]:
        """Wait until each of ``devices`` reports serving ``version``'s digest; the ones that do not."""
        deadline = time.monotonic() + timeout
        while True:
            reports = self.reports()
            behind = {d for d in devices if (reports[d].reported.get("model") or {}).get("digest") !=
                      self.digests[version]}
            if not behind or time.monotonic() > deadline:
                return behind
            time.sleep(1.0)

    def cli(self, *args: str) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
        env["EDGEPACK_HOME"] = str(self.home.root)
        return subprocess.Popen([sys.executable, "-m", "edgepack.cli", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)

    def state(self, name: str) -> dict:
        return RolloutStore(self.home.root / "fleet").load(name)

    def stop(self) -> None:
        self._stop.set()
        self._traffic.join(10)


def _disagreeing_seed(v2: Path, tmp: Path) -> Path:
    """A model whose decision on ROWS differs from v2's."""
    mine = int(np.argmax(expected(v2, ROWS)[0]))
    for seed in range(100, 200):
        path = make_model(tmp / f"seed{seed}" / "model.onnx", seed=seed)
        if int(np.argmax(expected(path, ROWS)[0])) != mine:
            return path
    raise AssertionError("no disagreeing seed")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, dev_registry):
    root = tmp_path_factory.mktemp("fleet-real")
    home = Home(root / "home")
    src = root / "project" / "src"
    src.mkdir(parents=True)
    (src / "score.py").write_text(SCORE_PY)
    # No input sample: a new model is probed with zeros of its own input shape, so a model that takes 5 features
    # passes its probe and fails on the real inputs (4 features).
    config = root / "project" / "inferenceconfig.json"
    config.write_text(json.dumps({"entryScript": "score.py", "sourceDirectory": "src", "runtime": "python"}))
    paths = {1: make_model(root / "m1" / "model.onnx", seed=11), 2: make_model(root / "m2" / "model.onnx", seed=22),
             3: make_model(root / "m3" / "model.onnx", seed=33, features=5)}
    paths[4] = _disagreeing_seed(paths[2], root)
    for version, path in sorted(paths.items()):
        assert api.register_model(home, "linear", path).version == version
    repo = f"{dev_registry}/tests/fleet-real-{os.getpid()}"
    refs = {v: str(api.push_model(home, f"linear:{v}", repo).ref) for v in (2, 3, 4)}
    digests = {v: ref.split("@", 1)[1] for v, ref in refs.items()}
    control.start(home.hub, device_port=8883, service_port=free_port(), modules=False)
    spec = SimSpec(devices=DEVICES, offline_rate=0.10, offline_s=170, rate=0.5, per_process=25, report_s=2.0)
    simulation = api.fleet_simulation(home, model_ref="linear:1", config_path=config, spec=spec, body=BODY)
    running = Fleet(home, simulation, refs, digests)
    try:
        deadline = time.monotonic() + 180
        online = set(simulation.devices) - simulation.offline
        while time.monotonic() < deadline:
            reports = running.reports()
            if all(reports.get(d) and reports[d].connected and reports[d].reported.get("status") == "running"
                   for d in online):
                break
            time.sleep(1.0)
        else:
            pytest.fail("the agents did not all come up")
        yield running
    finally:
        running.stop()
        simulation.stop(grace=5)
        control.stop(home.hub)


def test_a_healthy_model_reaches_every_device_through_a_killed_controller_and_no_input_is_lost(fleet):
    name = "linear-v2"
    args = ["fleet", "rollout", "--model", fleet.refs[2], "--name", name, *WAVES]
    first = fleet.cli(*args)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill -9 once the third wave is on its way
        try:
            if any(w["status"] != "waiting" for w in fleet.state(name)["waves"][2:]):
                break
        except Exception:  # not recorded yet
            pass
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.communicate()  # reaps it and closes its pipes
    killed_at = fleet.state(name)
    assert killed_at["phase"] == "running"
    second = fleet.cli(*args)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err[-2000:]
    assert "resuming rollout" in err
    state = fleet.state(name)
    assert state["phase"] == "succeeded", state["reason"]
    waves = state["waves"]
    assert [w["ring"] for w in waves][:2] == ["canary", "ring1"] and waves[-1]["ring"] == "all"
    assert sum(len(w["devices"]) for w in waves) == DEVICES
    assert state["steps"] == 1 + len(waves)  # the layer, then one tagging per wave: nothing doubled by the kill
    away = fleet.sim.away()
    assert away == fleet.sim.offline  # still offline: the assertions below are about devices that are away
    online = set(fleet.sim.devices) - away
    assert fleet.wait_serving(2, online) == set()
    assert {state["devices"][d]["state"] for d in away} == {"offline"}  # pending, never counted healthy
    assert {state["devices"][d]["state"] for d in online} == {"healthy"}
    fleet.sim.drain(60)
    tally = fleet.tally()
    assert tally["missing"] == 0 and tally["errors"] == 0, tally
    assert fleet.served(2) >= online  # every online device answered with the new model


def test_a_model_that_errors_on_real_inputs_stops_at_the_first_wave_and_is_rolled_back(fleet):
    name = "linear-v3"
    before = fleet.tally()["errors"]
    process = fleet.cli("fleet", "rollout", "--model", fleet.refs[3], "--name", name, *WAVES)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 3, err[-2000:]
    state = fleet.state(name)
    assert state["phase"] == "aborted" and state["reason"].startswith("wave 1:"), state["reason"]
    assert "error_rate" in state["reason"]
    first = set(state["waves"][0]["devices"])
    assert [w["status"] for w in state["waves"]][1:] == ["waiting"] * (len(state["waves"]) - 1)
    deadline = time.monotonic() + 60  # the results scored before the abort are still on their way up
    while not fleet.served(3) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert fleet.served(3) and fleet.served(3) <= first  # later waves never saw it
    online = first - fleet.sim.away()
    assert fleet.wait_serving(2, online) == set()  # rolled back to the model that served before
    status = fleet.cli("fleet", "status", name)
    shown, _ = status.communicate(timeout=60)
    assert "aborted" in shown and "why: wave 1:" in shown and "error_rate" in shown
    assert "simulated" not in shown  # the errors are the model's own, on real inputs
    assert fleet.tally()["errors"] > before


def test_a_model_that_answers_differently_in_the_shadow_never_serves(fleet):
    name = "linear-v4"
    process = fleet.cli("fleet", "rollout", "--model", fleet.refs[4], "--name", name, *WAVES, "--shadow", "3s",
                        "--gate", "error_rate<0.01,agreement>0.98")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 3, err[-2000:]
    state = fleet.state(name)
    assert state["phase"] == "aborted" and "agreement" in state["reason"], state["reason"]
    assert fleet.served(4) == set()  # not one result came from it
    online = set(fleet.sim.devices) - fleet.sim.away()
    assert fleet.wait_serving(2, online) == set()
    deadline = time.monotonic() + 60
    while any((r.reported.get("shadow") or {}).get("digest") for d, r in fleet.reports().items() if d in online):
        assert time.monotonic() < deadline, "a shadow outlived its rollout"  # the abort ended every shadow
        time.sleep(1.0)


def test_devices_that_were_offline_get_the_model_when_they_come_back(fleet):
    remaining = fleet.sim.spec.offline_s - (time.time() - fleet.sim.started)
    time.sleep(max(0.0, remaining))
    assert fleet.sim.away() == set()
    assert fleet.wait_serving(2, fleet.sim.offline, timeout=180) == set()
    fleet.sim.drain(90)
    tally = fleet.tally()
    assert tally["missing"] == 0 and tally["waitingForOfflineDevices"] == 0, tally
    assert fleet.served(2) >= fleet.sim.offline  # their waiting inputs were answered after they came back
