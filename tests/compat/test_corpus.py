"""Real Azure ML projects, unchanged: each case of ``corpus/`` is packaged as a webservice image from its
published files, run on the real engine, sent the requests recorded against Azure ML's own inference server
(azmlinfsrv 1.5.1), and must answer as it did. See corpus/README.md for the cases and where they come from.

What is compared: the status; for JSON answers the parsed value (floats to 1e-6 relative); for other answers
the exact bytes; for a swagger document the request and answer schemas (``ServiceInput``, ``ServiceOutput``),
not the wording around them; for a 4xx the message. A 5xx is compared by status only: edgepack's error body
carries an error id where azmlinfsrv has a fixed message, and neither shows the traceback. ``DIFFERENCES``
lists, with the reason, the answers where edgepack knowingly differs; ``REFUSED`` the cases it refuses at
package time, with the reason it must give.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.project import run_cli

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "case.json").is_file())

# (case, request index) -> (what edgepack answers instead, why)
DIFFERENCES: dict[tuple[str, int], tuple[dict[str, Any], str]] = {
    ("v1_mlnb_data_drift_collector", 0): (
        {"status": 200, "json": [1724.9054628546023, 1897.3286582658586]},
        "azmlinfsrv's answer is the error text of azureml-monitoring's native library, which does not load on "
        "Debian 12 (it needs OpenSSL 1.0); with collection off, as without a storage account, the script answers "
        "its predictions"),
}
# case -> part of the error packaging must give: what edgepack cannot serve is refused at package time
REFUSED: dict[str, str] = {
    "v1_mlnb_deploy_to_cloud_numpy": "no release of 'numpy==1.23' can be installed there",
    "v1_mlnb_multi_model_get_model_path": "no release of 'numpy==1.23' can be installed there",
    "v2_aex_custom_container_multimodel": "it imports joblib, pandas, which neither the environment nor the base",
}


def _load(case: str) -> dict[str, Any]:
    return json.loads((CORPUS / case / "case.json").read_text())


def _send(url: str, request: dict[str, Any], case_dir: Path) -> tuple[int, str, bytes]:
    if request.get("body_file"):
        body = (case_dir / request["body_file"]).read_bytes()
    elif "body_text" in request:
        body = request["body_text"].encode()
    elif "body" in request:
        body = json.dumps(request["body"]).encode()
    else:
        body = None
    target = url.rsplit("/score", 1)[0] + request.get("path", "/score")
    req = urllib.request.Request(target, data=body, method=request.get("method", "POST"),
                                 headers=request.get("headers") or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-6,
                                                                                             abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return a == b


def _schemas(doc: Any) -> Any:
    if not isinstance(doc, dict):
        return doc
    found = doc.get("definitions") or (doc.get("components") or {}).get("schemas") or {}
    return {k: found.get(k) for k in ("ServiceInput", "ServiceOutput")} if found else doc


def _same(answer: tuple[int, str, bytes], want: dict[str, Any], *, swagger: bool = False) -> str | None:
    """Why ``answer`` is not what azmlinfsrv answered, or None when it is."""
    status, ctype, body = answer
    if status != want["status"]:
        return f"status {status} (azmlinfsrv: {want['status']}): {body[:300]!r}"
    if status >= 500:
        return None
    if "json" in want:
        try:
            got = json.loads(body)
        except ValueError:
            return f"not JSON: {body[:300]!r}"
        expected = want["json"]
        if 400 <= status < 500 and isinstance(got, dict) and isinstance(expected, dict) and "message" in expected:
            got, expected = got.get("message"), expected["message"]
        if swagger:
            got, expected = _schemas(got), _schemas(expected)
        return None if _close(got, expected) else f"answer {got!r} (azmlinfsrv: {expected!r})"
    if "base64" in want:
        expected = base64.b64decode(want["base64"])
        return None if body == expected else (f"{len(body)} bytes sha256 {hashlib.sha256(body).hexdigest()[:12]} "
                                              f"(azmlinfsrv: {len(expected)} bytes {want.get('sha256', '')[:12]})")
    return None if body.decode(errors="replace") == want.get("text", "") else f"text {body[:300]!r}"


@pytest.mark.parametrize("case", CASES)
def test_a_real_azure_ml_project_answers_as_azmlinfsrv_did(case, tmp_path, monkeypatch, base_image_ref,
                                                           docker_daemon, capsys):
    data = _load(case)
    case_dir = CORPUS / case
    monkeypatch.setenv("EDGEPACK_HOME", str(tmp_path / "home"))
    refs = []
    for model in data["models"]:
        for _ in range(int(model.get("version", 1))):
            code, out, err = run_cli(["model", "register", model["name"], str(case_dir / model["path"])], capsys)
            assert code == 0, err
        refs += ["--model", f"{model['name']}:{model.get('version', 1)}"]
    if data["kind"] == "v2":
        refs = []  # the deployment names its model itself (registered, or by its path)
    code, out, err = run_cli(["package", *refs, "--inference-config", str(case_dir / data["config"]),
                              "--target", "webservice", "--no-auth", "--base-image", base_image_ref,
                              "--output", str(tmp_path / "image")], capsys)
    if case in REFUSED:
        assert code == 1 and REFUSED[case] in err, err
        assert "Traceback" not in err
        return
    assert code == 0, err
    code, out, err = run_cli(["run", str(tmp_path / "image"), "--json"], capsys)
    assert code == 0, err
    info = json.loads(out)
    try:
        problems = []
        for number, request in enumerate(data["requests"]):
            want = request["azmlinfsrv"]
            if (case, number) in DIFFERENCES:
                want = DIFFERENCES[(case, number)][0]
            why = _same(_send(info["url"], request, case_dir), want,
                        swagger=request.get("path", "").startswith("/swagger"))
            if why:
                problems.append(f"request {number} ({request.get('method', 'POST')} {request.get('path')}): {why}")
        if problems:
            logs = docker_daemon.logs(info["name"], tail=40)
            pytest.fail("\n".join(problems) + "\n--- server log ---\n" + logs)
    finally:
        run_cli(["stop", info["name"]], capsys)
