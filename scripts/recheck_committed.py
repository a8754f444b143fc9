#!/usr/bin/env python
"""Re-run a random sample of committed report trials with today's engine: same keys, same counts.

For each ``REPORT=EXPERIMENT`` pair (default: every committed report made from an experiment file
here), reads the report's trial table (``REPORT/trials.parquet``; ``results.parquet`` before the rename: the committed trials, whatever engine wrote them), plans
each sweep of ``EXPERIMENT`` with today's engine, and

* counts the committed rows whose ``key`` today's plan still produces (trial keys unchanged), and
* re-runs ``--per-sweep`` of them at random (fixed ``--seed``) through
  :func:`onnxnoise.engine.trial.run_trial` in the context of their sweep, printing one line per
  trial: committed and new counts (images, top-1, top-5, NaN, the draw's counters, paired counts; those
  the committed row has).

Where no committed key is today's, rows are matched by (mode, layer, strength, seed) within the
sweep's model file, image count and noise settings, and the key fields that differ are named:
the version 1 engine's rows (``reports/cifar10-resnet``: other keys, ``snr`` instead of
``strength``), and rows whose dataset fingerprint changed since they were committed.
Models missing under the experiment's paths are exported first (needs the ``export`` extra).

Usage::

    python scripts/recheck_committed.py [--per-sweep 3] [--seed 0] [REPORT=EXPERIMENT ...] [--check FOLDER ...]

``onnxnoise check`` reports (``reports/*/*/check.json``) are re-run from their own re-check command:
each committed whole-model draw is planned at its strength and seed and matched by key.

Exit code 0 when every re-run count matches and every sweep has committed rows, 1 otherwise, 2 on
bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import shlex
import sys
import time
from pathlib import Path

import polars as pl

from onnxnoise.cli.flags import given_options
from onnxnoise.cli.parser import build_parser
from onnxnoise.config import RunConfig
from onnxnoise.engine.context import prepare_context
from onnxnoise.engine.plan import plan_trials
from onnxnoise.engine.trial import run_trial
from onnxnoise.errors import OnnxNoiseError
from onnxnoise.settings import config_values
from onnxnoise.store.schema import COUNT, COUNTER, PAIRED, canonical_json, column_names
from onnxnoise.experiment import load_experiment
from onnxnoise.report.written import read_table, trial_table

REPO = Path(__file__).resolve().parent.parent

#: Committed reports and the experiment files that made them.
DEFAULT_PAIRS: tuple[str, ...] = (
    "reports/cifar10-resnet=experiments/cifar10-resnet.toml",
    "reports/cifar10-resnet-seeds=experiments/cifar10-resnet-seeds.toml",
    "reports/analog-devices=experiments/analog-devices.toml",
    "reports/imagenet-paper=experiments/imagenet-paper/resnet44-bn-vs-folded.toml",
    "reports/imagenet-paper=experiments/imagenet-paper/squeezenet-imagenette.toml",
    "reports/imagenet-paper=experiments/imagenet-paper/efficientnet-lite0-imagenette.toml",
    "reports/imagenet-paper=experiments/imagenet-paper/squeezenet-val1300.toml",
    "reports/imagenet-paper=experiments/imagenet-paper/efficientnet-lite0-val1300.toml",
)
#: Compared columns: the evaluation counts, the counters and the paired counts (as the store declares them).
COMPARED = column_names(COUNT, COUNTER, PAIRED)


def _trial_id(mode: str, layer_index, strength, seed) -> tuple:
    return mode, layer_index, None if strength is None or math.isinf(strength) else float(strength), seed


def _export_missing(experiment) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    import reproduce_paper  # noqa: PLC0415 - the export step of the reproduction

    reproduce_paper.export_missing(experiment)


def _differing_fields(row: dict, context) -> list[str]:
    """Names of the key fields whose committed value (the row's ``context`` JSON) differs from today's."""
    if not row.get("context"):
        return []
    stored, now = json.loads(row["context"]), json.loads(json.dumps(context.key_fields(), default=str))
    return sorted(k for k in set(stored) | set(now) if stored.get(k) != now.get(k))


def _matched_rows(committed: pl.DataFrame, planned: dict, context, config) -> tuple[list[tuple], str]:
    """``[(row, trial)]`` of committed rows this sweep plans today, and how they were matched.

    By key when any committed key is today's; otherwise by (mode, layer, strength, seed) among the
    rows of the same model file, image count and noise settings, saying which key fields differ.
    """
    keyed = [(row, planned[row["key"]]) for row in committed.filter(pl.col("key").is_in(list(planned)))
             .rows(named=True)]
    if keyed:
        return keyed, "by key"
    strength = "snr" if "snr" in committed.columns else "strength"
    same = (pl.col("model_sha256") == context.model_sha256) & pl.col("mode").is_in(list(config.modes)) \
        & (pl.col("images") == len(context.data))
    if strength == "strength":  # version 2 rows name their noise: compare like with like
        noise = canonical_json(config.run.noise.settings())
        same = same & (pl.col("noise_model") == config.run.noise.model) & (pl.col("noise") == noise)
    by_id = {_trial_id(t.mode, t.layer_index, t.strength, t.seed): t for t in planned.values()}
    rows = committed.filter(same).rows(named=True)
    pairs = [(row, by_id.get(_trial_id(row["mode"], row["layer_index"], row[strength], row["seed"]))) for row in rows]
    matched = [(row, trial) for row, trial in pairs if trial is not None]
    why = "version 1 keys" if strength == "snr" else \
        f"keys differ in {', '.join(_differing_fields(rows[0], context)) or 'an unrecorded field'}" if rows else "no rows"
    return matched, f"by (mode, layer, strength, seed), {why}"


def _rerun(context, trial, row: dict, prefix_reuse: bool = True) -> bool:
    """Run ``trial`` again and print its committed and new counts; ``True`` when they are equal."""
    started = time.perf_counter()
    again = run_trial(context, trial, prefix_reuse=prefix_reuse)
    columns = [c for c in COMPARED if row.get(c) is not None]
    equal = all(again[c] == row[c] for c in columns)
    print(f"  {'ok  ' if equal else 'DIFF'} {trial.mode} layer {trial.layer_index} strength {trial.strength} "
          f"seed {trial.seed}: committed {[row[c] for c in columns]}, now {[again[c] for c in columns]} "
          f"({time.perf_counter() - started:.1f} s)", flush=True)
    return equal


def recheck_check_report(folder: Path, per_report: int, rng: random.Random) -> tuple[int, int, int]:
    """``(trials re-run, of them different, 1 if no gate row is keyed as today)`` for one ``check`` report.

    The run settings come from the report's own re-check command (``check.json``); each committed
    whole-model draw is planned again at its strength and seed and matched by key, so a protection
    plan's draws (other layers) are left aside.
    """
    report = json.loads((folder / "check.json").read_text())
    args = build_parser().parse_args(shlex.split(report["recheck_command"])[1:])
    options = given_options(args, "check", RunConfig)
    base = RunConfig(**{**config_values(RunConfig, options), "model": args.model, "data": args.data})
    committed = read_table(folder / "trials.parquet").filter(pl.col("error").is_null() & (pl.col("mode") == "all"))
    loaded = prepare_context(base)
    matched = []
    for row in committed.rows(named=True):
        noise = dataclasses.replace(base.noise, strengths=(row["strength"],), seeds=(row["seed"],))
        context = dataclasses.replace(loaded, config=dataclasses.replace(base, noise=noise))  # same loaded model
        trial = next(item for item in plan_trials(context, ("all",)) if item.trial.mode == "all")
        if trial.key == row["key"]:
            matched.append((row, trial.trial, context))
    print(f"{folder.parent.name} / {folder.name}: {len(matched)} of {committed.height} committed draws keyed as "
          f"today", flush=True)
    checked = different = 0
    for row, trial, context in rng.sample(matched, min(per_report, len(matched))):
        different += not _rerun(context, trial, row)
        checked += 1
    return checked, different, int(not matched)


def recheck(report: Path, experiment_path: Path, per_sweep: int, rng: random.Random) -> tuple[int, int, int]:
    """``(trials re-run, of them different, sweeps without a committed row, sweeps matched without keys)``."""
    experiment = load_experiment(experiment_path)
    _export_missing(experiment)
    committed = read_table(trial_table(report)).filter(pl.col("error").is_null())
    checked = different = unmatched = rekeyed = 0
    for name, config in experiment.sweeps:
        context = prepare_context(config.run)
        planned = {item.key: item.trial for item in plan_trials(context, config.modes)}
        matched, how = _matched_rows(committed, planned, context, config)
        print(f"{report.name} / {name} {','.join(config.modes)} on {len(context.data)} images: "
              f"{len(matched)} of {len(planned)} planned trials committed, matched {how}", flush=True)
        unmatched += not matched
        rekeyed += bool(matched) and how != "by key"
        for row, trial in rng.sample(matched, min(per_sweep, len(matched))):
            different += not _rerun(context, trial, row, config.prefix_reuse)
            checked += 1
        del context  # one sweep's decoded images in memory at a time
    return checked, different, unmatched, rekeyed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="*", metavar="REPORT=EXPERIMENT",
                        help="a committed report folder and the experiment file that made it")
    parser.add_argument("--check", action="append", type=Path, default=[], metavar="FOLDER",
                        help="a committed `onnxnoise check` report folder (check.json + trials.parquet)")
    parser.add_argument("--per-sweep", type=int, default=3, help="trials re-run per sweep or check report")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.pairs and not args.check:  # everything committed
        args.pairs = list(DEFAULT_PAIRS)
        args.check = sorted(p.parent.relative_to(REPO) for p in REPO.glob("reports/*/*/check.json"))
    rng = random.Random(args.seed)
    checked = different = unmatched = rekeyed = 0
    try:
        for pair in args.pairs:
            report, sep, experiment = pair.partition("=")
            if not sep:
                print(f"recheck_committed: error: expected REPORT=EXPERIMENT, got {pair!r}", file=sys.stderr)
                return 2
            c, d, u, r = recheck(REPO / report, REPO / experiment, args.per_sweep, rng)
            checked, different, unmatched, rekeyed = checked + c, different + d, unmatched + u, rekeyed + r
        for folder in args.check:
            c, d, u = recheck_check_report(REPO / folder, args.per_sweep, rng)
            checked, different, unmatched = checked + c, different + d, unmatched + u
    except OnnxNoiseError as exc:
        print(f"recheck_committed: error: {exc}", file=sys.stderr)
        return 2
    print(f"{checked} committed trials re-run: {checked - different} equal, {different} different; "
          f"{unmatched} sweep(s) or report(s) with no committed trial, {rekeyed} matched without their committed "
          f"keys")
    return 0 if different == 0 and unmatched == 0 else 1

if __name__ == "__main__":
    sys.exit(main())
