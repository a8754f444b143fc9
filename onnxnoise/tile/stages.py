"""The stage nodes of an analog tile, as ONNX nodes: DAC, read noise, ADC, clip counters.

Formulas (../shared/PARITY.md sec. 1, aihwkit ``StandardHWATrainingPreset``):

- **Quantization grid** (DAC and ADC alike): a value is clipped to ``[-r, r]`` and rounded
  (ONNX ``Round``: half to even) to the symmetric grid of step::

      step = 2 r / (2**bits - 2),   q = Round(clip(x) * float32(1 / step)) * float32(step)

  i.e. ``2**bits - 1`` levels ``k * step``, ``k = -(2**(bits-1) - 1) .. 2**(bits-1) - 1``
  (255 levels, 254 steps for 8 bits). This is aihwkit's ``inp_res = out_res = 1 / (2**bits - 2)``
  ("254 levels" for 8 bits in PARITY.md) applied to the full range ``2 r``: aihwkit's
  ``UniformQuantize`` takes ``alpha = 2 * bound`` and the step ``alpha * res``.
- **Read noise**: ``y + N(0, 1) * read_noise * x_max * w_max`` per element (aihwkit's
  ``out_noise``, in units of one full-range input on one full-scale weight).
- A range of 0 (a dead input or output, seen as 0 on every calibration image) leaves the
  value exact: no clip, no rounding (no division by zero); its clip count is 0.

Every node is built by :class:`Builder`, whose names are unique under ``onnxnoise.tile/<layer>/``.
Only ops with CPU and CUDA kernels in ONNX Runtime are used (Clip, Min, Max, Mul, Round, Add,
Where, Abs, Greater, Cast, ReduceSum, Size, RandomNormalLike).
"""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["PREFIX", "SEED_RANGE", "Builder", "count_clipped", "count_values", "noise_seed", "quantize", "read_noise",
           "step"]

#: Prefix of every name the rewrite adds.
PREFIX = "onnxnoise.tile"

#: Noise seeds lie in ``[0, SEED_RANGE)``: integers a float32 attribute holds exactly.
SEED_RANGE = 1 << 24


def step(bound: np.ndarray | float, bits: int) -> np.ndarray:
    """Grid step ``2 r / (2**bits - 2)`` of a quantizer with range ``r`` (float64, shape of ``bound``)."""
    return 2.0 * np.asarray(bound, dtype=np.float64) / float(2**bits - 2)


def noise_seed(seed: int, layer: str, tile: int) -> int:
    """The ``seed`` of one tile's ``RandomNormalLike``: an integer in ``[0, 2**24)``.

    The first 8 bytes (little endian) of ``sha256(f"{seed}/{tile}/{layer}")`` modulo ``2**24``,
    so it is exact as the op's float attribute and depends only on (seed, layer, tile).
    """
    digest = hashlib.sha256(f"{int(seed)}/{int(tile)}/{layer}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % SEED_RANGE


class Builder:
    """New nodes and initializers of one layer, named ``onnxnoise.tile/<layer>/<what>_<n>``.

    ``opset`` is the model's default-domain opset (``ReduceSum`` takes its axes as an input
    from opset 13, as an attribute before).
    """

    def __init__(self, layer: str, opset: int = 13) -> None:
        self.prefix = f"{PREFIX}/{layer}/"
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, what: str) -> str:
        """A fresh tensor name under the layer's prefix."""
        self._count += 1
        return f"{self.prefix}{what}_{self._count}"

    def const(self, value: np.ndarray | float | int, what: str = "const", dtype=np.float32) -> str:
        """An initializer holding ``value`` cast to ``dtype``; returns its name."""
        name = self.name(what)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], what: str | None = None, *, output: str | None = None,
           **attrs) -> str:
        """Append one node; returns its (single) output name (``output`` if given)."""
        out = output or self.name(what or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"{out}:node", **attrs))
        return out


def quantize(b: Builder, x: str, bound: np.ndarray, bits: int) -> str:
    """Clip ``x`` to ``[-bound, bound]`` and round it to the grid of :func:`step`.

    ``bound`` is a float array broadcastable to ``x`` (a scalar, or per output column); where
    it is 0 the value passes exact. Returns the quantized tensor's name.
    """
    bound = np.asarray(bound, dtype=np.float64)
    dead = bound <= 0
    if dead.all():
        return x
    safe = np.where(dead, np.inf, bound)
    grid = np.where(dead, 1.0, step(bound, bits))
    hi, lo = b.const(safe, "bound"), b.const(-safe, "neg_bound")
    if bound.ndim == 0:   # one range: Clip (scalar bounds only), one pass instead of two
        clipped = b.op("Clip", [x, lo, hi], "clipped")
    else:                 # per column: Min / Max broadcast the bounds
        clipped = b.op("Max", [b.op("Min", [x, hi]), lo], "clipped")
    # k = Round(x * (1 / step)): a Mul by the float32 reciprocal (ONNX Runtime's Div is ten times slower)
    inverse = b.const(1.0 / grid, "inverse_step")
    q = b.op("Mul", [b.op("Round", [b.op("Mul", [clipped, inverse])]), b.const(grid, "step")], "quantized")
    if dead.any():
        q = b.op("Where", [b.const(~dead, "live", dtype=np.bool_), q, x], "quantized")
    return q


def read_noise(b: Builder, x: str, scale: np.ndarray, seed: int) -> str:
    """``x + N(0, 1) * scale``, drawn by ``RandomNormalLike(seed)`` anew at every session run.

    ``scale`` (float, broadcastable to ``x``) is ``read_noise * x_max * w_max``; when it is
    all 0, ``x`` is returned as it is. ONNX Runtime's ``RandomNormalLike`` draws new values at
    every ``run`` of a session and repeats its sequence in a fresh session with the same seed,
    so the noise differs for every image and batch and is reproducible from (seed, the
    sequence of batches).
    """
    scale = np.asarray(scale, dtype=np.float64)
    if not np.any(scale > 0):
        return x
    flat = scale.reshape(-1)
    if np.all(flat == flat[0]):
        # one std: the op's own ``scale`` (float32 ``z * scale + 0``, bit for bit the Mul below; one pass fewer)
        noise = b.op("RandomNormalLike", [x], "noise", mean=0.0, scale=float(np.float32(flat[0])), seed=float(seed))
    else:
        unit = b.op("RandomNormalLike", [x], "unit_noise", mean=0.0, scale=1.0, seed=float(seed))
        noise = b.op("Mul", [unit, b.const(scale, "noise_scale")], "noise")
    return b.op("Add", [x, noise], "noisy")


def count_clipped(b: Builder, x: str, bound: np.ndarray, *, nonnegative: bool = False) -> str:
    """int64 scalar: elements of ``x`` with ``|x| > bound`` (0 where ``bound`` is 0: exact there).

    Exact while the last axis of ``x`` holds at most ``2**24`` values (a partial sum's width or
    columns; the float32 step) and the whole tensor fewer than ``2**53``. ``nonnegative``: the
    caller knows ``x`` is ``>= 0`` or NaN (a ``Relu`` output), so ``|x| > bound`` is ``x > bound``
    for every value (NaN: false both ways) and the ``Abs`` pass is left out (the same count).
    """
    bound = np.asarray(bound, dtype=np.float64)
    dead = bound <= 0
    if dead.all():
        return b.const(0, "no_clips", dtype=np.int64)
    magnitude = x if nonnegative else b.op("Abs", [x])
    over = b.op("Greater", [magnitude, b.const(np.where(dead, np.inf, bound), "count_bound")])
    # Summed in two steps: float32 along the last axis (every partial sum is an integer of at most
    # the axis length, exact in float32 up to 2**24 values in any order), then float64 over the
    # rest (exact below 2**53). Half the bytes of one float64 pass: ONNX Runtime's Cast to float64
    # and its ReduceSum were 0.59 ns per value, these 0.28 ns (4M values, 1 thread); its int64
    # ReduceSum is several times slower.
    flags = b.op("Cast", [over], "clipped_flags", to=TensorProto.FLOAT)
    if b.opset >= 13:
        rows = b.op("ReduceSum", [flags, b.const([-1], "last_axis", dtype=np.int64)], "clipped_rows", keepdims=0)
    else:
        rows = b.op("ReduceSum", [flags], "clipped_rows", axes=[-1], keepdims=0)
    total = b.op("ReduceSum", [b.op("Cast", [rows], to=TensorProto.DOUBLE)], "clipped_sum", keepdims=0)
    return b.op("Cast", [total], "clipped_count", to=TensorProto.INT64)


def count_values(b: Builder, x: str) -> str:
    """int64 scalar: the number of elements of ``x``."""
    return b.op("Size", [x], "value_count")
