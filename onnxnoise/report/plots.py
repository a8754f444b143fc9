"""Matplotlib figures of sweep results, after the figures of Fagbohungbe & Qian (arXiv 2011.11840).

* :func:`plot_accuracy_vs_noise`: whole-model accuracy vs noise, one line per model (Fig. 2);
* :func:`plot_layer_sensitivity`: normalized accuracy (eq. 2) vs noised layer, one line per strength (Figs. 3-4);
* :func:`plot_cumulative`: normalized accuracy vs number of noised layers ``L`` (Fig. 5);
* :func:`plot_compare`: ``A_avr`` (eq. 3) or degradation per strength for several models (Figs. 6-10).

The noise axis is the noise model's strength (``noise_model``/``strength`` columns),
drawn through :func:`onnxnoise.report.strength.noise_axis` from the model's declared
axis (:class:`onnxnoise.noise.axis.StrengthAxis`; no code here tests a model's name): the
quantity its axis plots (gaussian-snr: the noise in percent of ``sigma_w``, ``100 / SNR``,
eq. 1, as in the paper), else the strength itself, labelled with the axis title, on a log
axis where the model's axis says so (pcm's time, stuck-at's fault rate,
bit-flip's BER, multiplicative eta, conductance levels) with ticks in its units
(``1 s .. 1 y``, ``0.1%``, ``1e-04``). One figure shows one noise model; filter a
frame with several first.

Inputs are the frames of :mod:`onnxnoise.report.stats` (:func:`~onnxnoise.report.stats.summarize_trials`,
:func:`~onnxnoise.report.stats.average_normalized_accuracy`). Every function builds a new
:class:`matplotlib.figure.Figure` without pyplot (no global figure registry, no GUI
backend, safe under ``Agg`` and in threads) and returns it; the caller saves it, e.g.
``fig.savefig("layers.png", dpi=150)``. Nothing is shown or written here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from onnxnoise.lazy import lazy_module
from onnxnoise.report.stats import sort_by_noise
from onnxnoise.report.strength import NoiseAxis, more_noise_when, noise_axis, series_settings_text

pl = lazy_module("polars")
_mpl = lazy_module("matplotlib")
_figure = lazy_module("matplotlib.figure")
_ticker = lazy_module("matplotlib.ticker")

if TYPE_CHECKING:  # annotations only
    from matplotlib.axes import Axes

__all__ = [
    "METRIC_LABELS",
    "plot_layer_sensitivity",
    "plot_cumulative",
    "plot_accuracy_vs_noise",
    "plot_compare",
]

#: Y-axis label of each summary metric (``<metric>_mean`` / ``<metric>_ci_half`` columns).
METRIC_LABELS: dict[str, str] = {
    "top1_acc": "top-1 accuracy (%)",
    "top5_acc": "top-5 accuracy (%)",
    "top1_norm": "normalized top-1 accuracy $a_i/a_0$",
    "top5_norm": "normalized top-5 accuracy $a_i/a_0$",
}

_FIGSIZE = (8.0, 4.8)


def plot_layer_sensitivity(
    summary: pl.DataFrame,
    *,
    metric: str = "top1_norm",
    title: str | None = None,
) -> _figure.Figure:
    """Accuracy with noise in one layer at a time, vs layer index, one line per strength (paper Figs. 3-4).

    Args:
        summary: Output of :func:`onnxnoise.report.stats.summarize_trials` for one model and
            dataset; its ``per-layer`` rows are drawn.
        metric: One of :data:`METRIC_LABELS`; ``<metric>_mean`` is the line and
            ``<metric>_ci_half`` (seed confidence interval) the shaded band.
        title: Figure title; default names the model, dataset and number of seeds.

    Returns:
        The figure (one axes; lines ordered from least to most noise).

    Raises:
        ValueError: If there are no per-layer rows, several models/datasets/noise
            models/noise settings, or an unknown metric.
    """
    return _plot_over_layers(
        summary, mode="per-layer", metric=metric, title=title,
        xlabel="noised layer index (graph order, 0-based)",
        what="noise in one layer at a time",
    )


def plot_cumulative(
    summary: pl.DataFrame,
    *,
    metric: str = "top1_norm",
    title: str | None = None,
) -> _figure.Figure:
    """Accuracy with noise in layers 1..L, vs L, one line per strength (paper Fig. 5).

    Args:
        summary: Output of :func:`onnxnoise.report.stats.summarize_trials` for one model and
            dataset; its ``cumulative`` rows are drawn (``layer_index`` = ``L``).
        metric: One of :data:`METRIC_LABELS`; the band is ``<metric>_ci_half``.
        title: Figure title; default names the model, dataset and number of seeds.

    Returns:
        The figure.

    Raises:
        ValueError: If there are no cumulative rows, several models/datasets/noise
            models/noise settings, or an unknown metric.
    """
    return _plot_over_layers(
        summary, mode="cumulative", metric=metric, title=title,
        xlabel="number of noised layers L (layers 1..L in graph order)",
        what="noise in layers 1..L",
    )


def plot_accuracy_vs_noise(
    summary: pl.DataFrame,
    *,
    metric: str = "top1_acc",
    title: str | None = None,
) -> _figure.Figure:
    """Whole-model accuracy vs noise with noise in all layers, one line per model (paper Fig. 2).

    Each line runs over the model's ``all`` rows by increasing noise (x from
    :func:`onnxnoise.report.strength.noise_axis`) and starts at its baseline where the
    axis places it (0 % noise for ``gaussian-snr``); otherwise the baseline is a dotted
    horizontal line in the model's colour. Error bars are ``<metric>_ci_half`` (seed CI).

    Args:
        summary: Output of :func:`onnxnoise.report.stats.summarize_trials`, any number of
            models; its ``baseline`` and ``all`` rows are drawn.
        metric: One of :data:`METRIC_LABELS`.
        title: Figure title; default names the models, datasets and seeds.

    Returns:
        The figure.

    Raises:
        ValueError: If there are no ``all`` rows, several noise models, or the metric is unknown.
    """
    _check_metric(metric, summary)
    noisy = summary.filter(pl.col("mode") == "all")
    if noisy.is_empty():
        msg = "summary has no 'all' rows (noise in all layers); run the sweep with mode 'all'"
        raise ValueError(msg)
    axis = _axis(noisy)
    # Only the baselines measured on the same images (and model file) as the noisy rows.
    same = [c for c in ("model_sha256", "dataset_fingerprint", "preprocess") if c in summary.columns]
    base = summary.filter(pl.col("mode") == "baseline")
    fig, ax = _new_axes()
    high = 100.0 if metric.endswith("_acc") else np.inf
    for key, label in _series_keys(noisy):
        sub = sort_by_noise(noisy.filter(*(pl.col(c).eq_missing(v) for c, v in key.items())))
        if same:
            b = base.join(sub.select(same).unique(), on=same, how="semi")
        else:
            b = base.filter(*(pl.col(c).eq_missing(v) for c, v in key.items() if c in ("model", "dataset")))
        y0 = float(np.nanmean(_values(b, f"{metric}_mean"))) if b.height else None
        x = np.array([axis.x(v) for v in sub["strength"].to_list()], dtype=float)
        y = _values(sub, f"{metric}_mean")
        err = np.nan_to_num(_values(sub, f"{metric}_ci_half"), nan=0.0)
        if y0 is not None and axis.baseline_x is not None:  # the clean model: one run, no seed spread
            x, y, err = (np.concatenate([[first], rest]) for first, rest in ((axis.baseline_x, x), (y0, y), (0.0, err)))
        # Few-seed t-intervals can pass the possible range [0, 100 %]: clip them there.
        err = np.vstack([np.minimum(err, np.maximum(y, 0.0)), np.minimum(err, np.maximum(high - y, 0.0))])
        bars = ax.errorbar(x, y, yerr=err, marker="o", markersize=4, capsize=3, label=label)
        if y0 is not None and axis.baseline_x is None:
            ax.axhline(y0, color=bars.lines[0].get_color(), linestyle=":", linewidth=1.0, label="_nolegend_")
    data = noisy
    _set_x_scale(ax, axis)
    if axis.invert:
        ax.invert_xaxis()
    ax.set_xlabel(axis.label)
    ax.set_ylabel(METRIC_LABELS[metric])
    if metric.endswith("_acc"):
        ax.set_ylim(0, 102)
    ax.legend(title="model", fontsize="small")
    models = data["model"].unique(maintain_order=True)
    names = _join(data, "model") if len(models) <= 2 else f"{len(models)} models"
    default = (
        f"noise in all layers: {names} on {_join(data, 'dataset')}\n"
        f"mean over {_seeds_text(noisy)}, error bars: 95% t-interval over seeds (clipped to 0-100 %)"
        + ("; dotted: clean model" if axis.baseline_x is None and base.height else "")
    )
    ax.set_title(title if title is not None else default)
    return fig


def plot_compare(
    a_avr: pl.DataFrame,
    *,
    metric: str = "top1",
    value: str = "degradation",
    kind: str = "bar",
    title: str | None = None,
) -> _figure.Figure:
    """Compare models by average normalized accuracy or degradation per strength (paper Figs. 6-10).

    Args:
        a_avr: Output of :func:`onnxnoise.report.stats.average_normalized_accuracy`, one or
            more models.
        metric: ``"top1"`` or ``"top5"``.
        value: ``"degradation"`` (``100 (1 - A_avr)``, percent) or ``"a_avr"`` (ratio,
            paper eq. 3).
        kind: ``"bar"`` (grouped bars, one group per noise level) or ``"line"``.
        title: Figure title; default names the datasets and layer/seed counts.

    Returns:
        The figure; error bars are the seed CI of ``A_avr`` (times 100 for degradation).

    Raises:
        ValueError: On an empty frame, several noise models, or an unknown
            ``metric``/``value``/``kind``.
    """
    if metric not in ("top1", "top5"):
        msg = f"`metric` must be 'top1' or 'top5', got {metric!r}"
        raise ValueError(msg)
    if value not in ("degradation", "a_avr"):
        msg = f"`value` must be 'degradation' or 'a_avr', got {value!r}"
        raise ValueError(msg)
    if kind not in ("bar", "line"):
        msg = f"`kind` must be 'bar' or 'line', got {kind!r}"
        raise ValueError(msg)
    if a_avr.is_empty():
        msg = "`a_avr` frame is empty; it needs per-layer trials (see average_normalized_accuracy)"
        raise ValueError(msg)
    top = "top-1" if metric == "top1" else "top-5"
    if value == "degradation":
        column, scale = f"{metric}_degradation_pct", 100.0
        ylabel = f"{top} degradation $100\\,(1 - A_{{avr}})$ (%)"
    else:
        column, scale = f"{metric}_a_avr", 1.0
        ylabel = f"average normalized {top} accuracy $A_{{avr}}$"
    axis = _axis(a_avr)
    levels = _levels(a_avr)
    series = _series_keys(a_avr)
    fig, ax = _new_axes()
    width = 0.8 / max(len(series), 1)
    for i, (key, label) in enumerate(series):
        sub = sort_by_noise(a_avr.filter(*(pl.col(c).eq_missing(v) for c, v in key.items())))
        y = _values(sub, column)
        err = np.nan_to_num(scale * _values(sub, f"{metric}_a_avr_ci_half"), nan=0.0)
        # Few-seed t-intervals can reach past the possible range: clip them there
        # (degradation and A_avr are both >= 0; A_avr rarely exceeds 1 by much).
        high = 100.0 if value == "degradation" else max(1.0, float(np.nanmax(y)) if np.isfinite(y).any() else 1.0)
        err = np.vstack([np.minimum(err, np.maximum(y, 0.0)), np.minimum(err, np.maximum(high - y, 0.0))])
        if kind == "bar":
            pos = np.array([levels.index(v) for v in sub["strength"].to_list()], dtype=float)
            ax.bar(pos + (i - (len(series) - 1) / 2) * width, y, width, yerr=err, capsize=3, label=label)
        else:
            x = np.array([axis.x(v) for v in sub["strength"].to_list()], dtype=float)
            ax.errorbar(x, y, yerr=err, marker="o", markersize=4, capsize=3, label=label)
    if kind == "bar":
        ax.set_xticks(np.arange(len(levels)), [axis.tick(v) for v in levels])
    else:
        _set_x_scale(ax, axis)
        if axis.invert:
            ax.invert_xaxis()
    ax.set_xlabel(axis.label)
    ax.set_ylabel(ylabel)
    ax.legend(title="model", fontsize="small")
    models = a_avr.unique(["model", "layers"], maintain_order=True).iter_rows(named=True)
    counts = ", ".join(f"{row['model']}: {row['layers']} layers" for row in models)
    default = (
        f"noise in one layer at a time, averaged over layers (eq. 3), on {_join(a_avr, 'dataset')}\n"
        f"{counts}; {_seeds_text(a_avr)}, error bars: 95% t-interval over seeds (clipped to the possible range)"
    )
    ax.set_title(title if title is not None else default, fontsize="medium")
    return fig


def _plot_over_layers(
    summary: pl.DataFrame, *, mode: str, metric: str, title: str | None, xlabel: str, what: str
) -> _figure.Figure:
    _check_metric(metric, summary)
    data = summary.filter(pl.col("mode") == mode)
    if data.is_empty():
        msg = f"summary has no {mode!r} rows; run the sweep with mode {mode!r}"
        raise ValueError(msg)
    for col in ("model", "dataset", "noise_model", "noise", "batch_size", "label_offset", "provider"):
        if col in data.columns and data[col].n_unique() > 1:
            msg = f"summary holds several values of `{col}` ({_join(data, col)}); filter it to one before plotting"
            raise ValueError(msg)
    axis = _axis(data)
    levels = _levels(data)
    fig, ax = _new_axes()
    cmap = _mpl.colormaps["viridis"]
    top = 0.0
    for i, strength in enumerate(levels):
        sub = data.filter(pl.col("strength") == strength).sort("layer_index")
        x = sub["layer_index"].to_numpy()
        y = _values(sub, f"{metric}_mean")
        ci = _values(sub, f"{metric}_ci_half")
        color = cmap(0.85 * i / max(len(levels) - 1, 1))
        marker = "o" if len(x) <= 60 else None
        ax.plot(x, y, color=color, marker=marker, markersize=3, linewidth=1.2, label=axis.legend(strength))
        if np.isfinite(ci).any():
            # Accuracy cannot be negative: a t-interval from few seeds can reach below 0.
            ax.fill_between(x, np.maximum(y - ci, 0.0), y + ci, color=color, alpha=0.2, linewidth=0)
        top = max(top, float(np.nanmax(y)) if np.isfinite(y).any() else 0.0)
    if metric.endswith("_norm"):
        ax.axhline(1.0, color="0.5", linestyle="--", linewidth=0.8, label="_nolegend_")
        top = max(top, 1.0)
    # The means decide the view; wide seed bands are clipped at the frame, not the other way round.
    ax.set_ylim(-0.02 * top, 1.08 * top if top > 0 else 1.0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(METRIC_LABELS[metric])
    ax.legend(title=axis.legend_title, fontsize="small", title_fontsize="small")
    default = (
        f"{_join(data, 'model')} on {_join(data, 'dataset')}: {what}\n"
        f"mean over {_seeds_text(data)}, band: 95% t-interval over seeds (clipped to the frame)"
    )
    ax.set_title(title if title is not None else default)
    return fig


def _new_axes() -> tuple[_figure.Figure, Axes]:
    fig = _figure.Figure(figsize=_FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    ax.grid(True, alpha=0.3)
    return fig, ax


#: At most this many strengths get a tick each on a log axis; more keep matplotlib's decade ticks.
_MAX_STRENGTH_TICKS = 12


def _set_x_scale(ax: Axes, axis: NoiseAxis) -> None:
    """A log x axis where the model's axis asks for one; ``symlog`` if an x is <= 0 (t = 0, rate 0).

    On a log axis each plotted strength gets a tick labelled in the model's units
    (``1 s``, ``1 h``, ``1 d``, ``30 d``, ``1 y`` for pcm; ``0.1%`` for stuck-at; ``1e-04``
    for bit-flip), unless there are more than :data:`_MAX_STRENGTH_TICKS`.
    """
    if not axis.log:
        return
    # data lines only: a horizontal baseline (axhline) has x in axes coordinates 0..1
    xs = np.concatenate([np.asarray(line.get_xdata(), dtype=float) for line in ax.get_lines()
                         if line.get_transform() == ax.transData] or [np.array([])])
    xs = xs[np.isfinite(xs)]
    if xs.size and (xs <= 0).any():
        positive = xs[xs > 0]
        ax.set_xscale("symlog", linthresh=float(positive.min()) if positive.size else 1.0)
    else:
        ax.set_xscale("log")
    ticks = np.unique(xs)
    if 0 < ticks.size <= _MAX_STRENGTH_TICKS:  # x is the strength itself on every log axis
        ax.set_xticks(ticks, [axis.tick(float(v)) for v in ticks])
        ax.xaxis.set_minor_locator(_ticker.NullLocator())


def _check_metric(metric: str, frame: pl.DataFrame) -> None:
    if metric not in METRIC_LABELS:
        msg = f"`metric` must be one of {', '.join(METRIC_LABELS)}, got {metric!r}"
        raise ValueError(msg)
    if f"{metric}_mean" not in frame.columns:
        msg = f"summary lacks `{metric}_mean`; pass the output of onnxnoise.report.stats.summarize_trials"
        raise ValueError(msg)


def _values(frame: pl.DataFrame, column: str) -> np.ndarray:
    if column not in frame.columns:
        return np.full(frame.height, np.nan)
    return frame[column].cast(pl.Float64).fill_null(np.nan).to_numpy()


def _axis(frame: pl.DataFrame) -> NoiseAxis:
    """The noise axis of a frame holding one noise model (see :func:`onnxnoise.report.strength.noise_axis`)."""
    if "noise_model" not in frame.columns:
        return noise_axis(None)
    names = frame["noise_model"].unique(maintain_order=True).to_list()
    if len(names) > 1:
        msg = (f"frame holds several values of `noise_model` ({', '.join(map(str, names))}); "
               "filter it to one before plotting")
        raise ValueError(msg)
    return noise_axis(names[0], frame["noise"][0] if "noise" in frame.columns else None)


def _levels(frame: pl.DataFrame) -> list[float]:
    """Distinct non-null strengths of one noise model's frame, least noise first."""
    name = frame["noise_model"][0] if "noise_model" in frame.columns and frame.height else None
    lower = more_noise_when(name) == "lower"
    return sorted(frame["strength"].drop_nulls().unique().to_list(), key=lambda v: -v if lower else v)


def _series_keys(frame: pl.DataFrame) -> list[tuple[dict, str]]:
    """One series per (model, dataset[, run settings][, noise settings]); labels name what varies.

    Labels name the model, the dataset and run settings when they differ, and in brackets
    the noise settings that differ between series or from their defaults
    (:func:`~onnxnoise.report.strength.series_settings_text`: ``net [compensation=global]``). Run settings (batch size, label offset, provider) that differ make separate series,
    never one series whose seeds are pooled across measurements.
    """
    settings = ("batch_size", "label_offset", "provider")
    several = {c: c in frame.columns and frame[c].n_unique() > 1 for c in ("dataset", "noise", *settings)}
    varying = [c for c in settings if several[c]]
    cols = [c for c in ("model", "dataset") if c in frame.columns] + varying + (["noise"] if "noise" in frame.columns
                                                                                 else [])
    out = []
    keys = frame.unique(cols, maintain_order=True).select(cols)
    # A figure shows one noise model (checked by the callers): label the settings that differ
    # between series or from their defaults, the same for one run as for several.
    model = pl.Series([frame["noise_model"][0]] * keys.height) if "noise_model" in frame.columns else None
    settings = series_settings_text(keys["noise"], model) if "noise" in frame.columns else [""] * keys.height
    for row, text in zip(keys.iter_rows(named=True), settings):
        label = str(row.get("model", "model"))
        if several["dataset"]:
            label += f" ({row['dataset']})"
        label += "".join(f" {c.replace('_', ' ')} {row[c]}" for c in varying)
        if text:
            label += f" [{text}]"
        out.append((row, label))
    return out


def _join(frame: pl.DataFrame, column: str) -> str:
    if column not in frame.columns:
        return "?"
    return ", ".join(str(v) for v in frame[column].unique(maintain_order=True).to_list())


def _seeds_text(frame: pl.DataFrame) -> str:
    if "seeds" not in frame.columns or frame.is_empty():
        return "seeds"
    lo, hi = frame["seeds"].min(), frame["seeds"].max()
    return f"{lo} seed{'s' if hi != 1 else ''}" if lo == hi else f"{lo}-{hi} seeds"
