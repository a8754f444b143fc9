#!/usr/bin/env python
"""The paper's ImageNet comparison as far as the weights in ../shared allow (issue 13, point 4).

Runs the five experiment files of ``experiments/imagenet-paper/`` (EfficientNet-Lite0 and SqueezeNet 1.0
deep compression on imagenet-val1300 and imagenette-val500; CIFAR-10 ResNet44 with BatchNorm folded) and
writes ``reports/imagenet-paper/report.md``: the tool's tables and figures for the complete sweeps, a status
table, and the paper's published numbers (``../shared/PAPER.md``) beside ours (Table III, layer and parameter
counts, and the BN-kept vs BN-folded ResNet44 A_avr beside Fagbohungbe & Qian, IEEE Access 2022).

One experiment file per model and dataset because a file holds one ``[data]`` table (dataset and
preprocessing), and the two ImageNet models need different preprocessing. Order of the sweeps: noise in all
layers first (the headline, and cheapest), then one layer at a time ordered by the sweep's first seed (so
every model gets its first draws before any gets more), ties in the order of :data:`FILES`.

Usage::

    nohup nice -n 15 .venv/bin/python scripts/imagenet_paper.py > /tmp/imagenet-paper.log 2>&1 &  # resumable
    .venv/bin/python scripts/imagenet_paper.py --report-only        # rebuild the report from what is stored

Every trial is run by the trial engine (:func:`onnxnoise.sweep.run_sweep`), through the same helpers as
``scripts/reproduce_paper.py`` (export of missing CIFAR models, log progress, sweep status).

Exit codes: 0 done, 1 a trial failed (its row carries the error; re-run to retry it), 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reproduce_paper  # noqa: E402  (scripts/ is not a package)

from onnxnoise.config import SweepConfig  # noqa: E402
from onnxnoise.engine.context import prepare_context  # noqa: E402
from onnxnoise.errors import OnnxNoiseError  # noqa: E402
from onnxnoise.experiment import Experiment, load_experiment  # noqa: E402
from onnxnoise.options import resolve_seeds  # noqa: E402
from onnxnoise.report.study import STORE_NAME, collect_runs, collect_trials, write_report  # noqa: E402
from onnxnoise.store.store import open_store  # noqa: E402
from onnxnoise.sweep import run_sweep  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = REPO / "experiments" / "imagenet-paper"
#: Run order among sweeps of equal rank (see the module docstring): ResNet44's per-layer sweep before the
#: ImageNet per-layer sweeps, val1300 before imagenette for noise in all layers.
FILES = ("resnet44-bn-vs-folded.toml", "efficientnet-lite0-val1300.toml", "squeezenet-val1300.toml",
         "efficientnet-lite0-imagenette.toml", "squeezenet-imagenette.toml")


def ordered_sweeps(experiments: list[Experiment]) -> list[tuple[Experiment, str, SweepConfig]]:
    """All sweeps of the experiments in run order: mode ``all`` first, then by first seed, then file order."""
    items = [(experiment, name, config) for experiment in experiments for name, config in experiment.sweeps]

    def rank(item: tuple[int, tuple[Experiment, str, SweepConfig]]) -> tuple[int, int, int]:
        number, (_, _, config) = item
        return (0 if config.modes == ("all",) else 1, min(resolve_seeds(config.run.noise.seeds)), number)

    return [item for _, item in sorted(enumerate(items), key=rank)]


def run_all(experiments: list[Experiment]) -> int:
    """Run every sweep (finished trials are skipped); return the number of failed trials."""
    for experiment in experiments:
        reproduce_paper.export_missing(experiment)
    failed = 0
    for experiment, name, config in ordered_sweeps(experiments):
        context = prepare_context(config.run)
        label = f"{experiment.source.stem} {name} {'+'.join(config.modes)}"
        with open_store(experiment.run_dir(name) / STORE_NAME) as store:
            result = run_sweep(config, store, context=context,
                               progress=reproduce_paper._LogProgress(label, config.run.noise.noise_model, every=10))
        del context
        print(f"[{label}] {result.planned} planned, {result.done} already done, {result.ran} run, "
              f"{result.failed} failed", flush=True)
        failed += result.failed
    return failed


def write(experiments: list[Experiment], out: Path) -> None:
    """Write report.md (complete sweeps only), a status table and the paper's numbers beside ours."""
    import _imagenet_paper_tables as tables  # read when the report is written, not when a long run starts

    status, unfinished = [], set()
    for experiment in experiments:
        rows, keys = reproduce_paper.sweep_status(experiment)
        status += [[experiment.source.name, *row[:-1],
                    row[-1] if row[-1] == "complete" else "**not finished, not in the tables below**"]
                   for row in rows]
        unfinished |= keys
    run_dirs = sorted({experiment.run_dir(name) for experiment in experiments for name in experiment.models
                       if (experiment.run_dir(name) / STORE_NAME).is_file()})
    if not run_dirs:
        raise OnnxNoiseError(f"no trial stores under {experiments[0].out}; run the sweeps first")
    trials = collect_trials(run_dirs).filter(~pl.col("key").is_in(list(unfinished)))
    runs = collect_runs(run_dirs)
    # report.md's summary tables tell rows apart by model and run/noise settings, not by dataset, so one model
    # measured on two datasets would read as duplicate rows: the tables here name the model "MODEL @ DATASET".
    labelled = [frame.with_columns(pl.concat_str([pl.col("model"), pl.lit(" @ "), pl.col("dataset")]).alias("model"))
                for frame in (trials, runs)]
    files = write_report(*labelled, out, title="onnxnoise: the paper's ImageNet comparison (issue 13)")
    text = files.markdown.read_text()
    head, _, tail = text.partition("## Figures")
    first, _, rest = head.partition("## Models and baselines")
    table = ["## Sweeps of this study", "",
             "From `experiments/imagenet-paper/*.toml`; only complete sweeps enter the tables and figures. Resume "
             "the rest with `nohup nice -n 15 .venv/bin/python scripts/imagenet_paper.py > /tmp/imagenet-paper.log "
             "2>&1 &`.", "",
             "| file | model | mode | images | noisy trials planned | stored | status |",
             "|---|---|---|---|---|---|---|", *["| " + " | ".join(row) + " |" for row in status], ""]
    beside = tables.beside_paper(trials, runs, REPO / "reports" / "cifar10-resnet" / "results.parquet")
    files.markdown.write_text(first + "\n".join(table) + "\n## Models and baselines" + rest + beside
                              + "\n## Figures" + tail)
    print(f"wrote {files.markdown} ({trials.height} trials from complete sweeps)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "imagenet-paper", help="report folder")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the report from the stores")
    args = parser.parse_args(argv)
    try:
        experiments = [load_experiment(EXPERIMENTS / name) for name in FILES]
        failed = 0 if args.report_only else run_all(experiments)
        write(experiments, args.out)
    except OnnxNoiseError as exc:
        print(f"imagenet_paper: error: {exc}", file=sys.stderr)
        return 2
    if failed:
        print(f"imagenet_paper: {failed} trial(s) failed; their rows carry the error and they are re-run "
              "on the next run", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
