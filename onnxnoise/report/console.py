"""Rich renderables for the terminal. Nothing here prints: the CLI does."""

from __future__ import annotations

import math
from collections.abc import Sequence

import polars as pl
from rich.table import Table
from rich.text import Text

from onnxnoise.model.graph import Layer

__all__ = ["layers_table", "bench_table", "bench_caption", "summary_table", "a_avr_table"]


def _fmt_snr(snr: float) -> str:
    return "clean" if math.isinf(snr) else f"{snr:g}"


def layers_table(layers: Sequence[Layer], *, title: str | None = None) -> Table:
    """Table of parameter layers with a totals row (the paper's Tables IV-VIII).

    Args:
        layers: Output of :func:`onnxnoise.model.graph.list_layers`.
        title: Optional table title (e.g. the model file name).

    Returns:
        A rich ``Table``: index, name, op type, tensors, parameters, sigma_w.
    """
    table = Table(title=title, show_footer=True)
    table.add_column("#", justify="right", footer="")
    table.add_column("layer", footer="total", overflow="fold")
    table.add_column("op type", footer=f"{len(layers)} layers")
    table.add_column("tensors")
    table.add_column("parameters", justify="right", footer=f"{sum(layer.num_params for layer in layers):,}")
    table.add_column("sigma_w", justify="right")
    for layer in layers:
        tensors = ", ".join(f"{role}{list(shape)}" for role, shape in zip(layer.roles, layer.shapes))
        table.add_row(
            str(layer.index), layer.name, layer.op_type, tensors, f"{layer.num_params:,}", f"{layer.sigma_w:.4g}"
        )
    return table


def bench_caption(meta: dict) -> Text:
    """One-paragraph description of what a bench run measured."""
    pre = meta.get("preprocess", {})
    geometry = f"resize {pre.get('resize')}, crop {pre.get('crop')}" if pre.get("crop") or pre.get("resize") else "no resize"
    colour = "grayscale" if pre.get("channels") == 1 else pre.get("channel_order")
    changed = meta.get("bn_variance_changed")
    policy = f"BN variance policy {meta.get('bn_variance')}" + (
        f" ({changed:,} negative variances {'left' if meta.get('bn_variance') == 'keep' else 'fixed'})"
        if changed else "")
    lines = [
        f"model {meta['model']} ({meta['layers_noised']}/{meta['layers_total']} layers noised, "
        f"{meta['params_noised']:,} parameters)",
        f"data {meta['dataset']} ({meta['images']:,} images"
        + (f", {meta['skipped_images']} unreadable skipped" if meta.get("skipped_images") else "")
        + f"), preprocessing {pre.get('preset')}"
        + (f" from {meta['preprocess_source']}" if meta.get("preprocess_source") else "")
        + f" ({geometry}, {colour}, "
        f"x * {pre.get('scale'):.6g} - mean {pre.get('mean')}, / std {pre.get('std')})",
        f"noise: additive Gaussian, sigma = std(w)/SNR per tensor, {meta.get('seeds')} seed(s), "
        f"{policy}; execution provider {meta.get('provider')}",
    ]
    if meta.get("input_layout") == "NHWC" or meta.get("fixed_batch"):
        lines.append(f"model input {meta.get('input_layout')}"
                     + (f", fixed batch {meta['fixed_batch']} (last batch zero-padded)" if meta.get("fixed_batch") else ""))
    if meta.get("keep_zeros"):
        lines.append("exact zeros kept at zero (--keep-zeros, pruned weights)")
    if meta.get("quantization"):
        lines.append(meta["quantization"])
    if meta.get("label_offset"):
        lines.append(f"labels shifted by {meta['label_offset']} (background class at output 0)")
    return Text("\n".join(lines))


def bench_table(summary: pl.DataFrame, *, title: str | None = None) -> Table:
    """Per-SNR accuracy table of a bench run.

    Args:
        summary: Output of :func:`onnxnoise.bench.summarize`.
        title: Optional table title.

    Returns:
        A rich ``Table``: SNR, noise %, seeds, top-1 and top-5 (mean ± std, percent),
        normalized accuracy ``a / a_0`` (paper eq. 2) and NaN-logit count.
    """
    table = Table(title=title)
    for name in ("SNR", "noise %", "seeds", "top-1 %", "top-5 %", "top-1 a/a0", "top-5 a/a0", "NaN logits"):
        table.add_column(name, justify="right")
    for row in summary.iter_rows(named=True):
        clean = math.isinf(row["snr"])
        spread = "" if clean or row["seeds"] < 2 else " ± {:.2f}"  # one seed: no spread to show
        table.add_row(
            _fmt_snr(row["snr"]),
            f"{row['noise_pct']:g}",
            "-" if clean else str(row["seeds"]),
            f"{row['top1_mean']:.2f}" + spread.format(row["top1_std"]),
            f"{row['top5_mean']:.2f}" + spread.format(row["top5_std"]),
            f"{row['top1_norm_mean']:.4f}",
            f"{row['top5_norm_mean']:.4f}",
            str(row["nan_count"]),
        )
    return table


def _pm(mean, ci, digits: int = 2) -> str:
    if mean is None:
        return "-"
    text = f"{mean:.{digits}f}"
    return text if ci is None or math.isnan(ci) else f"{text} ± {ci:.{digits}f}"


def summary_table(summary: pl.DataFrame, *, title: str | None = "whole-model and baseline trials") -> Table:
    """Baseline and noise-in-all-layers rows of :func:`onnxnoise.report.stats.summarize_trials`.

    Returns:
        A rich ``Table``: model, mode, SNR, seeds, top-1 / top-5 (percent, mean ± 95% CI
        over seeds), ``a / a_0`` and NaN-logit count.
    """
    table = Table(title=title)
    for name in ("model", "mode", "SNR", "seeds", "top-1 %", "top-5 %", "top-1 a/a0", "NaN logits"):
        table.add_column(name, justify="left" if name in ("model", "mode") else "right",
                         overflow="fold", min_width=9 if name == "model" else None)
    rows = summary.filter(pl.col("mode").is_in(["baseline", "all"])).sort(["model", "snr"], descending=[False, True])
    for row in rows.iter_rows(named=True):
        table.add_row(row["model"], row["mode"], _fmt_snr(row["snr"]), str(row["seeds"]),
                      _pm(row["top1_acc_mean"], row["top1_acc_ci"]), _pm(row["top5_acc_mean"], row["top5_acc_ci"]),
                      _pm(row["top1_norm_mean"], row["top1_norm_ci"], 4), str(row["nan_count"]))
    return table


def a_avr_table(a_avr: pl.DataFrame, *, title: str | None = "noise in one layer at a time: A_avr (eq. 3)") -> Table:
    """Per-model, per-SNR ``A_avr`` and degradation (``100 (1 - A_avr)``, percent).

    Args:
        a_avr: Output of :func:`onnxnoise.report.stats.average_normalized_accuracy`, optionally
            joined with ``layers_model``/``parameters`` counts.
    """
    table = Table(title=title)
    for name in ("model", "SNR", "layers", "seeds", "top-1 A_avr", "top-1 degradation %", "top-5 A_avr"):
        table.add_column(name, justify="left" if name == "model" else "right",
                         overflow="fold", min_width=9 if name == "model" else None)
    if "parameters" in a_avr.columns:
        table.add_column("parameters", justify="right")
    for row in a_avr.sort(["model", "snr"], descending=[False, True]).iter_rows(named=True):
        cells = [row["model"], _fmt_snr(row["snr"]), str(row["layers"]), str(row["seeds"]),
                 _pm(row["top1_a_avr"], row["top1_a_avr_ci"], 4), f"{row['top1_degradation_pct']:.2f}",
                 _pm(row["top5_a_avr"], row["top5_a_avr_ci"], 4)]
        if "parameters" in a_avr.columns:
            cells.append(f"{row['parameters']:,}" if row["parameters"] is not None else "-")
        table.add_row(*cells)
    return table
