"""Settings of an analog tile's input and output stages (DAC, ADC, read noise, tiles).

One frozen value, :class:`TileSettings`, read by :func:`onnxnoise.tile.calibrate` and
:func:`onnxnoise.tile.insert_stages`. Units follow aihwkit's forward-pass parameters
(../shared/PARITY.md sec. 1, ``StandardHWATrainingPreset``: ``inp_res = out_res`` for 8 bits,
``out_noise = 0.04``, ``out_bound = 10``, ``max_input_size = 512``): noise and a fixed ADC bound
are in units of ``x_max * w_max``, one full-range input on one full-scale weight. ``x_max`` (the DAC
range) is calibrated from clean activations, or fixed by ``dac_bound`` (aihwkit's learned input
ranges left at their ``init_value`` 3.0 on a model not trained in analog, PARITY.md sec. 1).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

__all__ = ["ADC_SCOPES", "CALIBRATIONS", "MAX_BITS", "TileSettings"]

#: ``adc_scope`` choices: one ADC range per tile of a layer, or per tile and output column.
ADC_SCOPES: tuple[str, ...] = ("layer", "column")

#: ``calibration`` choices: the largest |value| seen, or a percentile of |value|.
CALIBRATIONS: tuple[str, ...] = ("max", "percentile")

#: Most DAC/ADC bits (float32 holds every level of a 24-bit grid exactly).
MAX_BITS = 24


@dataclass(frozen=True)
class TileSettings:
    """The input/output stages of the analog tiles a trial's layers run on.

    Attributes:
        dac_bits: Input quantization (DAC) bits; 0 = off (exact inputs), else 2..24. The
            symmetric grid has ``2**bits - 1`` levels (see :func:`onnxnoise.tile.stages.step`).
        adc_bits: Output quantization (ADC) bits of each tile's partial sum; 0 = off, else 2..24.
        read_noise: Std of the additive Gaussian noise on each tile's partial sum, per read,
            in units of ``x_max * w_max`` (aihwkit's ``out_noise``); 0 = off; finite, >= 0.
        tile_rows: Most input rows per tile (aihwkit ``max_input_size``, CrossSim array rows);
            0 = one tile per layer.
        adc_bound: 0 = ADC range calibrated from clean partial sums; > 0 = fixed range
            ``adc_bound * x_max * w_max`` (aihwkit ``out_bound = 10``).
        adc_scope: ``"layer"`` (one ADC range per tile) or ``"column"`` (per tile and output column).
        calibration: ``"max"`` or ``"percentile"`` (of |value| over the calibration images).
        percentile: In (0, 100]; used when ``calibration == "percentile"``.
        calibration_images: Images the ranges are calibrated on (the caller passes that many), >= 1.
        dac_bound: 0 = DAC range ``x_max`` calibrated from clean activations; > 0 = ``x_max`` fixed
            at ``dac_bound`` (activation units) for every staged layer, which then also scales the
            read noise and a fixed ADC bound (aihwkit's ``forward.inp_range`` learned input ranges
            left at ``init_value = 3.0``, PARITY.md sec. 1); finite, >= 0.

    Raises:
        ValueError: One line naming the bad field and the allowed values.
    """

    dac_bits: int = 0
    adc_bits: int = 0
    read_noise: float = 0.0
    tile_rows: int = 0
    adc_bound: float = 0.0
    adc_scope: str = "layer"
    calibration: str = "max"
    percentile: float = 99.99
    calibration_images: int = 500
    dac_bound: float = 0.0

    def __post_init__(self) -> None:
        for name in ("dac_bits", "adc_bits"):
            bits = getattr(self, name)
            if not _is_int(bits) or not (bits == 0 or 2 <= bits <= MAX_BITS):
                msg = (f"{name} must be 0 (off) or an integer from 2 to {MAX_BITS}, got {bits!r} "
                       "(a symmetric grid of 2**bits - 1 levels needs at least 2 bits)")
                raise ValueError(msg)
        for name in ("read_noise", "adc_bound", "dac_bound"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                zero = "calibrated" if name == "dac_bound" else "off"
                msg = f"{name} must be a finite number >= 0 (0 = {zero}), got {value!r}"
                raise ValueError(msg)
        if not _is_int(self.tile_rows) or self.tile_rows < 0:
            msg = f"tile_rows must be an integer >= 0 (0 = no split), got {self.tile_rows!r}"
            raise ValueError(msg)
        for name, choices in (("adc_scope", ADC_SCOPES), ("calibration", CALIBRATIONS)):
            if getattr(self, name) not in choices:
                msg = f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}"
                raise ValueError(msg)
        p = self.percentile
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not (0 < p <= 100):
            msg = f"percentile must be a number in (0, 100], got {p!r}"
            raise ValueError(msg)
        if not _is_int(self.calibration_images) or self.calibration_images < 1:
            msg = f"calibration_images must be an integer >= 1, got {self.calibration_images!r}"
            raise ValueError(msg)

    @property
    def active(self) -> bool:
        """True when any stage is on: DAC or ADC bits, read noise or a tile split."""
        return bool(self.dac_bits or self.adc_bits or self.read_noise or self.tile_rows)

    @property
    def needs_calibration(self) -> bool:
        """True when the rewrite needs ranges: a DAC, an ADC or read noise (a tile split alone does not)."""
        return bool(self.dac_bits or self.adc_bits or self.read_noise)

    @property
    def measures(self) -> bool:
        """True when the ranges need a clean calibration run: ranges are needed
        (:attr:`needs_calibration`) and one of them is measured, i.e. the DAC range is not fixed
        (``dac_bound == 0``) or an ADC is on with a calibrated range (``adc_bound == 0``). With
        ``dac_bound > 0`` and the ADC off or fixed, every range follows from the settings and the
        weights (:func:`onnxnoise.tile.calibrate` builds them without running the model)."""
        calibrated_adc = bool(self.adc_bits) and not self.adc_bound
        return self.needs_calibration and (not self.dac_bound or calibrated_adc)

    def to_dict(self) -> dict:
        """The settings as a JSON-ready dict (every field, floats as floats; ``dac_bound`` only when
        set, so the calibration entries of runs made before it existed keep their names)."""
        d = asdict(self)
        for name in ("read_noise", "adc_bound", "percentile", "dac_bound"):
            d[name] = float(d[name])
        if not self.dac_bound:
            del d["dac_bound"]
        return d


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
