"""An estimate of how a profile's accelerator would split a quantized model (build side).

A compute node (anything but Q/DQ and constants) counts as on the accelerator when it is quantized (its
activations come from DequantizeLinear and its result goes to QuantizeLinear, directly or through an activation
the accelerator fuses into it), its operator is in the profile's table, and it is within the profile's limits.
FLOPs come from ONNX shape inference at batch 1 (multiply-adds count as two). Connected accelerator nodes form one
subgraph. This models neither the vendor compiler's fusions nor its shape-dependent splits: it is an estimate,
and every report says so.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import onnx
from onnx import shape_inference

from fpga.invariants import QDQ_OPS, node_label
from fpga.profile import Profile

_FREE = {"Reshape", "Flatten", "Transpose", "Concat", "Squeeze", "Unsqueeze", "Identity", "Slice", "Split",
         "Shape", "Gather", "Cast"}


def _batch_one(model: onnx.ModelProto) -> onnx.ModelProto:
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.input:
        for dim in value.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.Clear()
                dim.dim_value = 1
    return shape_inference.infer_shapes(fixed)


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for value in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    for init in model.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            return list(attr.ints) if attr.ints else attr.i
    return default


def _flops(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]], weight: tuple[int, ...] | None) -> int:
    out = shapes.get(node.output[0]) if node.output else None
    size = math.prod(out) if out else 0
    op = node.op_type
    if op in ("Conv", "ConvTranspose") and weight and len(weight) >= 3:
        per_output = math.prod(weight[1:])  # Cin/group x kernel
        if op == "ConvTranspose":
            source = shapes.get(node.input[0])
            return 2 * (math.prod(source) if source else 0) * weight[1] * math.prod(weight[2:])
        return 2 * size * per_output
    if op in ("Gemm", "MatMul"):
        source = shapes.get(node.input[0])
        return 2 * size * (source[-1] if source else 0)
    if op in ("MaxPool", "AveragePool"):
        return size * math.prod(_attr(node, "kernel_shape", [1]))
    if op == "GlobalAveragePool":
        source = shapes.get(node.input[0])
        return math.prod(source) if source else size
    if op == "Softmax":
        return 3 * size
    return 0 if op in _FREE else size


class _Graph:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.nodes = list(model.graph.node)
        self.producer = {out: node for node in self.nodes for out in node.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in self.nodes:
            for name in node.input:
                self.consumers[name].append(node)
        self.initializers = {i.name for i in model.graph.initializer}

    def source(self, tensor: str) -> str:
        """The float tensor behind a DequantizeLinear's output (a weight's initializer name, say)."""
        node = self.producer.get(tensor)
        return node.input[0] if node is not None and node.op_type == "DequantizeLinear" else tensor

    def is_constant(self, tensor: str) -> bool:
        node = self.producer.get(tensor)
        return tensor in self.initializers or (node is not None and node.op_type == "Constant") or (
            node is not None and node.op_type == "DequantizeLinear" and self.is_constant(node.input[0]))


def _activation_inputs(node: onnx.NodeProto, graph: _Graph) -> list[str]:
    return [name for name in node.input if name and not graph.is_constant(name)]


def _quantized(node: onnx.NodeProto, graph: _Graph, fused: set[str]) -> str | None:
    """None when ``node`` runs quantized; else why not."""
    for name in _activation_inputs(node, graph):
        producer = graph.producer.get(name)
        if producer is None or producer.op_type != "DequantizeLinear":
            if not (node.op_type in fused and producer is not None and producer.op_type not in QDQ_OPS):
                return "its input is not quantized (no DequantizeLinear before it)"
    for out in node.output:
        consumers = graph.consumers.get(out, [])
        if not consumers:
            return "its result leaves the model unquantized (no QuantizeLinear after it)"
        for consumer in consumers:
            if consumer.op_type == "QuantizeLinear":
                continue
            if consumer.op_type in fused and all(c.op_type == "QuantizeLinear"
                                                 for o in consumer.output for c in graph.consumers.get(o, [])):
                continue
            return f"its result goes to {consumer.op_type} unquantized"
    return None


def _in_range(value: int, bounds: list[int]) -> bool:
    return bounds[0] <= value <= bounds[1]


def _limits(node: onnx.NodeProto, rules: dict[str, Any], weight: tuple[int, ...] | None,
            shapes: dict[str, tuple[int, ...]]) -> str | None:
    """None when ``node`` is within the profile's limits for its operator; else which limit it passes."""
    op = node.op_type
    if op in ("Conv", "ConvTranspose") and weight and len(weight) == 4:
        cout, cin_group, kh, kw = weight
        group = _attr(node, "group", 1)
        strides = _attr(node, "strides", [1, 1])
        if "kernel" in rules and not (_in_range(kh, rules["kernel"]) and _in_range(kw, rules["kernel"])):
            return f"kernel {kh}x{kw} outside {rules['kernel'][0]}..{rules['kernel'][1]}"
        if "stride" in rules and not all(_in_range(s, rules["stride"]) for s in strides):
            return f"stride {strides} outside {rules['stride'][0]}..{rules['stride'][1]}"
        if "kernel_cin_product" in rules:
            product = kw * kh * math.ceil(cin_group * group / rules["channel_parallel"])
            if product > rules["kernel_cin_product"]:
                return (f"kw*kh*ceil(Cin/{rules['channel_parallel']}) = {product} above "
                        f"{rules['kernel_cin_product']}")
        if "max_output_channels" in rules and cout > rules["max_output_channels"]:
            return f"{cout} output channels above {rules['max_output_channels']}"
    if op in ("MaxPool", "AveragePool"):
        kernel = _attr(node, "kernel_shape", [1, 1])
        strides = _attr(node, "strides", [1] * len(kernel))
        if "kernel" in rules and not all(_in_range(k, rules["kernel"]) for k in kernel):
            return f"kernel {kernel} outside {rules['kernel'][0]}..{rules['kernel'][1]}"
        if rules.get("square") and len(set(kernel)) > 1:
            return f"kernel {kernel} is not square"
        if "stride" in rules and not all(_in_range(s, rules["stride"]) for s in strides):
            return f"stride {strides} outside {rules['stride'][0]}..{rules['stride'][1]}"
    return None


def _components(members: list[str], edges: list[tuple[str, str]]) -> int:
    parent = {m: m for m in members}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        if a in parent and b in parent:
            parent[find(a)] = find(b)
    return len({find(m) for m in members})


def estimate(model: onnx.ModelProto, profile: Profile) -> dict[str, Any]:
    """The per-node placement estimate and its summary (see the module docstring)."""
    inferred = _batch_one(model)
    shapes = _shapes(inferred)
    graph = _Graph(inferred)
    fused = set(profile.fused_into_previous)
    rows, labels = [], {}
    for index, node in enumerate(graph.nodes):
        if node.op_type in QDQ_OPS or node.op_type == "Constant":
            continue
        label = node_label(node, index)
        labels[id(node)] = label
        weight = shapes.get(graph.source(node.input[1])) if len(node.input) > 1 else None
        reason = None
        if node.op_type not in profile.ops:
            reason = profile.not_on_accelerator.get(
                node.op_type, f"{node.op_type} is not an operation {profile.accelerator} runs")
        reason = reason or _quantized(node, graph, fused) or _limits(node, profile.ops[node.op_type], weight, shapes)
        rows.append({"name": label, "op": node.op_type, "on_accelerator": reason is None, "reason": reason,
                     "flops": _flops(node, shapes, weight),
                     "output_shape": list(shapes.get(node.output[0], ())) if node.output else []})
    on = {r["name"] for r in rows if r["on_accelerator"]}
    off = {r["name"] for r in rows if not r["on_accelerator"]}
    edges = []
    for node in graph.nodes:
        if id(node) not in labels:
            continue
        for name in _activation_inputs(node, graph):
            producer = graph.producer.get(name)
            while producer is not None and producer.op_type in QDQ_OPS:  # look through Q -> DQ pairs
                producer = graph.producer.get(producer.input[0])
            if producer is not None and id(producer) in labels:
                edges.append((labels[id(producer)], labels[id(node)]))
    total = sum(r["flops"] for r in rows)
    accelerated = sum(r["flops"] for r in rows if r["on_accelerator"])
    return {
        "estimate": True,
        "verified_on_hardware": False,
        "profile": profile.name,
        "accelerator": profile.accelerator,
        "sources": list(profile.sources),
        "nodes": rows,
        "summary": {
            "nodes": len(rows), "on_accelerator": len(on), "flops": total, "accelerator_flops": accelerated,
            "accelerator_flops_share": accelerated / total if total else 0.0,
            "accelerator_subgraphs": _components(sorted(on), edges) if on else 0,
            "cpu_subgraphs": _components(sorted(off), edges) if off else 0,
            "boundary_edges": sum(1 for a, b in edges if (a in on) != (b in on)),
        },
        "caveats": list(profile.caveats),
    }
