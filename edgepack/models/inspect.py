"""ONNX inspection: check a model with onnx.checker and read its input/output specs. Reads the file only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgepack.errors import InvalidModel
from edgepack.models.artifact import TensorSpec


def _spec(value_info: Any) -> TensorSpec:
    import onnx

    tensor = value_info.type.tensor_type
    elem = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name if tensor.elem_type else "unknown"
    dims: list[int | str | None] = []
    for dim in tensor.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        else:
            dims.append(dim.dim_param or None)
    return TensorSpec(value_info.name, elem, tuple(dims))


def inspect_onnx(path: Path) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Check ``path`` with onnx.checker (by path, so models with external data work) and return (inputs, outputs).

    Inputs that are also initializers (constants with defaults in older exporters) are left out.

    Raises:
        InvalidModel: the file is not a valid ONNX model.
    """
    import onnx  # imported here: it is slow to import and only registration needs it

    try:
        onnx.checker.check_model(str(path))
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises ValidationError, DecodeError, OSError... all mean "not a usable model"
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidModel(f"checking onnx model '{path.name}': {cause}",
                           hint="Export the model again, or register it under a name without the .onnx suffix "
                                "if it is not ONNX.") from exc
    constants = {init.name for init in model.graph.initializer}
    inputs = tuple(_spec(v) for v in model.graph.input if v.name not in constants)
    return inputs, tuple(_spec(v) for v in model.graph.output)
