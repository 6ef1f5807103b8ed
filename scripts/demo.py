"""The digits demo, as a user would run it with the edgepack CLI (each command is printed before it runs).

Registers samples/digits, packages it for functions-http and webservice, pushes both images to the local
registry, runs them, POSTs samples/digits/sample-request.json and checks the answers against onnxruntime
called directly. Exits non-zero if any answer differs.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
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
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
