"""The local Functions host: indexing with azure-functions, routes, methods, auth levels and function keys."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from edgepack.deploy.local import free_port
from edgepack.runtime.keys import KeyRing
from edgepack.targets import FunctionsHttpTarget
from tests.project import expected, make_function_app
from tests.servers import serve_in_thread
from triggers.host import function_json, load_app
from triggers.http import HttpFunctions, HttpHost, route_regex

KEYS = {"primary": "fk-1", "secondary": "fk-2", "master": "mk-0"}
EXTRA_APP = '''
import azure.functions as func
app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

@app.route(route="items/{id}", methods=["GET"])
def item(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"id": req.route_params["id"], "q": req.params.get("q")}),
                             mimetype="application/json")

@app.route(route="fail")
def fail(req: func.HttpRequest) -> str:
    raise ValueError("hidden")
'''


def _app_dir(tmp_path, level: str, monkeypatch):
    root = tmp_path / f"wwwroot-{level}"
    rc = make_function_app(tmp_path, root, FunctionsHttpTarget(auth_level=level), seed=9)
    monkeypatch.setenv("EDGEPACK_RUNTIME_CONFIG", str(rc))
    return root


def _serve(functions, keys):
    host = HttpHost(HttpFunctions(functions, keys, prefix="api"), functions)
    url, stop_server = serve_in_thread(host)

    def stop() -> None:
        stop_server()
        host.routes.pool.shutdown()

    return url, stop


@pytest.mark.parametrize("level,accepted,refused", [
    ("function", ["fk-1", "fk-2", "mk-0"], [None, "nope"]),
    ("admin", ["mk-0"], [None, "fk-1"]),
    ("anonymous", [None], []),
])
def test_generated_app_scores_with_the_auth_level(tmp_path, monkeypatch, level, accepted, refused):
    root = _app_dir(tmp_path, level, monkeypatch)
    functions = load_app(str(root))
    assert [f.name for f in functions] == ["score"]
    assert function_json(functions[0])["bindings"][0]["authLevel"] == level.upper()
    url, stop = _serve(functions, KeyRing(env={f"EDGEPACK_{k.upper()}_KEY": v for k, v in KEYS.items()}))
    data = [[1.0, 2.0, 3.0, 4.0]]
    want = expected(tmp_path / "model" / "model.onnx", data)
    try:
        with httpx.Client(base_url=url) as client:
            assert client.get("/").json()["functions"] == ["score"]
            for i, key in enumerate(accepted):
                # Alternate between the header and the code query parameter.
                headers, params = ({"x-functions-key": key}, {}) if i % 2 == 0 else ({}, {"code": key} if key else {})
                resp = client.post("/api/score", json={"data": data}, headers=headers if key else {}, params=params)
                assert resp.status_code == 200, resp.text
                np.testing.assert_allclose(resp.json()["result"], want, rtol=1e-6)
            for key in refused:
                resp = client.post("/api/score", json={"data": data}, headers={"x-functions-key": key} if key else {})
                assert resp.status_code == 401 and "error" in resp.json()
            assert client.get("/api/score", headers={"x-functions-key": "mk-0"}).status_code == 405
            assert client.post("/api/other", json={}).status_code == 404
            assert client.post("/score", json={}).status_code == 404
    finally:
        stop()


def test_routes_params_and_failures(tmp_path):
    root = tmp_path / "app"
    root.mkdir()
    (root / "function_app.py").write_text("import json\n" + EXTRA_APP)
    functions = load_app(str(root))
    url, stop = _serve(functions, KeyRing(env={}))
    try:
        with httpx.Client(base_url=url) as client:
            assert client.get("/api/items/42", params={"q": "x"}).json() == {"id": "42", "q": "x"}
            assert client.post("/api/items/42").status_code == 405
            fail = client.post("/api/fail")
            assert fail.status_code == 500 and len(fail.json()["error_id"]) == 32 and "hidden" not in fail.text
    finally:
        stop()


def test_route_templates():
    assert route_regex("items/{id:int?}").match("items").groupdict() == {"id": None}
    assert route_regex("items/{id:int?}").match("items/7").group("id") == "7"
    assert route_regex("files/{*rest}").match("files/a/b/c").group("rest") == "a/b/c"
    assert route_regex("score").match("SCORE/")
    assert not route_regex("score").match("scores")


def test_the_host_process_serves_and_stops_cleanly_on_sigterm(tmp_path):
    root = tmp_path / "wwwroot"
    rc = make_function_app(tmp_path, root, FunctionsHttpTarget(auth_level="anonymous"), seed=4)
    port = free_port()
    env = {**os.environ, "EDGEPACK_RUNTIME_CONFIG": str(rc), "EDGEPACK_PORT": str(port),
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "triggers", "--script-root", str(root)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        data = [[1.0, 2.0, 3.0, 4.0]]
        deadline, answer = time.monotonic() + 60, None
        while answer is None and time.monotonic() < deadline:
            assert proc.poll() is None
            try:
                answer = httpx.post(f"http://127.0.0.1:{port}/api/score", json={"data": data}, timeout=10)
            except httpx.TransportError:
                time.sleep(0.1)
        assert answer is not None and answer.status_code == 200, answer and answer.text
        np.testing.assert_allclose(answer.json()["result"], expected(tmp_path / "model" / "model.onnx", data),
                                   rtol=1e-6)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        output = proc.stdout.read()
        assert "stopping" in output and "POST /api/score 200" in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
