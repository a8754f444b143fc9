#!/usr/bin/env python3
"""Trials per second of the local executor vs single-threaded Ray workers, and the Ray scaling efficiency.

Usage::

    python scripts/bench_ray.py MODEL --data DATA [--limit N] [--mode all|per-layer] [--trials N]
        [--repeats R] [--configs local:1,local:0,ray:1,ray:2] [--preprocess P] [--batch-size B]
        [--snr S] [--address ADDR] [--json]

Every trial is the engine's (:func:`onnxnoise.engine.trial.run_trial`), run by the executor a
sweep uses: :class:`~onnxnoise.engine.executor.LocalExecutor` (``local:T``: ONNX Runtime with T
intra-op threads, ``0`` = its default) or :class:`~onnxnoise.engine.ray_executor.RayExecutor`
(``ray:N``: N workers of one thread each), on one prepared run context. Rows are recorded in
memory.

Each of ``--repeats`` rounds runs every configuration once, in an order rotated from round to
round, so machine load and warming hit all of them alike (the interleaved design of
``scripts/bench_throughput.py --repeats``). A round's Ray workers are started, loaded and warmed
with the baseline trial before the clock starts, and stopped after; start-up is reported apart.
Per round the script takes trials/s of each configuration, its ratio to the first configuration,
and the scaling efficiency ``E = tps(ray:2) / (2 x tps(ray:1))``; it prints each as the mean over
rounds with a two-sided 95% Student t interval (:func:`onnxnoise.report.stats.t_half_width`).

Modes: ``all`` (default) measures whole-model trials (``--trials`` seeds at one SNR: independent,
equal work); ``per-layer`` measures the first ``--trials`` per-layer trials of the plan (prefix
reuse on, each Ray worker keeping its own cut).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from onnxnoise.config import NoiseConfig, RunConfig  # noqa: E402
from onnxnoise.engine.context import RunContext, prepare_context  # noqa: E402
from onnxnoise.engine.executor import Executor, LocalExecutor, MemoryRecorder  # noqa: E402
from onnxnoise.engine.plan import plan_trials  # noqa: E402
from onnxnoise.engine.ray_executor import RayExecutor  # noqa: E402
from onnxnoise.errors import OnnxNoiseError  # noqa: E402
from onnxnoise.report.stats import t_half_width  # noqa: E402

#: Issue 12: two single-threaded workers reach at least this fraction of linear scaling.
TARGET_EFFICIENCY = 0.8


def parse_configs(text: str) -> list[tuple[str, int]]:
    """``"local:1,ray:2"`` -> ``[("local", 1), ("ray", 2)]`` (local: threads, ray: workers)."""
    configs = []
    for part in text.split(","):
        kind, _, number = part.strip().partition(":")
        if kind not in ("local", "ray") or not number.isdigit() or (kind == "ray" and int(number) < 1):
            raise OnnxNoiseError(f"--configs: expected local:THREADS or ray:WORKERS, got {part!r}")
        configs.append((kind, int(number)))
    if len(set(configs)) != len(configs):
        raise OnnxNoiseError(f"--configs lists a configuration twice: {text}")
    return configs


def label(config: tuple[str, int]) -> str:
    kind, number = config
    if kind == "local":
        return f"local, {number or 'default'} thread{'s' if number != 1 else ''}"
    return f"ray, {number} worker{'s' if number != 1 else ''} x 1 thread"


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and 95% t half-width (NaN for one value)."""
    mean = float(np.mean(values))
    half = float(t_half_width(np.std(values, ddof=1), len(values))) if len(values) > 1 else math.nan
    return mean, half


class Bench:
    """The prepared contexts and measured trials of one benchmark."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.configs = parse_configs(args.configs)
        self.contexts: dict[int, RunContext] = {}
        for threads in sorted({n for kind, n in self.configs if kind == "local"} | {1}):
            self.contexts[threads] = prepare_context(self.run_config(threads))
        base = self.contexts[1]
        planned = plan_trials(base, (args.mode,))
        self.baseline = [item for item in planned if item.trial.mode == "baseline"]
        self.trials = [item for item in planned if item.trial.mode != "baseline"][: args.trials]
        for context in self.contexts.values():  # the clean reference of paired counts, outside the clock
            LocalExecutor().run(context, self.baseline, MemoryRecorder())
        self.startup: dict[tuple[str, int], list[float]] = {}

    def run_config(self, threads: int) -> RunConfig:
        a = self.args
        seeds = a.trials if a.mode == "all" else 1 + a.trials // 2  # per-layer: layers x seeds >= trials
        return RunConfig(model=a.model, data=a.data, noise=NoiseConfig(strengths=(a.snr,), seeds=seeds),
                         device="cpu", batch_size=a.batch_size, threads=threads, preset=a.preprocess, limit=a.limit)

    def executor(self, config: tuple[str, int]) -> tuple[Executor, RunContext]:
        kind, number = config
        if kind == "local":
            return LocalExecutor(), self.contexts[number]
        context = self.contexts[1]
        executor = RayExecutor(address=self.args.address, workers=number, threads=1)
        started = time.perf_counter()
        executor.run(context, self.baseline, MemoryRecorder())  # start, load and warm the workers
        self.startup.setdefault(config, []).append(time.perf_counter() - started)
        return executor, context

    def trials_per_s(self, config: tuple[str, int]) -> float:
        executor, context = self.executor(config)
        try:
            recorder = MemoryRecorder()
            started = time.perf_counter()
            result = executor.run(context, self.trials, recorder)
            wall = time.perf_counter() - started
        finally:
            if isinstance(executor, RayExecutor):
                executor.close_workers()
        if result.failed or result.ran != len(self.trials):
            errors = [row["error"] for row in recorder.rows if row["error"]]
            raise OnnxNoiseError(f"{label(config)}: {result.ran} of {len(self.trials)} trials ran, "
                                 f"{result.failed} failed: {errors[:1]}")
        return len(self.trials) / wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None, help="images (class-stratified subset)")
    parser.add_argument("--mode", choices=("all", "per-layer"), default="all")
    parser.add_argument("--trials", type=int, default=6, help="measured trials per configuration and round "
                        "(a multiple of every worker count keeps workers equally busy)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--configs", default="local:1,local:0,ray:1,ray:2",
                        help="comma-separated local:THREADS (0 = ONNX Runtime's default) and ray:WORKERS; ratios "
                        "are to the first")
    parser.add_argument("--snr", type=float, default=10.0)
    parser.add_argument("--preprocess", default=None, help="preset name (default: the model's own)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--address", default=None, help="Ray cluster to join (default: a local Ray instance)")
    parser.add_argument("--json", action="store_true", help="also print all figures as one JSON object")
    args = parser.parse_args(argv)
    try:
        return _bench(args)
    except OnnxNoiseError as exc:
        print(f"bench_ray: error: {exc}", file=sys.stderr)
        return 2


def _bench(args: argparse.Namespace) -> int:
    if args.trials < 1 or args.repeats < 1:
        raise OnnxNoiseError("--trials and --repeats must be >= 1")
    bench = Bench(args)
    configs = bench.configs
    context = bench.contexts[1]
    print(f"model {args.model.name}: {len(context.data)} images, batch {context.data.batch_size}, mode {args.mode}, "
          f"{len(bench.trials)} trials per configuration and round, {args.repeats} rounds; {os.cpu_count()} CPUs")
    tps: dict[tuple[str, int], list[float]] = {config: [] for config in configs}
    for round_ in range(args.repeats):
        shift = round_ % len(configs)
        for config in configs[shift:] + configs[:shift]:
            tps[config].append(bench.trials_per_s(config))
        print(f"round {round_ + 1}: " + ", ".join(f"{label(c)} {tps[c][-1]:.3f}" for c in configs) + " trials/s")
    first = configs[0]
    out: dict = {"model": str(args.model), "images": len(context.data), "mode": args.mode,
                 "trials": len(bench.trials), "repeats": args.repeats, "cpus": os.cpu_count(), "configs": {}}
    print(f"\n{'configuration':32s} {'trials/s':>18s} {'ratio to ' + label(first):>34s}")
    for config in configs:
        rate, rate_ci = mean_ci(tps[config])
        ratio, ratio_ci = mean_ci([a / b for a, b in zip(tps[config], tps[first])])
        start = bench.startup.get(config)
        out["configs"][label(config)] = {"trials_per_s": tps[config], "mean": rate, "ci95": rate_ci,
                                         "ratio": ratio, "ratio_ci95": ratio_ci, "startup_s": start}
        print(f"{label(config):32s} {rate:10.3f} ± {rate_ci:5.3f} {ratio:26.3f} ± {ratio_ci:5.3f}"
              + (f"   (start-up {np.mean(start):.1f} s, not timed)" if start else ""))
    if ("ray", 1) in tps and ("ray", 2) in tps:
        eff, eff_ci = mean_ci([b / (2 * a) for a, b in zip(tps[("ray", 1)], tps[("ray", 2)])])
        out["scaling_efficiency"] = {"mean": eff, "ci95": eff_ci, "target": TARGET_EFFICIENCY}
        met = "MET" if eff >= TARGET_EFFICIENCY else "NOT MET"
        print(f"\nscaling efficiency, 2 Ray workers: tps(ray:2) / (2 x tps(ray:1)) = {eff:.3f} ± {eff_ci:.3f} "
              f"(95% t interval over {args.repeats} rounds) [{met}: >= {TARGET_EFFICIENCY}]")
    if args.json:
        print(json.dumps(_nulls(out), allow_nan=False))
    return 0


def _nulls(value):
    """``value`` with non-finite floats as None (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nulls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nulls(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
