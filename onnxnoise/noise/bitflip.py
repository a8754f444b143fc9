"""Bit flips in integer-quantized weights (digital reference, fault injection).

../shared/NOISE-MODELS.md sec. 7 (fault-injection tools PyTorchFI, GoldenEye, TensorFI):
each bit of each stored integer flips independently with probability ``BER``; the
result is reinterpreted in the tensor's integer type (two's complement for signed
types) and dequantized with the tensor's own scale and zero point:
``w' = dequantize(q XOR mask)``. :mod:`onnxnoise.noise.draw` then requantizes ``w'``
onto the same grid, which gives the flipped integers back exactly
(``rint((q' - zp) * s / s) + zp == q'`` for ``s != 0``). Float tensors of the noised
layers (a dynamically quantized layer's float bias, BatchNormalization parameters) are
not integer memory and stay exact; a run whose noised layers hold no integer tensor at
all is refused before any trial.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np

from onnxnoise.errors import NoiseConfigError
from onnxnoise.noise.axis import StrengthAxis
from onnxnoise.noise.base import NoiseModel, TensorInfo, register

__all__ = ["flip_bits", "BitFlip"]


def flip_bits(q: np.ndarray, ber: float, rng: np.random.Generator) -> np.ndarray:
    """Flip each bit of each integer of ``q`` independently with probability ``ber``.

    Args:
        q: Integer array (int8, uint8, int16, uint16, int32, ...), any shape.
        ber: Bit error rate in ``[0, 1]``.
        rng: Generator; draws one uniform per bit, least significant bit first.

    Returns:
        A new array of ``q``'s dtype and shape: ``q XOR mask`` reinterpreted in ``q``'s
        type (two's complement for signed types); equal to ``q`` bit for bit when
        ``ber == 0``.

    Raises:
        ValueError: If ``q`` is not an integer array or ``ber`` is not in ``[0, 1]``.
    """
    q = np.ascontiguousarray(q)
    if q.dtype.kind not in "iu":
        msg = f"bit flips need an integer tensor, got dtype {q.dtype}"
        raise ValueError(msg)
    if not 0.0 <= ber <= 1.0:
        msg = f"bit error rate must be in [0, 1], got {ber!r}"
        raise ValueError(msg)
    if ber == 0.0:
        return q.copy()
    unsigned = np.dtype(f"u{q.dtype.itemsize}")
    mask = np.zeros(q.shape, dtype=unsigned)
    for bit in range(8 * q.dtype.itemsize):
        mask |= (rng.random(q.shape) < ber).astype(unsigned) << unsigned.type(bit)
    return (q.view(unsigned) ^ mask).view(q.dtype)


def _count(n: int, noun: str) -> str:
    """``1 layer``, ``2 layers``, ``16,448 values``."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


@register
@dataclass(frozen=True)
class BitFlip(NoiseModel):
    """Independent bit flips in the stored integers of quantized weights (NOISE-MODELS.md sec. 7).

    Strength: the bit error rate ``BER`` in ``[0, 1]``. Bits flip in the stored integers of
    integer-quantized weights (QDQ, QLinear, dynamic ``ConvInteger`` / ``MatMulInteger``;
    int8, uint8, int16, uint16, int32). A layer's float tensors (the float bias of a
    dynamically quantized layer, BatchNormalization parameters, layers left in float) are
    not integer memory and stay exact; the caption counts them
    (:meth:`describe_quantization`). A selection without any integer tensor (a float
    model) is refused before any trial (:attr:`needs_integer_weights`,
    :meth:`~onnxnoise.noise.base.NoiseModel.check_layers`). No parameters.
    """

    name: ClassVar[str] = "bit-flip"
    needs_integer_weights: ClassVar[bool] = True
    #: ``--ber 1e-5,1e-4,1e-3``: shown as ``1e-05``, drawn on a log axis.
    strength_axis: ClassVar[StrengthAxis] = StrengthAxis(
        symbol="ber", label="bit error rate", defaults=(1e-5, 1e-4, 1e-3), flag="ber", unit="fraction",
        name="bit error rate (BER)", log=True, style="sci", text="BER {}",
        help="bit error rate in [0, 1], the probability of each stored bit to flip, e.g. 1e-5,1e-4,1e-3")

    def check_strength(self, value: Any) -> float:
        """Accept a bit error rate in ``[0, 1]``."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0 \
                or math.isnan(value):
            msg = f"bit error rate must be a number in [0, 1], got {value!r}"
            raise NoiseConfigError(msg)
        return float(value)

    def describe(self) -> str:
        """The model in words."""
        return ("bit flips in the stored integers of quantized weights, each bit with probability BER; "
                "float tensors (biases, normalization, float layers) left exact")

    def describe_quantization(self, layers: Iterable[Any], clipped_count: int | None = None) -> str | None:
        """How the noised layers' tensors are treated: integers flipped, float tensors left exact.

        Args:
            layers: The noised :class:`onnxnoise.model.Layer` objects.
            clipped_count: Ignored: flipped integers stay in their type's range.

        Returns:
            e.g. ``"quantized dynamic weights (2 layers): bits flipped in the stored integers of 2
            tensors (162 values); 6 float tensors (30 values: bias, mean, scale, var) left exact, not
            integer memory"``; ``None`` when no layer holds integer weights.
        """
        formats: set[str] = set()
        quantized = integer = integer_values = floats = float_values = 0
        roles: set[str] = set()
        for layer in layers:
            quant = tuple(getattr(layer, "quant", ()) or ()) or (None,) * len(layer.tensors)
            quantized += any(q is not None for q in quant)
            for params, role, shape in zip(quant, layer.roles, layer.shapes):
                size = int(np.prod(shape, dtype=np.int64))
                if params is None:
                    floats, float_values = floats + 1, float_values + size
                    roles.add(role)
                else:
                    formats.add(params.format)
                    integer, integer_values = integer + 1, integer_values + size
        if not integer:
            return None
        text = (f"quantized {'/'.join(sorted(formats))} weights ({_count(quantized, 'layer')}): bits flipped in the "
                f"stored integers of {_count(integer, 'tensor')} ({_count(integer_values, 'value')})")
        if floats:
            text += (f"; {_count(floats, 'float tensor')} ({_count(float_values, 'value')}: {', '.join(sorted(roles))}) "
                     "left exact, not integer memory")
        return text

    def acts_on(self, role: str, op_type: str, quantized: bool) -> bool:
        """Only integer-quantized tensors are integer memory; float tensors stay exact."""
        return quantized

    def perturb(self, w: np.ndarray, strength: float, rng: np.random.Generator, tensor: TensorInfo) -> np.ndarray:
        """``dequantize(flip_bits(q, BER))`` of an integer-quantized tensor, else ``w`` itself.

        ``w`` comes back unchanged at BER 0 and for a float tensor (a float bias,
        normalization parameters, a layer left in float): not integer memory, left exact.
        """
        if not tensor.quantized or tensor.stored is None or tensor.dequantize is None or strength == 0.0:
            return w
        return tensor.dequantize(flip_bits(tensor.stored, strength, rng))
