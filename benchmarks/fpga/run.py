"""The FPGA path's numbers for the digits CNN sample, in one run: quantize it for the default DPU profile and for
the CPU, evaluate the three artifacts on the 450 held-out samples, and estimate the partition.

    python3 benchmarks/fpga/run.py        # after bash scripts/setup.sh; about 20 seconds

Everything is measured on this machine's CPU with onnxruntime (one thread; the median of repeated runs): there
is no FPGA here, so accuracy and latency on the accelerator itself are not measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "digits-cnn"
EDGEPACK = [sys.executable, "-m", "edgepack.cli"]


def edgepack(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([*EDGEPACK, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"edgepack {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="edgepack-fpga-bench-") as home:
        env = {**os.environ, "EDGEPACK_HOME": home}
        data = SAMPLE / "data"
        edgepack("model", "register", "cnn", str(SAMPLE / "model" / "model.onnx"), env=env)
        edgepack("fpga", "quantize", "--model", "cnn:1", "--calibration", str(data / "calibration.npy"), env=env)
        edgepack("fpga", "quantize", "--model", "cnn:1", "--calibration", str(data / "calibration.npy"), "--cpu",
                 env=env)
        result = json.loads(edgepack("fpga", "evaluate", "--model", "cnn:1", "--quantized", "cnn:2",
                                     "--cpu-model", "cnn:3", "--data", str(data / "test.npy"), "--labels",
                                     str(data / "test-labels.npy"), "--json", env=env))
        report = json.loads(edgepack("fpga", "report", "--model", "cnn:2", "--json", env=env))
    names = {"reference": "FP32 (cnn:1)", "accelerator": "INT8 QDQ, power-of-two, for the DPU (cnn:2)",
             "cpu-fallback": "u8s8 QDQ for the CPU (cnn:3)"}
    print(f"{result['samples']} held-out samples, one onnxruntime CPU thread\n")
    print("| artifact | size | accuracy [95% CI] | Δ accuracy vs FP32 [95% CI] | top-1 agreement | max abs Δ "
          "| CPU batch 1 | CPU batch 32 |")
    print("|---|---|---|---|---|---|---|---|")
    for row in result["artifacts"]:
        low, high = row["accuracy_interval"]
        delta = (f"{100 * row['delta']:+.2f} pp [{100 * row['delta_interval'][0]:+.2f}, "
                 f"{100 * row['delta_interval'][1]:+.2f}]") if "delta" in row else "—"
        agreement = f"{100 * row['agreement']:.2f}%" if "agreement" in row else "—"
        diff = f"{row['max_abs_diff']:.3f}" if "max_abs_diff" in row else "—"
        print(f"| {names[row['role']]} | {row['size_bytes'] / 1024:.1f} KiB | {100 * row['accuracy']:.2f}% "
              f"[{100 * low:.1f}, {100 * high:.1f}] | {delta} | {agreement} | {diff} "
              f"| {row['latency_ms']['batch1']:.3f} ms | {row['latency_ms']['batch32']:.3f} ms |")
    s = report["summary"]
    print(f"\npartition estimate on {report['profile']}: {s['on_accelerator']}/{s['nodes']} nodes, "
          f"{100 * s['accelerator_flops_share']:.3f}% of {s['flops']:,} FLOPs, {s['accelerator_subgraphs']} "
          f"accelerator subgraph(s), {s['boundary_edges']} boundary edge(s)")


if __name__ == "__main__":
    main()
