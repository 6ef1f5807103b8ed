"""Static INT8 QDQ quantization shaped for a DPU: symmetric, per-tensor, power-of-two scales, zero points 0
(build side).

onnxruntime's quantizer does the graph work; it has no power-of-two calibrator, so the scales are chosen here and
handed to it as tensor overrides: activations take ``2**ceil(log2(absmax/127))`` of their calibrated range (no
overflow, as Vitis AI's NonOverflow method), weights the power of two among the four below that which gives the
least squared error (as its MinMSE method). Biases are int32 with scale input x weight, a power of two too.
AMD Quark was not used: it pins an older onnx than the one edgepack ships with, and its XINT8 output is a simulated
model that runs about 2x slower than FP32 on a CPU; the result here is checked against the same invariants.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from edgepack.errors import FpgaError
from fpga.profile import Profile

METHOD = "onnxruntime.quantization static QDQ, power-of-two tensor overrides"
_WEIGHT_INPUTS = {"Conv": (1,), "ConvTranspose": (1,), "Gemm": (0, 1), "MatMul": (0, 1)}
_QMAX = 127


@dataclass(frozen=True)
class Quantized:
    """What quantization did: the method, how many samples calibrated it and their digest, the tensors set."""

    method: str
    samples: int
    calibration_sha256: str
    activations: int
    weights: int


def data_digest(inputs: dict[str, np.ndarray]) -> str:
    """sha256 over the arrays (name, dtype, shape, bytes), in input order: what calibrated a model."""
    digest = hashlib.sha256()
    for name, array in inputs.items():
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def pow2_scale(absmax: float) -> float:
    """The smallest power of two ``s`` with ``absmax / s <= 127``."""
    if not absmax > 0 or not math.isfinite(absmax):
        return 2.0 ** -7
    return 2.0 ** math.ceil(math.log2(absmax / _QMAX))


def weight_scale(weight: np.ndarray) -> float:
    """The power-of-two scale for ``weight`` with the least mean squared quantization error."""
    top = pow2_scale(float(np.max(np.abs(weight))) if weight.size else 0.0)
    best, best_error = top, math.inf
    for shift in range(4):
        scale = top / (2 ** shift)
        error = float(np.mean((np.clip(np.round(weight / scale), -_QMAX, _QMAX) * scale - weight) ** 2))
        if error < best_error:
            best, best_error = scale, error
    return best


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime's quantizer logs advice on the root logger: hold it to errors while it runs, then restore."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


class _Reader:
    """An onnxruntime CalibrationDataReader over in-memory batches (rewindable: the quantizer reads twice)."""

    def __init__(self, inputs: dict[str, np.ndarray], batch: int) -> None:
        self._inputs, self._batch, self._at = inputs, batch, 0
        self._count = len(next(iter(inputs.values())))

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._at >= self._count:
            return None
        feed = {name: array[self._at:self._at + self._batch] for name, array in self._inputs.items()}
        self._at += self._batch
        return feed

    def rewind(self) -> None:
        self._at = 0

    def __iter__(self):  # onnxruntime iterates some readers
        return iter(self.get_next, None)


def _batch_size(model: onnx.ModelProto) -> int:
    first = model.graph.input[0].type.tensor_type.shape.dim
    return 1 if first and first[0].HasField("dim_value") and first[0].dim_value == 1 else 32


def quantize(source: Path, target: Path, inputs: dict[str, np.ndarray], profile: Profile) -> Quantized:
    """Write ``source`` quantized for ``profile`` to ``target``, calibrated on ``inputs``.

    Raises:
        FpgaError: the profile asks for a quantization this quantizer cannot make, or onnxruntime failed.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import CalibrationDataReader, create_calibrator

    rule = profile.quantization
    if (rule.activation_type, rule.weight_type) != ("int8", "int8") or not rule.symmetric or rule.per_channel:
        raise FpgaError(f"quantizing for '{profile.name}': {rule} is not a quantization edgepack makes",
                        hint="Profiles take int8, symmetric, per-tensor quantization.")
    model = onnx.load(str(source))
    batch = _batch_size(model)
    reader_type = type("Reader", (_Reader, CalibrationDataReader), {})
    with tempfile.TemporaryDirectory(prefix="edgepack-quantize-") as tmp, _quiet_root_logger():
        try:
            calibrator = create_calibrator(source, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                           calibrate_method=CalibrationMethod.MinMax,
                                           extra_options={"symmetric": True})
            calibrator.collect_data(reader_type(inputs, batch))
            ranges = calibrator.compute_data()
        except Exception as exc:  # onnxruntime raises its own and plain exception types
            raise FpgaError(f"calibrating '{source.name}': {type(exc).__name__}: {exc}",
                            hint="Check that the data fits the model's inputs.") from exc
        overrides: dict[str, list[dict]] = {}
        for name, data in ranges.items():
            lowest, highest = (float(np.min(data.range_value[0])), float(np.max(data.range_value[1])))
            overrides[name] = [_override(pow2_scale(max(abs(lowest), abs(highest))))]
        initializers = {i.name: i for i in model.graph.initializer}
        weights = 0
        for node in model.graph.node:
            for index in _WEIGHT_INPUTS.get(node.op_type, ()):
                if index < len(node.input) and node.input[index] in initializers:
                    array = numpy_helper.to_array(initializers[node.input[index]])
                    if array.dtype == np.float32:
                        overrides[node.input[index]] = [_override(weight_scale(array))]
                        weights += 1
        try:
            quantize_static(source, target, reader_type(inputs, batch), quant_format=QuantFormat.QDQ,
                            per_channel=False, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                           "TensorQuantOverrides": overrides,
                                           "QDQDisableWeightAdjustForInt32Bias": True})
        except Exception as exc:  # onnxruntime raises its own and plain exception types
            raise FpgaError(f"quantizing '{source.name}': {type(exc).__name__}: {exc}",
                            hint="See onnxruntime's message above.") from exc
    return Quantized(METHOD, len(next(iter(inputs.values()))), data_digest(inputs), len(list(ranges.keys())), weights)


def _override(scale: float) -> dict:
    from onnxruntime.quantization import QuantType

    return {"scale": np.array(scale, dtype=np.float32), "zero_point": np.array(0, dtype=np.int8),
            "quant_type": QuantType.QInt8}


CPU_METHOD = "onnxruntime.quantization static QDQ u8s8 (uint8 activations, int8 per-channel weights), for the CPU"


def quantize_for_cpu(source: Path, target: Path, inputs: dict[str, np.ndarray]) -> Quantized:
    """Write ``source`` quantized the way onnxruntime's CPU kernels run fastest (u8s8 QDQ, per-channel weights):
    a CPU fallback artifact, not one for an accelerator.

    Raises:
        FpgaError: onnxruntime failed.
    """
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static

    reader_type = type("Reader", (_Reader, CalibrationDataReader), {})
    try:
        with _quiet_root_logger():
            quantize_static(source, target, reader_type(inputs, _batch_size(onnx.load(str(source)))),
                            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    except Exception as exc:  # onnxruntime raises its own and plain exception types
        raise FpgaError(f"quantizing '{source.name}' for the CPU: {type(exc).__name__}: {exc}",
                        hint="See onnxruntime's message above.") from exc
    return Quantized(CPU_METHOD, len(next(iter(inputs.values()))), data_digest(inputs), 0, 0)
