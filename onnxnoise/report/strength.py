"""The swept noise-strength axis in reports: display text, noise order, plot axes.

Every trial carries its noise model's registry name (``noise_model``), the model's
parameters (``noise`` JSON: ``{"params": {...}, "bn_variance", "keep_zeros"}``) and one
``strength`` value (NULL for the clean baseline). This module turns them into what
reports show, through the model's one declaration of its axis
(:class:`onnxnoise.noise.axis.StrengthAxis`, ``strength_axis``) and its plug-in methods
(:class:`onnxnoise.noise.base.NoiseModel`): ``format_strength`` for table cells (the
axis's cell text unless the model overrides it), the axis's title for headers, figure
labels and legend titles, its tick text and log or linear scale for figures, its
``more_noise_when`` for the order (least noise first), ``describe`` for captions. Headers
and legend titles use the axis title, as the cells use ``format_strength`` (pcm: header
``time after programming t_inf``, cells ``t = 1 d``; never ``time (s)`` over cells in days).

No report code tests a model's name. A model whose figures show another quantity than
the stored strength declares it on its axis (:class:`onnxnoise.noise.axis.PlotAs`):
gaussian-snr (Fagbohungbe & Qian, arXiv 2011.11840, eq. 1: ``sigma_noise = sigma_w /
SNR``) plots the noise in percent of ``sigma_w``, ``100 / SNR``, with the clean baseline
at 0 %, as the paper's figures do. Every other model plots its strength as is: pcm's
time on a log axis with ticks ``1 s .. 1 y``, stuck-at's fault rate on a log axis with
ticks ``0.1%``, bit-flip's BER with ``1e-04``. Tables keep the stored number (seconds for
a time) in ``strength`` and add its unit in ``strength_unit`` (:func:`add_strength_text`).

A noise model that is not registered in this process (a store written with a
plug-in that is not installed) is shown generically (label ``strength``, more noise
for higher values) instead of failing the report.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from onnxnoise.errors import NoiseConfigError
from onnxnoise.lazy import lazy_module
from onnxnoise.noise import axis_label, axis_of, get_noise_model, make_noise_model
from onnxnoise.noise.axis import GENERIC_AXIS
from onnxnoise.noise.draw import NoisePolicies
from onnxnoise.noise.gaussian import NOISE_PCT_LABEL

pl = lazy_module("polars")

__all__ = [
    "GAUSSIAN_NOISE_LABEL",
    "NoiseAxis",
    "noise_axis",
    "strength_axis",
    "noise_model_for",
    "more_noise_when",
    "strength_header",
    "noise_descriptions",
    "add_strength_text",
    "noise_rank",
    "series_settings_text",
]

#: X-axis label of ``gaussian-snr`` plots (declared on its axis): noise in percent of ``sigma_w`` (paper eq. 1).
GAUSSIAN_NOISE_LABEL = NOISE_PCT_LABEL


class _UnknownModel:
    """Stand-in for a noise model that is not registered here: the generic axis, generic text."""

    strength_axis = GENERIC_AXIS
    strength_label = GENERIC_AXIS.label
    more_noise_when = GENERIC_AXIS.more_noise_when

    def __init__(self, name: str | None) -> None:
        self.name = name or "unknown"

    def format_strength(self, value: float | None) -> str:
        return self.strength_axis.text_of(value)

    def describe(self) -> str:
        return f"{self.name} (noise model not registered in this onnxnoise)"


def _params(noise: str | dict | None) -> dict[str, Any]:
    if noise is None:
        return {}
    if isinstance(noise, str):
        try:
            noise = json.loads(noise)
        except json.JSONDecodeError:
            return {}
    params = noise.get("params") if isinstance(noise, dict) else None
    return dict(params) if isinstance(params, dict) else {}


@lru_cache(maxsize=256)
def _registered(name: str, params_json: str) -> Any:
    try:
        return make_noise_model(name, json.loads(params_json))
    except NoiseConfigError:
        # registered, but these parameters are not accepted (another plug-in version): defaults
        return get_noise_model(name)()  # type: ignore[call-arg]


def _model(name: str | None, params_json: str) -> Any:
    # Stand-ins are not cached: a plug-in registered later is picked up.
    try:
        return _UnknownModel(None) if name is None else _registered(name, params_json)
    except (NoiseConfigError, TypeError):
        return _UnknownModel(name)


def noise_model_for(name: str | None, noise: str | dict | None = None) -> Any:
    """The noise model instance of a trial (or a stand-in if it is not registered).

    Args:
        name: Registry name (the ``noise_model`` column).
        noise: The ``noise`` column (JSON text or dict) whose ``params`` instantiate
            the model; ``None`` for the defaults.

    Returns:
        An object with ``name``, ``strength_label``, ``more_noise_when``,
        ``format_strength(value)`` and ``describe()``.
    """
    return _model(name, json.dumps(_params(noise), sort_keys=True))


def more_noise_when(name: str | None) -> str:
    """``"lower"`` or ``"higher"``: which strengths mean more noise for the model ``name``."""
    return axis_of(noise_model_for(name)).more_noise_when


@dataclass(frozen=True)
class NoiseAxis:
    """How one noise model's strength is drawn on a plot axis.

    Attributes:
        noise_model: Registry name.
        label: X-axis label.
        legend_title: Title of a legend whose entries are strengths (the axis name: it
            matches entries written by ``format_strength``).
        baseline_x: Where the clean baseline sits on the axis, or ``None`` when it has
            no position (then plots draw it as a horizontal reference line).
        invert: Larger x means *less* noise (plots invert the axis so noise grows to
            the right).
        log: Draw x on a log scale: decided by the model's axis (``StrengthAxis.log``;
            pcm's time 1 s .. 1 y, fault rates, BER span decades).
    """

    noise_model: str | None
    label: str
    legend_title: str
    baseline_x: float | None
    invert: bool
    _x: Callable[[float], float]
    _legend: Callable[[float], str]
    _tick: Callable[[float], str]
    log: bool = False

    def x(self, strength: float | None) -> float:
        """Axis position of a strength (``baseline_x`` or NaN for the baseline, ``None``)."""
        if strength is None:
            return math.nan if self.baseline_x is None else self.baseline_x
        return self._x(float(strength))

    def legend(self, strength: float | None) -> str:
        """Legend text of one strength (``clean`` for the baseline)."""
        return "clean" if strength is None else self._legend(float(strength))

    def tick(self, strength: float | None) -> str:
        """Short tick label of one strength (``clean`` for the baseline)."""
        return "clean" if strength is None else self._tick(float(strength))


def noise_axis(name: str | None, noise: str | dict | None = None) -> NoiseAxis:
    """The plot axis of the noise model ``name``, read from its declared axis (:func:`onnxnoise.noise.axis_of`).

    An axis that declares :class:`~onnxnoise.noise.axis.PlotAs` (gaussian-snr: x = noise std
    in percent of ``sigma_w`` = ``100 / SNR``, baseline at 0 %, legend ``1% (SNR 100)``,
    ticks ``1%``) is drawn as that says. Any other: x = strength, label and legend title =
    the axis title (long name, else label), legend = the model's ``format_strength``, ticks
    = the axis's ``format_value`` (``1 d``, ``0.1%``, ``1e-04``), axis inverted when
    ``more_noise_when == "lower"``, baseline without a position, and a log axis (``log``)
    where the axis says so.
    """
    model = noise_model_for(name, noise)
    axis = axis_of(model)
    plot = axis.plot
    if plot is not None:
        return NoiseAxis(noise_model=name, label=plot.label, legend_title=plot.legend_title,
                         baseline_x=plot.baseline_x, invert=plot.more_noise_when == "lower",
                         _x=plot.x, _legend=plot.legend, _tick=plot.tick, log=plot.log)
    return NoiseAxis(
        noise_model=name, label=axis_label(model), legend_title=axis_label(model), baseline_x=None,
        invert=axis.more_noise_when == "lower",
        _x=lambda v: v, _legend=model.format_strength, _tick=axis.format_value,
        log=axis.log,
    )


def strength_axis(noise_model: str | None, strength: float | None) -> tuple[str, float]:
    """``(axis label, x value)`` of one strength of ``noise_model`` (see :func:`noise_axis`)."""
    axis = noise_axis(noise_model)
    return axis.label, axis.x(strength)


def _names(frame: pl.DataFrame) -> list[str | None]:
    if "noise_model" not in frame.columns:
        return [None]
    return frame["noise_model"].unique(maintain_order=True).to_list()


def strength_header(frame: pl.DataFrame) -> str:
    """Header of a strength column: the axis name of ``frame``'s one noise model, else ``strength``.

    The axis name (:func:`onnxnoise.noise.axis_label`: ``time after programming t_inf``,
    ``device fault rate p``, ``bit error rate (BER)``; a model without one: its
    ``strength_label``) carries no unit that the cells (``format_strength``: ``t = 1 d``,
    ``p = 0.1% faulty devices``) would contradict.
    """
    names = _names(frame)
    return axis_label(noise_model_for(names[0])) if len(names) == 1 else "strength"


def noise_descriptions(frame: pl.DataFrame) -> list[str]:
    """``"<name>: <describe()>"`` for every (noise model, parameters) pair in ``frame``."""
    cols = [c for c in ("noise_model", "noise") if c in frame.columns]
    if "noise_model" not in cols:
        return []
    out = []
    for row in frame.select(cols).unique(maintain_order=True).iter_rows(named=True):
        text = f"{row['noise_model']}: {noise_model_for(row['noise_model'], row.get('noise')).describe()}"
        if text not in out:
            out.append(text)
    return out


def add_strength_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``strength_text`` and ``strength_unit``: how a strength is read, for tables.

    ``strength_text`` is the model's ``format_strength(strength)`` (``t = 1 d``, ``p = 0.1%
    faulty devices``; ``clean`` for the baseline); ``strength_unit`` the unit of the
    number in ``strength`` (``s`` for pcm's time, ``dB``, ``fraction``, ``ratio``,
    ``count``; ``""`` when the model declares none). ``strength`` itself stays the stored
    number (seconds for a time), for CSV/Parquet/JSON.

    Needs a ``strength`` column (Float64, NULL for the baseline); ``noise_model`` and
    ``noise`` are used when present.
    """
    cols = [c for c in ("noise_model", "noise", "strength") if c in frame.columns]
    frame = frame.drop("strength_text", "strength_unit", strict=False)
    uniq = frame.select(cols).unique(maintain_order=True)
    texts, units = [], []
    for row in uniq.iter_rows(named=True):
        value = row["strength"]
        value = None if value is None or (isinstance(value, float) and math.isnan(value)) else value
        model = noise_model_for(row.get("noise_model"), row.get("noise"))
        texts.append(model.format_strength(value))
        units.append(axis_of(model).unit)
    uniq = uniq.with_columns(pl.Series("strength_text", texts, dtype=pl.String),
                             pl.Series("strength_unit", units, dtype=pl.String))
    return frame.join(uniq, on=cols, how="left", nulls_equal=True, maintain_order="left")


def noise_rank(frame: pl.DataFrame) -> pl.Expr:
    """Sort key growing with noise: ``-strength`` for ``more_noise_when == "lower"`` models, else ``strength``.

    NULL (the baseline) stays NULL; sort with ``nulls_last=False`` to put it first.
    """
    strength = pl.col("strength").cast(pl.Float64)
    if "noise_model" not in frame.columns:
        return strength
    signs = {name: (-1.0 if more_noise_when(name) == "lower" else 1.0) for name in _names(frame) if name is not None}
    sign = pl.col("noise_model").replace_strict(signs, default=1.0, return_dtype=pl.Float64)
    return strength * sign


def noise_settings(noise: str | None) -> dict[str, Any]:
    """A trial's ``noise`` JSON flattened: the model's parameters and the policies, ``name -> value``."""
    try:
        settings = json.loads(noise) if noise else {}
    except json.JSONDecodeError:
        return {"noise": noise}
    if not isinstance(settings, dict):
        return {"noise": noise}
    return {**(settings.pop("params", None) or {}), **settings}


def varying_settings_text(noise: pl.Series, noise_model: pl.Series | None = None) -> list[str]:
    """Per row, ``k=v`` text of the noise settings that differ between rows of the same noise model.

    E.g. ``compensation=global`` beside ``compensation=none`` for two pcm sweeps; ``""`` for a
    row whose noise model has one setting only.
    """
    models = noise_model.to_list() if noise_model is not None else [None] * len(noise)
    flat = [_with_defaults(noise_settings(n), m) for n, m in zip(noise.to_list(), models)]
    out = []
    for f, m in zip(flat, models):
        group = [g for g, gm in zip(flat, models) if gm == m]
        keys = sorted({k for g in group for k in g})
        varying = [k for k in keys if len({json.dumps(g.get(k), sort_keys=True) for g in group}) > 1]
        out.append(", ".join(f"{k}={f.get(k)}" for k in varying))
    return out


def series_settings_text(noise: pl.Series, noise_model: pl.Series | None = None) -> list[str]:
    """Per row, ``k=v`` text of the noise settings that name a figure series.

    A setting is named when it differs between rows of the same noise model
    (:func:`varying_settings_text`) or from its default (the model's parameter
    defaults, ``bn_variance=clamp``, ``keep_zeros=False``), so a single-run figure of
    ``pcm:compensation=global`` says ``compensation=global`` as a figure of two runs does.
    """
    models = noise_model.to_list() if noise_model is not None else [None] * len(noise)
    varying = varying_settings_text(noise, noise_model)
    defaults = {f.name: f.default for f in dataclasses.fields(NoisePolicies)}
    out = []
    for text, raw, name in zip(varying, noise.to_list(), models):
        model_defaults = {**defaults, **_with_defaults({}, name)}
        named = [part.split("=", 1)[0] for part in text.split(", ") if part]
        own = [f"{k}={v}" for k, v in noise_settings(raw).items()
               if k not in named and k in model_defaults and v != model_defaults[k]]
        out.append(", ".join([*([text] if text else []), *own]))
    return out


def _with_defaults(settings: dict[str, Any], name: str | None) -> dict[str, Any]:
    """``settings`` with the registered model's default for every parameter not stored (e.g. ``scope=tensor``)."""
    try:
        model = get_noise_model(name) if name else None
    except NoiseConfigError:
        model = None
    if model is None:
        return settings
    defaults = {f.name: f.default for f in dataclasses.fields(model) if f.default is not dataclasses.MISSING}
    return {**defaults, **settings}
