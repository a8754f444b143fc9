"""Rich renderables for the terminal. Nothing here prints: the CLI does."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from onnxnoise.lazy import lazy_module
from onnxnoise.model import Layer
from onnxnoise.report.paired import PAIRED_HEADERS, collapsed_cell, has_paired, paired_cells
from onnxnoise.report.stats import sort_by_noise
from onnxnoise.report.strength import noise_model_for, strength_header, varying_settings_text
from onnxnoise.report.terminal import TerminalTable, short_op
from onnxnoise.store.schema import COUNTER, SETTING, columns

pl = lazy_module("polars")

__all__ = ["shown_counters", "layers_table", "bench_caption", "summary_table", "paired_table", "a_avr_table",
           "format_interval", "norm_upper", "a_avr_upper", "lead_columns", "verdicts_table"]


def shown_counters(rows: pl.DataFrame) -> list[tuple[str, str]]:
    """``(column, header)`` of the counters :func:`summary_table` shows: those of role
    :data:`~onnxnoise.store.schema.COUNTER` with a ``header``, present and non-zero in some row.
    """
    return [(c.name, c.header) for c in columns(COUNTER)
            if c.header and c.name in rows.columns and (rows[c.name].fill_null(0) != 0).any()]


def layers_table(layers: Sequence[Layer], *, title: str | None = None) -> Table:
    """Table of parameter layers with a totals row (the paper's Tables IV-VIII).

    Args:
        layers: Output of :func:`onnxnoise.model.list_layers`.
        title: Optional table title (e.g. the model file name).

    Returns:
        A rich ``Table``: index, name, op type (long ones shortened:
        :data:`~onnxnoise.report.terminal.SHORT_OPS`), tensors, parameters, sigma_w.
    """
    table = TerminalTable(title=title, show_footer=True, lead=2, fold=("layer",))
    table.add_column("#", justify="right", footer="")
    table.add_column("layer", footer="total", overflow="fold")
    table.add_column("op type", footer=f"{len(layers)} layers")
    table.add_column("tensors")
    table.add_column("parameters", justify="right", footer=f"{sum(layer.num_params for layer in layers):,}")
    table.add_column("sigma_w", justify="right")
    for layer in layers:
        tensors = ", ".join(f"{role}{list(shape)}" for role, shape in zip(layer.roles, layer.shapes))
        table.add_row(
            str(layer.index), layer.name, short_op(layer.op_type), tensors, f"{layer.num_params:,}",
            f"{layer.sigma_w:.4g}"
        )
    return table



def _node_share(nodes: dict | None) -> str:
    """`` (runs 45 of 45 nodes)``: the recorded node share of the provider (``bench.json``'s
    ``provider_nodes``, :meth:`onnxnoise.engine.providers.NodeShare.to_dict`); empty when not recorded."""
    if not nodes:
        return ""
    return f" (runs {nodes['nodes']} of {nodes['total']} nodes)"

def bench_caption(meta: dict) -> Text:
    """One-paragraph description of what a bench run measured.

    The noise line comes from the noise model's ``describe()``
    (``meta["noise_model"]``, ``meta["noise"] = {"params", "bn_variance", "keep_zeros"}``),
    e.g. paper eq. 1 for ``gaussian-snr``. Each of ``meta["warnings"]`` ends it as a
    bold red ``WARNING:`` line.
    """
    pre = meta.get("preprocess", {})
    geometry = f"resize {pre.get('resize')}, crop {pre.get('crop')}" if pre.get("crop") or pre.get("resize") else "no resize"
    colour = "grayscale" if pre.get("channels") == 1 else pre.get("channel_order")
    noise = meta.get("noise") or {}
    bn_policy = noise.get("bn_variance", meta.get("bn_variance"))
    changed = meta.get("bn_variance_changed")
    policy = f"BN variance policy {bn_policy}" + (
        f" ({changed:,} negative variances {'left' if bn_policy == 'keep' else 'fixed'})" if changed else "")
    model = noise_model_for(meta.get("noise_model"), noise)
    seeds = meta.get("seeds")
    seeds = f"{len(seeds)} seed(s) ({', '.join(map(str, seeds))})" if isinstance(seeds, list) else f"{seeds} seed(s)"
    if meta.get("seeds") == "auto":
        seeds = (f"seeds auto (draws until the 95% interval of the mean top-1 is under ±{meta['ci_halfwidth']:g} "
                 f"points; 3 to {meta['max_seeds']} per strength)")
    lines = [
        f"model {meta['model']} ({meta['layers_noised']}/{meta['layers_total']} layers noised, "
        f"{meta['params_noised']:,} parameters)",
        f"data {meta['dataset']} ({meta['images']:,} images"
        + (f", {meta['skipped_images']} unreadable skipped" if meta.get("skipped_images") else "")
        + f"), preprocessing {_preprocessing_source(meta)}"
        + f" ({geometry}, {colour}, "
        f"x * {pre.get('scale'):.6g} - mean {pre.get('mean')}, / std {pre.get('std')})",
        f"noise: {model.describe()}, {seeds}, {policy}; execution provider {meta.get('provider')}"
        + _node_share(meta.get("provider_nodes")),
        "top-1 / top-5 / a/a0: mean over seeds ± 95% Student t interval ([low, high] when it leaves the possible range: below 0, above 100%)",
        "paired with the clean model on the same images: flips % = top-1 class changed, lost / gained = top-1 hits "
        "(mean images), p<.05 = draws whose exact McNemar p < 0.05, collapsed = draws closer to chance than to the "
        "best draw and far below it, or at chance",
    ]
    if meta.get("input_layout") == "NHWC" or meta.get("fixed_batch"):
        lines.append(f"model input {meta.get('input_layout')}"
                     + (f", fixed batch {meta['fixed_batch']} (last batch zero-padded)" if meta.get("fixed_batch") else ""))
    if noise.get("keep_zeros", meta.get("keep_zeros")):
        lines.append("exact zeros kept at zero (--keep-zeros, pruned weights)")
    if meta.get("quantization"):
        lines.append(meta["quantization"])
    if meta.get("stages_line"):
        lines.append(meta["stages_line"])
    if meta.get("label_offset"):
        lines.append(f"labels shifted by {meta['label_offset']} (background class at output 0)")
    text = Text("\n".join(lines))
    for warning in meta.get("warnings") or ():
        text.append("\nWARNING: " + warning, style="bold red")
    return text


def _preprocessing_source(meta: dict) -> str:
    """Where the preprocessing came from, and which single settings replaced parts of it.

    ``from the model's metadata, overridden: mean, std``; ``preset cifar (--preprocess)``;
    ``preset torchvision (default)``. The metadata's own preset name is not shown: it names
    the settings it started from, not the values it holds (the CIFAR exports store ImageNet
    mean/std under ``cifar``); the values follow in the caption.
    """
    preset = (meta.get("preprocess") or {}).get("preset")
    source = meta.get("preprocess_source")
    text = {"model metadata": "from the model's metadata", "--preprocess": f"preset {preset} (--preprocess)",
            "default": f"preset {preset} (default)"}.get(source, f"preset {preset}" + (f" from {source}" if source
                                                                                       else ""))
    overrides = meta.get("preprocess_overrides") or []
    return text + (f", overridden: {', '.join(overrides)}" if overrides else "")


def format_interval(mean, ci, digits: int = 2, *, upper: float | None = 100.0) -> str:
    """``mean ± ci``; when the interval leaves ``[0, upper]`` (few seeds), its clipped bounds instead."""
    if mean is None:
        return "-"
    text = f"{mean:.{digits}f}"
    if ci is None or math.isnan(ci):
        return text
    low, high = mean - ci, mean + ci
    if low < 0 or (upper is not None and high > upper):
        low, high = max(low, 0.0), high if upper is None else min(high, upper)
        return f"{text} [{low:.{digits}f}, {high:.{digits}f}]"
    return f"{text} ± {ci:.{digits}f}"


def norm_upper(norm_mean: float | None, acc_mean: float | None) -> float | None:
    """The largest possible a/a0 of a row: ``100 / a_0`` (a noisy model gets at most every image right), with
    ``a_0 = acc_mean / norm_mean`` read off the row's own means; ``None`` when they cannot give it."""
    if norm_mean is None or acc_mean is None or acc_mean <= 0 or norm_mean <= 0:
        return None
    return 100.0 * norm_mean / acc_mean


def a_avr_upper(row: dict, metric: str) -> float | None:
    """The largest possible ``A_avr`` of a row of :func:`onnxnoise.report.stats.average_normalized_accuracy`:
    ``100 / a_0`` from its ``<metric>_base``; ``None`` without one (tables written before it was kept)."""
    base = row.get(f"{metric}_base")
    return 100.0 / base if base else None



def _several_noise_models(frame: pl.DataFrame) -> bool:
    return "noise_model" in frame.columns and frame["noise_model"].n_unique() > 1


def summary_table(summary: pl.DataFrame, *, title: str | None = "whole-model and baseline trials") -> Table:
    """Baseline and noise-in-all-layers rows of :func:`onnxnoise.report.stats.summarize_trials`.

    The one console table of ``bench`` and ``report``: rows per model (and noise
    model) from the baseline to the most noise (:func:`~onnxnoise.report.stats.sort_by_noise`).

    Args:
        summary: Output of :func:`onnxnoise.report.stats.summarize_trials`; only its
            ``baseline`` and ``all`` rows are shown.
        title: Table title.

    Returns:
        A rich ``Table`` of the baseline and ``all`` rows: [model, when several], [noise
        model, when several], the strength
        (header: the noise model's ``strength_label``, or ``strength`` when the frame
        has several noise models; cells: ``strength_text``), seeds, top-1 / top-5
        (percent, mean ± 95% Student-t CI over seeds), top-1 ``a / a_0`` (paper
        eq. 2, mean ± CI), NaN logits, each of :func:`shown_counters` (counters with a
        header, non-zero in some row), and ``collapsed`` draws (``k/n``,
        :func:`onnxnoise.report.paired.collapsed`) when some draw collapsed.
    """
    rows = sort_by_noise(summary.filter(pl.col("mode").is_in(["baseline", "all"])))
    failed = "errors" in rows.columns and (rows["errors"].fill_null(0) > 0).any()
    collapse = "collapsed" in rows.columns and (rows["collapsed"].fill_null(0) > 0).any()
    counters = shown_counters(rows)
    lead, lead_cells = lead_columns(rows)
    table = TerminalTable(title=title, lead=len(lead) + 1, fold=("model",))
    headers = [*lead, strength_header(rows), "seeds", *(["failed"] if failed else []), "top-1 %", "top-5 %",
               "top-1 a/a0", *(["collapsed"] if collapse else []), "NaN", *(header for _, header in counters)]
    for i, name in enumerate(headers):
        table.add_column(name, justify="left" if i <= len(lead) else "right", overflow="fold")
    for i, row in enumerate(rows.iter_rows(named=True)):
        cells = [*lead_cells[i], row["strength_text"], str(row["seeds"]), *([_count(row["errors"])] if failed else []),
                 format_interval(row["top1_acc_mean"], row["top1_acc_ci_half"]), format_interval(row["top5_acc_mean"], row["top5_acc_ci_half"]),
                 format_interval(row["top1_norm_mean"], row["top1_norm_ci_half"], 4,
                                 upper=norm_upper(row["top1_norm_mean"], row["top1_acc_mean"])),
                 *([collapsed_cell(row)] if collapse else []), _count(row.get("nan_count"))]
        table.add_row(*cells, *(_count(row[c]) for c, _ in counters))
    return table


def paired_table(summary: pl.DataFrame, *, title: str | None = "noise in all layers vs the clean model, "
                 "same images (top-1)") -> Table | None:
    """Paired statistics of the ``all`` rows of :func:`onnxnoise.report.stats.summarize_trials`.

    Columns: [lead columns as in :func:`summary_table`], strength, seeds, then
    :data:`onnxnoise.report.paired.PAIRED_HEADERS`: mean flip rate (percent of images
    whose top-1 class changed), mean top-1 hits lost and gained, draws whose exact
    McNemar p < 0.05 (``k/n``), collapsed draws (``k/n``).

    Returns:
        The table, or None when no noisy row has paired counts (stores from before them).
    """
    rows = sort_by_noise(summary.filter(pl.col("mode") == "all"))
    if not has_paired(rows):
        return None
    lead, lead_cells = lead_columns(rows)
    table = TerminalTable(title=title, lead=len(lead) + 1, fold=("model",))
    for i, name in enumerate([*lead, strength_header(rows), "seeds", *PAIRED_HEADERS]):
        table.add_column(name, justify="left" if i <= len(lead) else "right", overflow="fold")
    for i, row in enumerate(rows.iter_rows(named=True)):
        table.add_row(*lead_cells[i], row["strength_text"], str(row["seeds"]), *paired_cells(row))
    return table


def lead_columns(rows: pl.DataFrame, *, model: bool = False) -> tuple[list[str], list[list[str]]]:
    """The columns that say which measurement a row is, shown only when they differ between rows.

    Model (always with ``model=True``), run settings (the columns of role
    :data:`~onnxnoise.store.schema.SETTING` with a ``header``), noise model, and the noise
    settings that differ. Used by every summary table (console and
    report.md), so rows measured under other settings are never shown as duplicates.

    Returns:
        ``(headers, cells per row)``.
    """
    show_model = model or ("model" in rows.columns and rows["model"].n_unique() > 1)
    run_headers, run_cells = setting_columns(rows)
    several = _several_noise_models(rows)
    settings = _noise_settings_column(rows)
    headers = [*(["model"] if show_model else []), *run_headers,
               *(["noise model"] if several else []), *(["noise settings"] if settings else [])]
    cells = [[*([r["model"]] if show_model else []), *run_cells[i],
              *([r["noise_model"]] if several else []), *([settings[i]] if settings else [])]
             for i, r in enumerate(rows.iter_rows(named=True))]
    return headers, cells


def setting_columns(rows: pl.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The run settings that differ between rows: columns of role :data:`~onnxnoise.store.schema.SETTING`
    with a ``header``, as ``(headers, cells per row)``; a NULL cell reads ``default``."""
    varying = [c for c in columns(SETTING) if c.header and c.name in rows.columns and rows[c.name].n_unique() > 1]
    cells = [[_setting_cell(r[c.name]) for c in varying] for r in rows.iter_rows(named=True)]
    return [c.header for c in varying], cells


def _setting_cell(value: object) -> str:
    """A run setting's cell: NULL is ``default`` (e.g. no keyed setting away from its default); a JSON object (the
    ``settings`` column) is ``key=value, ...``, which a narrow column wraps between settings, not inside a key."""
    if value is None:
        return "default"
    if isinstance(value, str) and value.startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        if isinstance(parsed, dict):
            return ", ".join(f"{k}={json.dumps(v) if isinstance(v, (dict, list)) else v}"
                             for k, v in parsed.items()) or "default"
    return str(value)


def _noise_settings_column(rows: pl.DataFrame) -> list[str] | None:
    """Per row, the noise settings that differ between rows (e.g. ``compensation=global``); None if none differ."""
    if "noise" not in rows.columns or rows["noise"].n_unique() <= 1:
        return None
    text = varying_settings_text(rows["noise"], rows["noise_model"] if "noise_model" in rows.columns else None)
    return text if any(text) else None


def _count(value) -> str:
    return "-" if value is None else f"{value:,}"


def a_avr_table(a_avr: pl.DataFrame, *, title: str | None = "noise in one layer at a time: A_avr (eq. 3)") -> Table:
    """Per-model, per-strength ``A_avr`` (paper eq. 3) and degradation (``100 (1 - A_avr)``, percent).

    Args:
        a_avr: Output of :func:`onnxnoise.report.stats.average_normalized_accuracy`, optionally
            joined with ``layers_model``/``parameters`` counts.
        title: Table title.

    Returns:
        A rich ``Table``: model, [run settings that differ], [noise model, when several], the strength (header as
        in :func:`summary_table`), layers, seeds, top-1 A_avr ± 95% CI, top-1
        degradation %, top-5 A_avr ± CI, [parameters].
    """
    rows = sort_by_noise(a_avr)
    lead, lead_cells = lead_columns(rows, model=True)
    table = TerminalTable(title=title, lead=len(lead) + 1, fold=("model",))
    headers = [*lead, strength_header(rows), "layers", "seeds", "top-1 A_avr", "top-1 degradation %", "top-5 A_avr"]
    if "parameters" in rows.columns:
        headers.append("parameters")
    for i, name in enumerate(headers):
        table.add_column(name, justify="left" if i < len(lead) else "right", overflow="fold")
    for i, row in enumerate(rows.iter_rows(named=True)):
        cells = [*lead_cells[i], row["strength_text"], str(row["layers"]), str(row["seeds"]),
                 format_interval(row["top1_a_avr"], row["top1_a_avr_ci_half"], 4, upper=a_avr_upper(row, "top1")),
                 f"{row['top1_degradation_pct']:.2f}", format_interval(row["top5_a_avr"], row["top5_a_avr_ci_half"], 4, upper=a_avr_upper(row, "top5"))]
        if "parameters" in rows.columns:
            cells.append(f"{row['parameters']:,}" if row["parameters"] is not None else "-")
        table.add_row(*cells)
    return table


def verdicts_table(verdicts: pl.DataFrame) -> Table:
    """The rows of :func:`onnxnoise.report.versus.compare_models`: mode, strength, means, difference ± interval.

    The difference is model B minus model A in points (top-1 % for noise in all layers, top-1
    degradation % of ``A_avr`` for one layer at a time); ``±`` the 95% interval, paired over
    shared seeds where the ``paired`` column says so. The models are named in the title; a
    ``model B`` column appears when several models are set beside the first.
    """
    others = verdicts["model_b"].unique(maintain_order=True).to_list()
    names = ("mode", "strength", *(("model B",) if len(others) > 1 else ()), "A", "B", "B - A", "paired")
    table = TerminalTable(title=f"{', '.join(others)} minus {verdicts['model_a'][0]}, per strength",
                          lead=3 if len(others) > 1 else 2, fold=("model B",))
    for name in names:
        table.add_column(name, justify="left" if name in ("mode", "strength", "model B", "paired") else "right",
                         overflow="fold")
    for r in verdicts.iter_rows(named=True):
        diff = f"{r['difference']:+.2f}" + ("" if r["ci_half"] is None else f" ± {r['ci_half']:.2f}")
        table.add_row("top-1 %, all" if r["mode"] == "all" else "degr. %, per-layer", r["strength_text"],
                      *((r["model_b"],) if len(others) > 1 else ()), f"{r['value_a']:.2f}", f"{r['value_b']:.2f}",
                      diff, f"{r['seeds']} seeds" if r["paired"] else "no")
    return table
