"""The blame table shown: a rich table for the terminal (top N, fits 80 columns), markdown for report.md, a figure.

Rows come from :func:`onnxnoise.report.blame.blame_table`; each view shows one model and noise
setting at the strength with the most noise (:func:`onnxnoise.report.blame.worst_strength`),
where the layers differ most, and the markdown adds the mean drop at every other strength.
"""

from __future__ import annotations

import math

import numpy as np
from rich.table import Table
from rich.text import Text

from onnxnoise.lazy import lazy_module
from onnxnoise.report.blame import worst_strength
from onnxnoise.report.strength import noise_rank, varying_settings_text
from onnxnoise.report.tables import markdown_table
from onnxnoise.report.terminal import TerminalTable, short_op

pl = lazy_module("polars")
_figure = lazy_module("matplotlib.figure")
_ticker = lazy_module("matplotlib.ticker")

__all__ = ["DROP_NOTE", "drop_limits", "drop_cell", "blame_groups", "blame_console", "blame_markdown", "plot_blame"]

#: What the drop column and its interval mean (console caption and report.md).
DROP_NOTE = ("drop = clean top-1 minus top-1 with noise in that layer alone, points, mean over draws ± 95% "
             "Student t interval over draws (one draw: paired interval over its images); ranked by the mean")


def drop_limits(mean, ci, base) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)``: ``mean -/+ ci`` clipped to the possible drops ``[base - 100, base]``, points.

    A drop (clean minus noisy top-1) on images whose clean top-1 is ``base`` percent cannot leave that
    range (every clean miss gained, every clean hit lost). Arrays broadcast (float64); a NaN ``base``
    clips nothing.
    """
    mean, ci, base = (np.asarray(v, dtype=np.float64) for v in (mean, ci, base))
    low, high = mean - ci, mean + ci
    known = np.isfinite(base)
    return np.where(known, np.maximum(low, base - 100.0), low), np.where(known, np.minimum(high, base), high)


def drop_cell(mean, ci, base=None, digits: int = 2) -> str:
    """``"5.08 ± 3.08"``; ``[low, high]`` clipped to the possible drops ``[a0 - 100, a0]`` when the interval leaves them.

    Args:
        mean: Mean drop (points) or ``None``.
        ci: Half-width (points) or ``None``.
        base: The clean top-1 ``a0`` (percent), or ``None`` (no clipping).
    """
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    if ci is None or (isinstance(ci, float) and math.isnan(ci)):
        return f"{mean:.{digits}f}"
    low, high = (float(v) for v in drop_limits(mean, ci, math.nan if base is None else base))
    if (low, high) != (mean - ci, mean + ci):
        return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
    return f"{mean:.{digits}f} ± {ci:.{digits}f}"


def blame_groups(blame: pl.DataFrame) -> list[tuple[str, pl.DataFrame]]:
    """``(title, rows at the most-noise strength ranked)`` per model and noise setting of a blame table."""
    worst = worst_strength(blame)
    keys = [c for c in ("model", "model_sha256", "dataset_fingerprint", "noise_model", "noise") if c in worst.columns]
    several = worst.select(keys).unique().height > 1 and worst["noise"].n_unique() > 1
    # the noise setting as `pcm compensation=global` (the settings that differ), not its JSON
    settings = dict(zip(zip(worst["noise_model"], worst["noise"]), varying_settings_text(worst["noise"],
                                                                                       worst["noise_model"])))
    out = []
    for _, part in worst.group_by(keys, maintain_order=True):
        part = part.sort("rank")
        first = part.row(0, named=True)
        setting = settings[(first["noise_model"], first["noise"])]
        noise = f", {first['noise_model']}" + (f" {setting}" if setting else "") if several else ""
        out.append((f"{first['model']}{noise} at {first['strength_text']}", part))
    return out


def _share(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"



def blame_console(blame: pl.DataFrame, top: int = 10) -> list[Table]:
    """One rich table per model and noise setting: the ``top`` worst layers, readable at 80 columns.

    Columns: rank, layer name with its flags on the line below (folded when long), op type,
    share of the model's parameters (%), drop (:data:`DROP_NOTE`).
    """
    tables = []
    for title, part in blame_groups(blame):
        shown = part.head(top)
        table = TerminalTable(title=f"layers to blame: {title} (worst {shown.height} of {part.height})",
                              caption=DROP_NOTE, caption_justify="left", lead=2, fold=("layer (flags)",))
        table.add_column("#", justify="right")
        table.add_column("layer (flags)", overflow="fold", ratio=1)
        table.add_column("op")
        table.add_column("params %", justify="right")
        table.add_column("drop (pts)", justify="right", no_wrap=True)
        for r in shown.iter_rows(named=True):
            name = Text(r["layer_name"] or f"#{r['layer_index']}")
            if r["flags"]:
                name.append("\n" + "; ".join(r["flags"]), style="yellow")
            op = r.get("op_type") or "-"
            table.add_row(str(r["rank"]), name, short_op(op), _share(r.get("params_share")),
                          drop_cell(r["drop_mean"], r["drop_ci_half"], r.get("top1_base")))
        tables.append(table)
    return tables


def blame_markdown(blame: pl.DataFrame) -> list[str]:
    """report.md's blame section: one table per model and noise setting, every layer, worst first.

    Columns: rank, layer, op type, parameters, share %, drop at the most-noise strength with its
    interval, mean drop at each other strength, channel std max/min, flags. Returns lines (empty
    without per-layer trials).
    """
    if blame.is_empty():
        return []
    lines = ["## Layers to blame (noise in one layer at a time)", "", DROP_NOTE + ". Channel std max/min: spread of "
             "the per-output-channel std inside the weight; `channels below 0.25x SNR` flags layers whose narrowest "
             "channels see under a quarter of the nominal SNR when sigma is taken per tensor (`--scope-check` of "
             "bench re-runs with sigma per channel).", ""]
    for title, part in blame_groups(blame):
        first = part.row(0, named=True)
        same = [c for c in ("model_sha256", "dataset_fingerprint", "noise_model", "noise") if c in blame.columns]
        others = blame.join(part.select(same).unique(), on=same, nulls_equal=True)
        others = others.filter(pl.col("strength") != first["strength"])
        order = others.unique("strength").sort(noise_rank(others.unique("strength")), descending=True)
        texts = order["strength_text"].to_list() if others.height else []
        by = {(r["strength_text"], r["layer_index"]): r["drop_mean"] for r in others.iter_rows(named=True)}
        rows = []
        for r in part.iter_rows(named=True):
            params = r.get("parameters")
            ratio = r.get("channel_std_ratio")
            rows.append([str(r["rank"]), f"`{r['layer_name']}`", r.get("op_type") or "-",
                         "-" if params is None else f"{params:,}", _share(r.get("params_share")),
                         drop_cell(r["drop_mean"], r["drop_ci_half"], r.get("top1_base")),
                         *(drop_cell(by.get((t, r["layer_index"])), None) for t in texts),
                         "-" if ratio is None or ratio != ratio else f"{ratio:.3g}", "; ".join(r["flags"])])
        lines += [f"### {title}", "", markdown_table(["rank", "layer", "op type", "parameters", "share %",
                                           f"drop at {first['strength_text']}", *(f"drop at {t}" for t in texts),
                                           "channel std max/min", "flags"], rows), ""]
    return lines


def plot_blame(part: pl.DataFrame, blame: pl.DataFrame, *, worst: int = 15, title: str | None = None) -> _figure.Figure:
    """The drop of every layer by index (left) beside the ``worst`` layers as labelled bars (right).

    Readable for 100+ layers: the index plot draws one line per strength without markers past
    60 layers, and only the worst layers get names, as horizontal bars with their intervals.

    Args:
        part: One group of :func:`blame_groups` (one model and noise setting, most-noise strength, ranked).
        blame: The whole blame table (the index plot draws every strength of the same model and noise).
        worst: How many bars.
        title: Figure title (default: the model and strength).
    """
    first = part.row(0, named=True)
    same = [c for c in ("model_sha256", "dataset_fingerprint", "noise_model", "noise") if c in blame.columns]
    rows = blame.join(part.select(same).unique(), on=same, nulls_equal=True)
    shown = part.head(worst)
    height = max(4.8, 0.28 * shown.height + 1.5)
    fig = _figure.Figure(figsize=(12.0, height), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1.3, 1.0])
    strengths = rows.unique("strength").sort(noise_rank(rows.unique("strength")))["strength"].to_list()
    for i, strength in enumerate(strengths):
        sub = rows.filter(pl.col("strength") == strength).sort("layer_index")
        x, y = sub["layer_index"].to_numpy(), sub["drop_mean"].to_numpy()
        marker = "o" if len(x) <= 60 else None
        left.plot(x, y, marker=marker, markersize=3, linewidth=1.1, label=sub["strength_text"][0],
                  color=f"C{i % 10}")
    left.axhline(0.0, color="0.5", linewidth=0.8, linestyle="--")
    left.xaxis.set_major_locator(_ticker.MaxNLocator(integer=True))
    left.set_xlabel("noised layer index (graph order, 0-based)")
    left.set_ylabel("top-1 drop (points)")
    left.grid(True, alpha=0.3)
    left.legend(fontsize="small")
    names = [n or f"#{i}" for n, i in zip(shown["layer_name"].to_list(), shown["layer_index"].to_list())]
    y = np.arange(shown.height)
    mean = shown["drop_mean"].to_numpy()
    base = shown["top1_base"].to_numpy() if "top1_base" in shown.columns else np.full(shown.height, np.nan)
    low, high = drop_limits(mean, shown["drop_ci_half"].fill_null(0.0).to_numpy(), base)  # as the tables print them
    right.barh(y, mean, xerr=np.vstack([mean - low, high - mean]), color="C3", alpha=0.8, capsize=2)
    right.set_yticks(y, [f"{n} (#{i})" for n, i in zip(names, shown["layer_index"].to_list())], fontsize="small")
    right.invert_yaxis()
    right.axvline(0.0, color="0.5", linewidth=0.8)
    right.set_xlabel(f"top-1 drop at {first['strength_text']} (points, 95% interval)")
    right.grid(True, axis="x", alpha=0.3)
    fig.suptitle(title or f"{first['model']}: noise in one layer at a time; worst {shown.height} of "
                 f"{part.height} layers at {first['strength_text']}", fontsize="medium")
    return fig
