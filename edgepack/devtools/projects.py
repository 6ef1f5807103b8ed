"""Small real projects for tests, benchmarks and demos: an ONNX model ``Y = X @ W + b``, an Azure ML-style score.py
and inference config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SCORE_PY = '''\
import json
import os

import numpy as np
import onnxruntime as ort

session = None


def init():
    global session
    session = ort.InferenceSession(os.path.join(os.getenv("AZUREML_MODEL_DIR"), "model.onnx"),
                                   providers=["CPUExecutionProvider"])


def run(raw_data):
    data = np.array(json.loads(raw_data)["data"], dtype=np.float32)
    out = session.run(None, {"input": data})[0]
    return {"result": out.tolist()}
'''


def make_model(path: Path, *, seed: int, features: int = 4, outputs: int = 3, padding: int = 0) -> Path:
    """Write ``Y = X @ W + b`` as ONNX; ``padding`` adds an unused initializer to make the file larger."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((features, outputs)).astype(np.float32)
    b = rng.standard_normal(outputs).astype(np.float32)
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")]
    if padding:
        inits.append(numpy_helper.from_array(rng.standard_normal(padding // 4).astype(np.float32), "pad"))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["xw"]), helper.make_node("Add", ["xw", "B"], ["output"])],
        "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", outputs])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def make_project(root: Path, *, requirements: tuple[str, ...] = ()) -> Path:
    """A source directory with score.py and an inferenceconfig.json in Azure ML's keys; returns the config path."""
    src = root / "src"
    src.mkdir(parents=True, exist_ok=True)
    (src / "score.py").write_text(SCORE_PY)
    sample = {"data": [[1.0, 2.0, 3.0, 4.0]]}
    config = {"entryScript": "score.py", "sourceDirectory": "src", "runtime": "python",
              "inputSample": sample, "outputSample": {"result": [[0.0, 0.0, 0.0]]}}
    if requirements:
        config["pipRequirements"] = list(requirements)
    path = root / "inferenceconfig.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def expected(model_path: Path, data: list) -> list:
    """What onnxruntime, called directly, returns for ``data``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": np.array(data, dtype=np.float32)})[0].tolist()
