"""How a rollout scales with the fleet, in one run: 100, 300 and 1,000 devices on the local hub.

    python3 benchmarks/fleet/run.py [--agents 100,300,1000]   # after bash scripts/setup.sh; several minutes

Two kinds of devices. Real agents (``edgepack fleet simulate``'s: device_agents on the real device SDK, 25 to a
process, each downloading the model from the local registry, loading, probing and swapping it, with about
100 inputs a second across the fleet): the sizes of ``--agents``. And devices simulated at the twin level
(tests/fleet/simulated.py: each writes the model its desired properties name straight into the hub's state, no
MQTT), which measure the controller and the hub's service API alone, at every size. Waves start=5, factor=2,
max=500, soak 0, gate error_rate<0.05, a look at the hub every 0.5 s, through the real azure-iot-hub clients.
Measured: wall time from start to every device healthy, the controller thread's CPU time (its HTTP client
included), the hub requests it sent per device, and for agents their processes' CPU and memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edgepack.devtools.iothub.hub import LocalHub  # noqa: E402
from edgepack.fleet import runner  # noqa: E402
from edgepack.fleet.hub import HubClient  # noqa: E402
from edgepack.fleet.spec import AbortPolicy, WavePolicy, parse_gate  # noqa: E402
from edgepack.fleet.state import RolloutStore  # noqa: E402
from tests.fleet.simulated import AGENT, V2, Fleet  # noqa: E402

REGISTRY = "127.0.0.1:5000"



def _request(model: dict) -> runner.RolloutRequest:
    return runner.RolloutRequest(name="bench", model=model, module=AGENT, rings=("canary", "all"),
                                 target_condition=None, wave=WavePolicy(5, 2, 500),
                                 gate=parse_gate("error_rate<0.05", shadow=False), soak_s=0.0,
                                 abort=AbortPolicy(0.1, 20), timeout_s=3600)


def _control(client: HubClient, store: RolloutStore, request: runner.RolloutRequest) -> dict:
    """The rollout in a thread of its own (its CPU time is the controller's)."""
    result: dict = {}

    def control() -> None:
        started = time.perf_counter()
        cpu = time.thread_time()
        store.create("bench", runner.plan(client, store, request, time.time()))
        state = runner.run(client, store, "bench", poll_s=0.5)
        result.update(seconds=time.perf_counter() - started, cpu=time.thread_time() - cpu,
                      phase=state["phase"], waves=len(state["waves"]), requests=state["requests"])

    thread = threading.Thread(target=control)
    thread.start()
    thread.join()
    return result


def _tree_usage(pids: list[int]) -> tuple[float, int]:
    """CPU seconds and RSS bytes of processes."""
    from edgepack.profiling.procs import cpu_seconds, rss_bytes

    return sum(cpu_seconds(p) for p in pids), sum(rss_bytes(p) for p in pids)


def agents(size: int, folder: Path) -> dict:
    """A rollout to ``size`` real agents."""
    from edgepack import api
    from edgepack.devtools.fleetsim.simulator import SimSpec
    from edgepack.devtools.iothub import control
    from edgepack.devtools.iothub.hub import free_port
    from edgepack.devtools.projects import make_model, make_project
    from edgepack.home import Home

    home = Home(folder / "home")
    config = make_project(folder / "project")
    for seed in (11, 22):
        api.register_model(home, "linear", make_model(folder / f"m{seed}" / "model.onnx", seed=seed))
    ref = str(api.push_model(home, "linear:2", f"{REGISTRY}/bench/fleet-{os.getpid()}").ref)
    control.start(home.hub, device_port=8883, service_port=free_port(), modules=False)
    simulation = None
    try:
        spec = SimSpec(devices=size, rings=(("canary", 5 / size),), rate=0.5, report_s=2.0)
        simulation = api.fleet_simulation(home, model_ref="linear:1", config_path=config, spec=spec)
        endpoints = control.endpoints(home.hub)
        client = HubClient(endpoints.service_connection_string, ca_file=endpoints.ca_file)
        up = time.perf_counter()
        while sum(1 for r in client.module_reports(AGENT).values() if r.connected
                  and r.reported.get("status") == "running") < size:
            if time.perf_counter() - up > 900:
                raise SystemExit(f"{size} agents did not all come up in 15 min")
            time.sleep(2.0)
        startup = time.perf_counter() - up
        stop = threading.Event()

        def traffic() -> None:  # an input to every device each round, about 100 a second in all
            while not stop.wait(max(2.0, size / 100)):
                simulation.send()

        sender = threading.Thread(target=traffic, daemon=True)
        sender.start()
        pids = [p.pid for p in simulation.processes]
        cpu_before, _ = _tree_usage(pids)
        result = _control(client, RolloutStore(folder / "fleet"), _request(api.fleet_model(ref)))
        cpu_after, rss = _tree_usage(pids)
        stop.set()
        sender.join()
        simulation.drain(60)
        tally = simulation.snapshot()
        return {"devices": size, **result, "per_device": result["requests"] / size, "startup": startup,
                "agent_cpu": cpu_after - cpu_before, "agent_rss_mib": rss / 2**20, "missing": tally["missing"],
                "sent": tally["sent"]}
    finally:
        if simulation is not None:
            simulation.stop(grace=10)
        control.stop(home.hub)


def one(size: int, folder: Path) -> dict:
    hub = LocalHub(folder / "hub", device_port=0, service_port=0).start()
    fleet = Fleet(hub, size, canary=5, interval=0.25)
    try:
        client = HubClient(hub.service.connection_string, ca_file=str(hub.certs.ca))
        result = _control(client, RolloutStore(folder / "fleet"), _request(V2))
        return {"devices": size, **result, "per_device": result["requests"] / size}
    finally:
        fleet.stop()
        hub.stop()


def chart(rows: list[dict], real: list[dict], path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "matplotlib"], check=True)
        import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    sizes = sorted({r["devices"] for r in rows + real})
    for ax, key, title in zip(axes, ("seconds", "cpu", "per_device"),
                              ("time to converge (s)", "controller CPU (s)", "hub requests per device")):
        for series, label in ((real, "real agents"), (rows, "twin-level devices")):
            if series:
                ax.plot([r["devices"] for r in series], [r[key] for r in series], marker="o", label=label)
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("fleet rollout (waves 5, 10, 20, ... max 500; soak 0)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _runs(kind: str, sizes: list[int], run) -> list[dict]:
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="edgepack-fleet-bench-") as tmp:
            row = run(size, Path(tmp))
        assert row["phase"] == "succeeded", row
        rows.append(row)
        extra = (f"; up in {row['startup']:.1f} s, agents {row['agent_cpu']:.1f} s CPU, {row['agent_rss_mib']:.0f} "
                 f"MiB, {row['missing']} of {row['sent']} inputs without a result" if "startup" in row else "")
        print(f"{size} {kind}: {row['waves']} waves, converged in {row['seconds']:.1f} s, controller CPU "
              f"{row['cpu']:.2f} s, {row['requests']} hub requests ({row['per_device']:.2f} per device){extra}",
              flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", default="100,300,1000", help="fleet sizes with real agents ('' for none)")
    parser.add_argument("--twins", default="100,300,1000", help="fleet sizes with twin-level devices")
    args = parser.parse_args()
    real = _runs("real agents", [int(s) for s in args.agents.split(",") if s], agents)
    rows = _runs("twin-level devices", [int(s) for s in args.twins.split(",") if s], one)
    print("\n| devices | kind | waves | time to converge | controller CPU | hub requests | per device |")
    print("|---|---|---|---|---|---|---|")
    for kind, series in (("real agents", real), ("twin-level", rows)):
        for r in series:
            print(f"| {r['devices']:,} | {kind} | {r['waves']} | {r['seconds']:.1f} s | {r['cpu']:.2f} s "
                  f"| {r['requests']:,} | {r['per_device']:.2f} |")
    for r in real:
        print(f"agents {r['devices']}: " + json.dumps({k: round(v, 2) if isinstance(v, float) else v
                                                      for k, v in r.items()}))
    chart(rows, real, Path(__file__).with_name("fleet.png"))


if __name__ == "__main__":
    main()
