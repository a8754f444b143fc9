"""No weight noise: every weight stays exact, to measure the analog tile's input/output stages alone.

``--noise none --dac-bits 8 --adc-bits 8`` answers "what do 8-bit converters cost, without any weight
noise?": every noisy trial of the run applies the stages (:mod:`onnxnoise.engine.stages`) to the layers
it noises, and this model leaves their weights as they are. Its one strength is 0 (nothing to sweep);
it acts on no tensor (:meth:`NoWeightNoise.acts_on`), so no "the draw changed 0 values" warning is
given for it. Without a stage on, its trials equal the clean baseline (a check of the pipeline).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from onnxnoise.errors import NoiseConfigError
from onnxnoise.noise.axis import StrengthAxis
from onnxnoise.noise.base import NoiseModel, TensorInfo, register

__all__ = ["NoWeightNoise"]


@register
@dataclass(frozen=True)
class NoWeightNoise(NoiseModel):
    """Weights left exact (strength 0 only): the tile's input/output stages alone.

    No parameters. ``perturb`` returns the clean tensor itself, so every trial's weights equal the
    clean model's bit for bit; what differs from the baseline is what the run's stages
    (``--dac-bits``, ``--adc-bits``, ``--read-noise``, ``--tile-rows``) do.
    """

    name: ClassVar[str] = "none"
    strength_axis: ClassVar[StrengthAxis] = StrengthAxis(
        symbol="none", label="weight noise", defaults=(0.0,), flag=None, unit="count", name="no weight noise",
        text="weights exact", help="none: its one strength is 0 (no weight noise)")

    def describe(self) -> str:
        """The model in words."""
        return "weights exact (no weight noise; the tile's input/output stages alone)"

    def check_strength(self, value: Any) -> float:
        """Only 0.

        Raises:
            NoiseConfigError: Any other value.
        """
        if isinstance(value, bool) or value != 0:
            msg = f"noise model none has one strength, 0 (no weight noise), got {value!r}; drop --strength"
            raise NoiseConfigError(msg)
        return 0.0

    def acts_on(self, role: str, op_type: str, quantized: bool) -> bool:
        """No tensor: the model never changes a weight (so no layer is reported as left unchanged)."""
        return False

    def perturb(self, w: np.ndarray, strength: float, rng: np.random.Generator, tensor: TensorInfo) -> np.ndarray:
        """``w`` itself (unchanged)."""
        return w
