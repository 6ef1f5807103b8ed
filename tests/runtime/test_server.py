"""The scoring web server with a real entry script and onnxruntime, over real loopback HTTP."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import httpx
import numpy as np
import pytest

from edgepack.runtime.keys import KeyRing
from edgepack.runtime.scoring import Runtime
from edgepack.runtime.server import ScoringServer
from edgepack.runtime.settings import RuntimeConfig
from tests.project import SCORE_PY, expected, make_model
from tests.servers import serve_in_thread

SLOW_INIT = SCORE_PY.replace("def init():\n",
                             "def init():\n    import time; time.sleep(float(os.getenv('SLOW', '0')))\n")
RAW_SCRIPT = '''
def init():
    pass

def run(raw):
    if isinstance(raw, bytes):
        return {"kind": "bytes", "length": len(raw), "first": raw[0]}
    if "boom" in raw:
        raise RuntimeError("secret internal detail")
    return {"kind": "str", "echo": raw}
'''


def _start(runtime: Runtime, keys: KeyRing, auth: bool, init: bool = True):
    """Serve on a free loopback port; returns (url, handle for _stop)."""
    server = ScoringServer(runtime, keys, auth_enabled=auth)
    url, stop = serve_in_thread(server, read_timeout=server.read_timeout)
    if init:
        threading.Thread(target=runtime.start, daemon=True).start()
    return url, (stop, server)


def _stop(handle):
    stop, server = handle
    stop()
    server.pool.shutdown()


def _config(tmp_path, script: str, **extra) -> RuntimeConfig:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "score.py").write_text(script)
    model_dir = tmp_path / "model"
    make_model(model_dir / "model.onnx", seed=7)
    return RuntimeConfig(entry_script=str(src / "score.py"), source_dir=str(src), model_dir=str(model_dir),
                         model={"name": "m", "version": 1, "sha256": "x"}, **extra)


def _wait_ready(client: httpx.Client) -> None:
    for _ in range(200):
        if client.get("/health").status_code == 200:
            return
        time.sleep(0.02)
    raise AssertionError("never ready")


@pytest.fixture
def keys_file(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"primary": "p-key", "secondary": "s-key"}))
    return path


def test_scores_like_onnxruntime_and_rejects_bad_requests(tmp_path, keys_file):
    sample = {"data": [[1.0, 2.0, 3.0, 4.0]]}
    config = _config(tmp_path, SCORE_PY, input_sample=sample, output_sample={"result": [[0.0]]},
                     max_request_bytes=2000, auth_enabled=True)
    url, handle = _start(Runtime(config), KeyRing(str(keys_file), env={}), auth=True)
    try:
        with httpx.Client(base_url=url) as client:
            _wait_ready(client)
            auth = {"Authorization": "Bearer p-key"}
            data = [[1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, -1.0]]
            resp = client.post("/score", json={"data": data}, headers=auth)
            assert resp.status_code == 200
            np.testing.assert_allclose(resp.json()["result"], expected(tmp_path / "model" / "model.onnx", data),
                                       rtol=1e-6)
            secondary = {"Authorization": "Bearer s-key"}
            assert client.post("/score", json={"data": data}, headers=secondary).status_code == 200
            wrong = client.post("/score", json={"data": data}, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401 and "key" in wrong.json()["error"]
            assert client.post("/score", json={"data": data}).status_code == 401
            bad = client.post("/score", content=b'{"data": [1,', headers=auth)
            assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]
            schema = client.post("/score", json={"data": [["x", 1, 2, 3]]}, headers=auth)
            assert schema.status_code == 400 and "$.data[0][0]: expected number" in schema.json()["error"]
            missing = client.post("/score", json={"rows": []}, headers=auth)
            assert "missing required field 'data'" in missing.json()["error"]
            big = client.post("/score", content=b"x" * 5000, headers=auth)
            assert big.status_code == 413 and "5000 bytes" in big.json()["error"]
            # GET /score calls run() with the query string as a JSON object, as Azure ML's server does
            assert client.get("/score").status_code == 401
            got = client.get("/score", params={"data": json.dumps(data)}, headers=auth)
            assert got.status_code == 200 and got.json() == resp.json()
            assert client.put("/score", headers=auth).status_code == 405
            assert client.put("/score").headers["allow"] == "POST, GET, OPTIONS"
            assert client.options("/score", headers=auth).status_code == 200
            assert client.get("/nope").status_code == 404
            swagger = client.get("/swagger.json").json()  # Swagger 2.0 by default, as Azure ML serves it
            assert swagger["swagger"] == "2.0"
            assert swagger["definitions"]["ServiceInput"]["example"] == sample
            assert swagger["paths"]["/score"]["post"]["parameters"][0]["schema"] == {
                "$ref": "#/definitions/ServiceInput"}
            v3 = client.get("/swagger.json", params={"version": "3"}).json()
            assert v3["openapi"] == "3.0.3" and v3["components"]["schemas"]["ServiceOutput"]["example"] == {
                "result": [[0.0]]}
            assert client.get("/swagger.json", params={"version": "3.1"}).json()["openapi"] == "3.1.0"
            assert client.get("/swagger.json", params={"version": "4"}).status_code == 404
    finally:
        _stop(handle)


def test_keys_are_reloaded_without_restart(tmp_path, keys_file):
    config = _config(tmp_path, SCORE_PY, auth_enabled=True)
    url, handle = _start(Runtime(config), KeyRing(str(keys_file), env={}), auth=True)
    try:
        with httpx.Client(base_url=url) as client:
            _wait_ready(client)
            body = {"data": [[1.0, 2.0, 3.0, 4.0]]}
            assert client.post("/score", json=body, headers={"Authorization": "Bearer p-key"}).status_code == 200
            new = keys_file.with_suffix(".new")
            new.write_text(json.dumps({"primary": "p-key-2", "secondary": "s-key"}))
            os.replace(new, keys_file)
            assert client.post("/score", json=body, headers={"Authorization": "Bearer p-key"}).status_code == 401
            assert client.post("/score", json=body, headers={"Authorization": "Bearer p-key-2"}).status_code == 200
            assert client.post("/score", json=body, headers={"Authorization": "Bearer s-key"}).status_code == 200
    finally:
        _stop(handle)


def test_liveness_before_readiness_and_raw_bodies(tmp_path, monkeypatch):
    monkeypatch.setenv("SLOW", "0.5")
    config = _config(tmp_path, "import os\n" + SLOW_INIT.replace("import os\n", "", 1))
    runtime = Runtime(config)
    url, handle = _start(runtime, KeyRing(env={}), auth=False)
    try:
        with httpx.Client(base_url=url) as client:
            assert client.get("/").status_code == 200
            assert client.get("/health").status_code == 503
            assert client.post("/score", json={"data": [[1, 2, 3, 4]]}).status_code == 503
            _wait_ready(client)
            assert client.get("/health").json()["model"]["name"] == "m"
            # without samples or decorators the request is any JSON object, as Azure ML describes it
            assert client.get("/swagger.json").json()["definitions"]["ServiceInput"] == {"type": "object",
                                                                                     "example": {}}
    finally:
        _stop(handle)


def test_binary_bodies_reach_run_as_bytes_and_failures_hide_details(tmp_path, caplog):
    runtime = Runtime(_config(tmp_path, RAW_SCRIPT))
    url, handle = _start(runtime, KeyRing(env={}), auth=False)
    try:
        with httpx.Client(base_url=url) as client:
            _wait_ready(client)
            raw = client.post("/score", content=b"\x07abc", headers={"Content-Type": "application/octet-stream"})
            assert raw.json() == {"kind": "bytes", "length": 4, "first": 7}
            text = client.post("/score", content=b'"hello"', headers={"Content-Type": "application/json"})
            assert text.json() == {"kind": "str", "echo": '"hello"'}
            boom = client.post("/score", json="boom")
            assert boom.status_code == 500
            assert len(boom.json()["error_id"]) == 32
            assert "secret internal detail" not in boom.text
    finally:
        _stop(handle)
    assert any(boom.json()["error_id"] in r.getMessage() and "secret internal detail" in r.getMessage()
               for r in caplog.records)


GATED = '''
import os, time

def init():
    pass

def run(raw):
    while not os.path.exists(os.environ["GATE"]):
        time.sleep(0.01)
    return {"ok": True}
'''


def test_overload_is_shed_with_503_and_retry_after(tmp_path, monkeypatch):
    gate = tmp_path / "gate"
    monkeypatch.setenv("GATE", str(gate))
    runtime = Runtime(_config(tmp_path, GATED))
    server = ScoringServer(runtime, KeyRing(env={}), auth_enabled=False, workers=2, max_pending=2)
    url, stop = serve_in_thread(server, read_timeout=server.read_timeout)
    threading.Thread(target=runtime.start, daemon=True).start()
    try:
        with httpx.Client(base_url=url, timeout=30) as probe:
            _wait_ready(probe)
        results: list = []
        blocked = [threading.Thread(target=lambda: results.append(httpx.post(f"{url}/score", json={}, timeout=30)))
                   for _ in range(2)]
        for t in blocked:
            t.start()
        for _ in range(500):  # both admitted and waiting on the gate
            if server.pending == 2:
                break
            time.sleep(0.01)
        shed = [httpx.post(f"{url}/score", json={}, timeout=30) for _ in range(4)]
        assert [r.status_code for r in shed] == [503] * 4
        assert all(r.headers["retry-after"] == "1" and "overloaded" in r.json()["error"] for r in shed)
        gate.write_text("open")
        for t in blocked:
            t.join(30)
        assert [r.status_code for r in results] == [200, 200]
        assert httpx.post(f"{url}/score", json={}, timeout=30).status_code == 200
    finally:
        stop()
        server.pool.shutdown()


def test_a_slow_client_holds_only_its_own_connection(tmp_path):
    runtime = Runtime(_config(tmp_path, SCORE_PY))
    server = ScoringServer(runtime, KeyRing(env={}), auth_enabled=False, read_timeout=0.5)
    url, stop = serve_in_thread(server, read_timeout=server.read_timeout)
    threading.Thread(target=runtime.start, daemon=True).start()
    host, port = url.rsplit("/", 1)[1].split(":")
    try:
        with httpx.Client(base_url=url) as client:
            _wait_ready(client)
            slow = socket.create_connection((host, int(port)))
            slow.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")  # and never finishes
            assert client.post("/score", json={"data": [[1.0, 2.0, 3.0, 4.0]]}).status_code == 200
            slow.settimeout(10)
            assert slow.recv(100) == b""  # closed by the server after its read timeout
            slow.close()
    finally:
        stop()
        server.pool.shutdown()
