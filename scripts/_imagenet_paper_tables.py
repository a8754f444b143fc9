"""The paper's published numbers beside ours, for ``scripts/imagenet_paper.py`` (issue 13, point 4).

Published numbers are copied from ``../shared/PAPER.md`` (Fagbohungbe & Qian, arXiv 2011.11840: Table I,
Table III, the layer and parameter table) and from the brief of issue 13 (Fagbohungbe & Qian, IEEE Access
2022: ResNet44 average normalized accuracy 41.32% with BatchNorm, 91.95% without). Ours come from the trial
rows of complete sweeps; every ``±`` is a 95% Student t half-width over noise seeds
(:func:`onnxnoise.report.stats.t_half_width`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from onnxnoise.report.stats import average_normalized_accuracy, normalized_accuracy, summarize_trials, t_half_width
from onnxnoise.report.written import read_table, trial_table

#: PAPER.md, Table III: accuracy % (ImageNet top-5, PAPER.md "Metrics") with noise in all layers, noise std
#: 0, 1, 2, 5, 10 % of sigma_w.
PAPER_TABLE_III = {"VGG16": (90, 90, 90, 90, 90), "ShuffleNetV2 1.0x": (89, 12, 6, 1, 1),
                   "ResNet50": (93, 92, 89, 69, 24)}
#: PAPER.md, layer and parameter table (BN ops counted as layers, BN running statistics as parameters).
PAPER_LAYERS = {"ResNet18": (41, 11_699_112), "ResNet34": (73, 21_814_696), "ResNet50": (107, 25_610_152),
                "ResNet50-SE": (139, 28_141_144), "VGG16": (16, 138_357_544),
                "ShuffleNetV2 1.0x": (113, 2_295_940), "ShuffleNetV2 0.5x": (113, 1_374_744),
                "ResNet20 (CIFAR-10)": (40, 274_442), "ResNet32 (CIFAR-10)": (65, 470_218),
                "ResNet56 (CIFAR-10)": (113, 861_770)}
#: IEEE Access 2022 (issue 13): ResNet44 CIFAR-10 average normalized accuracy, % (with BN, without BN).
ACCESS_2022 = (41.32, 91.95)
NOISE_PCT = (1.0, 2.0, 5.0, 10.0)  # the paper's noise powers; SNR = 100 / %


def _pm(mean: float | None, half: float | None, digits: int = 2) -> str:
    if mean is None or not np.isfinite(mean):
        return "-"
    if half is None or not np.isfinite(half):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


def _t(values: np.ndarray) -> tuple[float, float]:
    """Mean and 95% t half-width of per-seed values (nan half-width below two values)."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    half = float(t_half_width(values.std(ddof=1), values.size)) if values.size > 1 else float("nan")
    return float(values.mean()), half


def _variant(noise: str | None) -> str:
    """Short text for the noise settings that differ between our sweeps (keep_zeros)."""
    settings = json.loads(noise) if noise else {}
    text = "pruned zeros stay 0" if settings.get("keep_zeros") else "every weight"
    scope = (settings.get("params") or {}).get("scope", "tensor")
    return text if scope == "tensor" else f"{text}, sigma_w per {scope}"


def _label(model: str) -> str:
    return model.removesuffix(".onnx")


def table_iii(trials: pl.DataFrame) -> list[str]:
    """Paper Table III beside our noise-in-all-layers rows (top-1 and top-5, with normalized top-5)."""
    ok = trials.filter(pl.col("error").is_null() & pl.col("mode").is_in(["baseline", "all"])
                       & (pl.col("noise_model").is_null() | (pl.col("noise_model") == "gaussian-snr")))
    summary = summarize_trials(ok)
    lines = ["### Table III: noise in all layers", "",
             "Paper (PAPER.md Table III, ImageNet, the models' published top-5 as the paper reports ImageNet "
             "accuracy), accuracy % at noise std 0, 1, 2, 5, 10 % of sigma_w (SNR ∞, 100, 50, 20, 10); the last "
             "column is the normalized accuracy a/a0 at 10 %, computed here from the published row:", "",
             "| paper row | 0 % | 1 % | 2 % | 5 % | 10 % | a/a0 at 10 % |", "|---|---|---|---|---|---|---|"]
    for model, row in PAPER_TABLE_III.items():
        lines.append(f"| {model} (Table III) | " + " | ".join(str(v) for v in row) + f" | {row[-1] / row[0]:.2f} |")
    lines += ["", "Ours (mean over 3 noise draws ± 95% t interval; the clean column is one exact evaluation; "
              "a/a0 is the mean normalized accuracy of the draws):", "",
              "| model | dataset | noise on | metric | clean | 1 % | 2 % | 5 % | 10 % | a/a0 at 10 % |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    if summary.is_empty():
        return [*lines, "", "(no complete sweep yet)", ""]
    noisy = summary.filter(pl.col("mode") == "all")
    for (model, dataset, noise), part in noisy.group_by(["model", "dataset", "noise"], maintain_order=True):
        base = summary.filter((pl.col("mode") == "baseline") & (pl.col("model") == model)
                              & (pl.col("dataset") == dataset))
        for metric in ("top1", "top5"):
            cells = []
            for pct in NOISE_PCT:
                row = part.filter((pl.col("strength") - 100.0 / pct).abs() < 1e-9)
                cells.append(_pm(row[f"{metric}_acc_mean"][0], row[f"{metric}_acc_ci_half"][0]) if row.height else "-")
            last = part.filter((pl.col("strength") - 10.0).abs() < 1e-9)
            norm = _pm(last[f"{metric}_norm_mean"][0], last[f"{metric}_norm_ci_half"][0], 3) if last.height else "-"
            clean = f"{base[f'{metric}_acc_mean'][0]:.2f}" if base.height else "-"
            lines.append(f"| {_label(model)} | {dataset} | {_variant(noise)} | top-{metric[-1]} | {clean} | "
                         + " | ".join(cells) + f" | {norm} |")
    return [*lines, ""]


def layer_counts(runs: pl.DataFrame, trials: pl.DataFrame) -> list[str]:
    """The paper's layer and parameter table beside the counts of the models measured here."""
    lines = ["### Layers and parameters (PAPER.md layer table)", "",
             "| model | source | layers | parameters |", "|---|---|---|---|"]
    lines += [f"| {model} | paper | {layers} | {params:,} |" for model, (layers, params) in PAPER_LAYERS.items()]
    seen = set()
    for row in runs.iter_rows(named=True):
        config = json.loads(row.get("config") or "{}")
        name = _label(row["model"])
        if name in seen or config.get("params_total") is None:
            continue
        seen.add(name)
        lines.append(f"| {name} | ours (`onnxnoise layers`) | {config.get('layers_total')} | "
                     f"{config['params_total']:,} |")
    return [*lines, ""]


def per_layer(trials: pl.DataFrame) -> list[str]:
    """A_avr (eq. 3) and early-vs-late sensitivity of our per-layer sweeps (ImageNet models)."""
    ok = normalized_accuracy(trials.filter(pl.col("error").is_null()))
    imagenet = ok.filter(~pl.col("model").str.starts_with("resnet44"))
    a_avr = average_normalized_accuracy(imagenet)
    lines = ["### Noise in one layer at a time (eq. 3, Figs. 3-10)", "",
             "PAPER.md gives no per-layer numbers for its ImageNet models (they are figures), so there is no "
             "published row to set beside these. A_avr = mean over the N layers of a_i / a0, ± over seeds:", "",
             "| model | dataset | SNR | layers | seeds | top-1 A_avr | top-5 A_avr | top-1 degradation % |",
             "|---|---|---|---|---|---|---|---|"]
    if a_avr.is_empty():
        return [*lines, "", "(no complete per-layer sweep yet)", ""]
    for row in a_avr.iter_rows(named=True):
        lines.append(f"| {_label(row['model'])} | {row['dataset']} | {row['strength']:g} | {row['layers']} | "
                     f"{row['seeds']} | {_pm(row['top1_a_avr'], row['top1_a_avr_ci_half'], 4)} | "
                     f"{_pm(row['top5_a_avr'], row['top5_a_avr_ci_half'], 4)} | {row['top1_degradation_pct']:.2f} |")
    lines += ["", "Early vs late layers (PAPER.md finding 2): per seed, mean a_i/a0 over the first third of the "
              "layers minus the mean over the last third; negative = early layers more sensitive.", "",
              "| model | dataset | SNR | first third | last third | early − late | verdict |", "|---|---|---|---|---|---|---|"]
    noisy = imagenet.filter(pl.col("mode") == "per-layer")
    for (model, dataset, snr), part in noisy.sort(["model", "dataset", "strength"], descending=[False, False, True]
                                                  ).group_by(["model", "dataset", "strength"], maintain_order=True):
        indices = sorted(part["layer_index"].unique().to_list())
        third = max(1, len(indices) // 3)
        per_seed = part.group_by("seed").agg(
            pl.col("top1_norm").filter(pl.col("layer_index").is_in(indices[:third])).mean().alias("early"),
            pl.col("top1_norm").filter(pl.col("layer_index").is_in(indices[-third:])).mean().alias("late"))
        diff = _t((per_seed["early"] - per_seed["late"]).to_numpy())
        verdict = ("not significant" if not diff[1] < abs(diff[0]) else
                   "**early more sensitive**" if diff[0] < 0 else "**late more sensitive**")
        lines.append(f"| {_label(model)} | {dataset} | {snr:g} | {per_seed['early'].mean():.3f} | "
                     f"{per_seed['late'].mean():.3f} | {_pm(*diff, 3)} | {verdict} |")
    return [*lines, ""]


def _a_avr_per_seed(frame: pl.DataFrame) -> pl.DataFrame:
    """Per (strength, seed): A_avr over layers of top-1 and top-5 (frame: one per-layer model)."""
    return (frame.group_by(["strength", "seed"])
            .agg(pl.col("layer_index").n_unique().alias("layers"), pl.col("top1_norm").mean(),
                 pl.col("top5_norm").mean()))


def _own_baseline(trials: pl.DataFrame, model: str, bn_variance: str | None = None) -> pl.DataFrame:
    """Per-layer rows of one model of this study, normalized by its own baseline (optionally one BN policy)."""
    rows = trials.filter(pl.col("error").is_null() & (pl.col("model") == model))
    if rows.is_empty():
        return rows
    rows = normalized_accuracy(rows).filter(pl.col("mode") == "per-layer")
    if bn_variance is not None:
        rows = rows.filter(pl.col("noise").str.contains(f'"bn_variance":"{bn_variance}"'))
    return rows


def bn_question(trials: pl.DataFrame, bn_kept_results: Path) -> list[str]:
    """ResNet44 A_avr with BN kept (committed reports/cifar10-resnet) vs folded (here) beside Access 2022.

    Three readings: BN kept with negative running variances clamped to 0 (onnxnoise's default; the committed
    sweep), BN kept with negative variances kept (NaN logits, scored wrong: this study's ``bn_variance =
    "keep"`` sweep of the 43 BatchNormalization layers, the 44 Conv/Gemm layers taken from the clamped sweep,
    whose draws are identical), and BN folded (this study).
    """
    lines = ["### The BatchNorm question: ResNet44, BN kept vs folded", "",
             f"Fagbohungbe & Qian (IEEE Access 2022) report an average normalized accuracy of CIFAR-10 ResNet44 "
             f"of {ACCESS_2022[0]}% with BatchNorm and {ACCESS_2022[1]}% without (numbers from issue 13; the "
             "noise levels they averaged over are not given there). Ours: A_avr (eq. 3) of per-layer sweeps on the "
             "same 2,000-image class-stratified CIFAR-10 subset, SNR 100..1: BN kept from the committed "
             "`reports/cifar10-resnet/results.parquet` (resnet44-bn, 87 layers: 43 Conv + 43 BatchNormalization + "
             "1 Gemm, negative running variances clamped to 0, seeds 0, 1, 2); the same with negative variances "
             "kept (NaN logits, scored wrong; this study re-ran the 43 BN layers with the same draws, the Conv and "
             "Gemm layers are the clamped sweep's); BN folded (resnet44-folded, 44 layers, seeds 0, 1, 2).", ""]
    kept = read_table(trial_table(bn_kept_results.parent)).rename({"snr": "strength"}) if bn_kept_results.is_file() else None
    if kept is not None:
        kept = kept.filter((pl.col("model") == "resnet44-bn.onnx") & (pl.col("mode") == "per-layer")
                           & pl.col("error").is_null())
    folded = _own_baseline(trials, "resnet44-folded.onnx")
    if kept is None or kept.is_empty() or folded.is_empty():
        missing = [name for name, frame in (("BN kept", kept), ("BN folded", folded))
                   if frame is None or frame.is_empty()]
        return [*lines, f"(not measured yet: {', '.join(missing)})", ""]
    sides = {"BN kept, var < 0 → 0": kept}
    nan_run = _own_baseline(trials, "resnet44-bn.onnx", "keep")
    nan_layers = None
    if not nan_run.is_empty():
        columns = ["strength", "seed", "layer_index", "top1_norm", "top5_norm"]
        convs = kept.filter(~pl.col("layer_index").is_in(nan_run["layer_index"].unique().to_list())
                            & pl.col("seed").is_in(nan_run["seed"].unique().to_list()))
        sides["BN kept, var < 0 kept (NaN)"] = pl.concat([convs.select(columns), nan_run.select(columns)],
                                                         how="vertical_relaxed")
        nan_layers = nan_run.with_columns((pl.col("nan_count") > 0).alias("_nan")).group_by(
            ["strength", "seed"]).agg(pl.col("_nan").sum())
    sides["BN folded"] = folded
    seeds = {name: _a_avr_per_seed(frame) for name, frame in sides.items()}
    for metric, title in (("top1_norm", "top-1"), ("top5_norm", "top-5")):
        head = ["SNR", *(f"{name}: {title} A_avr %" for name in sides)]
        if metric == "top1_norm" and nan_layers is not None:
            head.append("BN layers giving NaN logits (of 43, mean per seed)")
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for snr in sorted(seeds["BN folded"]["strength"].unique().to_list(), reverse=True):
            cells = [_pm(*(100.0 * v for v in _t(seeds[name].filter((pl.col("strength") - snr).abs() < 1e-9)[
                metric].to_numpy()))) for name in sides]
            if len(head) > len(sides) + 1:
                part = nan_layers.filter((pl.col("strength") - snr).abs() < 1e-9)["_nan"]
                cells.append(f"{part.mean():.1f}" if part.len() else "-")
            lines.append(f"| {snr:g} | " + " | ".join(cells) + " |")
        means = [_pm(*(100.0 * v for v in _t(seeds[name].group_by("seed").agg(pl.col(metric).mean())[
            metric].to_numpy()))) for name in sides]
        lines += ["| mean over the six SNRs | " + " | ".join(means) + " |" + (" |" if len(head) > len(sides) + 1
                                                                              else "")]
        if metric == "top1_norm":
            published = {"BN folded": str(ACCESS_2022[1])}
            cells = [published.get(name, str(ACCESS_2022[0])) for name in sides]
            lines.append("| IEEE Access 2022 (with BN / without BN) | " + " | ".join(cells) + " |"
                         + (" |" if len(head) > len(sides) + 1 else ""))
        lines.append("")
    return lines


def beside_paper(trials: pl.DataFrame, runs: pl.DataFrame, bn_kept_results: Path) -> str:
    """The markdown section "The paper beside ours" for report.md."""
    lines = ["## The paper beside ours (issue 13, point 4)", "",
             "Published numbers from ../shared/PAPER.md (arXiv 2011.11840); ± is a 95% Student t interval over "
             "noise seeds. The paper's own ImageNet models (VGG16, ResNet18/34/50, SE-ResNet50, ShuffleNetV2) have "
             "no weights in ../shared and could not be re-measured here; see docs/models.md for the command that does.",
             "", *table_iii(trials), *layer_counts(runs, trials), *per_layer(trials), *bn_question(trials, bn_kept_results)]
    return "\n".join(lines)
