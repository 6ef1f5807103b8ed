"""Binary tensor requests (.npy) and adaptive micro-batching, with a real onnxruntime model over loopback HTTP."""

from __future__ import annotations

import io
import json
import threading
import time

import httpx
import numpy as np

from edgepack.runtime.keys import KeyRing
from edgepack.runtime.scoring import Runtime
from edgepack.runtime.server import ScoringServer
from tests.project import SCORE_PY, expected
from tests.runtime.test_server import _config, _wait_ready
from tests.servers import serve_in_thread

BATCH_SCRIPT = SCORE_PY + '''

import os, time
BATCHES = []

def run_batch(batch):
    BATCHES.append(batch.shape[0])
    gate = os.environ.get("GATE")
    while gate and not os.path.exists(gate):
        time.sleep(0.005)
    if batch.shape[0] and batch[0, 0] == 666:
        raise ValueError("poisoned batch")
    if batch.shape[0] and batch[0, 0] == 777:
        return batch[:1]
    return session.run(None, {"input": batch.astype(np.float32)})[0]
'''


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _serve(tmp_path, script: str, **server_args):
    runtime = Runtime(_config(tmp_path, script))
    server = ScoringServer(runtime, KeyRing(env={}), auth_enabled=False, **server_args)
    url, stop = serve_in_thread(server)
    threading.Thread(target=runtime.start, daemon=True).start()
    return url, runtime, server, stop


NPY = {"Content-Type": "application/x-npy"}


def test_concurrent_tensor_requests_are_batched_and_each_gets_its_own_rows(tmp_path, monkeypatch):
    gate = tmp_path / "gate"
    monkeypatch.setenv("GATE", str(gate))
    url, runtime, server, stop = _serve(tmp_path, BATCH_SCRIPT, batching={"max_batch_size": 8})
    model = tmp_path / "model" / "model.onnx"
    rng = np.random.default_rng(3)
    inputs = [rng.standard_normal((1 + i % 2, 4)).astype(np.float32) for i in range(6)]
    results: dict[int, httpx.Response] = {}
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            _wait_ready(client)
            batches = runtime._module.BATCHES

            def send(i: int) -> None:
                with httpx.Client(base_url=url, timeout=30) as own:
                    results[i] = own.post("/score", content=_npy(inputs[i]), headers=NPY)

            first = threading.Thread(target=send, args=(0,))
            first.start()
            for _ in range(500):  # the first request runs alone and holds the one batch slot at the gate
                if batches:
                    break
                time.sleep(0.01)
            rest = [threading.Thread(target=send, args=(i,)) for i in range(1, 6)]
            for t in rest:
                t.start()
            for _ in range(500):  # all five queued behind it
                if server.pending == 6:
                    break
                time.sleep(0.01)
            gate.write_text("open")
            for t in [first, *rest]:
                t.join(30)
            assert batches == [1, sum(len(x) for x in inputs[1:])]  # 1 row, then the 7 queued rows at once
            for i, x in enumerate(inputs):
                assert results[i].status_code == 200 and results[i].headers["content-type"] == "application/x-npy"
                got = np.load(io.BytesIO(results[i].content))
                np.testing.assert_allclose(got, expected(model, x.tolist()), rtol=1e-5)
            as_json = client.post("/score", content=_npy(inputs[1]), headers={**NPY, "Accept": "application/json"})
            np.testing.assert_allclose(as_json.json(), expected(model, inputs[1].tolist()), rtol=1e-5)
            # The Azure ML JSON contract is untouched: JSON still goes to run().
            plain = client.post("/score", json={"data": inputs[0].tolist()})
            np.testing.assert_allclose(plain.json()["result"], expected(model, inputs[0].tolist()), rtol=1e-5)
            assert server.pending == 0
    finally:
        stop()
        server.pool.shutdown()


def test_batches_respect_the_row_limit_and_bad_tensors_are_4xx(tmp_path):
    url, runtime, server, stop = _serve(tmp_path, BATCH_SCRIPT, batching={"max_batch_size": 4})
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            _wait_ready(client)
            too_many = client.post("/score", content=_npy(np.zeros((5, 4), np.float32)), headers=NPY)
            assert too_many.status_code == 413 and "batch limit of 4" in too_many.json()["error"]
            garbage = client.post("/score", content=b"not numpy at all", headers=NPY)
            assert garbage.status_code == 400 and ".npy" in garbage.json()["error"]
            objects = client.post("/score", content=_npy(np.array([{"a": 1}], dtype=object)), headers=NPY)
            assert objects.status_code == 400
            scalar = client.post("/score", content=_npy(np.float32(1.0)), headers=NPY)
            assert scalar.status_code == 400 and "batch dimension" in scalar.json()["error"]
            # An .npy body sent as application/octet-stream is a tensor too.
            octet = client.post("/score", content=_npy(np.ones((2, 4), np.float32)),
                                headers={"Content-Type": "application/octet-stream"})
            assert octet.status_code == 200 and np.load(io.BytesIO(octet.content)).shape == (2, 3)
    finally:
        stop()
        server.pool.shutdown()


def test_a_failing_or_misshapen_batch_answers_every_request_with_500(tmp_path, caplog):
    url, runtime, server, stop = _serve(tmp_path, BATCH_SCRIPT)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            _wait_ready(client)
            boom = client.post("/score", content=_npy(np.full((1, 4), 666, np.float32)), headers=NPY)
            assert boom.status_code == 500 and "poisoned" not in boom.text
            assert any(boom.json()["error_id"] in r.getMessage() and "poisoned batch" in r.getMessage()
                       for r in caplog.records)
            short = client.post("/score", content=_npy(np.full((3, 4), 777, np.float32)), headers=NPY)
            assert short.status_code == 500
            assert any("first dimension must be the 3 rows" in r.getMessage() for r in caplog.records)
            fine = client.post("/score", content=_npy(np.ones((1, 4), np.float32)), headers=NPY)
            assert fine.status_code == 200 and server.pending == 0
    finally:
        stop()
        server.pool.shutdown()


def test_without_run_batch_binary_bodies_still_reach_run_as_bytes(tmp_path):
    script = "def init():\n    pass\n\ndef run(raw):\n    return {'type': type(raw).__name__, 'length': len(raw)}\n"
    url, runtime, server, stop = _serve(tmp_path, script)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            _wait_ready(client)
            body = _npy(np.ones((2, 4), np.float32))
            assert client.post("/score", content=body, headers=NPY).json() == {"type": "bytes", "length": len(body)}
    finally:
        stop()
        server.pool.shutdown()


def test_json_is_parsed_once_and_run_sees_exactly_the_body(tmp_path):
    script = '''
import json
def init():
    pass
def run(raw):
    first = json.loads(raw)
    first["mutated"] = True
    again = json.loads(raw)
    from decimal import Decimal
    exact = json.loads(raw, parse_float=Decimal)
    return {"first": first, "again": again, "is_str": isinstance(raw, str), "raw": str(raw),
            "exact": str(exact["x"][0])}
'''
    url, runtime, server, stop = _serve(tmp_path, script)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            _wait_ready(client)
            body = b'{"x": [0.1, 2]}'
            got = client.post("/score", content=body, headers={"Content-Type": "application/json"}).json()
            assert got == {"first": {"x": [0.1, 2], "mutated": True}, "again": {"x": [0.1, 2]}, "is_str": True,
                           "raw": body.decode(), "exact": "0.1"}
            assert json.loads('{"a": 1}') == {"a": 1}
    finally:
        stop()
        server.pool.shutdown()


def test_fast_models_are_scored_on_the_event_loop_slow_ones_in_the_pool(tmp_path):
    script = SCORE_PY + '''
import threading
def_run = run
def run(raw):
    out = def_run(raw)
    out["thread"] = threading.current_thread().name
    return out
'''
    url, runtime, server, stop = _serve(tmp_path, script, inline_budget=0.5)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            _wait_ready(client)
            threads = [client.post("/score", json={"data": [[1.0, 2.0, 3.0, 4.0]]}).json()["thread"]
                       for _ in range(12)]
            assert all(name.startswith("score") for name in threads[:8])  # untimed: the pool
            assert not any(name.startswith("score") for name in threads[9:])  # known fast: the loop
        server.inline_budget = 0.0
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.post("/score", json={"data": [[1.0, 2.0, 3.0, 4.0]]}).json()["thread"].startswith("score")
    finally:
        stop()
        server.pool.shutdown()
