"""Tile settings of a run: the analog tile's input and output stages (DAC, ADC, read noise, tiles).

:class:`TileConfig` is ``RunConfig.tile``: one declared setting per field of
:class:`onnxnoise.tile.settings.TileSettings` (``--dac-bits``, ``--adc-bits``, ``--read-noise``,
``--tile-rows``, ``--adc-bound``, ``--dac-bound``, ``--adc-scope``, ``--calibration``, ``--calibration-percentile``,
``--calibration-images``), each with a default that means "off", so the trial keys of runs made
before the stages existed stay valid: the settings enter the key (``key_fields()["settings"]``)
only while a stage is on (:meth:`TileConfig.key_values`). :meth:`TileConfig.settings` is the one
place a :class:`~onnxnoise.tile.settings.TileSettings` is built from a run's settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from onnxnoise.errors import ConfigError
from onnxnoise.settings import TILE, config_values, declared, option, own_key_values, show_default
from onnxnoise.tile.settings import ADC_SCOPES, CALIBRATIONS, MAX_BITS, TileSettings

__all__ = ["TileConfig", "check_given_tile_options", "unused_tile_settings"]

#: Setting keys whose field of :class:`TileSettings` has another name.
_KEYS = {"percentile": "calibration_percentile"}


def _tile(default: Any, flag: str, **setting: Any) -> Any:
    return option(default, flag=flag, group=TILE, files=("sweeps",), trial_key=True, **setting)


@dataclass(frozen=True)
class TileConfig:
    """The input/output stages every noisy trial applies to the layers it noises (all off by default).

    The meaning and units of each field are :class:`~onnxnoise.tile.settings.TileSettings`'
    (aihwkit's forward-pass parameters, ../shared/PARITY.md sec. 1); this class declares them as
    settings and says a bad value with its flag.

    Attributes:
        dac_bits: Input (DAC) bits of every staged layer: 0 (off) or 2 to 24.
        adc_bits: Output (ADC) bits of each tile's partial sum: 0 (off) or 2 to 24.
        read_noise: Std of the additive Gaussian noise on each tile's partial sum, per read, in
            units of ``x_max * w_max`` (aihwkit's ``out_noise``); drawn anew per image and per
            read; 0: off.
        tile_rows: Most input rows per tile: a weight with more is split into tiles whose partial
            sums are digitized and noised separately, then summed; 0: one tile.
        adc_bound: 0: ADC range calibrated from clean partial sums; > 0: fixed at
            ``adc_bound * x_max * w_max`` (aihwkit's ``out_bound``).
        dac_bound: 0: DAC range ``x_max`` calibrated from clean activations; > 0: ``x_max`` fixed
            at ``dac_bound`` (activation units) for every staged layer (aihwkit's learned input
            ranges left at ``init_value`` 3.0 without analog training, ../shared/PARITY.md sec. 1).
        adc_scope: ``layer`` (one ADC range per tile) or ``column`` (per tile and output column).
        calibration: ``max`` (largest absolute clean activation) or ``percentile``.
        percentile: With ``calibration = percentile``: the percentile of absolute clean
            activations, in percent (0, 100].
        calibration_images: Images the ranges are calibrated on: the first N of the evaluation
            data, clean model.

    Raises:
        ConfigError: On an invalid value (one line naming the flag).
    """

    dac_bits: int = _tile(0, "--dac-bits", type=int, metavar="BITS", unit="bits",
                          help="quantize each staged layer's input to BITS bits, 2 to " + str(MAX_BITS) + " "
                          "(symmetric, calibrated range, clipped inputs counted); default {default}: off")
    adc_bits: int = _tile(0, "--adc-bits", type=int, metavar="BITS", unit="bits",
                          help="quantize each tile's partial sum to BITS bits, 2 to " + str(MAX_BITS) + ", "
                          "clipped outputs counted; default {default}: off")
    read_noise: float = _tile(0.0, "--read-noise", type=float, metavar="SIGMA", unit="x_max * w_max",
                              help="Gaussian read noise on each tile's partial sum, std in units of x_max * w_max "
                              "(aihwkit's out_noise, e.g. 0.04), new per image and read, seeded by the trial; "
                              "default {default}: off")
    tile_rows: int = _tile(0, "--tile-rows", type=int, metavar="R", unit="rows",
                           help="split weights with more than R input rows into R-row tiles whose partial sums are "
                           "digitized separately (e.g. 256 to 1152); default {default}: one tile")
    adc_bound: float = _tile(0.0, "--adc-bound", type=float, metavar="B", unit="x_max * w_max",
                             help="fixed ADC range +-B * x_max * w_max (aihwkit's out_bound, e.g. 10) instead of the "
                             "calibrated one; with --adc-bits; default {default}: calibrated")
    dac_bound: float = _tile(0.0, "--dac-bound", type=float, metavar="X", unit="activation units",
                             help="fix every staged layer's DAC range x_max at +-X (input units; aihwkit's input "
                             "ranges at their init 3.0 on a model not trained in analog); it also scales "
                             "--read-noise and --adc-bound; default {default}: calibrated")
    adc_scope: str = _tile("layer", "--adc-scope", choices=ADC_SCOPES,
                           help="one ADC range per tile, or per tile and output column (there also the read "
                           "noise's w_max); with --adc-bits or --read-noise (default {default})")
    calibration: str = _tile("max", "--calibration", choices=CALIBRATIONS,
                             help="DAC/ADC ranges from clean activations: their max or a percentile (default "
                             "{default})")
    percentile: float = _tile(99.99, "--calibration-percentile", type=float, metavar="PCT", unit="%",
                              key="calibration_percentile",
                              help="with --calibration percentile: the percentile of absolute activations (default "
                              "{default})")
    calibration_images: int = _tile(500, "--calibration-images", type=int, metavar="N", unit="images",
                                    help="calibrate on the first N evaluation images, clean model (CrossSim uses 500 "
                                    "training images; default {default})")

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        try:
            settings = TileSettings(**values)
        except ValueError as exc:  # "dac_bits must be ...": said with the flag
            name, _, rest = str(exc).partition(" ")
            flag = {s.key: s.flag for s in declared(TileConfig)}.get(_KEYS.get(name, name), name)
            raise ConfigError(f"`{flag}` {rest}") from None
        object.__setattr__(self, "_settings", settings)

    @classmethod
    def from_options(cls, **options: Any) -> TileConfig:
        """Build from user options by key (``None``: not given), as :func:`onnxnoise.settings.config_values`."""
        return cls(**config_values(cls, options))

    def settings(self) -> TileSettings:
        """The :class:`~onnxnoise.tile.settings.TileSettings` of these values (the one place it is built)."""
        return self._settings  # type: ignore[attr-defined]

    @property
    def active(self) -> bool:
        """Whether any stage is on, a tile split included (:attr:`TileSettings.active
        <onnxnoise.tile.settings.TileSettings.active>`)."""
        return self.settings().active

    def key_values(self) -> dict[str, Any]:
        """The values that enter the trial key and the ``settings`` column: those not at their default,
        and only while a stage is on (so ``--calibration-images`` alone changes no key)."""
        return own_key_values(self) if self.active else {}

    def to_dict(self) -> dict[str, Any]:
        """All settings, JSON-ready."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def unused_tile_settings(settings: TileSettings) -> dict[str, str]:
    """The settings no stage of ``settings`` reads, by setting key, each with why and what would make it act.

    Which stage reads which setting (:mod:`onnxnoise.tile.calibrate`, :mod:`onnxnoise.tile.rewrite`):
    ``adc_bound`` the ADC (``adc_bits``); ``adc_scope`` the ADC and the read noise's ``w_max``;
    ``dac_bound`` the DAC, the read noise (``read_noise * x_max * w_max``) and a fixed ADC bound
    (``adc_bound * x_max * w_max``); ``calibration`` and ``calibration_images`` the calibration run,
    which happens only when a range is measured (:attr:`TileSettings.measures`); ``percentile`` that
    run with ``calibration = "percentile"``. Only values away from their defaults are listed (a
    default is what a run without the setting does).

    Args:
        settings: The run's tile settings.

    Returns:
        Setting key (``calibration_percentile`` for ``percentile``) -> ``"why; fix"``, e.g.
        ``"the ADC it bounds is off; add `--adc-bits BITS` (e.g. 8)"``; empty when every set value acts.
    """
    s, default = settings, TileSettings()
    out: dict[str, str] = {}
    no_range = ("no range is calibrated without a DAC, an ADC or read noise; add `--dac-bits`, `--adc-bits` or "
                "`--read-noise`" if not s.needs_calibration else
                "no range is calibrated: `--dac-bound` fixes the DAC range and the ADC is off or fixed by "
                "`--adc-bound`; set `--dac-bound 0` to calibrate the DAC range")
    if s.adc_bound != default.adc_bound and not s.adc_bits:
        out["adc_bound"] = "the ADC it bounds is off; add `--adc-bits BITS` (e.g. 8)"
    if s.adc_scope != default.adc_scope and not (s.adc_bits or s.read_noise):
        out["adc_scope"] = "the ADC and the read noise it scopes are off; add `--adc-bits BITS` or `--read-noise SIGMA`"
    if s.dac_bound != default.dac_bound and not (s.dac_bits or s.read_noise or (s.adc_bits and s.adc_bound)):
        out["dac_bound"] = ("only the DAC, the read noise and a fixed `--adc-bound` read the DAC range, and none is "
                            "on; add `--dac-bits BITS` (e.g. 8)")
    for key in ("calibration", "calibration_images"):
        if getattr(s, key) != getattr(default, key) and not s.measures:
            out[key] = no_range
    if s.percentile != default.percentile:
        if not s.measures:
            out["calibration_percentile"] = no_range
        elif s.calibration != "percentile":
            out["calibration_percentile"] = ("the ranges are the clean activations' max (`--calibration max`); add "
                                             "`--calibration percentile`")
    return out


def check_given_tile_options(given: Mapping[str, Any], tile: TileConfig) -> None:
    """Refuse a tile setting the user gave that acts on nothing in this run (one line, before any work).

    A setting that modifies a stage which is off (``--adc-bound`` without ``--adc-bits``,
    ``--calibration-percentile`` with ``--calibration max``...) would silently change nothing:
    :func:`unused_tile_settings` finds them; only those the user gave (``given[key]`` not ``None``)
    are refused, so a preset's setting left without its stage by an override
    (``--analog-preset aihwkit-pcm --adc-bits 0`` keeps ``--adc-bound 10``) is not.

    Args:
        given: The user's options by setting key (``None`` or missing: not given), before a preset
            expands.
        tile: The run's tile settings after the preset expanded.

    Raises:
        ConfigError: ``"`--adc-bound 10` has no effect in this run: the ADC it bounds is off; add
            `--adc-bits BITS` (e.g. 8) or drop `--adc-bound`"``.
    """
    flags = {s.key: s.flag for s in declared(TileConfig)}
    names = {key: name for name, key in _KEYS.items()}
    for key, fix in unused_tile_settings(tile.settings()).items():
        if given.get(key) is not None:
            shown = show_default(getattr(tile, names.get(key, key)))
            raise ConfigError(f"`{flags[key]} {shown}` has no effect in this run: {fix}, or drop `{flags[key]}`")
