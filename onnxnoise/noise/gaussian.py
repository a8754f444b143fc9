"""Additive white Gaussian weight noise scaled by a signal-to-noise ratio (the seed paper).

Fagbohungbe & Qian, "Benchmarking Inference Performance of Deep Learning Models on
Analog Devices" (arXiv 2011.11840), eq. 1:

    w' = w + n,   n ~ N(0, sigma_noise^2),   sigma_noise = sigma_w / SNR

with ``sigma_w`` the standard deviation of the tensor being perturbed (one sigma per
initializer) and SNR a *linear* ratio of standard deviations (not dB). Noise in
percent of ``sigma_w`` is ``100 / SNR`` (1% = SNR 100). Parameter ``scope`` reads
``sigma_w`` over the tensor (default), the whole layer or each output channel
(:mod:`onnxnoise.noise.scope`).

:class:`GaussianGlobalDb` (``gaussian-global-db``) is NoisyNN's whole-model variant
(Shao, Liew & Gunduz, arXiv 2105.10699): one sigma for every weight of the model from
an SNR in dB defined on mean squares, ``SNR_dB = 10 log10(mean(w^2) / sigma^2)``.

Determinism: the standard-normal draw ``z`` depends only on the tensor's generator,
i.e. on ``(seed, tensor name)``; the noise is ``z * std(w) / SNR``. The same seed
gives the same ``z`` in every mode and one seed's noise at SNR 10 is exactly ten
times its noise at SNR 100 (common random numbers).
"""

from __future__ import annotations

import math
import numbers
import weakref
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from onnxnoise.errors import NoiseConfigError
from onnxnoise.noise.axis import PlotAs, StrengthAxis
from onnxnoise.noise.base import NoiseModel, TensorInfo, register
from onnxnoise.noise.params import check_choice
from onnxnoise.noise.scope import SCOPES, scoped_std

__all__ = ["GaussianSNR", "GaussianGlobalDb", "NOISE_PCT_LABEL"]

#: X label of gaussian-snr figures: the noise in percent of ``sigma_w`` (paper eq. 1), as the paper's figures show it.
NOISE_PCT_LABEL = r"noise std (% of $\sigma_w$) = 100 / SNR"


def snr_from_noise_pct(values: tuple[float, ...]) -> tuple[float, ...]:
    """``--noise-pct`` values (noise std in percent of ``sigma_w``) -> linear SNRs, ``SNR = 100 / pct`` (eq. 1).

    Raises:
        ValueError: If a value is not finite and > 0 (the message lists all values).
    """
    if any(not v > 0 or math.isinf(v) for v in values):
        msg = f"`--noise-pct` values must be finite and > 0, got {', '.join(f'{v:g}' for v in values)}"
        raise ValueError(msg)
    return tuple(100.0 / v for v in values)


def _pct(snr: float) -> str:
    """``100 / SNR`` with 3 significant digits (``inf`` for SNR 0)."""
    noise = 100.0 / snr
    return "inf" if math.isinf(noise) else f"{noise:.3g}"


def _snr_text(snr: float) -> str:
    """Cell text of one SNR: ``SNR 10 (10% noise)``."""
    return f"SNR {snr:g} ({100.0 / snr:.3g}% noise)"


def _snr_legend(snr: float) -> str:
    """Legend text of one SNR on the noise-percent axis: ``10% (SNR 10)``."""
    return f"{_pct(snr)}% (SNR {'inf' if math.isinf(snr) else f'{snr:.3g}'})"


#: gaussian-snr figures: x = noise std in percent of ``sigma_w`` = ``100 / SNR``, the clean baseline at 0 %.
NOISE_PCT_PLOT = PlotAs(label=NOISE_PCT_LABEL, legend_title=NOISE_PCT_LABEL.split(" = ")[0], x=lambda snr: 100.0 / snr,
                        baseline_x=0.0, legend=_snr_legend, tick=lambda snr: f"{_pct(snr)}%")


def _draw_dtype(tensor: TensorInfo) -> type:
    """float64 draws for float64 tensors, else float32 (also for integer-quantized ones)."""
    return np.float64 if tensor.stored_dtype == np.float64 else np.float32


@register
@dataclass(frozen=True)
class GaussianSNR(NoiseModel):
    """Additive Gaussian noise with ``sigma_noise = sigma_w / SNR`` (paper eq. 1).

    ``w' = w + z * sigma_w / SNR``, ``z ~ N(0, 1)`` per element. Source: Fagbohungbe &
    Qian, arXiv 2011.11840, eq. 1.

    Strength: the linear SNR ``sigma_w / sigma_noise``, finite and > 0.

    Attributes:
        scope: Over what ``sigma_w`` is taken (:mod:`onnxnoise.noise.scope`):
            ``tensor`` (default: ``std`` of the tensor perturbed), ``layer`` (``std`` of
            all of the layer's tensors pooled) or ``channel`` (one ``std`` per output
            channel; tensors without a channel axis, e.g. 1-D biases, use their own
            ``std``). Whole-model noise is the ``gaussian-global-db`` model. The same
            ``z`` is drawn in every scope (common random numbers). The default is left
            out of :meth:`params`, so runs that do not set it keep their stored
            parameters ``{}`` and trial keys.
    """

    name: ClassVar[str] = "gaussian-snr"
    parallel_draw: ClassVar[bool] = True
    split_draw: ClassVar[bool] = True
    aliases: ClassVar[tuple[str, ...]] = ("gaussian",)
    #: Defaults: the paper's whole-model grid, noise 1, 2, 5, 10 % of sigma_w (Table III); figures in noise percent.
    strength_axis: ClassVar[StrengthAxis] = StrengthAxis(
        symbol="snr", label="SNR", more_noise_when="lower", defaults=(100.0, 50.0, 20.0, 10.0), flag="snr",
        unit="ratio", text=_snr_text, help="linear SNR sigma_w / sigma_noise, e.g. 100,10,5",
        alt_flag="noise-pct", alt_help="noise std in percent of sigma_w (SNR = 100 / value), e.g. 1,2,5,10",
        from_alt=snr_from_noise_pct, plot=NOISE_PCT_PLOT)
    scope: str = "tensor"

    def __post_init__(self) -> None:
        hint = ("; whole-model noise (NoisyNN, SNR in dB over mean squares) is the model gaussian-global-db"
                if self.scope == "global" else "")
        check_choice("scope", self.scope, SCOPES, hint)

    def params(self) -> dict[str, Any]:
        """``{}`` for the default ``scope="tensor"`` (stored rows and trial keys unchanged), else ``{"scope": ...}``."""
        return {} if self.scope == "tensor" else {"scope": self.scope}

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

    def describe(self) -> str:
        """The formula in words."""
        where = {"tensor": "per tensor", "layer": "per layer (all its tensors pooled)",
                 "channel": "per output channel"}[self.scope]
        return f"additive Gaussian, sigma = std(w)/SNR {where} (paper eq. 1)"

    def perturb(self, w: np.ndarray, strength: float, rng: np.random.Generator, tensor: TensorInfo) -> np.ndarray:
        """``w + z * sigma_w / SNR``; ``w`` unchanged when ``sigma_w == 0`` (every channel's, in channel scope).

        ``z`` is drawn in float64 for float64 tensors, else in float32 (also for
        integer-quantized tensors, whose dequantized ``w`` is float64). In channel
        scope a channel whose std is 0 gets no noise.
        """
        sigma_w = scoped_std(w, tensor, self.scope)
        if isinstance(sigma_w, float):
            if sigma_w == 0.0:
                return w
            noise = rng.standard_normal(w.shape, dtype=_draw_dtype(tensor)).astype(w.dtype, copy=False)
            with np.errstate(over="ignore", invalid="ignore"):  # overflow is counted by the caller
                noise *= w.dtype.type(sigma_w / strength)
                return np.add(w, noise, out=noise)  # w + noise, in the draw's buffer
        if not np.any(sigma_w):
            return w
        noise = rng.standard_normal(w.shape, dtype=_draw_dtype(tensor)).astype(w.dtype, copy=False)
        with np.errstate(over="ignore", invalid="ignore"):
            noise *= (sigma_w / strength).astype(w.dtype)
            return np.add(w, noise, out=noise)


#: One-entry cache of the model's mean square: (weak reference to the draw's
#: ``model_values``, value). All tensors of one draw share that mapping.
_MEAN_SQUARE: list = [None]


@register
@dataclass(frozen=True)
class GaussianGlobalDb(NoiseModel):
    """NoisyNN's whole-model additive Gaussian noise: one sigma from an SNR in dB.

    ``w' = w + z * sigma``, ``z ~ N(0, 1)``, with one ``sigma`` for every weight of the model:

        SNR_dB = 10 log10( mean(w^2) / sigma^2 )   =>   sigma = sqrt( mean(w^2) / 10^(SNR_dB / 10) )

    ``mean(w^2)`` is taken over every tensor of every non-BatchNormalization parameter
    layer of the model together (weights and their biases; not only the noised
    layers), dequantized where quantized. Source: Shao, Liew & Gunduz, "NoisyNN"
    (arXiv 2105.10699). Unlike ``gaussian-snr`` the signal is a power (mean of
    squares, not a variance) and the ratio is in dB: SNR 20 dB is ``sigma`` = 10% of
    the weights' RMS.

    Strength: ``SNR_dB``, any finite number (negative: noise stronger than the weights).
    No parameters. BatchNormalization tensors, outside the signal's definition, are
    left unchanged even when their layer is selected.

    Raises (from :meth:`perturb`):
        NoiseConfigError: If the draw was not given the model's layers
            (``draw_noise(..., model_layers=...)``; the engine always gives them).
    """

    name: ClassVar[str] = "gaussian-global-db"
    parallel_draw: ClassVar[bool] = True
    split_draw: ClassVar[bool] = True
    strength_axis: ClassVar[StrengthAxis] = StrengthAxis(
        symbol="snr_db", label="SNR (dB)", more_noise_when="lower", defaults=(40.0, 30.0, 20.0, 10.0), flag="snr-db",
        unit="dB", name="SNR over the whole model (dB)", text="SNR {} dB",
        help="SNR in dB, 10 log10(mean(w^2) / sigma^2) over the whole model, e.g. 40,30,20")

    def check_strength(self, value: Any) -> float:
        """Accept any finite SNR in dB."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            msg = f"SNR in dB must be a finite number, got {value!r}"
            raise NoiseConfigError(msg)
        return float(value)

    def describe(self) -> str:
        """The formula in words."""
        return "additive Gaussian, one sigma for the whole model, SNR_dB = 10 log10(mean(w^2)/sigma^2) (NoisyNN)"

    @staticmethod
    def mean_square(tensor: TensorInfo) -> float:
        """``mean(w^2)`` over every tensor of the model's non-BatchNormalization layers.

        Raises:
            NoiseConfigError: If ``tensor.model_layers`` is empty.
        """
        values = tensor.model_values
        if not tensor.model_layers or values is None:
            msg = "gaussian-global-db needs every layer of the model: draw_noise(..., model_layers=list_layers(model))"
            raise NoiseConfigError(msg)
        cached = _MEAN_SQUARE[0]
        if cached is not None and cached[0]() is values:
            return cached[1]
        total = count = 0.0
        for layer in tensor.model_layers:
            if layer.op_type == "BatchNormalization":
                continue
            for name in layer.tensors:
                v = np.asarray(values[name]).astype(np.float64, copy=False).ravel()
                total += float(np.dot(v, v))
                count += v.size
        mean_square = total / count if count else 0.0
        _MEAN_SQUARE[0] = (weakref.ref(values), mean_square)
        return mean_square

    def perturb(self, w: np.ndarray, strength: float, rng: np.random.Generator, tensor: TensorInfo) -> np.ndarray:
        """``w + z * sigma``; BatchNormalization tensors and an all-zero model are left unchanged."""
        if tensor.op_type == "BatchNormalization":
            return w
        mean_square = self.mean_square(tensor)
        if mean_square == 0.0:
            return w
        sigma = math.sqrt(mean_square / 10.0 ** (strength / 10.0))
        noise = rng.standard_normal(w.shape, dtype=_draw_dtype(tensor)).astype(w.dtype, copy=False)
        with np.errstate(over="ignore", invalid="ignore"):
            noise *= w.dtype.type(sigma)
            return w + noise
