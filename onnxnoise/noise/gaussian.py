"""Additive white Gaussian weight noise scaled by a signal-to-noise ratio (the seed paper).

Fagbohungbe & Qian, "Benchmarking Inference Performance of Deep Learning Models on
Analog Devices" (arXiv 2011.11840), eq. 1:

    w' = w + n,   n ~ N(0, sigma_noise^2),   sigma_noise = sigma_w / SNR

with ``sigma_w`` the standard deviation of the tensor being perturbed (one sigma per
initializer) and SNR a *linear* ratio of standard deviations (not dB). Noise in
percent of ``sigma_w`` is ``100 / SNR`` (1% = SNR 100).

Determinism: the standard-normal draw ``z`` depends only on the tensor's generator,
i.e. on ``(seed, tensor name)``; the noise is ``z * std(w) / SNR``. The same seed
gives the same ``z`` in every mode and one seed's noise at SNR 10 is exactly ten
times its noise at SNR 100 (common random numbers).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from onnxnoise.errors import NoiseConfigError
from onnxnoise.noise.base import NoiseModel, TensorInfo, register

__all__ = ["GaussianSNR"]


@register
@dataclass(frozen=True)
class GaussianSNR(NoiseModel):
    """Additive Gaussian noise with ``sigma_noise = std(w) / SNR`` per tensor (paper eq. 1).

    Strength: the linear SNR ``sigma_w / sigma_noise``, finite and > 0. No parameters.
    """

    name: ClassVar[str] = "gaussian-snr"
    strength_name: ClassVar[str] = "snr"
    strength_label: ClassVar[str] = "SNR"
    more_noise_when: ClassVar[str] = "lower"
    #: The paper's whole-model grid, noise 1, 2, 5, 10 % of sigma_w (Table III).
    default_strengths: ClassVar[tuple[float, ...]] = (100.0, 50.0, 20.0, 10.0)

    def check_strength(self, value: Any) -> float:
        """Accept a finite linear SNR > 0 (the clean baseline is always run, so no ``inf``)."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
            msg = f"SNR must be a positive number, got {value!r}"
            raise NoiseConfigError(msg)
        if value <= 0 or math.isinf(value):
            msg = (f"SNR must be finite and > 0 (a linear ratio sigma_w / sigma_noise; "
                   f"the clean baseline is added for you), got {value!r}")
            raise NoiseConfigError(msg)
        return float(value)

    def format_strength(self, value: float | None) -> str:
        """``SNR 10 (10% noise)``; ``clean`` for the baseline."""
        return "clean" if value is None else f"SNR {value:g} ({100.0 / value:.3g}% noise)"

    def describe(self) -> str:
        """The formula in words."""
        return "additive Gaussian, sigma = std(w)/SNR per tensor (paper eq. 1)"

    def perturb(self, w: np.ndarray, strength: float, rng: np.random.Generator, tensor: TensorInfo) -> np.ndarray:
        """``w + z * std(w) / SNR``; ``w`` unchanged when ``std(w) == 0``.

        ``z`` is drawn in float64 for float64 tensors, else in float32 (also for
        integer-quantized tensors, whose dequantized ``w`` is float64).
        """
        sigma_w = float(np.std(w, dtype=np.float64))
        if sigma_w == 0.0:
            return w
        draw_dtype = np.float64 if tensor.stored_dtype == np.float64 else np.float32
        noise = rng.standard_normal(w.shape, dtype=draw_dtype).astype(w.dtype, copy=False)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is counted by the caller
            noise *= w.dtype.type(sigma_w / strength)
            return w + noise
