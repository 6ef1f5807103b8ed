"""Scoring stored messages: run() per JSON message, one run_batch() call for the tensors among them."""

from __future__ import annotations

import io
import json

import numpy as np

from edgepack.runtime.scoring import Runtime
from edgepack.runtime.settings import RuntimeConfig

from device_agents.queues import Envelope
from device_agents.scoring import result_id, score_messages

SCRIPT = '''
import json
import numpy as np
calls = []

def init():
    pass

def run(raw):
    return {"sum": sum(json.loads(raw)["data"])}

def run_batch(array):
    calls.append(array.shape[0])
    return array * 2
'''


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_tensors_go_to_run_batch_together_and_json_to_run(tmp_path):
    (tmp_path / "score.py").write_text(SCRIPT)
    runtime = Runtime(RuntimeConfig(entry_script=str(tmp_path / "score.py"), source_dir=str(tmp_path),
                                    model_dir=str(tmp_path), model={"name": "m", "version": 4}))
    runtime.start()
    messages = [
        Envelope("input1", "a", _npy(np.ones((2, 3), np.float32)), content_type="application/x-npy"),
        Envelope("input1", "b", json.dumps({"data": [1, 2, 3]}).encode(), content_type="application/json"),
        Envelope("input1", "c", _npy(np.full((1, 3), 5, np.float32)), content_type="application/x-npy",
                 correlation_id="corr"),
        Envelope("input1", "d", b"\x93NUMPY broken", content_type="application/x-npy"),
    ]
    scored = score_messages(runtime, messages, module_input="input1", output="out")
    assert runtime._module.calls == [3]  # the two good tensors, stacked into one call
    a, b, c, d = (s.result for s in scored)
    assert json.loads(a.body) == [[2.0] * 3] * 2 and json.loads(c.body) == [[10.0] * 3]
    assert json.loads(b.body) == {"sum": 6}
    assert d.properties["status"] == "400" and scored[3].failed
    assert (c.channel, c.message_id, c.correlation_id) == ("out", result_id("c"), "corr")
    assert a.correlation_id == "a" and a.properties["modelVersion"] == "4"
