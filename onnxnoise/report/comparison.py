"""``onnxnoise compare``: models side by side with a verdict per strength; compare.md, compare.json, tables, figures.

Whole-model sweeps (mode ``all``) are compared by the top-1 they keep, per-layer sweeps by
``A_avr`` (paper eq. 3) as top-1 degradation; each strength gets the difference to the first
model with its paired interval and one sentence (:mod:`onnxnoise.report.versus`).
"""

from __future__ import annotations

import os
from pathlib import Path

from onnxnoise import __version__
from onnxnoise.errors import StoreError
from onnxnoise.files import write_text
from onnxnoise.lazy import lazy_module
from onnxnoise.report.plots import plot_accuracy_vs_noise, plot_compare
from onnxnoise.report.stats import average_normalized_accuracy, summarize_trials
from onnxnoise.report.study import ReportFiles, by_noise_model, model_facts, save_figure
from onnxnoise.report.nested import json_rows
from onnxnoise.report.tables import markdown_table, write_table
from onnxnoise.report.versus import compare_models, verdict_sentence
from onnxnoise.strict_json import json_text

pl = lazy_module("polars")

__all__ = ["INTERVAL_NOTE", "write_comparison", "comparison_json"]

#: How compare.md and the terminal read the intervals.
INTERVAL_NOTE = ("difference = model B minus the first model (A), in points; ± is the 95% interval: paired Student t "
                 "over the seeds both models ran on the same images (each seed one noise draw per model), else Welch's "
                 "interval over the draws; it covers the noise draws, on these images")


def write_comparison(trials: pl.DataFrame, runs: pl.DataFrame, out_dir: str | os.PathLike,
                     *, level: float = 0.95) -> ReportFiles:
    """Write compare.md, compare.json, ``verdicts`` and (with per-layer trials) ``compare`` tables, and figures.

    ``verdicts.parquet`` / ``.csv`` are written in every case: with no rows (the same columns; ``noise``, null in
    every row, has Polars' ``Null`` type in Parquet) when the runs hold one model or no setting two models share,
    so a script reading them needs no special case.

    Args:
        trials: Output of :func:`onnxnoise.report.study.collect_trials` of two or more models; the
            first model in it is the reference.
        runs: Output of :func:`onnxnoise.report.study.collect_runs`.
        out_dir: Folder to write into.
        level: Confidence level of the intervals.

    Returns:
        The :class:`~onnxnoise.report.study.ReportFiles` written; ``summary`` holds the verdict rows
        (:func:`onnxnoise.report.versus.compare_models` plus ``sentence``), ``a_avr`` the per-layer table.

    Raises:
        StoreError: If the runs hold no per-layer trials and no whole-model or per-layer trials that two
            models share (same noise setting and strength). One model's per-layer sweep gives its ``A_avr``
            table and figures, and no verdict.
    """
    verdicts = compare_models(trials, level=level)
    a_avr = average_normalized_accuracy(trials, level=level)
    if verdicts.is_empty() and a_avr.is_empty():
        models = trials.select("model", "model_sha256").unique().height
        msg = (f"nothing to compare: these runs hold {models} model(s) and no whole-model (`--mode all`) or "
               "per-layer (`--mode per-layer`) trials two models share at the same noise and strength; give the run "
               "folders of two or more models swept with the same noise settings")
        raise StoreError(msg)
    verdicts = verdicts.with_columns(pl.Series("sentence", [verdict_sentence(r) for r in verdicts.iter_rows(
        named=True)], dtype=pl.String))  # typed columns even when empty (one model: no verdict)
    out = Path(out_dir)
    files = ReportFiles(summary=verdicts)
    files.tables += write_table(verdicts, out, "verdicts")  # no rows, same columns, when no two models share a setting
    facts = model_facts(runs)
    if not a_avr.is_empty():
        files.a_avr = a_avr
        table = a_avr.join(facts.drop("images"), on=["model", "model_sha256"], how="left", suffix="_model")
        files.tables += write_table(table, out, "compare")
        for suffix, part in by_noise_model(a_avr):
            save_figure(plot_compare(part), out / "figures", f"compare-degradation{suffix}", files.figures)
            save_figure(plot_compare(part, value="a_avr", kind="line"), out / "figures", f"compare-a-avr{suffix}",
                        files.figures)
    summary = summarize_trials(trials, level=level)
    whole = summary.filter(pl.col("mode") == "all")
    for suffix, part in by_noise_model(whole):
        if not part.is_empty():
            base = summary.filter(pl.col("mode") == "baseline")
            save_figure(plot_accuracy_vs_noise(pl.concat([base, part])), out / "figures",
                        f"compare-accuracy-vs-noise{suffix}", files.figures)
    files.markdown = out / "compare.md"
    write_text(files.markdown, _markdown(verdicts, trials, facts, files, out))
    write_text(out / "compare.json", json_text(comparison_json(verdicts), indent=2) + "\n")
    return files


def comparison_json(verdicts: pl.DataFrame) -> dict:
    """compare.json (and ``compare --json``): ``tool`` and ``version``, the reference model, the interval's reading,
    one entry per verdict row (its ``noise`` settings an object)."""
    rows = json_rows(verdicts) if "sentence" in verdicts.columns else []  # noise settings as objects
    return {"tool": "onnxnoise compare", "version": __version__, "reference": rows[0]["model_a"] if rows else None,
            "interval": INTERVAL_NOTE, "verdicts": rows}


def _cell(value, ci=None, digits: int = 2, sign: bool = False) -> str:
    if value is None:
        return "-"
    text = f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"
    return text if ci is None else f"{text} ± {ci:.{digits}f}"


def _markdown(verdicts: pl.DataFrame, trials: pl.DataFrame, facts: pl.DataFrame, files: ReportFiles, out: Path) -> str:
    models = trials["model"].unique(maintain_order=True).to_list()
    parts = [f"# onnxnoise compare: {', '.join(models[1:]) or models[0]} against {models[0]}" if len(models) > 1
             else f"# onnxnoise compare: {models[0]}", "", "## Verdicts", ""]
    if verdicts.is_empty():
        parts += ["- no two models share a whole-model or per-layer sweep at the same noise and strength: nothing to "
                  "set side by side (give the run folders of two or more models swept with the same settings)", ""]
        verdicts = pl.DataFrame(schema={"mode": pl.String, "noise_model": pl.String, "noise": pl.String})
    else:
        parts += [*(f"- {s}" for s in verdicts["sentence"].to_list()), "", INTERVAL_NOTE + ".", ""]
    several_noise = verdicts.select("noise_model", "noise").unique().height > 1
    for mode, heading, value, drop in (
            ("all", "Noise in all layers: top-1 kept", "top-1 %", True),
            ("per-layer", "Noise in one layer at a time: A_avr as top-1 degradation (paper eq. 3)",
             "degradation %", False)):
        rows = verdicts.filter(pl.col("mode") == mode)
        if rows.is_empty():
            continue
        header = [*(["noise"] if several_noise else []), "strength", "model A", "model B", f"A {value}",
                  f"B {value}", "B - A", *(["drop B - drop A"] if drop else []), "draws", "paired"]
        body = []
        for r in rows.iter_rows(named=True):
            clean = r["clean_b"] - r["clean_a"]
            body.append([*([f"{r['noise_model']} {r['noise']}"] if several_noise else []), r["strength_text"],
                         r["model_a"], r["model_b"], _cell(r["value_a"]), _cell(r["value_b"]),
                         _cell(r["difference"], r["ci_half"], sign=True),
                         *([_cell(clean - r["difference"], r["ci_half"], sign=True)] if drop else []), str(r["seeds"]),
                         f"yes, {r['images']} images" if r["paired"] else "no"])
        parts += [f"## {heading}", "", markdown_table(header, body), ""]
        if drop:
            parts += ["drop = clean top-1 minus top-1 with noise; the clean top-1 is one measurement on the same "
                      "images, so the drop difference has the interval of the top-1 difference.", ""]
    if not facts.is_empty():
        parts += ["## Models", "", markdown_table(["model", "layers", "parameters", "images", "sha256"],
                                          [[r["model"], str(r["layers"]), f"{r['parameters']:,}" if r["parameters"]
                                            else "-", str(r["images"]), r["model_sha256"][:12]]
                                           for r in facts.iter_rows(named=True)]), ""]
    if files.figures:
        parts += ["## Figures", "", *(f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in files.figures
                                      if p.suffix == ".png"), ""]
    parts += ["## Files", "", "- `compare.json`: the verdicts as JSON (`onnxnoise compare --json` prints it)"]
    parts += ["- `verdicts.parquet` / `verdicts.csv`: one row per model, mode and strength: means, difference, "
              "interval, pairing, sentence" + ("" if "sentence" in verdicts.columns else " (no rows here: nothing "
                                                "two models share)")]
    if files.a_avr is not None:
        parts += ["- `compare.parquet` / `compare.csv`: A_avr and degradation per model and strength, with layer "
                  "and parameter counts"]
    return "\n".join(parts) + "\n"
