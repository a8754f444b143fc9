"""ONNX tensor basics every model module needs: weight dtypes, element counts, reading data.

The lowest module of :mod:`onnxnoise.model`: it imports nothing of the package but errors.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import numpy_helper

from onnxnoise.errors import GraphError

__all__ = ["FLOAT_DTYPES", "tensor_numel", "tensor_array"]

#: ONNX tensor element types that hold weights (noise applies to these only).
FLOAT_DTYPES: frozenset[int] = frozenset(
    {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.BFLOAT16,
        onnx.TensorProto.DOUBLE,
    }
)


def tensor_numel(tensor: onnx.TensorProto) -> int:
    """Number of elements of ``tensor`` according to its ``dims`` (1 for a scalar; exact, no int64 overflow)."""
    return math.prod(int(d) for d in tensor.dims)


def tensor_array(tensor: onnx.TensorProto) -> np.ndarray:
    """Return one initializer's data as a numpy array of its own dtype and shape.

    Raises:
        GraphError: If the tensor's stored data does not match its dtype and shape
            (a truncated or hand-edited model).
    """
    try:
        return numpy_helper.to_array(tensor)
    except (ValueError, TypeError, KeyError) as exc:
        msg = (
            f"initializer {tensor.name!r} ({tensor_numel(tensor)} elements of shape {list(tensor.dims)}) "
            f"cannot be read: {exc}; the model file is damaged, export it again"
        )
        raise GraphError(msg) from None
