"""Differential-pair conductance mapping shared by the device models, and conductance quantization.

Mapping (../shared/NOISE-MODELS.md sec. 4; Joshi et al., Nature Communications 11,
2473 (2020); IBM aihwkit "Inference and PCM statistical model"): each weight is a pair
of devices, ``g+`` for positive and ``g-`` for negative values, the other device at 0,

    g+_T = max(w, 0) / w_max * g_max,   g-_T = max(-w, 0) / w_max * g_max,
    w'   = (g+ - g-) / g_max * w_max,

with ``w_max = max|w|`` over the tensor being perturbed (one crossbar per weight
tensor; see below) and ``g_max`` in microsiemens (25 uS by default).

Which tensors are analog (parameter ``analog`` of the device models): ``weights``
(default) maps only the weight matrices of Conv, ConvTranspose, Gemm and MatMul
(role ``weight``); biases, BatchNormalization and other normalization parameters stay
digital and exact, as in aihwkit's analog layers (digital bias) and in IBM's PCM
studies. ``all`` maps every tensor the trial noises, each on its own pair mapping with
its own ``w_max``. Since a layer has one weight tensor, per tensor is per layer under
``weights``.

Conductance quantization (NOISE-MODELS.md sec. 6): ``levels`` programmable values
``k * g_max / (levels - 1)``, ``k = 0 .. levels-1`` per device; a target is rounded to
the nearest (half to even). The :class:`ConductanceLevels` model applies it alone;
``pcm`` and ``stuck-at`` take a ``levels`` parameter that applies it to the targets
first (quantize, then program, then drift).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from onnxnoise.errors import NoiseConfigError
from onnxnoise.noise.axis import StrengthAxis
from onnxnoise.noise.base import NoiseModel, TensorInfo, register
from onnxnoise.noise.params import check_choice

__all__ = ["ANALOG_CHOICES", "is_analog", "weight_max", "pair_targets", "quantize_conductance", "ConductanceLevels"]

#: Values of the device models' ``analog`` parameter (see the module docstring).
ANALOG_CHOICES: tuple[str, ...] = ("weights", "all")


def is_analog(tensor: TensorInfo, analog: str) -> bool:
    """Whether ``tensor`` is stored on devices under the ``analog`` choice."""
    return analog == "all" or tensor.role == "weight"


def device_values(w: np.ndarray, tensor: TensorInfo, analog: str) -> tuple[np.ndarray, float] | None:
    """``(w as float64, max|w|)`` for a tensor stored on devices; ``None`` when it stays exact.

    ``None`` for a digital tensor (``analog`` choice) and for an empty, all-zero or
    non-finite one: the caller then returns ``w`` unchanged.
    """
    if not is_analog(tensor, analog):
        return None
    w64 = w.astype(np.float64, copy=False)
    w_max = weight_max(w64)
    return None if w_max == 0.0 else (w64, w_max)


def weight_max(w: np.ndarray) -> float:
    """``max|w|``, the mapping's full-scale weight; 0 for an empty, all-zero or non-finite tensor (left unchanged)."""
    w_max = float(np.max(np.abs(w))) if w.size else 0.0
    return w_max if np.isfinite(w_max) else 0.0


def pair_targets(w: np.ndarray, w_max: float, g_max: float) -> np.ndarray:
    """Target conductances of the differential pairs.

    Args:
        w: Weights, any shape (float64).
        w_max: ``max|w|`` (> 0).
        g_max: Full-scale conductance (uS).

    Returns:
        float64 ``(2, *w.shape)``: ``[g+_T, g-_T]`` in uS.
    """
    scale = g_max / w_max
    return np.stack([np.maximum(w, 0.0) * scale, np.maximum(-w, 0.0) * scale])


def quantize_conductance(g: np.ndarray, g_max: float, levels: int) -> np.ndarray:
    """Round conductances in ``[0, g_max]`` to the nearest of ``levels`` even steps (``0`` and ``g_max`` exact)."""
    steps = levels - 1
    return np.rint(g / g_max * steps) / steps * g_max


@register
@dataclass(frozen=True)
class ConductanceLevels(NoiseModel):
    """Limited programming resolution: each device holds one of ``n`` conductance levels.

    ``w' = sign(w) * round(|w| / w_max * (n - 1)) / (n - 1) * w_max`` per weight
    (the differential pair's active device rounded to the nearest of ``n`` levels
    between 0 and ``g_max``; ``w_max = max|w|`` of the tensor). Deterministic: the
    seed does not matter. Source: ../shared/NOISE-MODELS.md sec. 6 (typical ``n`` 8 to 64).

    Strength: ``levels`` ``n``, an integer >= 2 (fewer levels, more error).

    Attributes:
        analog: ``weights`` (default: only weight matrices; biases and normalization
            parameters exact) or ``all`` (see :mod:`onnxnoise.noise.conductance`).
    """

    name: ClassVar[str] = "conductance-levels"
    strength_name: ClassVar[str] = "levels"
    strength_label: ClassVar[str] = "levels per device"
    more_noise_when: ClassVar[str] = "lower"
    default_strengths: ClassVar[tuple[float, ...]] = (64.0, 32.0, 16.0, 8.0)
    #: ``--levels 64,32,16,8``: powers of two, drawn on a log axis (fewer levels to the right).
    strength_axis: ClassVar[StrengthAxis] = StrengthAxis(
        flag="levels", unit="count", name="conductance levels per device", log=True, help="conductance levels per device, integers >= 2, e.g. 64,32,16,8")
    analog: str = "weights"

    def __post_init__(self) -> None:
        check_choice("analog", self.analog, ANALOG_CHOICES)

    def check_strength(self, value: Any) -> float:
        """Accept an integer number of levels >= 2."""
        value = super().check_strength(value)
        if value < 2 or value != int(value):
            msg = f"conductance `levels` must be an integer >= 2, got {value!r}"
            raise NoiseConfigError(msg)
        return value

    def format_strength(self, value: float | None) -> str:
        """``16 levels``; ``clean`` for the baseline."""
        return "clean" if value is None else f"{value:g} levels"

    def describe(self) -> str:
        """The formula in words."""
        return f"conductance quantization to n levels per device, w_max = max|w| per tensor (analog={self.analog})"

    def perturb(self, w: np.ndarray, strength: float, rng: np.random.Generator, tensor: TensorInfo) -> np.ndarray:
        """The weights read back from ``levels``-level devices; ``w`` itself for digital or all-zero tensors."""
        mapped = device_values(w, tensor, self.analog)
        if mapped is None:
            return w
        w64, w_max = mapped
        steps = int(strength) - 1
        out = np.sign(w64) * (np.rint(np.abs(w64) / w_max * steps) / steps * w_max)
        return out.astype(w.dtype, copy=False)
