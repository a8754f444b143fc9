"""Bit flips in integer-quantized weights: the drawing step (the model itself is not registered yet).

../shared/NOISE-MODELS.md sec. 7 (fault-injection tools PyTorchFI, GoldenEye, TensorFI):
each bit of each stored integer flips independently with probability ``BER``; the
result is reinterpreted in the tensor's integer type (two's complement for signed
types) and dequantized with the tensor's own scale and zero point.

Why no ``bit-flip`` model is registered: a model's :meth:`~onnxnoise.noise.NoiseModel.perturb`
receives the *dequantized* float values and :class:`~onnxnoise.noise.TensorInfo`, which
carries neither the stored integers nor the tensor's scale / zero point, so it cannot
know which integers to flip nor map the flipped integers back to the float values that
:mod:`onnxnoise.noise.draw` requantizes. The seam would need (filled by ``draw_noise``
for quantized tensors, ``None`` otherwise)::

    TensorInfo.stored: np.ndarray | None        # the clean initializer as stored (the integers q)
    TensorInfo.dequantize: Callable[[np.ndarray], np.ndarray] | None
        # q -> float64 values with the tensor's own QuantParams:
        # functools.partial(quant.dequantize, params=params, initializers=initializers)

With them the model is ``w' = tensor.dequantize(flip_bits(tensor.stored, BER, rng))``;
``draw_noise`` requantizes ``w'`` onto the same grid and gets the flipped integers back
exactly (``rint((q' - zp) * s / s) + zp == q'`` for ``s != 0``), and the model refuses
float tensors (``tensor.quantized`` false) with one line.
"""

from __future__ import annotations

import numpy as np

__all__ = ["flip_bits"]


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
