"""Integer-quantized weights: their parameters and how noise is applied to them.

Two ONNX encodings of int8/uint8 weights are supported:

- **QDQ**: an integer initializer ``q`` feeds ``DequantizeLinear(q, scale, zero_point)``
  whose float output feeds the op (Conv, Gemm, MatMul, ...). The int32 bias that
  ``onnxruntime.quantization`` writes the same way is handled alike.
- **QLinear ops**: ``QLinearConv`` (weight at input 3 with scale 4 and zero point 5,
  int32 bias at input 8 with scale ``x_scale * w_scale`` and zero point 0) and
  ``QLinearMatMul`` (``b`` at input 3, scale 4, zero point 5).

Policy :data:`QUANT_POLICY` (``dequantize-noise-requantize``): the graph is left
unchanged. For each integer weight tensor

    w  = (q - zero_point) * scale                       (per tensor or per axis)
    w' = w + n,   n ~ N(0, sigma^2),   sigma = std(w) / SNR   (paper eq. 1, float)
    q' = clip(round_half_even(w' / scale) + zero_point, qmin, qmax)

with ``[qmin, qmax]`` the integer type's range (int8 ``[-128, 127]``, uint8
``[0, 255]``, int32 for biases). Values that fall outside the range are clipped and
counted (:attr:`onnxnoise.noise.NoiseDraw.clipped_count`). This models an analog
array that stores the dequantized value, read back through the model's own
quantization grid: noise much smaller than half a quantization step (``scale / 2``)
is mostly rounded away, so at high SNR a quantized model can show no loss at all.

Dynamically quantized ``MatMulInteger`` / ``ConvInteger`` weights (the scale is found in
the ``Mul`` after the op) and ``com.microsoft`` ``QGemm`` get the same policy; see
:mod:`onnxnoise.model.integer_ops`, which also refuses integer-weight ops it cannot noise.
Not supported (not listed, so never noised; ``layers`` and ``bench`` warn): blocked
quantization (``block_size``), int4/uint4 and float8 weights. The graph patterns that find
QDQ and QLinear weights are in :mod:`onnxnoise.model.quant_patterns`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
import onnx

__all__ = [
    "QUANT_POLICY",
    "INT_DTYPES",
    "QuantParams",
    "dequantize",
    "requantize",
    "describe_quantization",
]

#: Name of the noise policy for integer-quantized weights (see the module docstring).
QUANT_POLICY = "dequantize-noise-requantize"

#: ONNX integer element types accepted as quantized weights (data of QDQ/QLinear ops).
INT_DTYPES: frozenset[int] = frozenset(
    {
        onnx.TensorProto.INT8,
        onnx.TensorProto.UINT8,
        onnx.TensorProto.INT16,
        onnx.TensorProto.UINT16,
        onnx.TensorProto.INT32,
    }
)


@dataclass(frozen=True)
class QuantParams:
    """Where the quantization parameters of one integer weight tensor live.

    Attributes:
        scale: Initializer names whose product is the scale (one name for QDQ and
            QLinear weights; ``(x_scale, w_scale)`` for a ``QLinearConv`` bias).
        zero_point: Initializer name of the zero point, or ``None`` for 0.
        axis: Axis of the weight that a per-axis scale runs along (non-negative), or
            ``None`` for a per-tensor (scalar) scale.
        format: ``QDQ``, ``QLinear`` (QLinearConv, QLinearMatMul, QGemm) or ``dynamic``
            (MatMulInteger, ConvInteger, DynamicQuantizeMatMul, MatMulIntegerToFloat).
    """

    scale: tuple[str, ...]
    zero_point: str | None
    axis: int | None
    format: str

    def to_dict(self) -> dict:
        """Return the parameters as a JSON-ready dict."""
        d = asdict(self)
        d["scale"] = list(self.scale)
        return d


def _broadcast(values: np.ndarray, ndim: int, axis: int | None) -> np.ndarray:
    values = np.asarray(values)
    if values.size == 1:
        return values.reshape(())
    shape = [1] * ndim
    shape[axis if axis is not None else 0] = values.size
    return values.reshape(shape)


def _scale_and_zero(
    q: np.ndarray, params: QuantParams, initializers: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    scale = np.ones((), dtype=np.float64)
    for name in params.scale:
        scale = scale * _broadcast(np.asarray(initializers[name], dtype=np.float64), q.ndim, params.axis)
    if params.zero_point is None:
        zero = np.zeros((), dtype=np.float64)
    else:
        zero = _broadcast(np.asarray(initializers[params.zero_point], dtype=np.float64), q.ndim, params.axis)
    return scale, zero


def dequantize(q: np.ndarray, params: QuantParams, initializers: Mapping[str, np.ndarray]) -> np.ndarray:
    """Dequantize one integer weight tensor: ``(q - zero_point) * scale``.

    Args:
        q: The integer weight, any shape, int8/uint8/int16/uint16/int32.
        params: Its :class:`QuantParams`.
        initializers: ``name -> array`` holding the scale and zero-point tensors.

    Returns:
        float64 array of ``q``'s shape.
    """
    scale, zero = _scale_and_zero(q, params, initializers)
    return (q.astype(np.float64) - zero) * scale


def requantize(
    w: np.ndarray, like: np.ndarray, params: QuantParams, initializers: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, int]:
    """Quantize float weights back onto ``like``'s grid: round half to even, then clip.

    Args:
        w: Float weights (the noisy dequantized tensor), same shape as ``like``.
        like: The clean integer tensor (gives dtype and range).
        params: Its :class:`QuantParams`.
        initializers: ``name -> array`` holding the scale and zero-point tensors.

    Returns:
        ``(q, clipped)``: the integer tensor with ``like``'s dtype and the number of
        elements that were outside the dtype's range before clipping.
    """
    scale, zero = _scale_and_zero(like, params, initializers)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.rint(np.where(scale != 0, w / np.where(scale != 0, scale, 1.0), 0.0)) + zero
    info = np.iinfo(like.dtype)
    clipped = int(((q < info.min) | (q > info.max)).sum())
    return np.clip(q, info.min, info.max).astype(like.dtype), clipped


def describe_quantization(layers: Iterable, clipped_count: int | None = None) -> str | None:
    """One line naming the quantization noise policy, or ``None`` for a float model.

    Args:
        layers: :class:`onnxnoise.model.Layer` objects (e.g. the noised ones).
        clipped_count: Values clipped to the integer range (summed over trials), if known.

    Returns:
        e.g. ``"quantized QDQ weights (52 layers): dequantize-noise-requantize, 3 values clipped"``;
        ``None`` when no layer holds integer weights.
    """
    formats: set[str] = set()
    count = 0
    for layer in layers:
        params = [p for p in getattr(layer, "quant", ()) if p is not None]
        if params:
            count += 1
            formats.update(p.format for p in params)
    if not count:
        return None
    text = f"quantized {'/'.join(sorted(formats))} weights ({count} layer{'' if count == 1 else 's'}): {QUANT_POLICY}"
    if clipped_count is not None:
        text += f", {clipped_count} values clipped"
    return text
