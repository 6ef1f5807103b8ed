"""Edge benchmark: the IoT Edge agent against its limit, the same ``run()`` called in a loop, in one run.

Run on demand (never in the test suite), after `bash scripts/setup.sh`:

    python3 benchmarks/edge/run.py [--messages 5000] [--model-mib 40] [--rate 200] [--chart PATH]

- Limit: the entry script (edgepack's sample linear model and score.py) loaded in this process, ``run()`` called
  on the same JSON bodies in a loop: messages/s and CPU per message.
- Agent: ``python -m device_agents`` as its own process with the real device SDK, connected to the local hub
  (gateway on 127.0.0.1:8883, mosquitto, the responder) on this machine; the messages are published to its input
  at once and the clock runs until the last result reached ``$upstream``. CPU per message is the agent
  process's own (utime + stime from /proc), RSS its peak (VmHWM). The hub runs on the same two cores.
- Swap: under a steady load of ``--rate`` messages/s, the twin names a ``--model-mib`` MiB model (random
  weights, incompressible) pushed with ``edgepack model push``; reported download and swap seconds, and
  whether any message failed or went missing.
- Bytes per update: what the agent reports it fetched, against the compressed model artifact in the registry.
- Module image size: the ``iot-edge`` image packaged from the same project, compressed layers + config.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from edgepack.devtools.iothub.hub import LocalHub
from edgepack.devtools.iothub.linkproxy import LinkProxy
from edgepack.devtools.projects import SCORE_PY, make_model, make_project
from edgepack.runtime.settings import RuntimeConfig

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = "127.0.0.1:5000"
BASE = f"{REGISTRY}/edgepack/python:3.11-bookworm"
DEVICE, MODULE = "bench-edge", "edgepack-agent"
TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _bodies(count: int) -> list[str]:
    rng = random.Random(7)
    return [json.dumps({"data": [[rng.uniform(-1, 1) for _ in range(4)]]}) for _ in range(count)]


def _edgepack(home: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "edgepack.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "EDGEPACK_HOME": str(home)})
    if proc.returncode != 0:
        raise SystemExit(f"edgepack {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout.strip()


def limit(work: Path, bodies: list[str]) -> dict[str, float]:
    """``run()`` in a loop, in this process."""
    import importlib.util

    os.environ["AZUREML_MODEL_DIR"] = str(work / "model")
    spec = importlib.util.spec_from_file_location("bench_score", work / "src" / "score.py")
    assert spec and spec.loader
    score = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(score)
    score.init()
    for body in bodies[:200]:
        score.run(body)
    wall, cpu = time.perf_counter(), time.process_time()
    for body in bodies:
        score.run(body)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"msgs_per_s": len(bodies) / wall, "cpu_us_per_msg": cpu / len(bodies) * 1e6}


def _runtime_json(work: Path) -> Path:
    config = RuntimeConfig(entry_script=str(work / "src" / "score.py"), source_dir=str(work / "src"),
                           model_dir=str(work / "model"), model={"name": "bench", "version": 1, "sha256": "0" * 64},
                           target="iot-edge")
    data = json.loads(config.to_json())
    data.update(model_dir=config.model_dir, model=config.model)
    path = work / "runtime.json"
    path.write_text(json.dumps(data))
    return path


def _model_state(view) -> dict:
    return view.reported.get("edgepack", {}).get("model", {})


def agent_run(work: Path, hub: LocalHub, bodies: list[str], model_ref: str, rate: int) -> dict[str, float]:
    view = hub.responder.identity(DEVICE, MODULE)
    env = {**os.environ, "EDGEPACK_RUNTIME_CONFIG": str(_runtime_json(work)),
           "EDGEPACK_IOTHUB_CONNECTION_STRING": hub.state.connection_string(DEVICE, MODULE),
           "EDGEPACK_IOTHUB_CA_FILE": str(hub.certs.ca), "EDGEPACK_STATE_DIR": str(work / "state"),
           "EDGEPACK_REPORT_SECONDS": "1", "PYTHONPATH": str(ROOT)}
    agent = subprocess.Popen([sys.executable, "-m", "device_agents"], env=env, stderr=open(work / "agent.log", "w"))
    try:
        if not view.wait_for(lambda v: v.reported.get("edgepack", {}).get("status") == "running", 60):
            raise SystemExit(f"the agent did not start; see {work / 'agent.log'}")
        for body in bodies[:200]:  # warm up
            view.send_input("input1", body)
        upstream = hub.responder.messages  # every result (one device here); the view's filtered list is slower
        view.wait_for(lambda v: len(upstream) >= 200, 60)
        broker = hub.broker.process.pid if hub.broker.process else os.getpid()
        cpu0, start = _cpu_seconds(agent.pid), time.perf_counter()
        hub0, broker0 = time.process_time(), _cpu_seconds(broker)
        for body in bodies:
            view.send_input("input1", body)
        if not view.wait_for(lambda v: len(upstream) >= 200 + len(bodies), 600):
            raise SystemExit(f"only {len(upstream) - 200} of {len(bodies)} results arrived")
        wall, cpu = time.perf_counter() - start, _cpu_seconds(agent.pid) - cpu0
        hub_cpu, broker_cpu = time.process_time() - hub0, _cpu_seconds(broker) - broker0
        result = {"msgs_per_s": len(bodies) / wall, "cpu_us_per_msg": cpu / len(bodies) * 1e6,
                  "hub_us_per_msg": hub_cpu / len(bodies) * 1e6, "broker_us_per_msg": broker_cpu / len(bodies) * 1e6,
                  "busy_cores": (cpu + hub_cpu + broker_cpu) / wall}

        # the swap, under a steady load
        stop, sent = threading.Event(), []

        def load() -> None:
            rng = random.Random(3)
            while not stop.is_set():
                sent.append(view.send_input("input1", json.dumps({"data": [[rng.uniform(-1, 1)] * 4]})))
                time.sleep(1 / rate)
        before = len(upstream)
        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        time.sleep(3)
        digest = model_ref.split("@", 1)[1]
        view.patch_desired({"model": {"version": 2, "digest": digest, "uri": model_ref}})
        if not view.wait_for(lambda v: _model_state(v).get("version") == 2 and _model_state(v).get("status")
                             == "serving", 300):
            raise SystemExit(f"the swap did not finish: {_model_state(view)}")
        time.sleep(3)
        stop.set()
        loader.join()
        view.wait_for(lambda v: len(upstream) - before >= len(sent), 120)
        view.wait_for(lambda v: {m.correlation_id for m in upstream[before:]} >= set(sent), 30)
        after = upstream[before:]
        got = {m.correlation_id for m in after}
        state = _model_state(view)
        result.update(swap_s=state.get("swapSeconds", 0.0), download_s=state.get("downloadSeconds", 0.0),
                      load_msgs=len(sent), load_missing=len(set(sent) - got),
                      load_failed=sum(m.properties.get("status") != "200" for m in after),
                      versions=sorted({m.properties.get("modelVersion") for m in after}),
                      bytes_fetched=state.get("bytesFetched", 0), rss_mib=_peak_rss_mib(agent.pid))
        return result
    finally:
        agent.terminate()
        agent.wait(30)


def _artifact_bytes(ref: str) -> int:
    repo, digest = ref.split("/", 1)[1].split("@")
    manifest = httpx.get(f"http://{REGISTRY}/v2/{repo}/manifests/{digest}",
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).json()
    return sum(layer["size"] for layer in manifest["layers"])


def _image_bytes(layout: Path) -> int:
    def blob(digest: str) -> dict:
        return json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_text())
    top = json.loads((layout / "index.json").read_text())["manifests"][0]
    manifest = blob(top["digest"])
    if "manifests" in manifest:
        manifest = blob(manifest["manifests"][0]["digest"])
    return manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])


def chart(base: dict, agent: dict, artifact: int, image_mib: float, path: Path) -> None:
    """Four panels: messages/s, CPU per message, swap seconds, bytes per update and image size."""
    try:
        import matplotlib
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "matplotlib"], check=True)
        import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 4))

    def bars(ax, labels, values, title, unit, colors, log=False, fmt="{:,.0f}"):
        ax.bar(range(len(values)), values, color=colors)
        ax.set_xticks(range(len(values)), labels, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit)
        if log:
            ax.set_yscale("log")
        for i, v in enumerate(values):
            ax.text(i, v, fmt.format(v), ha="center", va="bottom", fontsize=8)

    blue, grey, red = "#1f77b4", "#9e9e9e", "#d62728"
    bars(axes[0], ["agent", "run() loop"], [agent["msgs_per_s"], base["msgs_per_s"]], "messages/s", "per second (log)",
         [blue, grey], log=True)
    bars(axes[1], ["agent", "hub", "mosquitto", "run() loop"],
         [agent["cpu_us_per_msg"], agent["hub_us_per_msg"], agent["broker_us_per_msg"], base["cpu_us_per_msg"]],
         "CPU per message", "µs (log)", [blue, grey, grey, grey], log=True)
    bars(axes[2], ["download", "swap"], [agent["download_s"], agent["swap_s"]],
         f"40 MiB model update under load\n{agent['load_failed']} failed, {agent['load_missing']} missing",
         "seconds", [grey, blue], fmt="{:.3f}")
    bars(axes[3], ["fetched", "artifact", "module image", "goal"],
         [agent["bytes_fetched"] / 2**20, artifact / 2**20, image_mib, 200 / 1.048576],
         "MiB per model update; image size", "MiB", [blue, grey, blue, red], fmt="{:.1f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--model-mib", type=int, default=40)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--chart", type=Path, default=ROOT / "benchmarks" / "edge" / "edge.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgepack-bench-edge-") as tmp:
        work = Path(tmp)
        home = work / "home"
        (work / "src").mkdir()
        (work / "src" / "score.py").write_text(SCORE_PY)
        make_model(work / "model" / "model.onnx", seed=1)
        big = make_model(work / "big" / "model.onnx", seed=2, padding=args.model_mib << 20)
        bodies = _bodies(args.messages)
        base = limit(work, bodies)

        _edgepack(home, "model", "register", "bench", str(work / "model" / "model.onnx"))
        _edgepack(home, "model", "register", "bench", str(big))
        model_ref = json.loads(_edgepack(home, "model", "push", "bench:2", "--to",
                                         f"{REGISTRY}/bench-edge/model-{os.getpid()}:2", "--json"))["ref"]
        config = make_project(work / "proj")
        _edgepack(home, "package", "--model", "bench:1", "--inference-config", str(config), "--target", "iot-edge",
                  "--base-image", BASE, "--output", str(work / "layout"))
        image_mib = _image_bytes(work / "layout") / 2**20

        hub = LocalHub(work / "hub", device_port=0, service_port=0).start()
        link = LinkProxy(8883, hub.device_port)
        try:
            hub.state.add_device(DEVICE, edge=True)
            hub.state.add_module(DEVICE, MODULE)
            agent = agent_run(work, hub, bodies, model_ref, args.rate)
        finally:
            link.close()
            hub.stop()
        artifact = _artifact_bytes(model_ref)

    print("| measure | agent | limit: run() in a loop | ratio |")
    print("|---|---|---|---|")
    print(f"| messages/s | {agent['msgs_per_s']:,.0f} | {base['msgs_per_s']:,.0f} | "
          f"{agent['msgs_per_s'] / base['msgs_per_s']:.3f} |")
    print(f"| CPU µs per message | {agent['cpu_us_per_msg']:,.0f} | {base['cpu_us_per_msg']:,.0f} | "
          f"{agent['cpu_us_per_msg'] / base['cpu_us_per_msg']:.1f} |")
    print()
    print(f"agent peak RSS {agent['rss_mib']:.0f} MiB; {args.messages} messages published at once; the local hub "
          f"on the same machine: {agent['hub_us_per_msg']:,.0f} µs CPU per message (gateway, responder, in "
          f"Python), mosquitto {agent['broker_us_per_msg']:,.0f} µs; {agent['busy_cores']:.2f} of "
          f"{os.cpu_count()} cores busy")
    print(f"swap of a {args.model_mib} MiB model under {args.rate} msg/s: download {agent['download_s']} s, "
          f"swap {agent['swap_s']} s; {agent['load_msgs']} messages sent during it, {agent['load_missing']} missing, "
          f"{agent['load_failed']} failed, model versions seen {agent['versions']}")
    print(f"bytes per model update: {agent['bytes_fetched']:,} fetched for a {artifact:,}-byte artifact "
          f"({agent['bytes_fetched'] / artifact:.3f}x), no image pull")
    print(f"module image: {image_mib:.1f} MiB compressed (config + layers, linux/amd64)")
    chart(base, agent, artifact, image_mib, args.chart)
    print(f"chart: {args.chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
