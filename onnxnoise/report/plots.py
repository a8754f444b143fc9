"""Matplotlib figures of sweep results, after the figures of Fagbohungbe & Qian (arXiv 2011.11840).

* :func:`plot_accuracy_vs_noise`: whole-model accuracy vs noise, one line per model (Fig. 2);
* :func:`plot_layer_sensitivity`: normalized accuracy vs noised layer, one line per SNR (Figs. 3-4);
* :func:`plot_cumulative`: normalized accuracy vs number of noised layers ``L`` (Fig. 5);
* :func:`plot_compare`: ``A_avr`` or degradation per SNR for several models (Figs. 6-10).

Inputs are the frames of :mod:`onnxnoise.report.stats` (:func:`~onnxnoise.report.stats.summarize_trials`,
:func:`~onnxnoise.report.stats.average_normalized_accuracy`). Every function builds a new
:class:`matplotlib.figure.Figure` without pyplot (no global figure registry, no GUI
backend, safe under ``Agg`` and in threads) and returns it; the caller saves it, e.g.
``fig.savefig("layers.png", dpi=150)``. Nothing is shown or written here.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = [
    "METRIC_LABELS",
    "NOISE_LABEL",
    "plot_layer_sensitivity",
    "plot_cumulative",
    "plot_accuracy_vs_noise",
    "plot_compare",
]

#: Y-axis label of each summary metric (``<metric>_mean`` / ``<metric>_ci`` columns).
METRIC_LABELS: dict[str, str] = {
    "top1_acc": "top-1 accuracy (%)",
    "top5_acc": "top-5 accuracy (%)",
    "top1_norm": "normalized top-1 accuracy $a_i/a_0$",
    "top5_norm": "normalized top-5 accuracy $a_i/a_0$",
}

#: X-axis label for noise levels (``noise_pct = 100 / SNR``, paper eq. 1).
NOISE_LABEL = r"noise std (% of $\sigma_w$) = 100 / SNR"

_FIGSIZE = (8.0, 4.8)


def plot_layer_sensitivity(
    summary: pl.DataFrame,
    *,
    metric: str = "top1_norm",
    title: str | None = None,
) -> Figure:
    """Accuracy with noise in one layer at a time, vs layer index, one line per SNR (paper Figs. 3-4).

    Args:
        summary: Output of :func:`onnxnoise.report.stats.summarize_trials` for one model and
            dataset; its ``per-layer`` rows are drawn.
        metric: One of :data:`METRIC_LABELS`; ``<metric>_mean`` is the line and
            ``<metric>_ci`` (seed confidence interval) the shaded band.
        title: Figure title; default names the model, dataset and number of seeds.

    Returns:
        The figure (one axes; lines ordered from least to most noise).

    Raises:
        ValueError: If there are no per-layer rows, several models/datasets, or an
            unknown metric.
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
) -> Figure:
    """Accuracy with noise in layers 1..L, vs L, one line per SNR (paper Fig. 5).

    Args:
        summary: Output of :func:`onnxnoise.report.stats.summarize_trials` for one model and
            dataset; its ``cumulative`` rows are drawn (``layer_index`` = ``L``).
        metric: One of :data:`METRIC_LABELS`; the band is ``<metric>_ci``.
        title: Figure title; default names the model, dataset and number of seeds.

    Returns:
        The figure.

    Raises:
        ValueError: If there are no cumulative rows, several models/datasets, or an
            unknown metric.
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
) -> Figure:
    """Whole-model accuracy vs noise with noise in all layers, one line per model (paper Fig. 2).

    Each line starts at the model's baseline (0 % noise) and continues with its ``all``
    rows by increasing ``noise_pct``; error bars are ``<metric>_ci`` (seed CI).

    Args:
        summary: Output of :func:`onnxnoise.report.stats.summarize_trials`, any number of
            models; its ``baseline`` and ``all`` rows are drawn.
        metric: One of :data:`METRIC_LABELS`.
        title: Figure title; default names the models, datasets and seeds.

    Returns:
        The figure.

    Raises:
        ValueError: If there are no ``all`` rows or the metric is unknown.
    """
    _check_metric(metric, summary)
    noisy = summary.filter(pl.col("mode") == "all")
    if noisy.is_empty():
        msg = "summary has no 'all' rows (noise in all layers); run the sweep with mode 'all'"
        raise ValueError(msg)
    # Only the baselines measured on the same images (and model file) as the noisy rows.
    same = [c for c in ("model_sha256", "dataset_fingerprint", "preprocess") if c in summary.columns]
    base = summary.filter(pl.col("mode") == "baseline")
    if same:
        base = base.join(noisy.select(same).unique(), on=same, how="semi")
    data = pl.concat([base, noisy], how="vertical_relaxed")
    fig, ax = _new_axes()
    series = _series_keys(data)
    high = 100.0 if metric.endswith("_acc") else np.inf
    for key, label in series:
        sub = data.filter(*(pl.col(c) == v for c, v in key.items())).sort("noise_pct")
        x = sub["noise_pct"].to_numpy()
        y = _values(sub, f"{metric}_mean")
        err = np.nan_to_num(_values(sub, f"{metric}_ci"), nan=0.0)
        # Few-seed t-intervals can pass the possible range [0, 100 %]: clip them there.
        err = np.vstack([np.minimum(err, np.maximum(y, 0.0)), np.minimum(err, np.maximum(high - y, 0.0))])
        ax.errorbar(x, y, yerr=err, marker="o", markersize=4, capsize=3, label=label)
    ax.set_xlabel(NOISE_LABEL)
    ax.set_ylabel(METRIC_LABELS[metric])
    if metric.endswith("_acc"):
        ax.set_ylim(0, 102)
    ax.legend(title="model", fontsize="small")
    models = data["model"].unique(maintain_order=True)
    names = _join(data, "model") if len(models) <= 2 else f"{len(models)} models"
    default = (
        f"noise in all layers: {names} on {_join(data, 'dataset')}\n"
        f"mean over {_seeds_text(noisy)}, error bars: 95% t-interval over seeds (clipped to 0-100 %)"
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
) -> Figure:
    """Compare models by average normalized accuracy or degradation per SNR (paper Figs. 6-10).

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
        ValueError: On an empty frame or an unknown ``metric``/``value``/``kind``.
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
    levels = sorted(a_avr["noise_pct"].unique().to_list())
    series = _series_keys(a_avr)
    fig, ax = _new_axes()
    width = 0.8 / max(len(series), 1)
    for i, (key, label) in enumerate(series):
        sub = a_avr.filter(*(pl.col(c) == v for c, v in key.items())).sort("noise_pct")
        y = _values(sub, column)
        err = np.nan_to_num(scale * _values(sub, f"{metric}_a_avr_ci"), nan=0.0)
        # Few-seed t-intervals can reach past the possible range: clip them there
        # (degradation and A_avr are both >= 0; A_avr rarely exceeds 1 by much).
        high = 100.0 if value == "degradation" else max(1.0, float(np.nanmax(y)) if np.isfinite(y).any() else 1.0)
        err = np.vstack([np.minimum(err, np.maximum(y, 0.0)), np.minimum(err, np.maximum(high - y, 0.0))])
        if kind == "bar":
            pos = np.array([levels.index(p) for p in sub["noise_pct"].to_list()], dtype=float)
            ax.bar(pos + (i - (len(series) - 1) / 2) * width, y, width, yerr=err, capsize=3, label=label)
        else:
            ax.errorbar(sub["noise_pct"].to_numpy(), y, yerr=err, marker="o", markersize=4, capsize=3, label=label)
    if kind == "bar":
        ax.set_xticks(np.arange(len(levels)), [f"{_fmt(p)}%" for p in levels])
    ax.set_xlabel(NOISE_LABEL)
    ax.set_ylabel(ylabel)
    ax.legend(title="model", fontsize="small")
    models = a_avr.unique(["model", "layers"], maintain_order=True).iter_rows(named=True)
    counts = ", ".join(f"{row['model']}: {row['layers']} layers" for row in models)
    seeds = a_avr["seeds"]
    seed_text = f"{seeds.min()} seeds" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()} seeds"
    default = (
        f"noise in one layer at a time, averaged over layers (eq. 3), on {_join(a_avr, 'dataset')}\n"
        f"{counts}; {seed_text}, error bars: 95% t-interval over seeds (clipped to the possible range)"
    )
    ax.set_title(title if title is not None else default, fontsize="medium")
    return fig


def _plot_over_layers(
    summary: pl.DataFrame, *, mode: str, metric: str, title: str | None, xlabel: str, what: str
) -> Figure:
    _check_metric(metric, summary)
    data = summary.filter(pl.col("mode") == mode)
    if data.is_empty():
        msg = f"summary has no {mode!r} rows; run the sweep with mode {mode!r}"
        raise ValueError(msg)
    for col in ("model", "dataset"):
        if col in data.columns and data[col].n_unique() > 1:
            msg = f"summary holds several values of `{col}` ({_join(data, col)}); filter it to one before plotting"
            raise ValueError(msg)
    fig, ax = _new_axes()
    snrs = sorted(data["snr"].unique().to_list(), reverse=True)
    cmap = colormaps["viridis"]
    top = 0.0
    for i, snr in enumerate(snrs):
        sub = data.filter(pl.col("snr") == snr).sort("layer_index")
        x = sub["layer_index"].to_numpy()
        y = _values(sub, f"{metric}_mean")
        ci = _values(sub, f"{metric}_ci")
        color = cmap(0.85 * i / max(len(snrs) - 1, 1))
        marker = "o" if len(x) <= 60 else None
        ax.plot(x, y, color=color, marker=marker, markersize=3, linewidth=1.2, label=_snr_label(snr))
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
    ax.legend(title=NOISE_LABEL.split(" = ")[0], fontsize="small", title_fontsize="small")
    default = (
        f"{_join(data, 'model')} on {_join(data, 'dataset')}: {what}\n"
        f"mean over {_seeds_text(data)}, band: 95% t-interval over seeds (clipped to the frame)"
    )
    ax.set_title(title if title is not None else default)
    return fig


def _new_axes() -> tuple[Figure, Axes]:
    fig = Figure(figsize=_FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    ax.grid(True, alpha=0.3)
    return fig, ax


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


def _series_keys(frame: pl.DataFrame) -> list[tuple[dict, str]]:
    """One series per (model, dataset); the label adds the dataset only when several are present."""
    cols = [c for c in ("model", "dataset") if c in frame.columns]
    several = "dataset" in frame.columns and frame["dataset"].n_unique() > 1
    out = []
    for row in frame.unique(cols, maintain_order=True).select(cols).iter_rows(named=True):
        label = str(row.get("model", "model"))
        if several:
            label += f" ({row['dataset']})"
        out.append((row, label))
    return out


def _snr_label(snr: float) -> str:
    return f"{_fmt(100.0 / snr)}% (SNR {_fmt(snr)})"


def _fmt(x: float) -> str:
    if math.isinf(x):
        return "inf"
    return f"{x:.3g}"


def _join(frame: pl.DataFrame, column: str) -> str:
    if column not in frame.columns:
        return "?"
    return ", ".join(str(v) for v in frame[column].unique(maintain_order=True).to_list())


def _seeds_text(frame: pl.DataFrame) -> str:
    if "seeds" not in frame.columns or frame.is_empty():
        return "seeds"
    lo, hi = frame["seeds"].min(), frame["seeds"].max()
    return f"{lo} seed{'s' if hi != 1 else ''}" if lo == hi else f"{lo}-{hi} seeds"
