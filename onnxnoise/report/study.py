"""Reports of sweep runs: tables, figures and a markdown summary from trial stores.

``onnxnoise report RUN_DIR`` and ``onnxnoise compare RUN_DIR...`` call
:func:`collect_trials`, then :func:`write_report` / :func:`onnxnoise.report.comparison.write_comparison`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path


from onnxnoise.engine.baseline_checks import chance_warning
from onnxnoise.engine.metrics import fixed_top5
from onnxnoise.errors import StoreError
from onnxnoise.files import atomic_write, folder_name, write_text
from onnxnoise.lazy import lazy_module
from onnxnoise.report.plots import plot_accuracy_vs_noise, plot_compare, plot_cumulative, plot_layer_sensitivity
from onnxnoise.report.tables import markdown_table, with_planned_provider, write_table
from onnxnoise.report.stats import (context_keys, group_keys, add_binomial_interval, average_normalized_accuracy,
                                    normalized_accuracy, summarize_trials)
from onnxnoise.report.console import a_avr_upper, format_interval, lead_columns, norm_upper, setting_columns
from onnxnoise.report.paired import PAIRED_HEADERS, collapse_hints, collapsed_cell, has_paired, paired_cells
from onnxnoise.report.strength import noise_descriptions, strength_header
from onnxnoise.report.stages import stages_lines
from onnxnoise.report.unchanged import unchanged_layers_warnings
from onnxnoise.report.blame import blame_table
from onnxnoise.report.results import facts_by_model, results_table
from onnxnoise.report.blame_view import blame_groups, blame_markdown, plot_blame
from onnxnoise.report.layer_facts import facts_of_runs
from onnxnoise.store.store import open_store

pl = lazy_module("polars")
_figure = lazy_module("matplotlib.figure")

__all__ = ["STORE_NAME", "find_stores", "collect_trials", "collect_runs", "ReportFiles", "report_warnings",
           "write_report", "save_figure", "model_facts", "by_noise_model"]

#: File name of a run folder's trial store.
STORE_NAME = "trials.sqlite"


def find_stores(run_dir: str | os.PathLike) -> list[Path]:
    """Trial stores of a run folder: ``RUN_DIR/trials.sqlite`` or ``RUN_DIR/*/trials.sqlite``.

    Raises:
        StoreError: If the folder does not exist or holds no trial store.
    """
    root = Path(run_dir)
    if not root.is_dir():
        msg = f"run folder not found: {root} (give the --out folder of a sweep)"
        raise StoreError(msg)
    direct = root / STORE_NAME
    stores = [direct] if direct.is_file() else sorted(root.glob(f"*/{STORE_NAME}"))
    if not stores:
        msg = f"no {STORE_NAME} in {root} or its sub-folders; run `onnxnoise sweep ... --out {root}` first"
        raise StoreError(msg)
    return stores


def collect_trials(run_dirs: list[str | os.PathLike]) -> pl.DataFrame:
    """All finished trials of the given run folders, with normalized accuracy.

    Returns:
        One row per trial (see :meth:`onnxnoise.store.store.TrialStore.to_frame`; a failed
        trial's ``provider`` is the planned one, :func:`~onnxnoise.report.tables.with_planned_provider`)
        plus ``top1_norm``/``top5_norm`` (paper eq. 2) and Wilson 95% intervals
        ``top1_acc_low``/``top1_acc_high`` (percent).
    """
    frames = []
    for run_dir in run_dirs:
        for path in find_stores(run_dir):
            with open_store(path, create=False) as store:
                frames.append(store.to_frame())
    trials = with_planned_provider(pl.concat(frames, how="vertical"))
    return add_binomial_interval(normalized_accuracy(trials))


def collect_runs(run_dirs: list[str | os.PathLike]) -> pl.DataFrame:
    """The ``runs`` tables of the given run folders (one row per sweep invocation)."""
    frames = []
    for run_dir in run_dirs:
        for path in find_stores(run_dir):
            with open_store(path, create=False) as store:
                frames.append(store.runs())
    return pl.concat(frames, how="vertical")


@dataclass
class ReportFiles:
    """What a report wrote.

    Attributes:
        tables: Parquet/CSV files.
        figures: PNG/SVG files.
        markdown: The ``report.md`` file.
        summary: The per-(model, noise model, mode, layer, strength) summary frame.
        a_avr: The per-(model, noise model, strength) ``A_avr`` frame (eq. 3; empty
            without per-layer trials).
        blame: The layers ranked by their top-1 drop (:func:`onnxnoise.report.blame.blame_table`;
            empty without per-layer trials).
        results: One row per model and whole-model strength in timm's columns
            (:func:`onnxnoise.report.results.results_table`).
        warnings: :func:`report_warnings` (baselines at chance level, failed trials) and the
            noise models' advice where draws collapsed (:func:`~onnxnoise.report.paired.collapse_hints`).
    """

    tables: list[Path] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    markdown: Path | None = None
    summary: pl.DataFrame | None = None
    a_avr: pl.DataFrame | None = None
    blame: pl.DataFrame | None = None
    results: pl.DataFrame | None = None
    warnings: list[str] = field(default_factory=list)


def save_figure(fig: _figure.Figure, out: Path, stem: str, files: list[Path]) -> None:
    """Write ``fig`` as ``out/stem.png`` and ``.svg`` (each whole, :func:`onnxnoise.files.atomic_write`); append the paths."""
    out.mkdir(parents=True, exist_ok=True)
    for suffix in (".png", ".svg"):
        path = out / f"{stem}{suffix}"
        with atomic_write(path) as fh:
            fig.savefig(fh, format=suffix[1:], dpi=150, bbox_inches="tight")
        files.append(path)


def _several_noise_models(frame: pl.DataFrame) -> bool:
    return "noise_model" in frame.columns and frame["noise_model"].n_unique() > 1


def by_noise_model(frame: pl.DataFrame) -> list[tuple[str, pl.DataFrame]]:
    """``(file-name suffix, part)`` per noise model: no suffix when there is only one."""
    if not _several_noise_models(frame):
        return [("", frame)]
    return [(f"-{folder_name(str(name))}", part)
            for (name,), part in frame.group_by("noise_model", maintain_order=True)]


def _by_noise(frame: pl.DataFrame) -> list[tuple[str, pl.DataFrame]]:
    """``(suffix, part)`` per (noise model, noise and run settings): one figure each; no suffix when only one.

    Run settings (batch size, label offset, provider) that differ are separate
    measurements and get separate figures, like different noise settings.
    """
    out = []
    for suffix, part in by_noise_model(frame):
        varying = [c for c in ("noise", "batch_size", "label_offset", "provider")
                   if c in part.columns and part[c].n_unique() > 1]
        if varying:
            groups = part.group_by(varying, maintain_order=True)
            out += [(f"{suffix}-{i + 1}", sub) for i, (_, sub) in enumerate(groups)]
        else:
            out.append((suffix, part))
    return out


def model_facts(runs: pl.DataFrame) -> pl.DataFrame:
    """Layer and parameter counts per model from the runs' recorded config: ``model``, ``model_sha256``, ``layers``,
    ``parameters``, ``images``."""
    rows = {}
    for row in runs.iter_rows(named=True):
        config = json.loads(row["config"] or "{}")
        rows[(row["model"], row["model_sha256"])] = {
            "model": row["model"],
            "model_sha256": row["model_sha256"],
            "layers": config.get("layers_total"),
            "parameters": config.get("params_total"),
            "images": config.get("images"),
        }
    return pl.DataFrame(list(rows.values()))


def run_facts(runs: pl.DataFrame) -> list[dict]:
    """Each run's ``model_sha256`` with its recorded config (``params_total``, ``input_size``...), for
    :func:`onnxnoise.report.results.facts_by_model`."""
    return [{**json.loads(row["config"] or "{}"), "model_sha256": row["model_sha256"]}
            for row in runs.iter_rows(named=True)]


def _chance_classes(runs: pl.DataFrame) -> dict[tuple[str, str], int]:
    """``(model_sha256, dataset_fingerprint) -> classes among the evaluated images`` from the runs' config.

    Stores written before ``chance_classes`` was recorded give nothing (no chance check).
    """
    out = {}
    for row in runs.iter_rows(named=True):
        classes = json.loads(row["config"] or "{}").get("chance_classes")
        if classes:
            out[(row["model_sha256"], row["dataset_fingerprint"])] = int(classes)
    return out


def report_warnings(trials: pl.DataFrame, runs: pl.DataFrame) -> list[str]:
    """What makes a report's numbers suspect or incomplete, one line each.

    * a clean baseline at chance level (:func:`~onnxnoise.engine.baseline_checks.chance_warning`,
      classes from the runs' recorded ``chance_classes``), or a failed baseline;
    * per model and mode, how many trials failed and the first error: their seeds are
      missing from the means, intervals and ``A_avr`` (the tables mark those cells);
    * noised layers a draw left unchanged (:func:`onnxnoise.report.unchanged.unchanged_layers_warnings`).

    Args:
        trials: Output of :func:`collect_trials`.
        runs: Output of :func:`collect_runs`.
    """
    lines = []
    classes = _chance_classes(runs)
    for row in trials.filter(pl.col("mode") == "baseline").iter_rows(named=True):
        where = f"{row['model']} on {row['dataset']}"
        if row["error"] is not None:
            lines.append(f"{where}: the clean baseline failed ({row['error']}); a/a0 of its noisy trials is undefined")
            continue
        count = classes.get((row["model_sha256"], row["dataset_fingerprint"]))
        warning = chance_warning(row["top1_correct"], row["images"], count) if count and row["images"] else None
        if warning:
            lines.append(f"{where}: {warning}")
    noisy = trials.filter(pl.col("mode") != "baseline")
    failed = (noisy.group_by(["model", "mode"], maintain_order=True)
              .agg(pl.len().alias("total"), pl.col("error").is_not_null().sum().alias("failed"),
                   pl.col("error").drop_nulls().first().alias("first"))
              .filter(pl.col("failed") > 0))
    for row in failed.iter_rows(named=True):
        lines.append(f"{row['model']}: {row['failed']} of {row['total']} {row['mode']} trials failed (first error: "
                     f"{row['first']}); the numbers they belong to are marked and average fewer seeds or layers")
    return lines + _fixed_top5_lines(runs) + unchanged_layers_warnings(trials)


def _fixed_top5_lines(runs: pl.DataFrame) -> list[str]:
    """``model: top-5 cannot change ...`` once per model whose runs recorded <= 5 ``model_outputs``.

    Stores written before ``model_outputs`` was recorded give nothing.
    """
    lines = {}
    for row in runs.iter_rows(named=True):
        line = fixed_top5(json.loads(row["config"] or "{}").get("model_outputs"))
        if line:
            lines.setdefault(row["model_sha256"], f"{row['model']}: {line}")
    return list(lines.values())


def _seeds_cell(seeds: int, errors: int | None) -> str:
    """``"3"``, or ``"2 of 3; 1 failed"`` when trials of the group failed."""
    return str(seeds) if not errors else f"{seeds} of {seeds + errors}; {errors} failed"


def _a_avr_failures(trials: pl.DataFrame, a_avr: pl.DataFrame) -> pl.DataFrame:
    """``a_avr`` with ``failed`` (failed per-layer trials) and ``layers_planned`` (layers with any trial).

    ``A_avr`` averages over the layers with at least one successful trial, so a layer
    whose trials all failed silently shrinks ``N``; ``layers_planned`` shows it.
    """
    keys = [c for c in group_keys() if c in trials.columns and c in a_avr.columns]
    per_layer = trials.filter(pl.col("mode") == "per-layer")
    counts = per_layer.group_by(keys).agg(
        pl.col("error").is_not_null().sum().cast(pl.Int64).alias("failed"),
        pl.col("layer_index").n_unique().cast(pl.Int64).alias("layers_planned"))
    return a_avr.join(counts, on=keys, how="left", nulls_equal=True, maintain_order="left")


def write_report(trials: pl.DataFrame, runs: pl.DataFrame, out_dir: str | os.PathLike,
                 *, title: str | None = None) -> ReportFiles:
    """Write tables, figures and ``report.md`` for the trials of one or more models.

    Args:
        trials: Output of :func:`collect_trials`.
        runs: Output of :func:`collect_runs` (for layer/parameter counts and versions).
        out_dir: Folder to write into.
        title: Report title (default: the model names).

    Returns:
        The :class:`ReportFiles` written.
    """
    out = Path(out_dir)
    files = ReportFiles()
    classes = set(_chance_classes(runs).values())  # one class count: its chance; else 0 (see paired.collapsed)
    summary = summarize_trials(trials, chance=100.0 / classes.pop() if len(classes) == 1 else 0.0)
    a_avr = average_normalized_accuracy(trials)
    blame = blame_table(trials, summary, facts_of_runs(runs))
    files.summary, files.a_avr, files.blame = summary, a_avr, blame
    files.warnings = report_warnings(trials, runs) + collapse_hints(summary)
    files.results = results_table(summary, facts_by_model(run_facts(runs)))
    files.tables += write_table(files.results, out, "results", json_text=False)
    files.tables += write_table(trials, out, "trials")
    files.tables += write_table(summary, out, "summary")
    if not a_avr.is_empty():
        files.tables += write_table(a_avr, out, "a_avr")
    figures = out / "figures"
    if not blame.is_empty():
        files.tables += write_table(blame, out, "blame")
        seen: dict[str, int] = {}
        for _, part in blame_groups(blame):
            first = part.row(0, named=True)
            stem = f"blame-{folder_name(first['model'])}" + (
                f"-{folder_name(str(first['noise_model']))}" if _several_noise_models(blame) else "")
            seen[stem] = seen.get(stem, 0) + 1
            stem += f"-{seen[stem]}" if seen[stem] > 1 else ""
            save_figure(plot_blame(part, blame), figures, stem, files.figures)
    noisy = summary.filter(pl.col("mode") != "baseline")
    for suffix, part in by_noise_model(noisy.filter(pl.col("mode") == "all")):
        if not part.is_empty():
            base = summary.filter(pl.col("mode") == "baseline")
            save_figure(plot_accuracy_vs_noise(pl.concat([base, part])), figures, f"accuracy-vs-noise{suffix}", files.figures)
    for (model, _dataset), part in noisy.group_by(["model", "dataset"], maintain_order=True):
        single = part.filter(pl.col("model_sha256") == part["model_sha256"][0])
        for mode, plot in (("per-layer", plot_layer_sensitivity), ("cumulative", plot_cumulative)):
            for suffix, sub in _by_noise(single.filter(pl.col("mode") == mode)):
                if not sub.is_empty():
                    save_figure(plot(sub), figures, f"{mode}-{folder_name(model)}{suffix}", files.figures)
    if not a_avr.is_empty():
        for suffix, part in by_noise_model(a_avr):
            save_figure(plot_compare(part), figures, f"degradation-by-model{suffix}", files.figures)
    files.markdown = out / "report.md"
    write_text(files.markdown, render_markdown(trials, summary, a_avr, runs, files, out, title=title))
    return files


def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


#: The noise model of Fagbohungbe & Qian (arXiv 2011.11840): only its sections cite the paper's tables and figures.
PAPER_NOISE_MODEL = "gaussian-snr"


def _reference(frame: pl.DataFrame, paper: str, metric: str | None = None) -> str:
    """What a section heading cites: ``paper`` for the paper's noise model alone, else the noise models by name.

    ``metric``: the paper's metric the section uses whatever the noise (``eq. 3`` for
    A_avr), kept beside the names, e.g. ``pcm; A_avr as in paper eq. 3``.
    """
    names = [str(n) for n in frame["noise_model"].unique(maintain_order=True).to_list()] \
        if "noise_model" in frame.columns else []
    if names == [PAPER_NOISE_MODEL] or not names:
        return paper
    text = "; ".join(f"{n}: {paper}" if n == PAPER_NOISE_MODEL else n for n in names)
    return f"{text}; A_avr as in paper {metric}" if metric else text


def render_markdown(trials: pl.DataFrame, summary: pl.DataFrame, a_avr: pl.DataFrame, runs: pl.DataFrame,
                    files: ReportFiles, out: Path, *, title: str | None = None) -> str:
    """The ``report.md`` text: provenance, baselines, whole-model and per-layer results, figures."""
    models = summary["model"].unique(maintain_order=True).to_list()
    title = title or f"onnxnoise report: {', '.join(models)}"
    facts = model_facts(runs)
    preprocess = sorted(set(trials["preprocess"].drop_nulls().to_list()))
    versions = sorted(set(runs["versions"].drop_nulls().to_list()))
    seeds = sorted(set(trials["seed"].drop_nulls().to_list()))
    errors = trials.filter(pl.col("error").is_not_null()).height
    keyed = sorted(set(trials["settings"].drop_nulls().to_list())) if "settings" in trials.columns else []
    parts = [f"# {title}", ""]
    if files.blame is not None and not files.blame.is_empty():  # the first table: which layers to blame
        parts += blame_markdown(files.blame)
    if files.warnings:
        parts += ["## Warnings", "", *(f"- **WARNING**: {line}" for line in files.warnings), ""]
    parts += [
        "## Provenance", "",
        f"- trials: {trials.height} ({errors} failed), seeds used: {', '.join(map(str, seeds)) or '-'}",
        f"- datasets: {', '.join(sorted(set(trials['dataset'].to_list())))}",
        f"- noise: {'; '.join(noise_descriptions(trials)) or '-'}; "
        f"settings {', '.join(sorted(set(trials['noise'].drop_nulls().to_list())))}",
        f"- preprocessing: {'; '.join(preprocess)}",
        f"- execution providers: {', '.join(sorted(set(trials['provider'].drop_nulls().to_list())))}",
        *([f"- other settings that change counts: {'; '.join(keyed)}"] if keyed else []),
        *(f"- {line}" for line in stages_lines(trials)),
        f"- versions: {'; '.join(versions)}",
        "- intervals: ± is the 95% Student-t interval over seeds; per-trial accuracy intervals (trials.parquet) "
        "are 95% Wilson intervals over images.",
        "",
        "## Models and baselines", "",
        *(["Differences between these models with intervals and a verdict per strength: `onnxnoise compare` with "
           "their run folders (compare.md).", ""] if len(models) > 1 else []),
    ]
    # One clean baseline per sweep: the same measurement when only the noise settings differ.
    base = summary.filter(pl.col("mode") == "baseline")
    base = base.unique([c for c in context_keys() if c in base.columns], keep="first", maintain_order=True)
    run_headers, run_cells = setting_columns(base)  # baselines measured under other settings, told apart
    rows = []
    for i, row in enumerate(base.iter_rows(named=True)):
        fact = facts.filter(pl.col("model_sha256") == row["model_sha256"])
        layers = fact["layers"][0] if fact.height else None
        params = fact["parameters"][0] if fact.height else None
        failed = " (failed)" if row.get("errors") else ""
        rows.append([row["model"], row["dataset"], *run_cells[i], str(row["images"] or "-"),
                     _fmt(row["top1_acc_mean"]) + failed, _fmt(row["top5_acc_mean"]) + failed, str(layers),
                     f"{params:,}" if params else "-", row["model_sha256"][:12]])
    parts += [markdown_table(["model", "dataset", *run_headers, "images", "top-1 %", "top-5 %", "layers", "parameters",
                         "sha256"], rows), ""]
    whole = summary.filter(pl.col("mode") == "all")  # summarize_trials order: increasing noise
    if whole.height:
        lead, lead_cells = lead_columns(whole, model=True)
        parts += [f"## Noise in all layers ({_reference(whole, 'paper Table III, Fig. 2')})", ""]
        rows = [[*lead_cells[i], r["strength_text"], _seeds_cell(r["seeds"], r.get("errors")),
                 format_interval(r["top1_acc_mean"], r["top1_acc_ci_half"]),
                 format_interval(r["top5_acc_mean"], r["top5_acc_ci_half"]),
                 format_interval(r["top1_norm_mean"], r["top1_norm_ci_half"], 4,
                                 upper=norm_upper(r["top1_norm_mean"], r["top1_acc_mean"])), collapsed_cell(r),
                 str(r["nan_count"])]
                for i, r in enumerate(whole.iter_rows(named=True))]
        parts += [markdown_table([*lead, strength_header(whole), "seeds", "top-1 %", "top-5 %", "top-1 a/a0",
                             "collapsed", "NaN logits"], rows), ""]
        if has_paired(whole):
            parts += ["Paired with the clean model on the same images (top-1): flips % = images whose top-1 class "
                      "changed, lost / gained = top-1 hits lost / gained (mean images per draw), p<.05 = draws whose "
                      "exact McNemar p (McNemar 1947, two-sided binomial on lost vs gained) is below 0.05, collapsed = "
                      "draws closer to chance than to the best draw and a quarter of the clean accuracy below it, "
                      "or at chance (less than a tenth of the clean accuracy above chance kept).", "",
                      markdown_table([*lead, strength_header(whole), "seeds", *PAIRED_HEADERS],
                                [[*lead_cells[i], r["strength_text"], str(r["seeds"]), *paired_cells(r)]
                                 for i, r in enumerate(whole.iter_rows(named=True))]), ""]
    if not a_avr.is_empty():
        lead, lead_cells = lead_columns(a_avr, model=True)
        parts += [f"## Noise in one layer at a time: A_avr ({_reference(a_avr, 'paper eq. 3, Figs. 6-10', 'eq. 3')})",
                  ""]
        flagged = _a_avr_failures(trials, a_avr)
        rows = [[*lead_cells[i], r["strength_text"],
                 str(r["layers"]) if r["layers"] == (r["layers_planned"] or r["layers"])
                 else f"{r['layers']} of {r['layers_planned']}; {r['layers_planned'] - r['layers']} all failed",
                 str(r["seeds"]) + (f"; {r['failed']} trials failed" if r["failed"] else ""),
                 format_interval(r["top1_a_avr"], r["top1_a_avr_ci_half"], 4, upper=a_avr_upper(r, "top1")),
                 _fmt(r["top1_degradation_pct"]), format_interval(r["top5_a_avr"], r["top5_a_avr_ci_half"], 4, upper=a_avr_upper(r, "top5")),
                 _fmt(r["top5_degradation_pct"])]
                for i, r in enumerate(flagged.iter_rows(named=True))]
        parts += [markdown_table([*lead, strength_header(a_avr), "layers", "seeds", "top-1 A_avr", "top-1 degradation %",
                             "top-5 A_avr", "top-5 degradation %"], rows), ""]
    if files.figures:
        parts += ["## Figures", ""]
        parts += [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in files.figures if p.suffix == ".png"]
        parts += [""]
    parts += ["## Files (columns: docs/outputs.md)", "",
              "- `results.parquet` / `results.csv`: one row per model and whole-model strength in timm's columns "
              "(top1, top1_err, top5, top5_err, param_count, img_size, crop_pct, interpolation, noise, strength)",
              "- `trials.parquet` / `trials.csv`: one row per trial",
              "- `summary.parquet` / `summary.csv`: mean, std and the half-width of the Student t interval "
              "(`*_ci_half` at `ci_level`) over seeds per model, noise model, mode, layer, strength"]
    if not a_avr.is_empty():
        parts += ["- `a_avr.parquet` / `a_avr.csv`: A_avr and degradation per model, noise model and strength"]
    if files.blame is not None and not files.blame.is_empty():
        parts += ["- `blame.parquet` / `blame.csv`: every layer ranked by its top-1 drop per strength, with op type, "
                  "parameters, channel spread and flags"]
    return "\n".join(parts) + "\n"
