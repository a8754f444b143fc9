"""The swept strength axis of a noise model, declared once: how users give it and how reports show it.

Each registered model declares one :class:`StrengthAxis` (class attribute
``strength_axis``): its symbol and label, which direction means more noise, its default
grid, its own option (``--t`` for pcm, ``--rate`` for stuck-at, ``--ber`` for bit-flip...;
the same name, with ``_`` for ``-``, is the experiment-file key), the unit of the stored
value, whether values are times (parsed with units ``1s 1h 1d 30d 1y``, stored in
seconds), how one value is written in table cells and on ticks, whether figures draw it
on a log axis, and (:class:`PlotAs`) whether figures draw another quantity (gaussian-snr:
noise in percent of ``sigma_w``). The CLI, experiment files, the ``strength_unit`` of
summary tables and ``bench.json``, tables, figures and the check read that object; no display code tests
a model's name. A model that declares none gets :data:`GENERIC_AXIS`: only
``--strength``, plain numbers; plug-ins written before axes that declare
``strength_name`` / ``strength_label`` / ``more_noise_when`` / ``default_strengths``
get the axis those describe (:func:`axis_from_attributes`).

Parsing the option text lives in :mod:`onnxnoise.options`; this module only declares
and formats.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["StrengthAxis", "PlotAs", "GENERIC_AXIS", "TIME_STRENGTHS", "LEGACY_ATTRIBUTES", "axis_of", "axis_label",
           "axis_from_attributes", "format_seconds", "format_time_option", "strength_keys", "strength_flag_owners"]

#: Strength names read as a time in seconds when a model declares no axis (plug-ins written before axes).
TIME_STRENGTHS: tuple[str, ...] = ("t", "t_inf")

#: Units of :func:`format_seconds`, largest first (``y`` = 365 days, as in the aihwkit PCM tutorial).
_SECONDS: tuple[tuple[str, float], ...] = (("y", 365 * 86400.0), ("d", 86400.0), ("h", 3600.0), ("min", 60.0),
                                           ("s", 1.0))

#: Value styles of :meth:`StrengthAxis.format_value`.
STYLES: tuple[str, ...] = ("g", "time", "percent", "sci")

#: Values of :attr:`StrengthAxis.more_noise_when`.
DIRECTIONS: tuple[str, ...] = ("lower", "higher")


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


@dataclass(frozen=True, kw_only=True)
class PlotAs:
    """Another quantity that figures draw on x instead of the stored strength.

    gaussian-snr stores a linear SNR but its figures, like the seed paper's, show the noise
    in percent of ``sigma_w`` (``100 / SNR``) with the clean baseline at 0 %.

    Attributes:
        label: X label of figures.
        legend_title: Title of a legend whose entries are strengths.
        x: Stored strength -> x position.
        baseline_x: x of the clean baseline, or ``None`` (drawn as a reference line).
        legend: Legend text of one strength.
        tick: Tick text of one strength.
        more_noise_when: ``"lower"`` or ``"higher"``: which x means more noise (``lower``:
            figures invert the x axis).
        log: Draw x on a log scale.
    """

    label: str
    legend_title: str
    x: Callable[[float], float]
    baseline_x: float | None
    legend: Callable[[float], str]
    tick: Callable[[float], str]
    more_noise_when: str = "higher"
    log: bool = False


@dataclass(frozen=True, kw_only=True)
class StrengthAxis:
    """One noise model's swept axis, declared once: what it is, how it is given and how it is shown.

    The CLI options, the experiment-file keys, the summaries' ``strength_unit``, the table text,
    the figures' axes and the check's search direction all read this one object; no display
    code tests a model's name. :class:`onnxnoise.noise.base.NoiseModel` mirrors ``symbol``,
    ``label``, ``more_noise_when`` and ``defaults`` as ``strength_name``, ``strength_label``,
    ``more_noise_when`` and ``default_strengths`` for readers.

    Attributes:
        symbol: The strength's symbol in formulas and messages (``snr``, ``t_inf``, ``p``).
        label: Short label (``SNR``, ``time (s)``, ``fault rate``): table headers and figures
            when ``name`` is empty, and the default cell text (``SNR 10``).
        more_noise_when: ``"lower"`` if a lower strength means more noise (an SNR, a number
            of levels), ``"higher"`` otherwise (a time, a rate).
        defaults: Strengths swept when the user gives none, least noise first.
        flag: The model's own option without dashes (``t`` -> ``--t``); with ``_`` for
            ``-`` it is also the experiment-file key (``snr-db`` -> ``snr_db``). ``None``:
            the model's strengths are given with ``--strength`` only.
        name: Long name, the x label of figures (``time after programming t_inf``); ``""``:
            ``label``. Units are in the name only where the tick text does not carry them
            (ticks come from :meth:`format_value`: ``1 d``, ``0.1%``).
        unit: Unit of the stored value, for machine-readable outputs (``strength_unit``
            column, ``bench.json``): ``s`` (seconds), ``dB``, ``ratio`` (a linear ratio),
            ``fraction`` (0.01 = 1 %), ``count``; ``""`` when undeclared.
        log: Figures draw the axis on a log scale (the values span decades: a time, a rate).
        time: Values are times: options take units ``s min h d w y`` (plain numbers are
            seconds) and values are stored in seconds.
        style: How one value is written in tables and on ticks: ``g`` (``10``), ``time``
            (``1 d``), ``percent`` (``0.1%``), ``sci`` (``1e-03``).
        text: Cell text of one strength (:meth:`text_of`): a template whose ``{}`` is the
            value in ``style`` (``t = {}`` -> ``t = 1 d``), or a function of the value;
            ``""``: ``label`` and the value (``SNR 10``).
        help: What the option's values are, one line for ``--help`` (no ``%``).
        alt_flag: A second option giving the same axis in other units (gaussian-snr's
            ``noise-pct``), or ``None``.
        alt_help: Its ``--help`` line.
        from_alt: Converts all of ``alt_flag``'s values to strengths; raises
            :class:`ValueError` with the whole user message on a bad value.
        plot: Figures draw another quantity on x (:class:`PlotAs`); ``None``: the strength.

    Raises:
        ValueError: On an unknown ``style`` or ``more_noise_when``.
    """

    symbol: str = "strength"
    label: str = "strength"
    more_noise_when: str = "higher"
    defaults: tuple[float, ...] = ()
    flag: str | None = None
    unit: str = ""
    name: str = ""
    log: bool = False
    time: bool = False
    style: str = "g"
    text: str | Callable[[float], str] = ""
    help: str = ""
    alt_flag: str | None = None
    alt_help: str = ""
    from_alt: Callable[[tuple[float, ...]], tuple[float, ...]] | None = None
    plot: PlotAs | None = None

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            msg = f"StrengthAxis style must be one of {', '.join(STYLES)}, got {self.style!r}"
            raise ValueError(msg)
        if self.more_noise_when not in DIRECTIONS:
            msg = f"StrengthAxis more_noise_when must be one of {', '.join(DIRECTIONS)}, got {self.more_noise_when!r}"
            raise ValueError(msg)

    @property
    def flags(self) -> tuple[str, ...]:
        """The model's own options without dashes: ``flag`` and ``alt_flag`` (those set)."""
        return tuple(f for f in (self.flag, self.alt_flag) if f)

    @property
    def title(self) -> str:
        """X label of figures and header of strength columns: ``name``, else ``label``."""
        return self.name or self.label

    def format_value(self, value: float) -> str:
        """One value in the axis's style, without a symbol: ``1 d``, ``0.1%``, ``1e-03``, ``10``."""
        if self.style == "time":
            return format_seconds(value)
        if self.style == "percent":
            return f"{100.0 * value:.3g}%"
        if self.style == "sci":
            return _sci(value)
        return f"{value:g}"

    def text_of(self, value: float | None) -> str:
        """Cell text of one strength (``t = 1 d``, ``SNR 10 (10% noise)``); ``clean`` for ``None``."""
        if value is None:
            return "clean"
        if callable(self.text):
            return self.text(value)
        return (self.text or f"{self.label} {{}}").format(self.format_value(value))

    def example(self, values: Sequence[float]) -> str:
        """Values as typed in the option, e.g. ``1s,1h,1d,30d,1y`` or ``0.001,0.01``."""
        if self.time:
            return ",".join(format_time_option(v) for v in values)
        return ",".join(_sci(v) if self.style == "sci" else f"{v:g}" for v in values)


#: The axis of a model that declares none: ``--strength`` only, plain numbers, more noise when higher.
GENERIC_AXIS = StrengthAxis()


#: The model attributes that plug-ins written before :class:`StrengthAxis` declare instead of an axis,
#: -> the axis field each one sets.
LEGACY_ATTRIBUTES: dict[str, str] = {"strength_name": "symbol", "strength_label": "label",
                                     "more_noise_when": "more_noise_when", "default_strengths": "defaults"}


def axis_from_attributes(attributes: Mapping[str, Any], inherited: StrengthAxis = GENERIC_AXIS) -> StrengthAxis:
    """The axis of a model that declares :data:`LEGACY_ATTRIBUTES` (``strength_name``...) instead of an axis.

    ``inherited`` with the given attributes replaced; a ``strength_name`` of ``t`` or ``t_inf``
    (:data:`TIME_STRENGTHS`) on an axis without an option of its own makes it a time in
    seconds on a log axis.

    Args:
        attributes: Attribute name -> value; keys outside :data:`LEGACY_ATTRIBUTES` are ignored.
        inherited: The axis the model would have without them (its base class's).
    """
    changes = {field: attributes[attr] for attr, field in LEGACY_ATTRIBUTES.items() if attr in attributes}
    if "defaults" in changes:
        changes["defaults"] = tuple(changes["defaults"])
    if changes.get("symbol") in TIME_STRENGTHS and inherited.flag is None and not inherited.time:
        changes.update(unit="s", log=True, time=True)
    return replace(inherited, **changes)


def axis_of(model: Any) -> StrengthAxis:
    """The strength axis of a noise model (class, instance or report stand-in).

    Its ``strength_axis`` (every :class:`onnxnoise.noise.base.NoiseModel` has one); for
    another object, the axis its ``strength_name``, ``strength_label``, ``more_noise_when``
    and ``default_strengths`` describe (:func:`axis_from_attributes`).
    """
    declared = getattr(model, "strength_axis", None)
    if isinstance(declared, StrengthAxis):
        return declared
    return axis_from_attributes({attr: getattr(model, attr) for attr in LEGACY_ATTRIBUTES if hasattr(model, attr)})


def axis_label(model: Any) -> str:
    """X label of a model's figures and header of its strength column: its axis's :attr:`~StrengthAxis.title`."""
    return axis_of(model).title


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
