#!/usr/bin/env python
"""Markdown table of parity study b: CrossSim's ResNets, top-1 against alpha for its two programming errors.

Reads the trial table that ``onnxnoise report runs/parity-crosssim --out DIR`` writes (one row per
trial; ``experiments/parity-crosssim.toml``): ``DIR/trials.parquet``, or the ``results.parquet`` of a report written
before the tables were renamed (``onnxnoise.report.written``; give the folder or either file) and prints, per model and error definition, one row with a cell
per alpha: top-1 % mean ± 95% Student-t half-width over the draws, the draws that collapsed to chance
(top-1 <= 11%: 10 classes) and ``a/a0`` with ``a0`` the model's clean top-1 on the same images.

Usage: python scripts/parity/crosssim_alpha_table.py reports/parity/crosssim-alpha/results.parquet
"""

from __future__ import annotations

import json
import sys

from pathlib import Path

import polars as pl
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's onnxnoise

from onnxnoise.report.written import read_table, trial_table  # noqa: E402

#: Top-1 % at or below which a CIFAR-10 draw counts as collapsed (chance is 10%).
CHANCE_TOP1 = 11.0


def error_of(noise: object) -> str:
    """The ``error`` parameter of a crosssim trial's ``noise`` value (JSON text or a dict)."""
    noise = json.loads(noise) if isinstance(noise, str) else noise
    return noise["params"]["error"]


def cell(values: list[float], a0: float) -> str:
    """``mean ± t half-width (a/a0[, k collapsed])`` of top-1 values in %; ``-`` when none (not run yet)."""
    if not values:
        return "-"
    mean = sum(values) / len(values)
    half = stats.t.ppf(0.975, len(values) - 1) * stats.tstd(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    collapsed = sum(v <= CHANCE_TOP1 for v in values)
    note = f", {collapsed}/{len(values)} at chance" if collapsed else ""
    return f"{mean:.2f} ± {half:.2f} ({mean / a0:.3f}{note})"


def main(path: str) -> None:
    given = Path(path)
    per_trial = given.is_file() and "seed" in pl.read_parquet_schema(given)  # a new report's results.parquet: timm's
    rows = read_table(given if per_trial else trial_table(given if given.is_dir() else given.parent))
    clean = {r["model"]: r["top1_acc"] for r in rows.filter(pl.col("mode") == "baseline").iter_rows(named=True)}
    noisy = rows.filter((pl.col("mode") == "all") & (pl.col("noise_model") == "crosssim"))
    noisy = noisy.with_columns(pl.col("noise").map_elements(error_of, return_dtype=pl.Utf8).alias("error"))
    alphas = sorted(noisy["strength"].unique().to_list())
    print("| model (clean top-1 %) | error | draws | " + " | ".join(f"alpha {a:g}" for a in alphas) + " |")
    print("|---|---|---|" + "---|" * len(alphas))
    for model in sorted(clean, key=lambda m: int("".join(c for c in m if c.isdigit()) or 0)):
        for error in ("independent", "proportional"):
            part = noisy.filter((pl.col("model") == model) & (pl.col("error") == error))
            if part.is_empty():
                continue
            cells = [cell(part.filter(pl.col("strength") == a).sort("seed")["top1_acc"].to_list(), clean[model])
                     for a in alphas]
            n = part.group_by("strength").len()["len"].max()
            print(f"| {model} ({clean[model]:.2f}) | {error} | {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(*sys.argv[1:])
