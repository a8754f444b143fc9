"""Phase-change memory (PCM): programming noise, conductance drift and 1/f read noise (IBM statistical model).

Sources: Nandakumar et al., ICECS 2019 ("Phase-change memory models for deep learning
training and inference"); Joshi et al., Nature Communications 11, 2473 (2020); IBM
aihwkit documentation "Inference and PCM statistical model" (PCMLikeNoiseModel).
Restated, with every symbol, in ../shared/NOISE-MODELS.md sec. 4. Conductances are in
microsiemens (uS), times in seconds.

The template :class:`onnxnoise.noise.device.DeviceModel` maps each weight to a
differential pair ``(g+, g-)``: ``g_T = |w| / w_max * g_max`` on the device of the
weight's sign, 0 on the other, ``w_max = max|w|`` of the tensor (or of each output
channel or tile column: the template's ``mapping``, :mod:`onnxnoise.noise.mapping`; aihwkit's
inference preset maps per channel), optionally on a ``levels`` grid. Both devices of every pair go through pcm's three stage hooks (as in
aihwkit: a device programmed to 0 also gets programming noise, clipped at 0),
``x = g_T / g_max``:

1. programming (after write-verify, at ``t0 = 20 s``)::

       sigma_prog = max(c0 + c1 x + c2 x^2, 0) * g_max / 25,   c = (0.26348, 1.9650, -1.1731)
       g_prog     = max(g_T + sigma_prog * z1, 0)

2. drift to ``t = t_inf + t0``::

       mu_nu    = clip(-0.0155 ln x + 0.0244, 0.049, 0.1)
       sigma_nu = clip(-0.0125 ln x - 0.0059, 0.008, 0.045)     (x clipped below at 1e-7)
       nu       = |mu_nu + sigma_nu * z2|,   g_drift = g_prog * (t / t0)^(-nu)

3. 1/f read noise accumulated to ``t`` (``t_read = 250 ns``)::

       Q_s        = min(0.0088 / max((g_prog / g_max)^0.65, 1e-3), 0.2)
       sigma_read = Q_s * sqrt(ln((t + t_read) / (2 t_read)))
       g(t)       = max(g_drift + |g_drift| * sigma_read * z3, 0)

and back (:meth:`PCM.read_back`): ``w'(t) = (g+(t) - g-(t)) / g_max * w_max``.

Global drift compensation (Joshi 2020; aihwkit GlobalDriftCompensation): one scalar
per tensor (= per layer: a layer has one analog weight), from the summed absolute
response to an all-ones input, read right after programming and at ``t``::

    alpha = sum_o |sum_i W_prog[o, i]| / sum_o |sum_i W(t)[o, i]|,    w'(t) <- alpha * w'(t)

``o`` runs along the output-channel axis (:attr:`onnxnoise.model.Layer.channel_axes`;
Conv weight ``[C_out, C_in, kH, kW]`` is the matrix ``[C_out, C_in kH kW]``); a tensor
without a known channel axis (1-D, or ``analog="all"`` on other tensors) is read
element by element (``sum|W|``). ``W_prog`` is the programmed tensor (programming
noise included) without read noise: a whole layer's read noise averages out of a real
reference read. So compensation keeps each tensor's summed absolute response at its
programmed value; with programming noise off, exactly at the clean ``sum_o |sum_i w|``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from onnxnoise.noise.axis import StrengthAxis, format_seconds
from onnxnoise.noise.base import register
from onnxnoise.noise.device import Devices, QuantizedDeviceModel
from onnxnoise.noise.params import check_bool, check_choice, check_positive
from onnxnoise.noise.scope import channel_axis

__all__ = ["PCM", "COMPENSATIONS", "format_seconds", "summed_response"]

#: Values of the ``compensation`` parameter.
COMPENSATIONS: tuple[str, ...] = ("none", "global")

#: Programming-noise polynomial coefficients (uS, fitted at g_max = 25 uS).
PROG_COEFF: tuple[float, float, float] = (0.26348, 1.9650, -1.1731)
#: g_max the coefficients were fitted at (uS).
G_MAX_REF = 25.0
#: Time of programming, the drift reference (s).
T0 = 20.0
#: Duration of one read (s).
T_READ = 250e-9


def summed_response(w: np.ndarray, axis: int | None) -> float:
    """``sum_o |sum_i w[o, i]|``: the summed absolute output of ``w`` for an all-ones input.

    ``axis`` is the output-channel axis (every other axis is summed); ``None`` reads each
    element as its own output (``sum|w|``).
    """
    if axis is None:
        return float(np.sum(np.abs(w), dtype=np.float64))
    others = tuple(i for i in range(w.ndim) if i != axis)
    return float(np.sum(np.abs(np.sum(w, axis=others, dtype=np.float64))))


@register
@dataclass(frozen=True)
class PCM(QuantizedDeviceModel):
    """PCM statistical model: programming noise, drift to ``t_inf``, 1/f read noise (IBM; NOISE-MODELS.md sec. 4).

    Formulas in :mod:`onnxnoise.noise.pcm`. Sources: Nandakumar et al., ICECS 2019;
    Joshi et al., Nat. Commun. 11, 2473 (2020); aihwkit PCMLikeNoiseModel.

    Strength: ``t_inf``, seconds after programming (finite, >= 0); the drift
    reference is ``t0 = 20 s`` and ``t = t_inf + t0``. At ``t_inf = 0`` there is no
    drift, but read noise (accumulated over ``t0``) and programming noise remain.

    Attributes:
        g_max: Full-scale conductance in uS (> 0; default 25), the unit of the
            conductance stages. It cancels out of the weights: programming noise
            scales with ``g_max / 25`` and the mapping back with ``w_max / g_max``, as in
            aihwkit, so ``w'`` is the same for every ``g_max`` (up to rounding).
        compensation: ``none`` (default) or ``global`` (one scalar per tensor restores
            the summed absolute response read right after programming).
        programming: Apply programming noise (default true).
        drift: Apply drift (default true).
        read_noise: Apply 1/f read noise (default true). With ``programming``,
            ``drift`` and ``read_noise`` all false the tensor comes back bit-identical.
        levels, analog, mapping: The device template's (:class:`~onnxnoise.noise.device.QuantizedDeviceModel`):
            a levels grid for the targets before programming (0, default: continuous),
            ``weights`` (default: weight matrices only) or ``all``, and ``w_max`` per ``tensor``
            (default), ``channel`` or ``tile-column``.

    Random numbers: three streams per tensor (programming, drift exponents, read),
    split from the tensor's generator, so the same seed gives the same devices at
    every ``t_inf`` (one trajectory per seed) and switching one stage off does not
    change the others' draws.
    """

    name: ClassVar[str] = "pcm"
    #: ``--t 1s,1h,1d,30d,1y`` (the aihwkit tutorial's times): stored in seconds, shown as ``1 d``, drawn on a log axis.
    strength_axis: ClassVar[StrengthAxis] = StrengthAxis(
        symbol="t_inf", label="time (s)", defaults=(1.0, 3600.0, 86400.0, 2592000.0, 31536000.0),
        flag="t", unit="s", name="time after programming t_inf", log=True, time=True, style="time", text="t = {}",
        help="time after programming t_inf, units s, min, h, d, w, y (plain numbers are seconds), "
             "e.g. 1s,1h,1d,30d,1y")

    g_max: float = 25.0
    compensation: str = "none"
    programming: bool = True
    drift: bool = True
    read_noise: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("g_max", self.g_max, " (uS)")
        object.__setattr__(self, "g_max", float(self.g_max))  # 25 and 25.0: one stored parameter set
        check_choice("compensation", self.compensation, COMPENSATIONS)
        for name in ("programming", "drift", "read_noise"):
            check_bool(name, getattr(self, name))

    def describe(self) -> str:
        """The model and its switches in words."""
        stages = [s for s, on in (("programming", self.programming), ("drift", self.drift),
                                  ("read noise", self.read_noise)) if on]
        extra = f", {self.levels} levels" if self.levels else ""
        return (f"PCM ({' + '.join(stages) or 'no noise'}; g_max={self.g_max:g} uS, "
                f"compensation={self.compensation}{extra}, analog={self.analog}, {self.mapping_text()}; "
                "IBM statistical model)")

    def collapse_hint(self) -> str | None:
        """With drift on and no compensation: name ``compensation=global`` (else ``None``)."""
        if not self.drift or self.compensation != "none":
            return None
        return ("pcm without drift compensation (compensation=none): drift shrinks every conductance with time, "
                "so accuracy falls to chance as in aihwkit without compensation; "
                "`--noise pcm:compensation=global` rescales each layer by one scalar that restores its summed "
                "response (global drift compensation, Joshi et al. 2020)")

    # ---------------------------------------------------------------- the three formulas (uS)

    def program(self, g_target: np.ndarray, z: np.ndarray) -> np.ndarray:
        """``max(g_T + sigma_prog(g_T) * z, 0)``: conductances after programming."""
        x = g_target / self.g_max
        c0, c1, c2 = PROG_COEFF
        sigma = np.maximum(c0 + c1 * x + c2 * x * x, 0.0) * (self.g_max / G_MAX_REF)
        return np.maximum(g_target + sigma * z, 0.0)

    def drift_exponents(self, g_target: np.ndarray, z: np.ndarray) -> np.ndarray:
        """``nu = |mu_nu(x) + sigma_nu(x) * z|`` with ``x = max(g_T / g_max, 1e-7)``."""
        log_x = np.log(np.maximum(g_target / self.g_max, 1e-7))
        mu = np.clip(-0.0155 * log_x + 0.0244, 0.049, 0.1)
        sigma = np.clip(-0.0125 * log_x - 0.0059, 0.008, 0.045)
        return np.abs(mu + sigma * z)

    @staticmethod
    def drifted(g_prog: np.ndarray, nu: np.ndarray, t: float) -> np.ndarray:
        """``g_prog * (t / t0)^(-nu)``, ``t`` in seconds since programming plus ``t0``."""
        return g_prog * np.power(t / T0, -nu)

    def read(self, g_drift: np.ndarray, g_prog: np.ndarray, t: float, z: np.ndarray) -> np.ndarray:
        """``max(g_drift + |g_drift| * Q_s(g_prog) * sqrt(ln((t + t_read) / (2 t_read))) * z, 0)``."""
        q_s = np.minimum(0.0088 / np.maximum(np.power(g_prog / self.g_max, 0.65), 1e-3), 0.2)
        sigma = q_s * math.sqrt(math.log((t + T_READ) / (2 * T_READ)))
        return np.maximum(g_drift + np.abs(g_drift) * sigma * z, 0.0)

    # ---------------------------------------------------------------- the template's hooks

    def conductance_unit(self, w_max: float) -> float:
        """``g_max`` (uS)."""
        return self.g_max

    def stage_rngs(self, rng: np.random.Generator) -> dict[str, np.random.Generator]:
        """Three streams split from the tensor's generator: programming, drift exponents, read."""
        streams = np.random.SeedSequence(rng.integers(0, 2**32, size=4).tolist()).spawn(3)
        return {stage: np.random.default_rng(s) for stage, s in zip(("program", "drift", "read"), streams)}

    def program_stage(self, devices: Devices, strength: float, rng: np.random.Generator | None) -> np.ndarray:
        """:meth:`program` of the targets when ``programming`` is on."""
        if not self.programming:
            return devices.target
        return self.program(devices.target, rng.standard_normal(devices.target.shape))

    def drift_stage(self, devices: Devices, strength: float, rng: np.random.Generator | None) -> np.ndarray:
        """:meth:`drifted` to ``t = t_inf + t0`` when ``drift`` is on and ``t_inf > 0``."""
        if not (self.drift and strength > 0):
            return devices.now
        nu = self.drift_exponents(devices.target, rng.standard_normal(devices.target.shape))
        return self.drifted(devices.programmed, nu, strength + T0)

    def read_stage(self, devices: Devices, strength: float, rng: np.random.Generator | None) -> np.ndarray:
        """:meth:`read` at ``t = t_inf + t0`` when ``read_noise`` is on."""
        if not self.read_noise:
            return devices.now
        return self.read(devices.now, devices.programmed, strength + T0, rng.standard_normal(devices.target.shape))

    def read_back(self, devices: Devices, strength: float) -> np.ndarray:
        """``w'(t)`` from the pairs' change (:meth:`~onnxnoise.noise.device.Tile.shifted`), then drift compensation.

        ``w + (delta g+ - delta g-) / g_max * w_max`` (the deltas from the exact targets)
        equals ``(g+ - g-) / g_max * w_max`` and returns ``w`` bit for bit when every
        stage is off. Compensation rescales it by ``alpha`` (module docstring), the
        reference being the programmed tensor without read noise.
        """
        tile = devices.tile
        out = tile.shifted(devices.now)
        if self.compensation == "global":
            reference = tile.shifted(devices.programmed)
            axis = channel_axis(tile.tensor, tile.w.ndim, strict=False)
            now = summed_response(out, axis)
            if now > 0.0:
                out = out * (summed_response(reference, axis) / now)
        return out
