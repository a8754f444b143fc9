"""Additive Gaussian weight noise relative to the largest weight: ``sigma = gamma * max|W|`` over a scope.

The weight-noise definition of IBM's Analog Foundation Models (2025, ``apply_noise_model.py``:
``sigma = 0.05 * max|W_row|`` per output row, or per row of each 512-input tile) and of
aihwkit-lightning's user guide (``ADD_NORMAL``: ``sigma = gamma * max|W|`` over the tensor;
``ADD_NORMAL_PER_CHANNEL``: one ``max`` per output channel); ../shared/PARITY.md sec. 3::

    w' = w + z * gamma * max|W|_scope,    z ~ N(0, 1) per element

``max|W|_scope`` is the full-scale weight of the analog mapping (:mod:`onnxnoise.noise.mapping`):

- ``tensor``: one ``max|W|`` per weight tensor (aihwkit-lightning ``ADD_NORMAL``);
- ``row`` (also spelled ``channel``): one per output row / channel (AFM's default,
  aihwkit-lightning ``ADD_NORMAL_PER_CHANNEL``), along the layer's output-channel axis;
- ``tile``: one per output row within each tile of ``--tile-rows`` input rows (AFM's
  512-input tile variant), input rows as the tile stages count them.

Unlike ``gaussian-snr`` (``sigma = std(w) / SNR``, the seed paper) the noise scales with the
largest weight, as a conductance range does, and the strength ``gamma`` grows with the noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from onnxnoise.noise.axis import StrengthAxis
from onnxnoise.noise.base import TensorInfo, register
from onnxnoise.noise.device import AnalogModel, is_analog
from onnxnoise.noise.mapping import check_mapping_layers, full_scale
from onnxnoise.noise.params import check_choice

__all__ = ["GaussianMax", "MAX_SCOPES"]

#: Values of ``gaussian-max``'s ``scope`` and the mapping (:data:`onnxnoise.noise.mapping.MAPPINGS`) each takes.
MAX_SCOPES: dict[str, str] = {"tensor": "tensor", "row": "channel", "tile": "tile-column"}


def _gamma_text(gamma: float) -> str:
    """Cell text of one strength: ``gamma 0.05 (5% of max|W|)``."""
    return f"gamma {gamma:g} ({100.0 * gamma:.3g}% of max|W|)"


@register
@dataclass(frozen=True)
class GaussianMax(AnalogModel):
    """Additive Gaussian noise ``sigma = gamma * max|W|`` per tensor, output row or tile row (AFM; aihwkit-lightning).

    ``w' = w + z * gamma * max|W|_scope`` (formula and sources in :mod:`onnxnoise.noise.gaussian_max`:
    Analog Foundation Models, IBM 2025; aihwkit-lightning ``ADD_NORMAL`` /
    ``ADD_NORMAL_PER_CHANNEL``; ../shared/PARITY.md sec. 3).

    Strength: ``gamma``, the noise std as a fraction of ``max|W|`` (0.05 = 5 %, AFM's
    setting), a finite number >= 0; ``gamma = 0`` leaves every tensor unchanged.

    Attributes:
        scope: ``tensor`` (default), ``row`` (``channel`` is the same and is stored as ``row``)
            or ``tile`` (needs the run's ``--tile-rows``).
        analog: ``weights`` (default: weight matrices only, as both sources noise only the analog
            layers' weights) or ``all`` (:class:`~onnxnoise.noise.device.AnalogModel`).

    ``z`` is drawn in float32 (float64 for float64 tensors) from the tensor's generator, so one
    seed's noise at ``gamma = 0.1`` is twice its noise at ``gamma = 0.05`` in every scope.

    Raises:
        NoiseConfigError: ``row`` / ``tile`` on a tensor without a known output-channel axis,
            or ``tile`` without ``--tile-rows`` (one line).
    """

    name: ClassVar[str] = "gaussian-max"
    strength_axis: ClassVar[StrengthAxis] = StrengthAxis(
        symbol="gamma", label="gamma", defaults=(0.01, 0.02, 0.05, 0.1), flag="gamma", unit="fraction",
        name="noise std gamma (fraction of max|W|)", text=_gamma_text,
        help="noise std as a fraction of max|W| over the scope (0.05 = 5 percent, the AFM setting), e.g. 0.02,0.05")

    scope: str = "tensor"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.scope == "channel":
            object.__setattr__(self, "scope", "row")  # one stored parameter set for both spellings
        check_choice("scope", self.scope, tuple(MAX_SCOPES), " (or channel, the same as row)")

    def check_layers(self, layers) -> None:
        """The analog check, then refuse ``row`` / ``tile`` on an analog tensor without a channel axis."""
        super().check_layers(layers)
        check_mapping_layers(self.name, MAX_SCOPES[self.scope], list(layers), self.acts_on, spelled=self._spelled())

    def tile_rows_needed(self) -> str | None:
        """``scope=tile`` needs ``--tile-rows``."""
        return "scope=tile" if self.scope == "tile" else None

    def _spelled(self) -> tuple[str, str]:
        return f"scope={self.scope}", "scope=tensor"

    def describe(self) -> str:
        """The formula in words."""
        where = {"tensor": "per tensor", "row": "per output row", "tile": "per output row of each tile"}[self.scope]
        return f"additive Gaussian, sigma = gamma * max|W| {where} (Analog Foundation Models; aihwkit-lightning)"

    def perturb(self, w: np.ndarray, strength: float, rng: np.random.Generator, tensor: TensorInfo) -> np.ndarray:
        """``w + z * gamma * max|W|``; ``w`` itself at ``gamma = 0``, for digital tensors and all-zero ones."""
        if strength == 0.0 or not is_analog(tensor, self.analog):
            return w
        w_max = full_scale(w, tensor, MAX_SCOPES[self.scope], spelled=self._spelled())
        if not np.any(w_max):
            return w
        draw_dtype = np.float64 if tensor.stored_dtype == np.float64 else np.float32
        noise = rng.standard_normal(w.shape, dtype=draw_dtype).astype(w.dtype, copy=False)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is counted by the caller
            noise *= (np.asarray(w_max) * strength).astype(w.dtype)
            return w + noise
