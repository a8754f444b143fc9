"""Conductance quantization alone: each device holds one of ``n`` levels (limited programming resolution).

../shared/NOISE-MODELS.md sec. 6: ``n`` programmable levels ``k * g_max / (n - 1)``,
``k = 0 .. n-1`` per device; a target is rounded to the nearest (half to even). On the
device template (:mod:`onnxnoise.noise.device`), with conductances in weight units
(``g_max = w_max``), that is the template's quantize step at ``levels = n`` and no other
stage; per weight

    w' = sign(w) * round(|w| / w_max * (n - 1)) / (n - 1) * w_max.

``pcm`` and ``stuck-at`` take the same grid as their ``levels`` parameter, applied to the
targets before their stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from onnxnoise.errors import NoiseConfigError
from onnxnoise.noise.axis import StrengthAxis
from onnxnoise.noise.base import register
from onnxnoise.noise.device import DeviceModel, Devices

__all__ = ["ConductanceLevels"]


@register
@dataclass(frozen=True)
class ConductanceLevels(DeviceModel):
    """Limited programming resolution: each device holds one of ``n`` conductance levels.

    ``w' = sign(w) * round(|w| / w_max * (n - 1)) / (n - 1) * w_max`` per weight
    (the differential pair's active device rounded to the nearest of ``n`` levels
    between 0 and ``g_max``; ``w_max = max|w|`` of the tensor). Deterministic: the
    seed does not matter. Source: ../shared/NOISE-MODELS.md sec. 6 (typical ``n`` 8 to 64).

    Strength: ``levels`` ``n``, an integer >= 2 (fewer levels, more error).

    Attributes:
        analog: The device template's: ``weights`` (default: only weight matrices; biases and
            normalization parameters exact) or ``all`` (see :mod:`onnxnoise.noise.device`).
        mapping: The device template's: ``w_max`` per ``tensor`` (default), ``channel`` or
            ``tile-column`` (each with its own grid; :mod:`onnxnoise.noise.mapping`).
    """

    name: ClassVar[str] = "conductance-levels"
    #: ``--levels 64,32,16,8``: powers of two, drawn on a log axis (fewer levels to the right).
    strength_axis: ClassVar[StrengthAxis] = StrengthAxis(
        symbol="levels", label="levels per device", more_noise_when="lower", defaults=(64.0, 32.0, 16.0, 8.0),
        flag="levels", unit="count", name="conductance levels per device", log=True, text="{} levels",
        help="conductance levels per device, integers >= 2, e.g. 64,32,16,8")

    def check_strength(self, value: Any) -> float:
        """Accept an integer number of levels >= 2."""
        value = super().check_strength(value)
        if value >= 2 and value == int(value):
            return value
        raise NoiseConfigError(f"conductance `levels` must be an integer >= 2, got {value!r}")

    def describe(self) -> str:
        """The formula in words."""
        return f"conductance quantization to n levels per device, {self.mapping_text()} (analog={self.analog})"

    def conductance_unit(self, w_max: float | np.ndarray) -> float | np.ndarray:
        """``w_max``: conductances in weight units, so the grid is ``k * w_max / (n - 1)``."""
        return w_max

    def levels_at(self, strength: float) -> int:
        """``n``, the strength."""
        return int(strength)

    def read_back(self, devices: Devices, strength: float) -> np.ndarray:
        """``sign(w)`` times the active device's level: ``sign(w) * (g+ + g-) * w_max / g_max``.

        Equal to the template's ``(g+ - g-) * w_max / g_max``, except that a negative weight
        rounded to level 0 reads ``-0.0``, as this model has always stored it.
        """
        tile = devices.tile
        return np.sign(tile.w) * ((devices.now[0] + devices.now[1]) * tile.unit)
