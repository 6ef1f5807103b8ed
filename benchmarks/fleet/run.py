"""How a rollout's controller scales with the fleet, in one run: 100, 300 and 1,000 devices on the local hub.

    python3 benchmarks/fleet/run.py        # after bash scripts/setup.sh; a few minutes

The devices are simulated at the twin level (tests/fleet/simulated.py: each reports the model its desired
properties name, written straight into the hub's state, no MQTT), so this measures the controller and the hub's
service API through the real azure-iot-hub clients, not agents. Waves start=5, factor=2, max=500, soak 0, a look
at the hub every 0.5 s. Measured: wall time from start to every device healthy, the controller thread's CPU time
(its HTTP client included), and the hub requests it sent per device.
"""

from __future__ import annotations

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

SIZES = (100, 300, 1000)


def one(size: int, folder: Path) -> dict:
    hub = LocalHub(folder / "hub", device_port=0, service_port=0).start()
    fleet = Fleet(hub, size, canary=5, interval=0.25)
    try:
        client = HubClient(hub.service.connection_string, ca_file=str(hub.certs.ca))
        store = RolloutStore(folder / "fleet")
        request = runner.RolloutRequest(name="bench", model=V2, module=AGENT, rings=("canary", "all"),
                                        target_condition=None, wave=WavePolicy(5, 2, 500),
                                        gate=parse_gate("error_rate<0.05", shadow=False), soak_s=0.0,
                                        abort=AbortPolicy(0.1, 20), timeout_s=3600)
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
        return {"devices": size, **result, "per_device": result["requests"] / size}
    finally:
        fleet.stop()
        hub.stop()


def chart(rows: list[dict], path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "matplotlib"], check=True)
        import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    sizes = [r["devices"] for r in rows]
    for ax, key, title in zip(axes, ("seconds", "cpu", "per_device"),
                              ("time to converge (s)", "controller CPU (s)", "hub requests per device")):
        ax.plot(sizes, [r[key] for r in rows], marker="o")
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_title(title)
        ax.grid(alpha=0.3)
    fig.suptitle("fleet rollout, twin-level simulated devices (waves 5, 10, 20, ... max 500; soak 0)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    rows = []
    for size in SIZES:
        with tempfile.TemporaryDirectory(prefix="edgepack-fleet-bench-") as tmp:
            row = one(size, Path(tmp))
        assert row["phase"] == "succeeded", row
        rows.append(row)
        print(f"{size} devices: {row['waves']} waves, converged in {row['seconds']:.1f} s, controller CPU "
              f"{row['cpu']:.2f} s, {row['requests']} hub requests ({row['per_device']:.2f} per device)",
              flush=True)
    print("\n| devices | waves | time to converge | controller CPU | hub requests | per device |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['devices']:,} | {r['waves']} | {r['seconds']:.1f} s | {r['cpu']:.2f} s | {r['requests']:,} "
              f"| {r['per_device']:.2f} |")
    chart(rows, Path(__file__).with_name("fleet.png"))


if __name__ == "__main__":
    main()
