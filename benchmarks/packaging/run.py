"""Packaging benchmark: edgepack against `docker build` + `docker push` of the exported Dockerfile context.

Run on demand (never in the test suite), after `bash scripts/setup.sh`:

    python3 benchmarks/packaging/run.py [--model-mib 40] [--runs 3]

Both sides package the same model (random float32 weights, so it does not compress) with the same
dependencies (resolved once on the host; the Dockerfile context copies the same site-packages), and push to
the same local registry (`127.0.0.1:5000`), each into fresh repositories. Scenarios:

- cold: nothing cached for the image (edgepack: a new EDGEPACK_HOME whose dependency and base caches are
  warm, as the Docker engine's base image is; docker: `--no-cache`), then push to a new repository;
- model-only update, counted as a user does it: edgepack `model register` of version 2 plus package+push on
  top of the cold run (two commands, two processes); docker: copy the new model into the build context, then
  `docker build` + `docker push` on top of its cold build (its layer cache warm).

The floor: reading, hashing (sha256), compressing (ISA-L level 1, as edgepack does) and sending (one POST and
one PUT of the compressed bytes to the same registry, from a process that is already running) the new model.

Bytes sent: edgepack's own count of the blob and manifest bytes it uploaded; for docker, the growth of the
registry's blob store during the push (docker's layers are new content on every build, so nothing is
deduplicated away; edgepack's deterministic layers can be, which is why its own count is used).
Rebuilds are bit-identical when building the same inputs twice from scratch gives the same image digest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from pathlib import Path

from edgepack.devtools.projects import make_model, make_project

ROOT = Path(__file__).resolve().parents[2]

REGISTRY = "127.0.0.1:5000"
BASE = f"{REGISTRY}/edgepack/python:3.11-bookworm"
REGISTRY_DATA = ROOT / ".dev" / "registry" / "data"


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _edgepack(home: Path, *args: str) -> dict:
    env = {**os.environ, "EDGEPACK_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-m", "edgepack.cli", *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"edgepack {' '.join(args)} failed:\n{proc.stderr}")
    return json.loads(proc.stdout) if "--json" in args else {"stdout": proc.stdout}


def _timed(fn):
    before = _du(REGISTRY_DATA)
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, _du(REGISTRY_DATA) - before, result


def _docker(*args: str) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"docker {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return proc.stdout


def floor(model: Path, repo: str) -> float:
    """Seconds to read, hash, compress and send ``model`` once: the least any tool can take for that update."""
    import httpx
    from isal import isal_zlib

    with httpx.Client(base_url=f"http://{REGISTRY}") as http:
        http.get("/v2/")  # connection set up before the clock starts, as a running client's would be
        start = time.perf_counter()
        data = model.read_bytes()
        hashlib.sha256(data).hexdigest()
        packed = isal_zlib.compress(data, 1, 31)
        digest = "sha256:" + hashlib.sha256(packed).hexdigest()
        upload = http.post(f"/v2/{repo}/blobs/uploads/")
        location = upload.headers["location"]
        done = http.put(f"{location}{'&' if '?' in location else '?'}digest={digest}", content=packed,
                        headers={"content-type": "application/octet-stream"})
        elapsed = time.perf_counter() - start
        if done.status_code != 201:
            raise SystemExit(f"floor upload failed: {done.status_code} {done.text}")
    return elapsed


def _seed_home(home: Path, warm: Path) -> None:
    """Copy the dependency and base caches (not the layers) so a cold run is cold for the image only."""
    for kind in ("locks", "sites", "baseinfo", "blobs"):
        if (warm / "cache" / kind).exists():
            shutil.copytree(warm / "cache" / kind, home / "cache" / kind, copy_function=os.link,
                            dirs_exist_ok=True)


def one_run(work: Path, model_mib: int, warm: Path) -> dict:
    run_id = uuid.uuid4().hex[:8]
    config = make_project(work)
    # Fresh random weights per run, so no registry already holds the model layers of either tool.
    seed = int(run_id, 16)
    v1 = make_model(work / "m1" / "model.onnx", seed=seed, padding=model_mib << 20)
    v2 = make_model(work / "m2" / "model.onnx", seed=seed + 1, padding=model_mib << 20)
    home = work / "home"
    _seed_home(home, warm)

    def pkg(model: str, *extra: str) -> list[str]:
        return ["package", "--model", model, "--inference-config", str(config), "--target", "webservice",
                "--base-image", BASE, "--json", *extra]

    out: dict = {"model_bytes": v2.stat().st_size, "model_gzip_bytes": len(zlib.compress(v2.read_bytes(), 6))}
    _edgepack(home, "model", "register", "big", str(v1))
    repo = f"{REGISTRY}/bench-ep-{run_id}"
    out["ep_cold"] = _timed(lambda: _edgepack(home, *pkg("big:1", "--tag", f"{repo}:1", "--push")))
    out["ep_update"] = _timed(lambda: (_edgepack(home, "model", "register", "big", str(v2)),
                                       _edgepack(home, *pkg("big:2", "--tag", f"{repo}:2", "--push")))[1])
    # Reproducibility: a second home with an empty layer cache, the same inputs, the same digest?
    home2 = work / "home2"
    _seed_home(home2, warm)
    _edgepack(home2, "model", "register", "big", str(v1))
    _edgepack(home2, "model", "register", "big", str(v2))
    again = _edgepack(home2, *pkg("big:2", "--output", str(work / "again")))
    out["ep_identical"] = again["digest"] == out["ep_update"][2]["digest"]
    # Docker: the same plans exported as Dockerfile contexts (not timed), then docker build + docker push.
    ctx = work / "ctx"
    dtag = f"{REGISTRY}/bench-docker-{run_id}"
    _edgepack(home, *pkg("big:1", "--dockerfile-context", str(ctx)))
    out["docker_cold"] = _timed(lambda: (_docker("build", "-q", "--no-cache", "-t", f"{dtag}:1", str(ctx)),
                                         _docker("push", "-q", f"{dtag}:1")))
    first_id = _docker("image", "inspect", "-f", "{{.Id}}", f"{dtag}:1").strip()
    rebuilt_id = _docker("build", "-q", "--no-cache", "-t", f"{dtag}:1b", str(ctx)).strip()
    out["docker_identical"] = rebuilt_id == first_id
    _edgepack(home, *pkg("big:2", "--dockerfile-context", str(ctx)))
    (placed,) = ctx.glob("layers/*-model/**/big/2/model.onnx")
    placed.unlink()
    out["docker_update"] = _timed(lambda: (shutil.copyfile(v2, placed),
                                           _docker("build", "-q", "-t", f"{dtag}:2", str(ctx)),
                                           _docker("push", "-q", f"{dtag}:2")))
    out["floor"] = floor(v2, f"bench-floor-{run_id}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-mib", type=int, default=40)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="edgepack-bench-") as tmp:
        warm = Path(tmp) / "warm"
        # Warm the dependency and base caches once, as the Docker engine's are (it holds the base image).
        warm_cfg = make_project(Path(tmp) / "warm-project")
        _edgepack(warm, "model", "register", "warm", str(make_model(Path(tmp) / "w.onnx", seed=0)))
        _edgepack(warm, "package", "--model", "warm", "--inference-config", str(warm_cfg), "--target", "webservice",
                  "--base-image", BASE, "--output", str(Path(tmp) / "warm-out"))
        _docker("pull", "-q", BASE)
        # An installed edgepack has its bytecode compiled (pip does it); a source checkout may not.
        subprocess.run([sys.executable, "-m", "compileall", "-q", *(str(ROOT / d) for d in
                        ("edgepack", "device_agents", "triggers", "fpga"))], check=True, capture_output=True)
        for i in range(args.runs):
            work = Path(tmp) / f"run{i}"
            work.mkdir()
            results.append(one_run(work, args.model_mib, warm))
            print(f"run {i + 1}/{args.runs} done", file=sys.stderr)
    print(render(results))


def render(results: list[dict]) -> str:
    med = lambda key, idx: statistics.median(r[key][idx] for r in results)  # noqa: E731
    gz = statistics.median(r["model_gzip_bytes"] for r in results)
    mib = 1 << 20
    rows = [
        "| scenario | edgepack s | docker s | ratio (edgepack/docker) | edgepack MiB sent | docker MiB sent |",
        "|---|---|---|---|---|---|",
    ]
    sent = lambda key: statistics.median(r[key][2]["pushed"]["bytes_sent"] for r in results)  # noqa: E731
    for name, ep, dk in (("cold package + push", "ep_cold", "docker_cold"),
                         ("register + package + push of a new model version", "ep_update", "docker_update")):
        rows.append(f"| {name} | {med(ep, 0):.2f} | {med(dk, 0):.2f} | {med(ep, 0) / med(dk, 0):.2f} | "
                    f"{sent(ep) / mib:.1f} | {med(dk, 1) / mib:.1f} |")
    rows.append("")
    rows.append(f"model {results[0]['model_bytes'] / mib:.1f} MiB, gzip {gz / mib:.1f} MiB; model-only update sent "
                f"{sent('ep_update') / gz:.3f}x the compressed model bytes (edgepack), "
                f"{med('docker_update', 1) / gz:.3f}x (docker); runs: {len(results)} (medians)")
    update, cold = med("ep_update", 0) / med("docker_update", 0), med("ep_cold", 0) / med("docker_cold", 0)
    flo = statistics.median(r["floor"] for r in results)
    rows.append(f"floor (read + sha256 + ISA-L compress + send the new model, in-process): {flo:.2f} s; "
                f"the update took {med('ep_update', 0) / flo:.1f}x the floor")
    rows.append(f"goals: update <= 0.4x docker: {update:.2f}x {'met' if update <= 0.4 else 'MISSED'}; "
                f"cold <= 0.5x: {cold:.2f}x {'met' if cold <= 0.5 else 'MISSED'}; bytes <= 1.05x: "
                f"{sent('ep_update') / gz:.3f}x {'met' if sent('ep_update') / gz <= 1.05 else 'MISSED'}")
    rows.append(f"bit-identical rebuilds: edgepack {all(r['ep_identical'] for r in results)}, "
                f"docker {all(r['docker_identical'] for r in results)}")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
