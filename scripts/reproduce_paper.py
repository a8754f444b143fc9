#!/usr/bin/env python
"""Reproduce the CIFAR-10 experiments of Fagbohungbe & Qian (arXiv 2011.11840) with onnxnoise.

Driven by an experiment file (default ``experiments/cifar10-resnet.toml``):

1. exports every model the file names whose ONNX file is missing (needs the ``export`` extra);
2. runs every sweep into its model's trial store (resumable: run it again after a crash or a
   stop and it continues where it was; finished trials are never run twice);
3. writes the report (``report.md``, figures, ``results.parquet``) with a section that sets
   the measured findings beside the paper's findings 1-3 (``../shared/PAPER.md``).

Usage::

    python scripts/reproduce_paper.py [experiments/cifar10-resnet.toml] [--out reports/cifar10-resnet]
    python scripts/reproduce_paper.py --report-only      # rebuild the report from what is stored
    python scripts/reproduce_paper.py --recheck 5        # re-run 5 stored trials per sweep, compare counts
    nohup python scripts/reproduce_paper.py > reproduce.log 2>&1 &   # hours on 2 CPU cores

Every trial is run by the trial engine (:func:`onnxnoise.sweep.run_sweep` and
:func:`onnxnoise.sweep.recheck_sweep`, on a context prepared once per sweep with
:func:`onnxnoise.engine.context.prepare_context`); the report's "planned" counts come from the same
plan (:func:`onnxnoise.engine.plan.plan_trials`) the sweeps run.

Exit codes: 0 done, 1 a trial failed (its row carries the error; the report is still written) or
``--recheck`` found a mismatch, 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from onnxnoise.config import SweepConfig
from onnxnoise.engine.context import RunContext, prepare_context
from onnxnoise.engine.executor import Progress
from onnxnoise.engine.plan import plan_trials
from onnxnoise.errors import OnnxNoiseError
from onnxnoise.experiment import Experiment, load_experiment
from onnxnoise.noise import NoiseModel
from onnxnoise.report.stats import average_normalized_accuracy, summarize_trials, t_half_width
from onnxnoise.report.study import STORE_NAME, collect_runs, collect_trials, write_report
from onnxnoise.store.store import open_store
from onnxnoise.sweep import recheck_sweep, run_sweep

REPO = Path(__file__).resolve().parent.parent


#: The paper's noise model; the findings below are about its strength, the linear SNR.
PAPER_NOISE_MODEL = "gaussian-snr"


class _LogProgress(Progress):
    """One log line every ``every`` trials with the rate and an ETA (fit for nohup logs)."""

    def __init__(self, label: str, noise_model: NoiseModel, every: int = 25) -> None:
        self.label, self.noise_model, self.every = label, noise_model, every

    def start(self, trials: int, images_per_trial: int) -> None:
        self.total, self.done, self.t0 = trials, 0, time.perf_counter()
        print(f"[{self.label}] {trials} trials to run, {images_per_trial} images each", flush=True)

    def trial_done(self, row: dict) -> None:
        self.done += 1
        if self.done % self.every == 0 or self.done == self.total:
            elapsed = time.perf_counter() - self.t0
            eta = elapsed / self.done * (self.total - self.done)
            acc = (f"error: {row['error']}" if row.get("error")
                   else f"top-1 {100.0 * row['top1_correct'] / row['images']:.2f}%")
            print(f"[{self.label}] {self.done}/{self.total} trials, {elapsed / 60:.1f} min, "
                  f"ETA {eta / 60:.1f} min, last: {row['mode']} layer {row['layer_index']} "
                  f"{self.noise_model.format_strength(row['strength'])} seed {row['seed']} {acc}", flush=True)


def export_missing(experiment: Experiment) -> None:
    """Export every model of the experiment whose ONNX file is missing (needs the `export` extra)."""
    for entry in experiment.models.values():
        if entry.path.is_file():
            continue
        spec = dict(entry.export)
        if spec.pop("kind", None) != "cifar-resnet":
            raise OnnxNoiseError(f"model {entry.name}: {entry.path} is missing and has no cifar-resnet export spec")
        module_spec = importlib.util.spec_from_file_location("export_models", REPO / "scripts" / "export_models.py")
        export_models = importlib.util.module_from_spec(module_spec)
        sys.modules["export_models"] = export_models  # dataclasses look their module up here
        module_spec.loader.exec_module(export_models)
        checkpoint = (experiment.source.resolve().parent / spec["checkpoint"]).resolve()
        entry.path.parent.mkdir(parents=True, exist_ok=True)
        summary = export_models.export_cifar_resnet(spec["depth"], checkpoint, entry.path,
                                                    keep_batchnorm=spec.get("keep_batchnorm", False))
        print(f"exported {entry.name}: {summary.path}", flush=True)


def planned_keys(config: SweepConfig) -> dict[str, str]:
    """``key -> mode`` of every trial the sweep plans (baseline included), from the engine's own plan.

    Keys depend on the prepared context (model file, data, preprocessing, provider, ...), so the
    context is prepared here as the sweep would prepare it.
    """
    return _keys(prepare_context(config.run), config)


def _keys(context: RunContext, config: SweepConfig) -> dict[str, str]:
    return {item.key: item.trial.mode for item in plan_trials(context, config.modes)}


def run_experiment(experiment: Experiment) -> tuple[int, list[dict[str, str]]]:
    """Run every sweep of the experiment (skipping finished trials).

    Returns:
        ``(failed trials, planned keys per sweep)``, the keys as :func:`planned_keys` gives them.
    """
    export_missing(experiment)
    failed, plans = 0, []
    for name, config in experiment.sweeps:
        context = prepare_context(config.run)
        plans.append(_keys(context, config))
        label = f"{name} {'+'.join(config.modes)}"
        with open_store(experiment.run_dir(name) / STORE_NAME) as store:
            result = run_sweep(config, store, context=context,
                               progress=_LogProgress(label, config.run.noise.noise_model))
        del context  # one sweep's decoded images in memory at a time
        print(f"[{name}] {result.planned} planned, {result.done} already done"
              + (f" ({result.adopted} adopted from a version 1 store)" if result.adopted else "")
              + f", {result.ran} run, {result.failed} failed"
              + (f", {result.taken} recorded meanwhile by another process" if result.taken else ""), flush=True)
        failed += result.failed
    return failed, plans


# ---------------------------------------------------------------------------------------------
# findings 1-3 of PAPER.md, measured


def _t_interval(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size < 2:
        return float(values.mean()) if values.size else float("nan"), float("nan")
    return float(values.mean()), float(t_half_width(values.std(ddof=1), values.size))


def _verdict(low: float, high: float) -> str:
    if np.isnan(low) or np.isnan(high):
        return "not measured yet"
    if low > 0:
        return "**holds**"
    if high < 0:
        return "**does not hold** (the opposite is significant)"
    return "**not significant** (the interval includes 0)"


#: Which reading of the paper's sigma_w this reproduction uses (issue 10: say it, show both for ResNet20).
NOISE_READING = (
    'Noise reading: sigma_w is taken per tensor (`gaussian-snr`, `scope=tensor`, the default): every '
    "initializer, including a BN-folded convolution's bias and a BatchNormalization running variance, "
    'gets noise scaled by its own standard deviation. The paper\'s "sigma_w of the layer" can also be read'
    ' as one sigma pooled over the layer (`scope=layer`); reports/analog-devices/README.md shows both '
    '(and per output channel) for ResNet20 with BN folded: 87.9 / 89.9 / 88.2% top-1 at SNR 10.'
)


def findings_markdown(trials: pl.DataFrame, runs: pl.DataFrame) -> str:
    """The side-by-side section: each paper finding, our numbers, and a verdict with intervals."""
    # The paper's findings are about SNR-scaled Gaussian noise: other noise models are left out here.
    ok = trials.filter(pl.col("error").is_null() & (pl.col("noise_model") == PAPER_NOISE_MODEL))
    summary = summarize_trials(ok)
    lines = ["## Our findings beside the paper's (PAPER.md findings 1-3)", "",
             "Differences are means over seeds with 95% Student-t intervals over seeds (noise draws); "
             "a finding *holds* when the interval excludes 0 in the paper's direction. With 3 seeds the "
             "t-quantile is 4.30, so only consistent effects pass; and with BatchNormalization kept as its own "
             "layer the outcome of a draw is often bimodal (a running variance pushed to or below zero, clamped "
             "to 0, divides by sqrt(epsilon) and the model collapses to ~10%, or it does not), which widens "
             "the intervals further. The per-trial rows (results.parquet) carry each draw's count of changed "
             "variances (`bn_variance_changed`).", "",
             NOISE_READING, ""]

    # Layer and parameter counts beside the paper's table (BN ops counted as layers).
    paper = {20: (40, 274_442), 32: (65, 470_218), 56: (113, 861_770)}
    params = {row["model"]: json.loads(row["config"] or "{}").get("params_total") for row in runs.iter_rows(named=True)}
    counts = ok.filter(pl.col("mode") == "per-layer").group_by("model").agg(pl.col("layer_index").n_unique())
    lines += ["### Layers and parameters", "",
              "Paper (Keras ResNets, BN ops counted as layers, parameters including BN running statistics) "
              "beside the akamaster PyTorch ResNets exported with BN kept (option-A shortcuts, no parameters). "
              "The counts differ by one or two layers and a few thousand parameters; the paper does not describe "
              "its variants beyond these totals, so the difference is reported, not explained.", "",
              "| model | paper layers | paper parameters | our layers | our parameters |", "|---|---|---|---|---|"]
    for row in counts.sort("model").iter_rows(named=True):
        digits = "".join(c for c in row["model"].split("-")[0] if c.isdigit())
        ref = paper.get(int(digits)) if digits and "-bn" in row["model"] else None
        ours = params.get(row["model"])
        lines.append(f"| {row['model']} | {ref[0] if ref else '-'} | {f'{ref[1]:,}' if ref else '-'} | "
                     f"{row['layer_index']} | {f'{ours:,}' if ours else '-'} |")
    lines.append("")

    # Finding 1a: whole-model accuracy falls as noise grows.
    lines += ["### 1. Accuracy falls as noise grows and as more layers are noised", "",
              "Paper: accuracy decreases with noise power (Table III, Fig. 2) and with the number of noised "
              "layers (Fig. 5).", ""]
    # Increasing noise = decreasing SNR; noise std in percent of sigma_w is 100 / SNR (paper eq. 1).
    whole = summary.filter(pl.col("mode") == "all").sort(["model", "strength"], descending=[False, True])
    rows = []
    for (model,), part in whole.group_by(["model"], maintain_order=True):
        seeds_frame = ok.filter((pl.col("mode") == "all") & (pl.col("model") == model))
        least, most = part["strength"].max(), part["strength"].min()
        lo = seeds_frame.filter(pl.col("strength") == least).sort("seed")["top1_acc"].to_numpy()
        hi = seeds_frame.filter(pl.col("strength") == most).sort("seed")["top1_acc"].to_numpy()
        n = min(lo.size, hi.size)
        mean, half = _t_interval(lo[:n] - hi[:n])
        means = " → ".join(f"{v:.2f}" for v in part["top1_acc_mean"].to_list())
        rows.append(f"| {model} | {means} | {mean:.2f} ± {half:.2f} | {_verdict(mean - half, mean + half)} |")
    if rows:
        pcts = ", ".join(f"{100.0 / snr:.3g}" for snr in whole["strength"].unique(maintain_order=True).to_list())
        lines += [f"Noise in all layers, top-1 % at noise {pcts} % of sigma_w:", "",
                  "| model | top-1 % by noise | drop lowest → highest noise (pt) | verdict |", "|---|---|---|---|",
                  *rows, ""]
    cumulative = ok.filter(pl.col("mode") == "cumulative")
    rows = []
    for (model, snr), part in cumulative.sort(["model", "strength"], descending=[False, True]).group_by(
            ["model", "strength"], maintain_order=True):
        last = part["layer_index"].max()
        first = part.filter(pl.col("layer_index") == 1).sort("seed")["top1_norm"].to_numpy()
        full = part.filter(pl.col("layer_index") == last).sort("seed")["top1_norm"].to_numpy()
        n = min(first.size, full.size)
        mean, half = _t_interval(first[:n] - full[:n])
        rows.append(f"| {model} | {snr:g} | {first.mean():.3f} | {full.mean():.3f} (L = {last}) | "
                    f"{mean:.3f} ± {half:.3f} | {_verdict(mean - half, mean + half)} |")
    if rows:
        lines += ["Noise in layers 1..L (normalized top-1 a/a0):", "",
                  "| model | SNR | L = 1 | all layers | drop | verdict |", "|---|---|---|---|---|---|", *rows, ""]

    # Finding 2: early layers more sensitive than late layers.
    lines += ["### 2. Early layers are more sensitive than late layers", "",
              "Paper: noise in the first layers costs more accuracy than noise in the last ones (Figs. 3-4). "
              "Measured: per seed, mean normalized top-1 over the first third of the layers minus the mean over "
              "the last third (negative = early layers more sensitive).", "",
              "| model | SNR | first third a/a0 | last third a/a0 | early − late | verdict |",
              "|---|---|---|---|---|---|"]
    per_layer = ok.filter(pl.col("mode") == "per-layer")
    for (model, snr), part in per_layer.sort(["model", "strength"], descending=[False, True]).group_by(
            ["model", "strength"], maintain_order=True):
        indices = sorted(part["layer_index"].unique().to_list())
        third = max(1, len(indices) // 3)
        early_idx, late_idx = indices[:third], indices[-third:]
        diffs, early_means, late_means = [], [], []
        for (_seed,), seed_part in part.group_by(["seed"]):
            early = seed_part.filter(pl.col("layer_index").is_in(early_idx))["top1_norm"].mean()
            late = seed_part.filter(pl.col("layer_index").is_in(late_idx))["top1_norm"].mean()
            early_means.append(early)
            late_means.append(late)
            diffs.append(late - early)
        mean, half = _t_interval(np.array(diffs, dtype=float))
        lines.append(f"| {model} | {snr:g} | {np.mean(early_means):.3f} | {np.mean(late_means):.3f} | "
                     f"{-mean:.3f} ± {half:.3f} | {_verdict(mean - half, mean + half)} |")
    lines.append("")

    # Finding 3: deeper models degrade less.
    a_avr = average_normalized_accuracy(ok)
    bn = a_avr.filter(pl.col("model").str.contains("-bn"))
    lines += ["### 3. Deeper models of one family degrade less", "",
              "Paper: ResNet56 > ResNet32 > ResNet20 on CIFAR-10 (Figs. 6-10, A_avr of eq. 3). Measured: A_avr "
              "(per-layer sweeps, BN kept) ± 95% t-interval over seeds; the verdict compares consecutive depths "
              "(holds when the deeper model's interval lies above the shallower one's).", "",
              "| SNR | " + " | ".join(bn.sort("model")["model"].unique(maintain_order=True).to_list()) + " | verdict |"]
    models = bn.sort("model")["model"].unique(maintain_order=True).to_list()
    depth = {m: int("".join(c for c in m.split("-")[0] if c.isdigit()) or 0) for m in models}
    models.sort(key=depth.get)
    lines[-1] = "| SNR | " + " | ".join(models) + " | verdict |"
    lines.append("|---|" + "---|" * (len(models) + 1))
    for snr in sorted(bn["strength"].unique().to_list(), reverse=True):
        cells, bounds = [], []
        for m in models:
            row = bn.filter((pl.col("model") == m) & (pl.col("strength") == snr))
            if row.height:
                v, h = row["top1_a_avr"][0], row["top1_a_avr_ci_half"][0] or float("nan")
                cells.append(f"{v:.4f} ± {h:.4f}")
                bounds.append((v - h, v + h, v))
            else:
                cells.append("-")
        if len(bounds) < 2:
            verdict = "not measured yet"
        elif all(b[0] > a[1] for a, b in zip(bounds, bounds[1:])):
            verdict = "**holds**"
        elif all(b[2] > a[2] for a, b in zip(bounds, bounds[1:])):
            verdict = "**same order, not significant** (intervals overlap)"
        else:
            verdict = "**does not hold** (order differs)"
        lines.append(f"| {snr:g} | " + " | ".join(cells) + f" | {verdict} |")
    lines.append("")
    return "\n".join(lines)


def sweep_status(experiment: Experiment, plans: list[dict[str, str]] | None = None,
                 ) -> tuple[list[list[str]], set[str]]:
    """Per sweep and model: trials planned and stored; and the keys of unfinished sweeps.

    Args:
        experiment: The experiment.
        plans: ``key -> mode`` per sweep (as :func:`planned_keys` gives them), if already known;
            else each sweep's context is prepared to plan it.
    """
    rows, unfinished = [], set()
    for number, (name, config) in enumerate(experiment.sweeps):
        path = experiment.run_dir(name) / STORE_NAME
        planned = plans[number] if plans is not None else planned_keys(config)
        stored = set()
        if path.is_file():
            with open_store(path, create=False) as store:
                stored = store.done_keys(include_errors=False) & set(planned)
        noisy = {k for k, mode in planned.items() if mode != "baseline"}
        done = len(stored & noisy)
        if done < len(noisy):
            unfinished |= noisy
        rows.append([name, "+".join(config.modes), str(config.run.limit or "all"), str(len(noisy)), str(done),
                     "complete" if done == len(noisy) else "**running, not in the tables below**"])
    return rows, unfinished


def write(experiment: Experiment, out: Path, plans: list[dict[str, str]] | None = None) -> None:
    """Write the report (finished sweeps only) with a status and a findings section."""
    run_dirs = [experiment.run_dir(name) for name in experiment.models
                if (experiment.run_dir(name) / STORE_NAME).is_file()]
    if not run_dirs:
        raise OnnxNoiseError(f"no trial stores under {experiment.out}; run the sweeps first")
    status, unfinished = sweep_status(experiment, plans)
    trials = collect_trials(run_dirs).filter(~pl.col("key").is_in(list(unfinished)))
    files = write_report(trials, collect_runs(run_dirs), out,
                         title=f"onnxnoise reproduction: {experiment.name}")
    text = files.markdown.read_text()
    head, _, tail = text.partition("## Figures")
    findings = findings_markdown(trials, collect_runs(run_dirs))
    table = ["## Sweeps of this study", "",
             f"From `{experiment.source.name}`; only complete sweeps enter the tables and figures.", "",
             "| model | mode | images | noisy trials planned | stored | status |", "|---|---|---|---|---|---|",
             *["| " + " | ".join(row) + " |" for row in status], ""]
    first, _, rest = head.partition("## Models and baselines")
    files.markdown.write_text(first + "\n".join(table) + "\n## Models and baselines" + rest + findings
                              + "\n## Figures" + tail)
    print(f"wrote {files.markdown} ({trials.height} trials)", flush=True)


def recheck(experiment: Experiment, sample: int) -> int:
    """Run again ``sample`` random stored trials of every sweep; return the number of mismatches."""
    bad = 0
    for name, config in experiment.sweeps:
        path = experiment.run_dir(name) / STORE_NAME
        if not path.is_file():
            continue
        with open_store(path, create=False) as store:
            checked, mismatches = recheck_sweep(config, store, sample=sample)
        print(f"[{name} {'+'.join(config.modes)}] re-ran {checked} stored trials: "
              f"{'all counts equal' if not mismatches else f'{len(mismatches)} mismatches'}", flush=True)
        for line in mismatches:
            print(f"  {line}", flush=True)
        bad += len(mismatches)
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", nargs="?", type=Path, default=REPO / "experiments" / "cifar10-resnet.toml")
    parser.add_argument("--out", type=Path, help="report folder (default reports/<experiment name>/)")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the report from the stores")
    parser.add_argument("--recheck", type=int, metavar="N",
                        help="run again N random stored trials of each sweep and compare counts (exit 1 on a mismatch)")
    args = parser.parse_args(argv)
    try:
        experiment = load_experiment(args.experiment)
        if args.recheck:
            return 1 if recheck(experiment, args.recheck) else 0
        failed, plans = (0, None) if args.report_only else run_experiment(experiment)
        write(experiment, args.out or REPO / "reports" / experiment.name, plans)
    except OnnxNoiseError as exc:
        print(f"reproduce_paper: error: {exc}", file=sys.stderr)
        return 2
    if failed:
        print(f"reproduce_paper: {failed} trial(s) failed; their rows carry the error and they are re-run "
              "on the next run", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
