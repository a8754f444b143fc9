"""Additive white Gaussian weight noise scaled by a signal-to-noise ratio.

Noise model of Fagbohungbe & Qian, "Benchmarking Inference Performance of Deep
Learning Models on Analog Devices" (arXiv 2011.11840), eq. 1:

    w' = w + n,   n ~ N(0, sigma_noise^2),   sigma_noise = sigma_w / SNR

with ``sigma_w`` the standard deviation of the tensor being perturbed and SNR a
*linear* ratio of standard deviations (not dB). Noise power in percent is
``100 / SNR`` (1% = SNR 100).

Determinism: the standard-normal draw ``z`` for a tensor depends only on
``(seed, tensor name)``; the noise is ``z * std(w) / SNR``. So the same seed gives
the same noise in every mode (all layers, one layer, cumulative) and on every
worker, and one seed's noise at SNR 10 is exactly ten times its noise at SNR 100
(common random numbers, which make curves over SNR smoother).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np

from onnxnoise.errors import NoiseConfigError
from onnxnoise.model.graph import Layer
from onnxnoise.model.quant import QuantParams, dequantize, requantize

__all__ = [
    "BN_VARIANCE_POLICIES",
    "NoiseSpec",
    "NoiseResult",
    "apply_noise",
    "tensor_rng",
    "parse_snr_list",
]

#: What to do with BatchNormalization running variances that noise made negative.
#: ``clamp``: set them to 0 (the op then divides by sqrt(epsilon)); ``abs``: reflect
#: them to their absolute value; ``keep``: leave them negative (sqrt of a negative
#: number gives NaN logits, which are counted as wrong).
BN_VARIANCE_POLICIES: tuple[str, ...] = ("clamp", "abs", "keep")


@dataclass(frozen=True)
class NoiseSpec:
    """Settings of one additive-Gaussian noise draw.

    Attributes:
        snr: Linear signal-to-noise ratio ``sigma_w / sigma_noise`` (> 0);
            ``math.inf`` means no noise.
        seed: Non-negative integer seed; with the tensor name it fixes the draw.
        bn_variance: Policy for negative BatchNormalization variances, one of
            :data:`BN_VARIANCE_POLICIES`.
        keep_zeros: Leave exactly-zero weights at zero (pruned models).
    """

    snr: float
    seed: int = 0
    bn_variance: str = "clamp"
    keep_zeros: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.snr, bool) or not isinstance(self.snr, (int, float)) or math.isnan(self.snr):
            msg = f"`snr` must be a positive number, got {self.snr!r}"
            raise NoiseConfigError(msg)
        if self.snr <= 0:
            msg = f"`snr` must be > 0 (a linear ratio sigma_w / sigma_noise), got {self.snr!r}"
            raise NoiseConfigError(msg)
        if not isinstance(self.seed, int) or self.seed < 0:
            msg = f"`seed` must be a non-negative integer, got {self.seed!r}"
            raise NoiseConfigError(msg)
        if self.bn_variance not in BN_VARIANCE_POLICIES:
            msg = f"`bn_variance` must be one of {', '.join(BN_VARIANCE_POLICIES)}, got {self.bn_variance!r}"
            raise NoiseConfigError(msg)

    @property
    def noise_pct(self) -> float:
        """Noise standard deviation as a percentage of ``sigma_w`` (``100 / snr``)."""
        return 100.0 / self.snr

    def to_dict(self) -> dict:
        """Return the settings as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class NoiseResult:
    """Perturbed tensors of one trial.

    Attributes:
        arrays: ``tensor name -> noisy array`` (same shape and dtype as the clean one).
        bn_variance_changed: Number of BatchNormalization variance elements that the
            policy changed (clamped or reflected), or left negative under ``keep``.
        overflow_count: Elements that became non-finite when cast back to a narrow
            float dtype (float16 / bfloat16).
        clipped_count: Elements of integer-quantized tensors whose requantized value
            fell outside the integer range and was clipped (policy
            :data:`onnxnoise.model.quant.QUANT_POLICY`).
    """

    arrays: dict[str, np.ndarray]
    bn_variance_changed: int = 0
    overflow_count: int = 0
    clipped_count: int = 0


def tensor_rng(seed: int, tensor_name: str) -> np.random.Generator:
    """Return the generator that draws the noise of one tensor.

    Args:
        seed: The trial's seed (non-negative).
        tensor_name: The initializer's name.

    Returns:
        A PCG64 generator seeded from ``(seed, sha256(tensor_name))`` only.
    """
    digest = hashlib.sha256(tensor_name.encode("utf-8")).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *words])))


def apply_noise(
    initializers: Mapping[str, np.ndarray],
    layers: Iterable[Layer],
    spec: NoiseSpec,
) -> NoiseResult:
    """Draw noisy copies of the tensors of ``layers`` (paper eq. 1, per tensor).

    Each tensor ``w`` gets ``w + z * std(w) / snr`` with ``z`` standard normal from
    :func:`tensor_rng`. Noise is computed in float32 (float64 for float64 tensors) and
    cast back to the tensor's dtype (float16 / bfloat16 values that overflow to inf
    are counted). A tensor with ``std(w) == 0`` is returned unchanged, as is every
    tensor when ``snr`` is infinite.

    An integer-quantized tensor (``layer.quant`` entry set) follows
    :data:`onnxnoise.model.quant.QUANT_POLICY`: it is dequantized, ``w`` above is the
    dequantized tensor, and the noisy values are rounded back onto the tensor's
    quantization grid and clipped to its integer range (counted in ``clipped_count``).
    With ``keep_zeros``, elements equal to the zero point stay there. The scale and
    zero-point initializers must be in ``initializers``.

    Args:
        initializers: Clean ``name -> array`` from :func:`onnxnoise.model.graph.get_initializers`.
        layers: Layers whose tensors are perturbed.
        spec: Noise settings.

    Returns:
        A :class:`NoiseResult` holding new arrays only for the perturbed tensors;
        ``initializers`` is never modified.

    Raises:
        KeyError: If a layer names a tensor absent from ``initializers``.
    """
    arrays: dict[str, np.ndarray] = {}
    changed = 0
    overflow = 0
    clipped = 0
    for layer in layers:
        quant = tuple(getattr(layer, "quant", ())) or (None,) * len(layer.tensors)
        for name, role, params in zip(layer.tensors, layer.roles, quant):
            clean = initializers[name]
            if params is not None:
                arrays[name], n_clipped = _noisy_quantized(name, clean, params, initializers, spec)
                clipped += n_clipped
                continue
            work_dtype = np.float64 if clean.dtype == np.float64 else np.float32
            w = clean.astype(work_dtype, copy=False)
            sigma_w = float(np.std(w, dtype=np.float64))
            if math.isinf(spec.snr) or sigma_w == 0.0:
                arrays[name] = clean
                continue
            noise = tensor_rng(spec.seed, name).standard_normal(w.shape, dtype=work_dtype)
            with np.errstate(over="ignore", invalid="ignore"):  # overflow is counted below
                noise *= work_dtype(sigma_w / spec.snr)
                if spec.keep_zeros:
                    noise[w == 0] = 0
                noisy = w + noise
            if layer.op_type == "BatchNormalization" and role == "var":
                negative = noisy < 0
                changed += int(negative.sum())
                if spec.bn_variance == "clamp":
                    np.maximum(noisy, 0, out=noisy)
                elif spec.bn_variance == "abs":
                    np.abs(noisy, out=noisy)
            if noisy.dtype != clean.dtype:
                with np.errstate(over="ignore"):
                    noisy = noisy.astype(clean.dtype)
                overflow += int((~np.isfinite(noisy)).sum())
            arrays[name] = noisy
    return NoiseResult(arrays=arrays, bn_variance_changed=changed, overflow_count=overflow, clipped_count=clipped)


def _noisy_quantized(
    name: str,
    clean: np.ndarray,
    params: QuantParams,
    initializers: Mapping[str, np.ndarray],
    spec: NoiseSpec,
) -> tuple[np.ndarray, int]:
    """Dequantize, add eq. 1 noise in float, requantize with clipping; see :mod:`onnxnoise.model.quant`."""
    w = dequantize(clean, params, initializers)
    sigma_w = float(np.std(w))
    if math.isinf(spec.snr) or sigma_w == 0.0:
        return clean, 0
    noise = tensor_rng(spec.seed, name).standard_normal(w.shape, dtype=np.float32).astype(np.float64)
    noise *= sigma_w / spec.snr
    if spec.keep_zeros:
        noise[w == 0] = 0
    return requantize(w + noise, clean, params, initializers)


def parse_snr_list(snr: str | None = None, noise_pct: str | None = None) -> list[float]:
    """Parse ``--snr`` / ``--noise-pct`` lists into linear SNR values.

    Args:
        snr: Comma-separated linear SNRs, e.g. ``"100,10,5"``; ``inf`` is allowed.
        noise_pct: Comma-separated noise standard deviations in percent of
            ``sigma_w``, e.g. ``"1,2,5,10"``; converted with ``SNR = 100 / pct``.

    Returns:
        The SNR values in the order given (duplicates removed).

    Raises:
        NoiseConfigError: If both or neither are given, or a value is not a positive number.
    """
    if (snr is None) == (noise_pct is None):
        msg = "give exactly one of `--snr` (e.g. 100,10,5) or `--noise-pct` (e.g. 1,10,20)"
        raise NoiseConfigError(msg)
    flag, text = ("--snr", snr) if snr is not None else ("--noise-pct", noise_pct)
    values: list[float] = []
    for item in str(text).split(","):
        item = item.strip()
        try:
            value = float(item)
        except ValueError:
            msg = f"`{flag}` value {item!r} is not a number; use e.g. `{flag} 100,10,5`"
            raise NoiseConfigError(msg) from None
        if math.isnan(value) or value <= 0:
            msg = f"`{flag}` value {item!r} must be > 0"
            raise NoiseConfigError(msg)
        value = value if flag == "--snr" else 100.0 / value
        if value not in values:
            values.append(value)
    return values
