"""Write the benchmark's small CNN (MNIST-shaped: 1x28x28 in, 10 logits out) as ONNX, with fixed random weights.

Two 3x3 convolutions (8 and 16 channels) with ReLU and 2x2 max pooling, then a dense layer: about 8k
parameters, a few hundred microseconds per image on one core. Run: python3 make_model.py OUT.onnx
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def make_cnn(path: Path, seed: int = 0) -> Path:
    """Write the model to ``path``; the weights depend only on ``seed``."""
    rng = np.random.default_rng(seed)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        scale = np.sqrt(2.0 / np.prod(shape[1:]))
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [weight("c1", 8, 1, 3, 3), numpy_helper.from_array(np.zeros(8, np.float32), "b1"),
             weight("c2", 16, 8, 3, 3), numpy_helper.from_array(np.zeros(16, np.float32), "b2"),
             weight("fc", 16 * 7 * 7, 10), numpy_helper.from_array(np.zeros(10, np.float32), "fb"),
             numpy_helper.from_array(np.array([-1, 16 * 7 * 7], np.int64), "flat")]
    nodes = [
        helper.make_node("Conv", ["input", "c1", "b1"], ["x1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["x1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "c2", "b2"], ["x2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["x2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Reshape", ["p2", "flat"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["m"]),
        helper.make_node("Add", ["m", "fb"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                           ["batch", 1, 28, 28])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


if __name__ == "__main__":
    make_cnn(Path(sys.argv[1]))
