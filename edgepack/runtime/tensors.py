"""The binary tensor request format: a NumPy ``.npy`` body in, ``.npy`` (or JSON, or ``.npz`` for several
outputs) out. Parsing a 28x28 image as JSON costs several times the inference of a small CNN; ``.npy`` costs a
header parse and one copy."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

NPY = "application/x-npy"
NPZ = "application/x-npz"
NPY_MAGIC = b"\x93NUMPY"


def is_tensor_request(content_type: str | None, body: bytes) -> bool:
    """True for ``application/x-npy`` bodies and ``application/octet-stream`` bodies that are ``.npy`` files."""
    mime = (content_type or "").split(";")[0].strip().lower()
    return mime == NPY or (mime == "application/octet-stream" and body.startswith(NPY_MAGIC))


def decode(body: bytes) -> np.ndarray:
    """The array in a ``.npy`` body; numeric (no object arrays), with a leading batch dimension.

    Raises:
        ValueError: not a ``.npy`` file, an object array, or a scalar.
    """
    if not body.startswith(NPY_MAGIC):
        raise ValueError("the body is not a .npy file (it lacks the \\x93NUMPY magic)")
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise ValueError(f"the body is not a readable .npy file: {exc}") from exc
    if array.dtype.kind not in "biuf":
        raise ValueError(f"dtype {array.dtype} is not numeric")
    if array.ndim == 0:
        raise ValueError("a scalar has no batch dimension: send an array of shape (n, ...)")
    return array


def wants_json(accept: str | None) -> bool:
    """True when the client asked for JSON rather than NumPy bytes."""
    accept = (accept or "").lower()
    return "json" in accept and "npy" not in accept and "npz" not in accept


def encode(outputs: np.ndarray | dict[str, np.ndarray], *, as_json: bool) -> tuple[bytes, str]:
    """A response body and its content type for one request's share of the outputs."""
    if as_json:
        value: Any = (outputs.tolist() if isinstance(outputs, np.ndarray)
                      else {name: array.tolist() for name, array in outputs.items()})
        return json.dumps(value).encode(), "application/json"
    buffer = io.BytesIO()
    if isinstance(outputs, np.ndarray):
        np.save(buffer, outputs, allow_pickle=False)
        return buffer.getvalue(), NPY
    np.savez(buffer, **outputs)  # type: ignore[arg-type]  # numpy's stub types **kwds like allow_pickle
    return buffer.getvalue(), NPZ
