"""Tile settings of a run: the analog tile's input and output stages (DAC, ADC, read noise, tiles).

:class:`TileConfig` is ``RunConfig.tile``: one declared setting per field of
:class:`onnxnoise.tile.settings.TileSettings` (``--dac-bits``, ``--adc-bits``, ``--read-noise``,
``--tile-rows``, ``--adc-bound``, ``--adc-scope``, ``--calibration``, ``--calibration-percentile``,
``--calibration-images``), each with a default that means "off", so the trial keys of runs made
before the stages existed stay valid: the settings enter the key (``key_fields()["settings"]``)
only while a stage is on (:meth:`TileConfig.key_values`). :meth:`TileConfig.settings` is the one
place a :class:`~onnxnoise.tile.settings.TileSettings` is built from a run's settings.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import Any

from onnxnoise.errors import ConfigError
from onnxnoise.settings import TILE, config_values, option, own_key_values
from onnxnoise.tile.settings import TileSettings

__all__ = ["TileConfig", "ADC_SCOPES", "CALIBRATIONS"]

#: ``--adc-scope``: one ADC range per layer, or one per output column (channel).
ADC_SCOPES: tuple[str, ...] = ("layer", "column")

#: ``--calibration``: how a stage's range is taken from clean activations.
CALIBRATIONS: tuple[str, ...] = ("max", "percentile")

#: Most bits of a DAC or an ADC (a 2**24-level converter is already float32's mantissa).
MAX_BITS = 24


def _tile(default: Any, flag: str, **setting: Any) -> Any:
    return option(default, flag=flag, group=TILE, files=("sweeps",), trial_key=True, **setting)


@dataclass(frozen=True)
class TileConfig:
    """The input/output stages every noisy trial applies to the layers it noises (all off by default).

    Attributes:
        dac_bits: Input (DAC) bits of every staged layer; 0: no input quantization.
        adc_bits: Output (ADC) bits of every staged layer (of each tile's partial sum); 0: none.
        read_noise: Standard deviation of the additive Gaussian read noise on each product,
            relative to the layer's calibrated output range; drawn anew per image and per read;
            0: none.
        tile_rows: Input rows per tile: a weight with more is split into tiles of this many rows
            whose partial sums are quantized and noised separately, then summed; 0: one tile.
        adc_bound: Fixed ADC range (+-bound, the layer output's unit) instead of the calibrated
            one; 0: calibrated.
        adc_scope: ``layer`` (one ADC range per layer) or ``column`` (one per output column).
        calibration: ``max`` (largest absolute clean activation) or ``percentile``.
        percentile: With ``calibration = percentile``: the percentile of absolute clean
            activations, in percent (0, 100].
        calibration_images: Images the ranges are calibrated on: the first N of the evaluation
            data, clean model.

    Raises:
        ConfigError: On an invalid value (one line naming the flag).
    """

    dac_bits: int = _tile(0, "--dac-bits", type=int, metavar="BITS", unit="bits",
                          help="quantize each staged layer's input to BITS bits (signed, calibrated range, clipped "
                          "inputs counted); default {default}: off")
    adc_bits: int = _tile(0, "--adc-bits", type=int, metavar="BITS", unit="bits",
                          help="quantize each staged layer's output (each tile's partial sum) to BITS bits, "
                          "clipped outputs counted; default {default}: off")
    read_noise: float = _tile(0.0, "--read-noise", type=float, metavar="SIGMA", unit="fraction of the output range",
                              help="Gaussian read noise on every product, std relative to the layer's calibrated "
                              "output range, new per image and read (seeded by the trial); default {default}: off")
    tile_rows: int = _tile(0, "--tile-rows", type=int, metavar="R", unit="rows",
                           help="split weights with more than R input rows into R-row tiles whose partial sums are "
                           "digitized separately (e.g. 256 to 1152); default {default}: one tile")
    adc_bound: float = _tile(0.0, "--adc-bound", type=float, metavar="B",
                             help="fixed ADC range +-B instead of the calibrated one; default {default}: calibrated")
    adc_scope: str = _tile("layer", "--adc-scope", choices=ADC_SCOPES,
                           help="one ADC range per layer or per output column (default {default})")
    calibration: str = _tile("max", "--calibration", choices=CALIBRATIONS,
                             help="DAC/ADC ranges from clean activations: their max or a percentile (default "
                             "{default})")
    percentile: float = _tile(99.99, "--calibration-percentile", type=float, metavar="PCT", unit="%",
                              key="calibration_percentile",
                              help="--calibration percentile: the percentile of absolute activations (default "
                              "{default})")
    calibration_images: int = _tile(500, "--calibration-images", type=int, metavar="N", unit="images",
                                    help="calibrate on the first N evaluation images, clean model (CrossSim uses 500 "
                                    "training images; default {default})")

    def __post_init__(self) -> None:
        for flag, value in (("--dac-bits", self.dac_bits), ("--adc-bits", self.adc_bits)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_BITS:
                msg = f"`{flag}` must be an integer from 1 to {MAX_BITS} bits, or 0 for off, got {value!r}"
                raise ConfigError(msg)
        for flag, value in (("--read-noise", self.read_noise), ("--adc-bound", self.adc_bound)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
                msg = f"`{flag}` must be a number >= 0 (0: off), e.g. 0.02, got {value!r}"
                raise ConfigError(msg)
        if isinstance(self.tile_rows, bool) or not isinstance(self.tile_rows, int) or self.tile_rows < 0:
            msg = f"`--tile-rows` must be an integer >= 0 (0: one tile), e.g. 256, got {self.tile_rows!r}"
            raise ConfigError(msg)
        for flag, value, choices in (("--adc-scope", self.adc_scope, ADC_SCOPES),
                                     ("--calibration", self.calibration, CALIBRATIONS)):
            if value not in choices:
                msg = f"`{flag}` must be one of {', '.join(choices)}, got {value!r}"
                raise ConfigError(msg)
        pct = self.percentile
        if isinstance(pct, bool) or not isinstance(pct, numbers.Real) or not math.isfinite(pct) or not 0 < pct <= 100:
            msg = f"`--calibration-percentile` must be a percentage in (0, 100], e.g. 99.99, got {pct!r}"
            raise ConfigError(msg)
        images = self.calibration_images
        if isinstance(images, bool) or not isinstance(images, int) or images < 1:
            msg = f"`--calibration-images` must be an integer >= 1, e.g. 500, got {images!r}"
            raise ConfigError(msg)

    @classmethod
    def from_options(cls, **options: Any) -> TileConfig:
        """Build from user options by key (``None``: not given), as :func:`onnxnoise.settings.config_values`."""
        return cls(**config_values(cls, options))

    def settings(self) -> TileSettings:
        """The :class:`~onnxnoise.tile.settings.TileSettings` of these values (the one place it is built)."""
        return TileSettings(**{f.name: getattr(self, f.name) for f in fields(self)})

    @property
    def active(self) -> bool:
        """Whether any stage is on (:attr:`TileSettings.active <onnxnoise.tile.settings.TileSettings.active>`)."""
        return self.settings().active

    def key_values(self) -> dict[str, Any]:
        """The values that enter the trial key and the ``settings`` column: those not at their default,
        and only while a stage is on (so ``--calibration-images`` alone changes no key)."""
        return own_key_values(self) if self.active else {}

    def to_dict(self) -> dict[str, Any]:
        """All settings, JSON-ready."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
