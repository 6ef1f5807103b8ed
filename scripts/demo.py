"""The digits demo, as a user would run it with the edgepack CLI (each command is printed before it runs).

Registers samples/digits, packages it for functions-http and webservice, pushes both images to the local
registry, runs them, POSTs samples/digits/sample-request.json and checks the answers against onnxruntime
called directly. Then the edge loop: packages it as an IoT Edge module, starts the local hub, deploys the module
to a device with --local, sends the sample to its input, reads the result that reached $upstream, and updates
the model through the module twin (version 2, pushed as an OCI artifact; no image pull, no restart). Exits
non-zero if any answer differs.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "digits"
DEV = Path(os.environ.get("EDGEPACK_DEV_DIR") or ROOT / ".dev")


def edgepack(*args: str) -> str:
    print("$ edgepack " + " ".join(shlex.quote(a) for a in args), file=sys.stderr, flush=True)
    proc = subprocess.run([sys.executable, "-m", "edgepack.cli", *args], capture_output=True, text=True)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(proc.returncode)
    return proc.stdout.strip()


def post(url: str, body: bytes, headers: dict[str, str]) -> dict:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def main() -> int:
    env = dict(line.split("=", 1) for line in (DEV / "env").read_text().split())
    os.environ["EDGEPACK_HOME"] = str(DEV / "demo-home")
    shutil.rmtree(DEV / "demo-home", ignore_errors=True)
    request = (SAMPLE / "sample-request.json").read_bytes()
    session = ort.InferenceSession(str(SAMPLE / "model" / "model.onnx"), providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(None, {"input": np.array(json.loads(request)["data"], dtype=np.float32)})
    edgepack("model", "register", "digits", str(SAMPLE / "model" / "model.onnx"), "--tag", "data=sklearn-digits")
    targets = {"functions-http": env["EDGEPACK_DEV_FUNCTIONS_BASE_IMAGE"], "webservice": env["EDGEPACK_DEV_BASE_IMAGE"]}
    failures, names = 0, []
    try:
        for target, base in targets.items():
            tag = f"{env['EDGEPACK_DEV_REGISTRY']}/edgepack-demo/digits-{target}:1"
            ref = edgepack("package", "--model", "digits", "--inference-config", str(SAMPLE / "inferenceconfig.json"),
                           "--target", target, "--base-image", base, "--tag", tag, "--push").splitlines()[0]
            info = json.loads(edgepack("run", ref, "--json"))
            names.append(info["name"])
            key = info["keys"]["primary"]
            auth = {"x-functions-key": key} if target.startswith("functions") else {"Authorization": f"Bearer {key}"}
            answer = post(info["url"], request, auth)
            same = answer["predictions"] == labels.tolist() and np.allclose(answer["probabilities"], probabilities,
                                                                            atol=1e-6)
            failures += not same
            print(f"{target:15} {ref}\n{'':15} POST {info['url']} -> predictions {answer['predictions']} "
                  f"({'same as onnxruntime' if same else 'DIFFERENT from onnxruntime ' + str(labels.tolist())})")
    finally:
        for name in names:
            edgepack("stop", name)
    failures += edge_loop(env, request, labels, probabilities)
    return 1 if failures else 0


def edge_loop(env: dict[str, str], request: bytes, labels: np.ndarray, probabilities: np.ndarray) -> int:
    """Package, hub, deploy --local, send, messages, model update; returns the number of wrong answers."""
    device, module, registry = "digits-edge-1", "edgepack-agent", env["EDGEPACK_DEV_REGISTRY"]
    ref = edgepack("package", "--model", "digits", "--inference-config", str(SAMPLE / "inferenceconfig.json"),
                   "--target", "iot-edge", "--base-image", env["EDGEPACK_DEV_BASE_IMAGE"],
                   "--tag", f"{registry}/edgepack-demo/digits-iot-edge:1", "--push").splitlines()[0]
    edgepack("model", "register", "digits", str(SAMPLE / "model" / "model.onnx"), "--tag", "data=sklearn-digits")
    model = json.loads(edgepack("model", "push", "digits:2", "--to", f"{registry}/edgepack-demo/digits-model:2",
                                "--json"))["ref"]
    edgepack("edge", "hub", "start", "--device", device)
    failures = 0
    try:
        edgepack("deploy", "iot-edge", "--image", ref, "--device", device, "--local",
                 "--env", "EDGEPACK_REPORT_SECONDS=1")
        inputs = DEV / "demo-home" / "digits-inputs.jsonl"
        for version in (1, 2):
            inputs.write_text(json.dumps(json.loads(request)) + "\n")
            (sent,) = edgepack("edge", "send", "--device", device, "--module", module, "--input", "input1",
                               str(inputs)).split()
            result = _upstream(device, sent)
            answer = result["body"]
            same = answer["predictions"] == labels.tolist() and np.allclose(answer["probabilities"], probabilities,
                                                                            atol=1e-6)
            failures += not same or result["properties"].get("modelVersion") != str(version)
            print(f"{'iot-edge':15} {ref}\n{'':15} {device}/{module} input1 -> $upstream: predictions "
                  f"{answer['predictions']} from model version {result['properties'].get('modelVersion')} "
                  f"({'same as onnxruntime' if same else 'DIFFERENT from onnxruntime ' + str(labels.tolist())})")
            if version == 1:
                digest = model.split("@", 1)[1]
                edgepack("edge", "twin", device, "--module", module, "--desired",
                         json.dumps({"model": {"version": 2, "digest": digest, "uri": model}}))
                _serving(device, module, 2)
    finally:
        edgepack("edge", "hub", "stop")
    return failures


def _upstream(device: str, message_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in edgepack_quiet("edge", "messages", "--device", device, "--json").splitlines():
            record = json.loads(line)
            if record.get("correlation_id") == message_id:
                return record
        time.sleep(0.3)
    raise SystemExit(f"no result for message {message_id} reached $upstream in {timeout:.0f} s")


def _serving(device: str, module: str, version: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        twin = json.loads(edgepack_quiet("edge", "twin", device, "--module", module))
        state = twin["properties"]["reported"].get("edgepack", {}).get("model", {})
        if state.get("version") == version and state.get("status") == "serving":
            print(f"{'':15} model update through the twin: version {version} serving, swapped in "
                  f"{state.get('swapSeconds')} s, {state.get('bytesFetched')} bytes fetched", file=sys.stderr)
            return
        time.sleep(0.5)
    raise SystemExit(f"model version {version} was not serving after {timeout:.0f} s: {state}")


def edgepack_quiet(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "edgepack.cli", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(proc.returncode)
    return proc.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
