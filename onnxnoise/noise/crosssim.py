"""CrossSim's programming errors on differential (BALANCED) conductance pairs, clipped to ``[Gmin, Gmax]``.

Source: Sandia CrossSim 3.2.0 (sandialabs/cross-sim at 0a2eb1e), its Inference manual v2.0 and
the ISCA 2024 tutorial (``tutorial/ISCA2024/isca24_codesign.ipynb``); restated in
../shared/PARITY.md sec. 2 and sec. 3. Conductances are in units of ``Gmax`` (``Gmax = 1``),
``Gmin = g_ratio``.

Mapping (CrossSim's BALANCED core; the device template :mod:`onnxnoise.noise.device` with
``g_min > 0``)::

    w > 0:  G+ = Gmin + |w| / w_max * (Gmax - Gmin),  G- = Gmin;   w < 0: the reverse

``w_max`` over the template's ``mapping`` (tensor, output channel or tile column). Both
devices of every pair are programmed with an error and clipped::

    independent:   G' = clip(G + alpha * Gmax * z, Gmin, Gmax)    (state-independent)
    proportional:  G' = clip(G + alpha * G    * z, Gmin, Gmax)    (state-proportional)

and read back ``w' = (G+' - G-') / (Gmax - Gmin) * w_max``. ``g_ratio = Gmin / Gmax`` defaults
to the ISCA 2024 tutorial's devices, ``Rmin = 4.45 kOhm`` and ``Rmax = 20 kOhm``:
``Gmin / Gmax = Rmin / Rmax = 4.45 / 20 = 0.2225``. Drift and read noise (CrossSim's other
device effects) are not part of this model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from onnxnoise.noise.axis import StrengthAxis
from onnxnoise.noise.base import register
from onnxnoise.noise.device import Devices, QuantizedDeviceModel
from onnxnoise.noise.params import check_choice

__all__ = ["CrossSim", "ERRORS", "ISCA2024_G_RATIO"]

#: Values of the ``error`` parameter.
ERRORS: tuple[str, ...] = ("independent", "proportional")

#: ``Gmin / Gmax`` of the ISCA 2024 tutorial's devices: ``Rmin / Rmax = 4.45 kOhm / 20 kOhm``.
ISCA2024_G_RATIO = 4.45 / 20.0


def _alpha_text(alpha: float) -> str:
    """Cell text of one strength: ``alpha 0.05``."""
    return f"alpha {alpha:g}"


@register
@dataclass(frozen=True)
class CrossSim(QuantizedDeviceModel):
    """CrossSim programming error, ``sigma = alpha * Gmax`` or ``alpha * G``, on balanced pairs clipped to ``[Gmin, Gmax]``.

    Formulas and sources in :mod:`onnxnoise.noise.crosssim` (Sandia CrossSim 3.2.0, Inference
    manual v2.0, ISCA 2024 tutorial; ../shared/PARITY.md sec. 2).

    Strength: ``alpha``, the programming error's std as a fraction of ``Gmax`` (``independent``)
    or of each device's target conductance (``proportional``); a finite number >= 0.
    ``alpha = 0`` without ``levels`` returns every tensor bit for bit.

    Attributes:
        error: ``independent`` (default, ``sigma = alpha * Gmax``) or ``proportional``
            (``sigma = alpha * G``).
        g_ratio: ``Gmin / Gmax``, in ``[0, 1)`` (default 0.2225 = 4.45 kOhm / 20 kOhm, the ISCA
            2024 tutorial's ``Rmin`` / ``Rmax``).
        levels, analog, mapping: The device template's (:class:`~onnxnoise.noise.device.QuantizedDeviceModel`):
            a grid of ``levels`` conductances from ``Gmin`` to ``Gmax`` for the targets before the
            error (0, default: continuous), ``weights`` (default) or ``all``, and ``w_max`` per
            ``tensor`` (default), ``channel`` or ``tile-column``.

    Random numbers: one standard normal per device (``(2, *w.shape)``) from the tensor's
    generator, so one seed's errors at two strengths differ only by the factor (before clipping).
    """

    name: ClassVar[str] = "crosssim"
    strength_axis: ClassVar[StrengthAxis] = StrengthAxis(
        symbol="alpha", label="alpha", defaults=(0.01, 0.02, 0.05, 0.1), flag="alpha", unit="fraction",
        name="programming error alpha (fraction of Gmax or of G)", text=_alpha_text,
        help="programming error std alpha, a fraction of Gmax (error=independent) or of each conductance "
             "(error=proportional), e.g. 0.01,0.05,0.1")

    error: str = "independent"
    g_ratio: float = ISCA2024_G_RATIO

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("error", self.error, ERRORS)
        ratio = self.g_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
            raise ValueError(f"`g_ratio` must be a number in [0, 1) (Gmin / Gmax), got {ratio!r}")
        object.__setattr__(self, "g_ratio", float(ratio))  # 0 and 0.0: one stored parameter set

    def describe(self) -> str:
        """The model and its parameters in words."""
        sigma = "alpha * Gmax" if self.error == "independent" else "alpha * G"
        extra = f", {self.levels} levels" if self.levels else ""
        return (f"CrossSim programming error sigma = {sigma} ({self.error}), balanced pairs clipped to "
                f"[Gmin, Gmax], Gmin/Gmax = {self.g_ratio:g}, {self.mapping_text()} (analog={self.analog}{extra})")

    def conductance_floor(self, g_max: float | np.ndarray) -> float:
        """``Gmin = g_ratio * Gmax`` (``Gmax = 1``, the default unit)."""
        return self.g_ratio * float(g_max)

    def leaves_unchanged(self, strength: float) -> bool:
        """``alpha = 0`` without a levels grid changes no tensor."""
        return strength == 0.0 and not self.levels

    def program_stage(self, devices: Devices, strength: float, rng: np.random.Generator | None) -> np.ndarray:
        """``clip(G + sigma * z, Gmin, Gmax)`` of every device, ``sigma = alpha * Gmax`` or ``alpha * G``."""
        if strength == 0.0:
            return devices.target
        tile = devices.tile
        z = rng.standard_normal(devices.target.shape)
        sigma = strength * (tile.g_max if self.error == "independent" else devices.target)
        return np.clip(devices.target + sigma * z, tile.g_min, tile.g_max)

    def read_back(self, devices: Devices, strength: float) -> np.ndarray:
        """``w + (dG+ - dG-) / (Gmax - Gmin) * w_max`` (:meth:`~onnxnoise.noise.device.Tile.shifted`)."""
        return devices.tile.shifted(devices.now)
