"""Stuck-at device faults on the differential-pair mapping.

../shared/NOISE-MODELS.md sec. 5: a device is stuck-at-off (SA0: reads conductance 0)
or stuck-at-on (SA1: reads ``g_max``). Each weight is a pair ``(g+, g-)`` (the device
template :mod:`onnxnoise.noise.device`, ``w_max = max|w|`` of the tensor, conductances
in units of ``g_max``) and

    w' = (g+ - g-) / g_max * w_max

with stuck devices replaced by 0 or ``g_max``. So an SA0 on the weight's active device
makes it 0 (on the idle device, already at 0, it changes nothing); an SA1 on the
positive device gives ``w_max - |w|`` for a negative weight and ``+w_max`` otherwise
(symmetrically ``-w_max`` on the negative device); both devices SA1 gives 0. Typical
reported rates 0.1% to 10% (RRAM fault studies; PIMACC / PIMCOMP-NN expose stuck-at
rates). Faults are the template's fault stage; the map back reads only the pairs a
fault changed (the others keep ``w`` exactly), or every pair under a ``levels`` grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from onnxnoise.errors import NoiseConfigError
from onnxnoise.noise.axis import StrengthAxis
from onnxnoise.noise.base import register
from onnxnoise.noise.device import Devices, QuantizedDeviceModel
from onnxnoise.noise.params import check_fraction

__all__ = ["StuckAt"]


@register
@dataclass(frozen=True)
class StuckAt(QuantizedDeviceModel):
    """Stuck-at-0 / stuck-at-1 device faults at a device fault rate ``p`` (NOISE-MODELS.md sec. 5).

    Every device (two per weight) is faulty independently with probability ``p``; a
    faulty device is stuck-on (SA1, reads ``g_max``) with probability
    ``sa1_fraction``, else stuck-off (SA0, reads 0). So ``p_sa1 = p * sa1_fraction``
    and ``p_sa0 = p * (1 - sa1_fraction)`` per device. Formula in :mod:`onnxnoise.noise.stuck`.

    Strength: ``p``, the device fault rate, a number in ``[0, 1]``.

    Attributes:
        sa1_fraction: Share of faults that are stuck-on, in ``[0, 1]``. Default 0.5:
            a neutral split, not a published value (reported ratios vary by device
            and study); set it for the technology you model.
        levels, analog: The device template's (:class:`~onnxnoise.noise.device.QuantizedDeviceModel`):
            a levels grid for the healthy devices (0, default: continuous; the targets are
            quantized first, then faults applied), ``weights`` (default: weight
            matrices only) or ``all``, and ``mapping`` (``w_max`` per ``tensor``, default,
            ``channel`` or ``tile-column``; :mod:`onnxnoise.noise.mapping`).

    Random numbers: one uniform ``u`` per device from the tensor's generator; the device
    is SA1 when ``u < p * sa1_fraction`` and SA0 when ``p * sa1_fraction <= u < p``. The
    same seed therefore gives nested faults: every fault at rate ``p`` is also a fault
    at any higher rate (common random numbers along the sweep).
    """

    name: ClassVar[str] = "stuck-at"
    #: ``--rate 0.001,0.01,0.1``: a fraction of devices, shown as ``0.1%``, drawn on a log axis.
    strength_axis: ClassVar[StrengthAxis] = StrengthAxis(
        symbol="p", label="fault rate", defaults=(0.001, 0.003, 0.01, 0.03, 0.1), flag="rate", unit="fraction",
        name="device fault rate p", log=True, style="percent", text="p = {} faulty devices",
        help="device fault rate p in [0, 1] (0.001 = 0.1 percent of devices), e.g. 0.001,0.01,0.1")
    aliases: ClassVar[tuple[str, ...]] = ("stuck",)

    sa1_fraction: float = 0.5

    @classmethod
    def split_params(cls, params: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, Any] | None]:
        """Also read the published per-kind rates: ``stuck:p_sa0=0.01,p_sa1=0.001``.

        ``p_sa0`` / ``p_sa1`` (a missing one is 0) are the fractions of devices stuck-off
        and stuck-on (NOISE-MODELS.md sec. 5); they give the strength ``p = p_sa0 + p_sa1``
        and ``sa1_fraction = p_sa1 / p``, the same draw as ``--rate p`` with that split.

        Raises:
            NoiseConfigError: If the rates are not fractions, do not sum to at most 1, or
                are given together with ``sa1_fraction`` or another strength.
        """
        params = dict(params)
        if "p_sa0" not in params and "p_sa1" not in params:
            return super().split_params(params)
        rates = {key: params.pop(key, 0.0) for key in ("p_sa0", "p_sa1")}
        for key, value in rates.items():
            try:
                check_fraction(key, value)
            except ValueError as exc:
                raise NoiseConfigError(f"stuck-at: {exc}") from None
        rest, other = super().split_params(params)
        if other is not None or "sa1_fraction" in rest:
            given = other[0] if other is not None else "sa1_fraction"
            msg = (f"stuck-at: give the fault rates either as p_sa0/p_sa1 or as the rate p (--rate) with "
                   f"sa1_fraction, not both (got p_sa0/p_sa1 and {given})")
            raise NoiseConfigError(msg)
        p = float(rates["p_sa0"]) + float(rates["p_sa1"])
        if p > 1:
            msg = f"stuck-at: p_sa0 + p_sa1 must be at most 1 (fractions of devices), got {p:g}"
            raise NoiseConfigError(msg)
        if p > 0:
            rest["sa1_fraction"] = float(rates["p_sa1"]) / p
        return rest, ("rate", p)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fraction("sa1_fraction", self.sa1_fraction)
        object.__setattr__(self, "sa1_fraction", float(self.sa1_fraction))  # 1 and 1.0: one stored parameter set

    def check_strength(self, value: Any) -> float:
        """Accept a device fault rate in ``[0, 1]``."""
        value = super().check_strength(value)
        if value > 1:
            msg = f"stuck-at fault rate `p` must be in [0, 1] (a fraction of devices), got {value!r}"
            raise NoiseConfigError(msg)
        return value

    def describe(self) -> str:
        """The model and its parameters in words; the stuck-on share as a percentage (``9.09% of them stuck-on``)."""
        extra = f", {self.levels} levels" if self.levels else ""
        return (f"stuck-at faults per device, {100.0 * self.sa1_fraction:.3g}% of them stuck-on (the rest stuck-off), "
                f"differential pairs, {self.mapping_text()} (analog={self.analog}{extra})")

    def faults(self, shape: tuple[int, ...], p: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(sa0, sa1)`` boolean masks of shape ``(2, *shape)`` (``[g+, g-]`` devices)."""
        u = rng.random((2, *shape))
        p_sa1 = p * self.sa1_fraction
        sa1 = u < p_sa1
        return (u < p) & ~sa1, sa1

    def leaves_unchanged(self, strength: float) -> bool:
        """``p = 0`` without a levels grid changes no tensor."""
        return strength == 0.0 and not self.levels

    def fault_stage(self, devices: Devices, strength: float, rng: np.random.Generator | None) -> np.ndarray:
        """The pairs with faulty devices stuck at 0 (SA0) or ``g_max`` (SA1); unchanged at ``p = 0``."""
        if strength <= 0.0:
            return devices.now
        sa0, sa1 = self.faults(devices.tile.w.shape, strength, rng)
        g = devices.now.copy()
        g[sa0] = 0.0
        g[sa1] = np.broadcast_to(devices.tile.g_max, g.shape)[sa1]
        return g

    def read_back(self, devices: Devices, strength: float) -> np.ndarray:
        """The weights of the pairs a fault changed (an SA0 on an idle device changes nothing), ``w`` elsewhere.

        Under a ``levels`` grid every pair is read back (``(g+ - g-) * w_max``).
        """
        read = devices.tile.weights(devices.now)
        if self.levels:
            return read
        return np.where((devices.now != devices.target).any(axis=0), read, devices.tile.w)
