"""What a quantized model must be for a profile's accelerator, checked on the graph (build side): every scale a
power of two, every zero point 0, int8 activations and weights (int32 biases), no per-channel axis, the opset
within the profile's limit."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from edgepack.errors import InvalidModel
from fpga.profile import Profile

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
_QUANTIZED_OPS = QDQ_OPS + ("QLinearConv", "QLinearMatMul", "QGemm", "ConvInteger", "MatMulInteger")
_TYPES = {"int8": np.int8, "uint8": np.uint8}


def load_model(path) -> onnx.ModelProto:
    """An ONNX model file's graph.

    Raises:
        InvalidModel: not an ONNX model onnx can read.
    """
    try:
        return onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, ValueError and OSError alike
        raise InvalidModel(f"reading '{path}': not an ONNX model: {type(exc).__name__}: {exc}"[:300],
                           hint="Register an ONNX model file.") from exc


def node_label(node: onnx.NodeProto, index: int) -> str:
    """A node's name, or its type and position when it has none."""
    return node.name or f"{node.op_type}#{index}"


def opset(model: onnx.ModelProto) -> int:
    """The model's version of the default ONNX domain."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def is_quantized(model: onnx.ModelProto) -> bool:
    """Whether the graph holds quantized nodes (QDQ pairs or integer operators)."""
    return any(node.op_type in _QUANTIZED_OPS for node in model.graph.node)


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _axis(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "axis"), None)


def problems(model: onnx.ModelProto, profile: Profile) -> list[str]:
    """Every way ``model`` breaks ``profile``'s quantization rules, each naming the node."""
    rule = profile.quantization
    found = []
    version = opset(model)
    if version > profile.max_opset:
        found.append(f"model: opset {version} is above {profile.name}'s limit of {profile.max_opset}")
    constants = _constants(model)
    wanted = {_TYPES[rule.activation_type], _TYPES[rule.weight_type]}
    for index, node in enumerate(model.graph.node):
        if node.op_type in _QUANTIZED_OPS and node.op_type not in QDQ_OPS:
            found.append(f"{node_label(node, index)} ({node.op_type}): a QOperator node; {profile.name} takes "
                         "QDQ models (QuantizeLinear/DequantizeLinear around float operators)")
            continue
        if node.op_type not in QDQ_OPS:
            continue
        label = f"{node_label(node, index)} ({node.op_type})"
        scale = constants.get(node.input[1]) if len(node.input) > 1 else None
        if scale is None:
            found.append(f"{label}: its scale is not a constant")
            continue
        if scale.size > 1 and not rule.per_channel:
            axis = _axis(node)
            found.append(f"{label}: per-channel scales ({scale.size} along axis {1 if axis is None else axis}); "
                         f"{profile.name} takes one scale per tensor")
        if rule.power_of_two:
            mantissa, _ = np.frexp(scale.astype(np.float64))
            bad = [float(s) for s, m in zip(scale.flat, mantissa.flat) if m != 0.5]
            if bad:
                found.append(f"{label}: scale {bad[0]:.6g} is not a power of two")
        named = len(node.input) > 2 and bool(node.input[2])
        zero = constants.get(node.input[2]) if named else None
        if named and zero is None:
            found.append(f"{label}: its zero point is not a constant")
            continue
        source = constants.get(node.input[0])
        is_bias = node.op_type == "DequantizeLinear" and source is not None and source.dtype == np.int32
        if zero is None:  # ONNX's default zero point: 0, uint8 for QuantizeLinear, the input's type for Dequantize
            dtype = source.dtype.type if node.op_type == "DequantizeLinear" and source is not None else (
                np.uint8 if node.op_type == "QuantizeLinear" else None)
        else:
            dtype = zero.dtype.type
            if rule.symmetric and np.any(zero != 0):
                found.append(f"{label}: zero point {int(zero.flat[0])} is not 0 (symmetric quantization)")
        if dtype is not None and not is_bias and dtype not in wanted:
            found.append(f"{label}: {np.dtype(dtype).name} quantization{'' if named else ' (no zero point)'}; "
                         f"{profile.name} takes {'/'.join(sorted({rule.activation_type, rule.weight_type}))}")
    return found
