"""The swept strength axis of a noise model: how users give it and how reports show it.

Each registered model declares one :class:`StrengthAxis` (class attribute
``strength_axis``): its own option (``--t`` for pcm, ``--rate`` for stuck-at, ``--ber``
for bit-flip...; the same name, with ``_`` for ``-``, is the experiment-file key), the
unit of the stored value, whether values are times (parsed with units ``1s 1h 1d 30d
1y``, stored in seconds), how one value is written in tables and on ticks, and whether
figures draw it on a log axis. A model that declares none (a plug-in) gets
:func:`axis_of`'s generic axis: only ``--strength``, its ``strength_label``, plain numbers.

Parsing the option text lives in :mod:`onnxnoise.options`; this module only declares
and formats.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["StrengthAxis", "TIME_STRENGTHS", "axis_of", "axis_label", "format_seconds", "format_time_option", "strength_keys",
           "strength_flag_owners"]

#: Strength names read as a time in seconds when a model declares no axis (plug-ins written before axes).
TIME_STRENGTHS: tuple[str, ...] = ("t", "t_inf")

#: Units of :func:`format_seconds`, largest first (``y`` = 365 days, as in the aihwkit PCM tutorial).
_SECONDS: tuple[tuple[str, float], ...] = (("y", 365 * 86400.0), ("d", 86400.0), ("h", 3600.0), ("min", 60.0),
                                           ("s", 1.0))

#: Value styles of :meth:`StrengthAxis.format_value`.
STYLES: tuple[str, ...] = ("g", "time", "percent", "sci")


def format_seconds(seconds: float) -> str:
    """``1 s``, ``1 h``, ``1 d``, ``30 d``, ``1 y``: the largest unit that holds the time at least once.

    ``seconds`` is a time in seconds (float); 4 significant digits (``1.5 h``); ``0 s`` for 0.
    """
    for unit, size in _SECONDS:
        if abs(seconds) >= size:
            return f"{seconds / size:.4g} {unit}"
    return f"{seconds:.4g} s"


def format_time_option(seconds: float) -> str:
    """A time as it is typed in an option, e.g. ``1d`` (the inverse of :func:`onnxnoise.options.parse_time`)."""
    return format_seconds(seconds).replace(" ", "")


def _sci(value: float) -> str:
    """``1e-03``, ``2.5e-04``: scientific notation with up to 3 significant digits, no trailing zeros."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    mantissa, exponent = f"{value:.2e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{exponent}"


@dataclass(frozen=True)
class StrengthAxis:
    """One noise model's swept axis: its option, unit, value text and scale.

    Attributes:
        flag: The model's own option without dashes (``t`` -> ``--t``); with ``_`` for
            ``-`` it is also the experiment-file key (``snr-db`` -> ``snr_db``). ``None``:
            the model's strengths are given with ``--strength`` only.
        name: Long name, the x label of figures (``time after programming t_inf``); ``""``:
            the model's ``strength_label``. Units are in the name only where the tick text
            does not carry them (ticks come from :meth:`format_value`: ``1 d``, ``0.1%``).
        unit: Unit of the stored value, for machine-readable outputs (``strength_unit``
            column, ``bench.json``): ``s`` (seconds), ``dB``, ``ratio`` (a linear ratio),
            ``fraction`` (0.01 = 1 %), ``count``.
        log: Figures draw the axis on a log scale (the values span decades: a time, a rate).
        time: Values are times: options take units ``s min h d w y`` (plain numbers are
            seconds) and values are stored in seconds.
        style: How one value is written in tables and on ticks: ``g`` (``10``), ``time``
            (``1 d``), ``percent`` (``0.1%``), ``sci`` (``1e-03``).
        help: What the option's values are, one line for ``--help`` (no ``%``).
        alt_flag: A second option giving the same axis in other units (gaussian-snr's
            ``noise-pct``), or ``None``.
        alt_help: Its ``--help`` line.
        from_alt: Converts all of ``alt_flag``'s values to strengths; raises
            :class:`ValueError` with the whole user message on a bad value.
    """

    flag: str | None
    unit: str
    name: str = ""
    log: bool = False
    time: bool = False
    style: str = "g"
    help: str = ""
    alt_flag: str | None = None
    alt_help: str = ""
    from_alt: Callable[[tuple[float, ...]], tuple[float, ...]] | None = None

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            msg = f"StrengthAxis style must be one of {', '.join(STYLES)}, got {self.style!r}"
            raise ValueError(msg)

    @property
    def flags(self) -> tuple[str, ...]:
        """The model's own options without dashes: ``flag`` and ``alt_flag`` (those set)."""
        return tuple(f for f in (self.flag, self.alt_flag) if f)

    def format_value(self, value: float) -> str:
        """One value in the axis's style, without a symbol: ``1 d``, ``0.1%``, ``1e-03``, ``10``."""
        if self.style == "time":
            return format_seconds(value)
        if self.style == "percent":
            return f"{100.0 * value:.3g}%"
        if self.style == "sci":
            return _sci(value)
        return f"{value:g}"

    def example(self, values: Sequence[float]) -> str:
        """Values as typed in the option, e.g. ``1s,1h,1d,30d,1y`` or ``0.001,0.01``."""
        if self.time:
            return ",".join(format_time_option(v) for v in values)
        return ",".join(_sci(v) if self.style == "sci" else f"{v:g}" for v in values)


def axis_of(model: Any) -> StrengthAxis:
    """The strength axis of a noise model (class, instance or report stand-in).

    The model's declared ``strength_axis``; else a generic one: no option of its own
    (``--strength`` only), unit ``""``, plain numbers, and, when its ``strength_name``
    is ``t`` or ``t_inf`` (:data:`TIME_STRENGTHS`), time units and a log axis.
    """
    declared = getattr(model, "strength_axis", None)
    if isinstance(declared, StrengthAxis):
        return declared
    time = getattr(model, "strength_name", None) in TIME_STRENGTHS
    return StrengthAxis(flag=None, unit="s" if time else "", log=time, time=time)


def axis_label(model: Any) -> str:
    """X label of a model's figures: its axis's long ``name``, else its ``strength_label``."""
    return axis_of(model).name or getattr(model, "strength_label", "strength")


def strength_flag_owners(models: Any) -> dict[str, list[str]]:
    """Every model's own options (without dashes) -> the names of the models they belong to.

    Args:
        models: ``name -> class`` (:data:`onnxnoise.noise.NOISE_MODELS`); read in name order.
    """
    owners: dict[str, list[str]] = {}
    for name in sorted(models):
        for flag in axis_of(models[name]).flags:
            owners.setdefault(flag, []).append(name)
    return owners


def strength_keys(models: Any) -> tuple[str, ...]:
    """The models' own options as keyword / experiment-file keys (``snr_db``, ``noise_pct``, ``t``...)."""
    return tuple(flag.replace("-", "_") for flag in strength_flag_owners(models))
