#!/usr/bin/env python
"""Re-run a random sample of the committed reproduction's trials with today's engine and compare counts.

Reads ``reports/cifar10-resnet/results.parquet`` (the committed trials, whatever engine wrote
them), groups them by sweep (model, mode, image count), picks ``--per-sweep`` trials of each
at random (fixed ``--seed``), re-runs each through :func:`onnxnoise.engine.trial.run_trial` in
the context of its sweep in ``experiments/cifar10-resnet.toml`` (the same settings), and prints
one line per trial: stored and new top-1 / top-5 / NaN counts. Models missing under the
experiment's paths are exported first (needs the ``export`` extra).

Usage::

    python scripts/recheck_committed.py [--per-sweep 3] [--seed 0]

Exit code 0 when every count matches, 1 otherwise, 2 on bad input.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

import polars as pl

from onnxnoise.engine.context import prepare_context
from onnxnoise.engine.plan import plan_trials
from onnxnoise.engine.trial import run_trial
from onnxnoise.errors import OnnxNoiseError
from onnxnoise.experiment import load_experiment

REPO = Path(__file__).resolve().parent.parent
COUNTS = ("top1_correct", "top5_correct", "nan_count")


def _trial_id(mode: str, layer_index, strength, seed) -> tuple:
    return mode, layer_index, None if strength is None or math.isinf(strength) else float(strength), seed


def _export_missing(experiment) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    import reproduce_paper  # noqa: PLC0415 - the export step of the reproduction

    reproduce_paper.export_missing(experiment)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=REPO / "reports/cifar10-resnet/results.parquet")
    parser.add_argument("--experiment", type=Path, default=REPO / "experiments/cifar10-resnet.toml")
    parser.add_argument("--per-sweep", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        experiment = load_experiment(args.experiment)
        _export_missing(experiment)
        committed = pl.read_parquet(args.results).filter(pl.col("error").is_null())
        mismatches = checked = 0
        rng = random.Random(args.seed)
        for name, config in experiment.sweeps:
            context = prepare_context(config.run)
            planned = {_trial_id(i.trial.mode, i.trial.layer_index, i.trial.strength, i.trial.seed): i.trial
                       for i in plan_trials(context, config.modes)}
            rows = committed.filter((pl.col("model") == config.run.model.name)
                                    & pl.col("mode").is_in(list(config.modes))
                                    & (pl.col("images") == len(context.data))).rows(named=True)
            same_file = {r["model_sha256"] for r in rows} == {context.model_sha256}
            print(f"{name} {','.join(config.modes)} on {len(context.data)} images: {len(rows)} committed trials; "
                  f"model file {'identical' if same_file else 'NOT identical'} to the committed one", flush=True)
            for row in rng.sample(rows, min(args.per_sweep, len(rows))):
                trial = planned[_trial_id(row["mode"], row["layer_index"], row["snr"], row["seed"])]
                started = time.perf_counter()
                again = run_trial(context, trial, prefix_reuse=config.prefix_reuse)
                equal = all(again[c] == row[c] for c in COUNTS)
                mismatches += not equal
                checked += 1
                print(f"  {'ok  ' if equal else 'DIFF'} {trial.mode} layer {trial.layer_index} SNR {trial.strength} "
                      f"seed {trial.seed}: committed {[row[c] for c in COUNTS]}, now {[again[c] for c in COUNTS]} "
                      f"({time.perf_counter() - started:.1f} s)", flush=True)
    except OnnxNoiseError as exc:
        print(f"recheck_committed: error: {exc}", file=sys.stderr)
        return 2
    print(f"{checked} committed trials re-run: {checked - mismatches} equal, {mismatches} different")
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
