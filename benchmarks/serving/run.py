"""Serving benchmark: edgepack's runtime against Azure ML's inference server (azmlinfsrv), same score.py, same
model, same machine, same run, loopback only. Run on demand (never in the test suite), after setup:

    python3 benchmarks/serving/run.py [--seconds 8] [--runs 3] [--skip-image]

It installs what it needs on first use: wrk (Debian package), the anchor in its own venv
(.dev/bench-serving/anchor: azureml-inference-server-http, onnxruntime, numpy) and matplotlib for the chart.

Scenarios (wrk, keep-alive, a fixed number of connections):
- small model (samples/digits, batch 1, Azure ML JSON), 8 connections: req/s, server CPU per request (the
  server's whole process tree, from /proc), p50/p99 latency; each the median of ``--runs`` loads;
- small CNN (benchmarks/serving/cnn, one 28x28 image per request), 64 connections: the anchor with Azure ML JSON;
  edgepack with the same JSON, and with a binary .npy body that its micro-batcher stacks for run_batch();
- cold start: process start to the first 200 from POST /score, median of three;
- the limit: onnxruntime called in-process in a loop (batch 1; and batch 32 for the CNN), no server at all;
- the webservice image (edgepack package + edgepack run --host-network) under the same loads.
Both servers run one worker process (azmlinfsrv's WORKER_COUNT=1, its default); the small model is also run
with two each (WORKER_COUNT=2, EDGEPACK_PROCESSES=2). Results go to
benchmarks/results/serving.json; the chart to benchmarks/serving/serving.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edgepack.deploy.local import free_port  # noqa: E402  (the benchmark runs from a checkout)
from edgepack.profiling.procs import cpu_seconds  # noqa: E402

HERE = Path(__file__).resolve().parent
WORK = ROOT / ".dev" / "bench-serving"
RESULTS = ROOT / "benchmarks" / "results"
SMALL = ROOT / "samples" / "digits"


# --- tools ------------------------------------------------------------------------------------------------------

def ensure_tools() -> Path:
    """wrk, the anchor's venv and matplotlib; returns the anchor's azmlinfsrv path."""
    if shutil.which("wrk") is None:
        print("installing wrk (apt)...", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, stdout=subprocess.DEVNULL)
    venv = WORK / "anchor"
    server = venv / "bin" / "azmlinfsrv"
    if not server.exists():
        print("installing azureml-inference-server-http into its own venv...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "azureml-inference-server-http", "onnxruntime",
                        "numpy"], check=True)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "matplotlib"], check=True)
    return server


def anchor_version(server: Path) -> str:
    pip = server.parent / "pip"
    out = subprocess.run([str(pip), "show", "azureml-inference-server-http"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Version:")), "?")


# --- processes and CPU ------------------------------------------------------------------------------------------

@dataclass
class Server:
    """A server under test: how to start it (or an already running container) and where it answers."""

    name: str
    url: str
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    headers: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    pid: int | None = None

    def start(self) -> float:
        """Start the process; returns the monotonic start time."""
        log = open(WORK / f"{self.name.replace(' ', '_')}.log", "wb")
        started = time.monotonic()
        self.proc = subprocess.Popen(self.argv, env={**os.environ, **self.env}, cwd=self.cwd, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid
        return started

    def stop(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
            self.proc = None


def first_200(server: Server, body: bytes, content_type: str, timeout: float = 120) -> float:
    """Poll POST until a 200; returns the monotonic time it came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        request = urllib.request.Request(server.url, data=body, method="POST",
                                         headers={"Content-Type": content_type, **server.headers})
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                if resp.status == 200:
                    resp.read()
                    return time.monotonic()
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.005)
    raise SystemExit(f"{server.name} did not answer 200 within {timeout}s; see {WORK}")


# --- load -------------------------------------------------------------------------------------------------------

def wrk(server: Server, body_file: Path, content_type: str, connections: int, seconds: float) -> dict:
    """Run wrk against the server; returns req/s, latency percentiles (ms), error counts and server CPU/request."""
    script = WORK / "post.lua"
    headers = {"Content-Type": content_type, **server.headers}
    script.write_text("wrk.method = 'POST'\n" + "".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n"
                                                         for k, v in headers.items())
                      + f"local f = io.open({json.dumps(str(body_file))}, 'rb')\nwrk.body = f:read('*a')\nf:close()\n")
    threads = "2" if connections > 8 else "1"
    base = ["wrk", "-t", threads, "-c", str(connections), "--latency", "-s", str(script), server.url]
    subprocess.run(base[:1] + ["-d", "2s"] + base[1:], capture_output=True, check=True)  # warm-up
    before = cpu_seconds(server.pid)
    out = subprocess.run(base[:1] + ["-d", f"{seconds:g}s"] + base[1:], capture_output=True, text=True,
                         check=True).stdout
    cpu = cpu_seconds(server.pid) - before
    return {**parse_wrk(out), "cpu_seconds": cpu}


def _ms(text: str) -> float:
    for unit, scale in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[:-len(unit)]) * scale
    return float(text)


def parse_wrk(out: str) -> dict:
    """The numbers in wrk's --latency report."""
    result: dict = {"non_2xx": 0, "socket_errors": 0}
    for line in out.splitlines():
        parts = line.split()
        if line.strip().startswith(("50%", "90%", "99%")):
            result[f"p{parts[0].rstrip('%')}_ms"] = _ms(parts[1])
        elif "requests in" in line:
            result["requests"] = int(parts[0])
        elif line.startswith("Requests/sec:"):
            result["rps"] = float(parts[1])
        elif "Non-2xx or 3xx responses:" in line:
            result["non_2xx"] = int(parts[-1])
        elif line.strip().startswith("Socket errors:"):
            result["socket_errors"] = sum(int(x.rstrip(",")) for x in parts[3::2])
    return result


def measure(server: Server, body_file: Path, content_type: str, connections: int, seconds: float,
            runs: int) -> dict:
    """``runs`` loads in a row; each number is the median over them (one hiccup of the machine moves no result)."""
    tries = []
    for _ in range(runs):
        one = wrk(server, body_file, content_type, connections, seconds)
        one["cpu_us_per_request"] = one["cpu_seconds"] / max(one["requests"], 1) * 1e6
        tries.append(one)
    result = {key: statistics.median(t[key] for t in tries) for key in tries[0]}
    for key in ("non_2xx", "socket_errors", "requests"):
        result[key] = sum(t[key] for t in tries)  # failures anywhere count
    result["runs"] = [{k: t[k] for k in ("rps", "p99_ms", "cpu_us_per_request")} for t in tries]
    print(f"  {server.name:<34} {result['rps']:>9.0f} req/s  p50 {result['p50_ms']:6.2f} ms  "
          f"p99 {result['p99_ms']:6.2f} ms  CPU {result['cpu_us_per_request']:6.0f} us/req  "
          f"non-2xx {result['non_2xx']}  socket errors {result['socket_errors']}", flush=True)
    return result


# --- the two servers --------------------------------------------------------------------------------------------

def anchor(executable: Path, model_dir: Path, src: Path, entry: str, workers: int = 1) -> Server:
    port = free_port()
    return Server("azmlinfsrv" if workers == 1 else f"azmlinfsrv x{workers}", f"http://127.0.0.1:{port}/score",
                  [str(executable), "--entry_script", entry, "--port", str(port)],
                  env={"AZUREML_MODEL_DIR": str(model_dir), "WORKER_COUNT": str(workers)}, cwd=src)


def edgepack(model_dir: Path, src: Path, entry: str, sample: object, name: str, **env: str) -> Server:
    port = free_port()
    config = WORK / f"{name.replace(' ', '_')}.runtime.json"
    config.write_text(json.dumps({"entry_script": str(src / entry), "source_dir": str(src), "model_dir": str(model_dir),
                                  "model": {"name": name, "version": 1}, "input_sample": sample}))
    return Server(name, f"http://127.0.0.1:{port}/score",
                  [sys.executable, "-m", "edgepack.runtime", "--host", "127.0.0.1", "--port", str(port)],
                  env={"EDGEPACK_RUNTIME_CONFIG": str(config), "PYTHONPATH": str(ROOT), **env})


def image_server(name: str, model: Path, inference_config: Path, home: Path) -> Server:
    """Package the model as a webservice image and run it with edgepack run --host-network."""
    dev = dict(line.split("=", 1) for line in (ROOT / ".dev" / "env").read_text().split())
    env = {**os.environ, "EDGEPACK_HOME": str(home)}

    def cli(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "edgepack.cli", *args], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"edgepack {' '.join(args)} failed:\n{proc.stderr}")
        return proc.stdout.strip()

    model_name = name.split()[-1]
    cli("model", "register", model_name, str(model))
    tag = f"{dev['EDGEPACK_DEV_REGISTRY']}/bench/{model_name}:1"
    ref = cli("package", "--model", model_name, "--inference-config", str(inference_config), "--target", "webservice",
              "--base-image", dev["EDGEPACK_DEV_BASE_IMAGE"], "--tag", tag, "--push").splitlines()[0]
    info = json.loads(cli("run", ref, "--host-network", "--json"))
    pid = int(subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", info["name"]], capture_output=True,
                             text=True, check=True).stdout)
    server = Server(f"edgepack image ({model_name})", info["url"], pid=pid,
                    headers={"Authorization": f"Bearer {info['keys']['primary']}"})
    server.container = info["name"]  # type: ignore[attr-defined]
    server.stop = lambda: cli("stop", info["name"])  # type: ignore[method-assign]
    return server


# --- the limit --------------------------------------------------------------------------------------------------

def raw_rate(model: Path, sample: np.ndarray, seconds: float = 3.0, threads: int | None = None) -> float:
    """Samples per second of onnxruntime called in a loop in this process."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    session.run(None, {name: sample})
    count, deadline = 0, time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        session.run(None, {name: sample})
        count += 1
    return count * sample.shape[0] / (time.perf_counter() - started)


# --- scenarios --------------------------------------------------------------------------------------------------

def cold_start(make: callable, body: bytes, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        server = make()
        started = server.start()
        try:
            times.append(first_200(server, body, "application/json") - started)
        finally:
            server.stop()
    return statistics.median(times)


def run_loaded(server: Server, loads: list[tuple[str, Path, str, int]], seconds: float, body: bytes,
               runs: int) -> dict:
    """Start (if it is a process), wait for a 200, run each load; returns {label: result}."""
    out = {}
    if server.argv:
        server.start()
    try:
        first_200(server, body, "application/json")
        for label, body_file, content_type, connections in loads:
            out[label] = measure(server, body_file, content_type, connections, seconds, runs)
    finally:
        server.stop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each measured load")
    parser.add_argument("--runs", type=int, default=3, help="loads per scenario; the medians are reported")
    parser.add_argument("--skip-image", action="store_true", help="leave out the webservice image")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    azmlinfsrv = ensure_tools()
    sys.path.insert(0, str(HERE / "cnn"))
    from make_model import make_cnn

    cnn_model_dir = WORK / "cnn-model"
    make_cnn(cnn_model_dir / "model.onnx")
    cnn_src = HERE / "cnn" / "src"
    small_src, small_model = SMALL / "src", SMALL / "model"
    small_sample = json.loads((SMALL / "inferenceconfig.json").read_text())["inputSample"]
    small_body = json.dumps({"data": small_sample["data"][:1]}).encode()
    (WORK / "small.json").write_bytes(small_body)
    image = np.round(np.random.default_rng(0).random((1, 1, 28, 28)), 3)
    cnn_body = json.dumps({"data": image.tolist()}).encode()
    (WORK / "cnn.json").write_bytes(cnn_body)
    buffer = WORK / "cnn.npy"
    np.save(buffer, image.astype(np.float32))
    cnn_sample = {"data": image.tolist()}
    results: dict = {"anchor": f"azureml-inference-server-http {anchor_version(azmlinfsrv)}", "seconds": args.seconds,
                     "runs": args.runs,
                     "cpus": os.cpu_count(), "small": {}, "cnn": {}}
    small_loads = [("json c=8", WORK / "small.json", "application/json", 8)]
    cnn_json = ("json c=64", WORK / "cnn.json", "application/json", 64)
    cnn_npy = ("npy c=64", buffer, "application/x-npy", 64)
    print(f"small model (samples/digits), batch-1 JSON, 8 connections, {args.runs} x {args.seconds:g}s each "
          "(medians)", flush=True)
    small = results["small"]
    small["azmlinfsrv"] = run_loaded(anchor(azmlinfsrv, small_model, small_src, "score.py"), small_loads,
                                     args.seconds, small_body, args.runs)
    small["edgepack"] = run_loaded(edgepack(small_model, small_src, "score.py", small_sample, "edgepack small"),
                                   small_loads, args.seconds, small_body, args.runs)
    print("the same with two worker processes each (azmlinfsrv WORKER_COUNT=2, edgepack EDGEPACK_PROCESSES=2)",
          flush=True)
    results["small_2_workers"] = {
        "azmlinfsrv": run_loaded(anchor(azmlinfsrv, small_model, small_src, "score.py", workers=2), small_loads,
                                 args.seconds, small_body, args.runs),
        "edgepack": run_loaded(edgepack(small_model, small_src, "score.py", small_sample, "edgepack x2",
                                        EDGEPACK_PROCESSES="2"), small_loads, args.seconds, small_body, args.runs)}
    print(f"small CNN (1x28x28 per request, {len(cnn_body)} B as JSON, {buffer.stat().st_size} B as .npy), "
          "64 connections", flush=True)
    cnn = results["cnn"]
    cnn["azmlinfsrv"] = run_loaded(anchor(azmlinfsrv, cnn_model_dir, cnn_src, "score.py"), [cnn_json],
                                   args.seconds, cnn_body, args.runs)
    cnn["edgepack"] = run_loaded(edgepack(cnn_model_dir, cnn_src, "score.py", cnn_sample, "edgepack cnn",
                                          EDGEPACK_MAX_PENDING="256"),
                                 [cnn_json, cnn_npy], args.seconds, cnn_body, args.runs)
    print("cold start: process start to the first 200 from POST /score (median of 3)", flush=True)
    results["cold_start_s"] = {
        "azmlinfsrv": cold_start(lambda: anchor(azmlinfsrv, small_model, small_src, "score.py"), small_body),
        "edgepack": cold_start(lambda: edgepack(small_model, small_src, "score.py", small_sample, "edgepack cold"),
                               small_body)}
    print("  " + "  ".join(f"{k} {v:.3f} s" for k, v in results["cold_start_s"].items()), flush=True)
    print("onnxruntime in-process (the limit)", flush=True)
    small_x = np.array(small_sample["data"][:1], np.float32)
    x32 = np.repeat(image.astype(np.float32), 32, axis=0)
    results["raw_ort"] = {"small batch 1": raw_rate(small_model / "model.onnx", small_x),
                          "cnn batch 1": raw_rate(cnn_model_dir / "model.onnx", image.astype(np.float32), threads=1),
                          "cnn batch 32": raw_rate(cnn_model_dir / "model.onnx", x32, threads=1)}
    print("  " + "  ".join(f"{k} {v:,.0f}/s" for k, v in results["raw_ort"].items()), flush=True)
    if not args.skip_image:
        print("webservice image (edgepack package + edgepack run --host-network)", flush=True)
        with tempfile.TemporaryDirectory(dir=WORK) as home:
            small["edgepack image"] = run_loaded(
                image_server("digits", small_model / "model.onnx", SMALL / "inferenceconfig.json", Path(home)),
                small_loads, args.seconds, small_body, args.runs)
            config = WORK / "cnn-inferenceconfig.json"
            config.write_text(json.dumps({"entryScript": "score.py", "sourceDirectory": str(cnn_src),
                                          "pipRequirements": ["numpy", "onnxruntime"], "inputSample": cnn_sample}))
            cnn["edgepack image"] = run_loaded(
                image_server("cnn", cnn_model_dir / "model.onnx", config, Path(home)), [cnn_npy], args.seconds,
                cnn_body, args.runs)
    (RESULTS / "serving.json").write_text(json.dumps(results, indent=2))
    report(results)
    chart(results, HERE / "serving.png")
    print(f"\nresults: {RESULTS / 'serving.json'}; chart: {HERE / 'serving.png'}")
    return 0


def report(r: dict) -> None:
    """Print the table of ratios against the anchor."""
    a_small = r["small"]["azmlinfsrv"]["json c=8"]
    a_cnn = r["cnn"]["azmlinfsrv"]["json c=64"]
    rows = [("small, JSON, c=8", "azmlinfsrv", a_small, a_small)]
    for name in ("edgepack", "edgepack image"):
        if name in r["small"]:
            rows.append(("small, JSON, c=8", name, r["small"][name]["json c=8"], a_small))
    two = r.get("small_2_workers")
    if two:
        a_two = two["azmlinfsrv"]["json c=8"]
        rows.append(("small, 2 workers", "azmlinfsrv", a_two, a_two))
        rows.append(("small, 2 workers", "edgepack", two["edgepack"]["json c=8"], a_two))
    rows.append(("CNN, JSON, c=64", "azmlinfsrv", a_cnn, a_cnn))
    for name, loads in r["cnn"].items():
        if name != "azmlinfsrv":
            for label, result in loads.items():
                rows.append((f"CNN, {label.split()[0].upper()}, c=64", name, result, a_cnn))
    print(f"\n{'load':<20} {'server':<16} {'req/s':>8} {'x anchor':>9} {'CPU us/req':>11} {'x anchor':>9} "
          f"{'p99 ms':>8} {'x anchor':>9}")
    for load, name, res, base in rows:
        print(f"{load:<20} {name:<16} {res['rps']:>8.0f} {res['rps'] / base['rps']:>8.2f}x "
              f"{res['cpu_us_per_request']:>11.0f} {res['cpu_us_per_request'] / base['cpu_us_per_request']:>8.2f}x "
              f"{res['p99_ms']:>8.2f} {res['p99_ms'] / base['p99_ms']:>8.2f}x")
    cold = r["cold_start_s"]
    print(f"\ncold start: azmlinfsrv {cold['azmlinfsrv']:.3f} s, edgepack {cold['edgepack']:.3f} s "
          f"({cold['edgepack'] / cold['azmlinfsrv']:.2f}x)")
    raw = r["raw_ort"]
    best_small = max(v["json c=8"]["rps"] for v in r["small"].values())
    best_cnn = max(res["rps"] for v in r["cnn"].values() for res in v.values())
    print(f"limit (onnxruntime in-process): small {raw['small batch 1']:,.0f}/s (edgepack reaches "
          f"{best_small / raw['small batch 1']:.2f} of it); CNN {raw['cnn batch 1']:,.0f}/s at batch 1, "
          f"{raw['cnn batch 32']:,.0f}/s at batch 32 (edgepack reaches {best_cnn / raw['cnn batch 32']:.2f} of it)")


def chart(r: dict, path: Path) -> None:
    """Throughput (log scale, with the onnxruntime limit), p99 latency and cold start, as bar charts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"azmlinfsrv": "#9e9e9e", "edgepack": "#1f77b4", "edgepack image": "#2ca02c"}
    short = {"azmlinfsrv": "azmlinfsrv", "edgepack": "edgepack", "edgepack image": "image"}
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.8), gridspec_kw={"width_ratios": [5, 4, 8, 2]})

    def bars(ax, rows, title, unit, limit=None, log=False):
        labels, values, cols = zip(*rows)
        ax.bar(range(len(values)), values, color=cols)
        ax.set_xticks(range(len(values)), labels, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit)
        if log:
            ax.set_yscale("log")
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:,.0f}" if v >= 10 else f"{v:.2f}", ha="center", va="bottom", fontsize=8)
        if limit:
            ax.axhline(limit, color="#d62728", linestyle="--", linewidth=1)
            ax.text(-0.4, limit * 1.08, f"onnxruntime in-process {limit:,.0f}/s", color="#d62728", fontsize=7)
            ax.set_ylim(top=limit * 2.5)

    small = [(short[name], loads["json c=8"], colors[name]) for name, loads in r["small"].items()]
    small += [(f"{short[name]}\n2 workers", loads["json c=8"], colors[name])
              for name, loads in r.get("small_2_workers", {}).items()]
    cnn = [(f"{short[name]}\n{label.split()[0]}", res, colors[name])
           for name, loads in r["cnn"].items() for label, res in loads.items()]
    cnn_p99 = [(f"CNN {label.split()[0]}\n{short[name]}", res, colors[name])
               for name, loads in r["cnn"].items() for label, res in loads.items()]
    bars(axes[0], [(n, res["rps"], c) for n, res, c in small], "small model, JSON, 8 connections",
         "requests/s (log)", r["raw_ort"]["small batch 1"], log=True)
    bars(axes[1], [(n, res["rps"], c) for n, res, c in cnn], "CNN, one image per request, 64 connections",
         "images/s (log)", r["raw_ort"]["cnn batch 32"], log=True)
    bars(axes[2], [(f"small\n{n}", res["p99_ms"], c) for n, res, c in small]
         + [(n, res["p99_ms"], c) for n, res, c in cnn_p99], "p99 latency", "ms")
    cold = r["cold_start_s"]
    bars(axes[3], [(n, v, colors[n]) for n, v in cold.items()], "cold start to first 200", "s")
    fig.suptitle(f"edgepack runtime vs {r['anchor']} (one worker process each unless marked, {r['cpus']} CPUs, "
                 "loopback, wrk)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
