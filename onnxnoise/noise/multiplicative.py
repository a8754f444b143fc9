"""Multiplicative (relative) Gaussian weight noise: device-to-device variation.

    w' = w * (1 + z * eta),   z ~ N(0, 1) per element

Each weight's noise is proportional to its own magnitude: the programmed conductance
varies by a fraction ``eta`` of its value ("5% variation" is ``eta = 0.05``). This is
the "variation" setting of NeuroSim and MemTorch; see ../shared/NOISE-MODELS.md, sec. 3
(DNN+NeuroSim V1.3 issue #26 asks exactly for this).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from onnxnoise.noise.axis import StrengthAxis
from onnxnoise.noise.base import NoiseModel, TensorInfo, register

__all__ = ["Multiplicative"]


def _eta_text(eta: float) -> str:
    """Cell text of one strength: ``eta 0.05 (5% variation)``."""
    return f"eta {eta:g} ({100.0 * eta:.3g}% variation)"


@register
@dataclass(frozen=True)
class Multiplicative(NoiseModel):
    """Relative Gaussian noise ``w' = w * (1 + z * eta)`` (NOISE-MODELS.md sec. 3; NeuroSim/MemTorch variation).

    Strength: ``eta``, the relative standard deviation (0.05 = 5% variation), a
    finite number >= 0; ``eta = 0`` leaves every tensor unchanged.

    No parameters: the noise of each weight is already scaled by that weight, so
    there is no ``sigma_w`` to take over a tensor, layer or channel (no ``scope``).
    Zero weights stay exactly zero. ``z`` is drawn in float32 (float64 for float64
    tensors) from the tensor's generator, so one seed's noise at ``eta = 0.1`` is
    twice its noise at ``eta = 0.05`` (common random numbers).
    """

    name: ClassVar[str] = "multiplicative"
    #: A log axis: the grid spans decades of relative variation (1 .. 20 percent).
    strength_axis: ClassVar[StrengthAxis] = StrengthAxis(
        symbol="eta", label="relative std eta", defaults=(0.01, 0.02, 0.05, 0.1, 0.2), flag="eta", unit="fraction",
        name="relative noise std eta (fraction of each weight)", log=True, text=_eta_text,
        help="relative noise std eta (0.05 = 5 percent device variation), e.g. 0.01,0.05,0.1")

    def describe(self) -> str:
        """The formula in words."""
        return "multiplicative Gaussian, w' = w (1 + z eta) (device-to-device variation)"

    def perturb(self, w: np.ndarray, strength: float, rng: np.random.Generator, tensor: TensorInfo) -> np.ndarray:
        """``w + w * z * eta``; ``w`` itself when ``eta == 0``."""
        if strength == 0.0:
            return w
        draw_dtype = np.float64 if tensor.stored_dtype == np.float64 else np.float32
        noise = rng.standard_normal(w.shape, dtype=draw_dtype).astype(w.dtype, copy=False)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is counted by the caller
            noise *= w.dtype.type(strength)
            noise *= w
            return w + noise
