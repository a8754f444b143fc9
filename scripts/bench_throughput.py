#!/usr/bin/env python3
"""Sweep throughput vs clean ONNX Runtime throughput, measured in one run on one machine.

Usage::

    python scripts/bench_throughput.py MODEL --data DATA [--mode all|per-layer] [--trials N]
        [--preprocess P] [--limit N] [--batch-size B] [--threads T] [--snr S] [--prefix/--no-prefix]
        [--alternatives] [--tune] [--json]

Every trial is run by the trial engine, exactly as ``onnxnoise bench`` / ``sweep`` run it: the
run context is prepared once (:func:`onnxnoise.engine.context.prepare_context`), trials come from
:func:`onnxnoise.engine.plan.plan_trials` and are executed by
:class:`onnxnoise.engine.executor.LocalExecutor` / :func:`onnxnoise.engine.trial.run_trial`. The only
inference this script runs itself is the clean reference pass (:func:`onnxnoise.engine.evaluate.evaluate`
on the clean session) and the alternatives it compares the engine against.

Prints (all ratios from this run):

- clean throughput: one session, data already in memory, ``--clean-passes`` timed passes;
- sweep throughput: images evaluated / wall time of ``--trials`` noisy trials, everything
  included (noise generation, session build, batching, counting, bookkeeping). ``all``
  runs :func:`onnxnoise.bench.run_bench` itself (its baseline trial included);
  ``per-layer`` runs the first ``--trials`` per-layer trials of the sweep plan (every layer at one
  seed, then the next seed) with a :class:`~onnxnoise.engine.executor.LocalExecutor`, with prefix
  reuse unless ``--no-prefix``;
- fixed per-trial overhead: noise generation + session build (suffix sessions with prefix reuse),
  timed inside the engine's own trials of the sweep, as % of a trial;
- data loading: first (decode) vs second (decoded-image cache hit) time;
- peak RSS and RSS drift (after trial ``--rss-from`` vs after the last trial);
- ``--alternatives``: per-trial cost of the engine's trial (new session with replaced
  initializers) vs one session with the weights as graph inputs, fed the engine's own noisy weights;
- ``--tune``: clean throughput over intra-op threads and graph optimization levels.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import onnxnoise.engine.trial as trial_module  # noqa: E402
from onnxnoise.bench import run_bench  # noqa: E402
from onnxnoise.config import NoiseConfig, RunConfig  # noqa: E402
from onnxnoise.data import open_dataset  # noqa: E402
from onnxnoise.data.cache import load_images_cached  # noqa: E402
from onnxnoise.engine.context import RunContext, prepare_context  # noqa: E402
from onnxnoise.engine.evaluate import evaluate  # noqa: E402
from onnxnoise.engine.executor import LocalExecutor, MemoryRecorder, Progress  # noqa: E402
from onnxnoise.engine.plan import Trial, plan_trials  # noqa: E402
from onnxnoise.engine.runtime import Session  # noqa: E402
from onnxnoise.engine.trial import run_trial  # noqa: E402
from onnxnoise.errors import OnnxNoiseError  # noqa: E402
from onnxnoise.report.stats import t_half_width  # noqa: E402

TARGETS = {
    "all_ratio": 0.95,
    "per_layer_prefix_ratio": 1.6,
    "overhead_pct": 3.0,
    "cache_speedup": 20.0,
    "rss_drift_pct": 5.0,
}


def rss_mb() -> float:
    """Current resident set size in MiB (Linux /proc)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return math.nan


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor())
    mem = next((int(line.split()[1]) / 1024**2 for line in open("/proc/meminfo") if line.startswith("MemTotal")), 0)
    return {"nproc": os.cpu_count(), "cpu": model, "ram_gib": round(mem, 1), "onnxruntime": ort.__version__,
            "python": platform.python_version()}


def clean_throughput(session: Session, context: RunContext, passes: int) -> tuple[float, float]:
    """Images per wall second and per CPU second (all threads) of clean ``evaluate`` passes over the data.

    :func:`~onnxnoise.engine.evaluate.evaluate` takes the same path as a trial (on CUDA: inputs on
    the device, IOBinding), so this is the reference a trial's evaluation is compared with.
    """
    evaluate(session, context.data)  # warm-up
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(passes):
        evaluate(session, context.data)
    images = passes * len(context.data)
    return images / (time.perf_counter() - started), images / (time.process_time() - cpu)


def time_data_loading(context: RunContext, cache_dir: Path) -> dict:
    """First (miss: decode + write) and second (hit) decoded-image load, in seconds."""
    config = context.config
    dataset = open_dataset(config.data, ground_truth=config.ground_truth, limit=config.limit, strict=config.strict)
    t0 = time.perf_counter()
    first = load_images_cached(dataset, context.data_config, cache_dir=cache_dir, strict=config.strict)
    t1 = time.perf_counter()
    second = load_images_cached(dataset, context.data_config, cache_dir=cache_dir, strict=config.strict)
    np.asarray(second.images[-1]).sum()  # touch the map
    t2 = time.perf_counter()
    assert first.images.shape == second.images.shape
    return {"first_s": t1 - t0, "second_s": t2 - t1, "speedup": (t1 - t0) / max(t2 - t1, 1e-9)}


class Recorder(Progress):
    """Records wall time and RSS after every trial, and the trials that failed."""

    def __init__(self) -> None:
        self.rss: list[float] = []
        self.ends: list[float] = []
        self.errors: list[str] = []

    def trial_done(self, row: dict) -> None:
        self.ends.append(time.perf_counter())
        self.rss.append(rss_mb())
        if row.get("error"):
            self.errors.append(f"{row['mode']} layer {row['layer_index']} seed {row['seed']}: {row['error']}")


@dataclass
class TrialTiming:
    """What :func:`instrument` measured inside the engine's trials.

    Attributes:
        noise_s: Seconds of each noise draw (``draw_noise`` as called by ``run_trial``).
        build_s: Seconds of each full-model session build with replaced weights.
        replacements: The last noisy weights passed to the session factory (``capture``).
        session: The last session built from them (``capture``).
    """

    noise_s: list[float] = field(default_factory=list)
    build_s: list[float] = field(default_factory=list)
    replacements: dict | None = None
    session: Session | None = None


class _TimedFactory:
    """Stands in for ``context.factory``: times every ``create`` with noisy weights."""

    def __init__(self, factory, timing: TrialTiming, capture: bool) -> None:
        self._factory, self._timing, self._capture = factory, timing, capture

    def __getattr__(self, name: str):
        return getattr(self._factory, name)

    def create(self, replacements=None):
        started = time.perf_counter()
        session = self._factory.create(replacements)
        if replacements:
            self._timing.build_s.append(time.perf_counter() - started)
            if self._capture:
                self._timing.replacements, self._timing.session = dict(replacements), session
        return session


@contextmanager
def instrument(context: RunContext, *, capture: bool = False) -> Iterator[TrialTiming]:
    """Time the noise draw and the session build inside every trial the engine runs meanwhile.

    Wraps the engine's own calls (``draw_noise`` in :mod:`onnxnoise.engine.trial` and
    ``context.factory.create``), so the figures are those of real trials, not of a separate loop.
    With ``capture`` the last noisy weights and session are kept (for ``--alternatives``).
    """
    timing = TrialTiming()
    draw, factory = trial_module.draw_noise, context.factory

    def timed_draw(*args, **kwargs):
        started = time.perf_counter()
        result = draw(*args, **kwargs)
        timing.noise_s.append(time.perf_counter() - started)
        return result

    trial_module.draw_noise = timed_draw
    context.factory = _TimedFactory(factory, timing, capture)
    try:
        yield timing
    finally:
        trial_module.draw_noise = draw
        context.factory = factory


@dataclass
class _WeightsAsInputs:
    """A :class:`~onnxnoise.engine.runtime.Session` look-alike feeding the noisy weights as graph inputs."""

    session: ort.InferenceSession
    input_name: str
    output_name: str
    feeds: dict
    provider: str = "CPUExecutionProvider"
    on_cuda: bool = False

    def run(self, batch: np.ndarray) -> np.ndarray:
        (out,) = self.session.run([self.output_name], {self.input_name: batch, **self.feeds})
        return out.reshape(out.shape[0], -1)


def weights_as_inputs(context: RunContext, strength: float) -> dict:
    """Per-trial cost: the engine's trial (new session per trial) vs one session with the weights as inputs.

    The engine runs one ``all`` trial (seed 0); its noisy weights are then fed as graph inputs to a
    session built once, and that session is evaluated on the same data. Both paths include the same
    noise draw; the counts must agree.
    """
    trial = Trial("all", None, tuple(layer.name for layer in context.selected), strength, 0)
    with instrument(context, capture=True) as timing:
        started = time.perf_counter()
        row = run_trial(context, trial)
        rebuilt_s = time.perf_counter() - started
    if row["error"] is not None:
        raise OnnxNoiseError(f"the engine's trial failed: {row['error']}")
    noise_s, build_s = timing.noise_s[-1], timing.build_s[-1]
    names = [n for layer in context.selected for n in layer.tensors]
    model = onnx.ModelProto()
    model.CopyFrom(context.model)
    moved = [t for t in model.graph.initializer if t.name in set(names)]
    kept = [t for t in model.graph.initializer if t.name not in set(names)]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    for t in moved:
        model.graph.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = context.config.threads
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {n: np.ascontiguousarray(timing.replacements.get(n, context.initializers[n])) for n in names}
    alternative = _WeightsAsInputs(session, context.io.input_name, context.io.output_name, feeds)
    x0, _ = next(iter(context.data.batches()))
    diff = float(np.abs(alternative.run(x0) - timing.session.run(x0)).max())
    started = time.perf_counter()
    counts = evaluate(alternative, context.data)
    inputs_s = noise_s + time.perf_counter() - started
    same = (counts.top1_correct, counts.top5_correct, counts.nan_count) == (
        row["top1_correct"], row["top5_correct"], row["nan_count"])
    return {"rebuild_trial_s": rebuilt_s, "rebuild_build_s": build_s, "noise_s": noise_s, "inputs_trial_s": inputs_s,
            "inputs_max_abs_diff": diff, "same_counts": same,
            "faster": "rebuild" if rebuilt_s <= inputs_s else "inputs"}


def tune(context: RunContext) -> list[dict]:
    """Clean throughput (one ``evaluate`` pass) over intra-op threads x graph optimization level."""
    model_bytes = context.factory.model_bytes(None)
    rows = []
    levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    for threads in (1, 2, 0):
        for name, level in levels.items():
            options = ort.SessionOptions()
            options.graph_optimization_level = level
            options.intra_op_num_threads = threads
            options.log_severity_level = 3
            t0 = time.perf_counter()
            ort_session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
            build = time.perf_counter() - t0
            session = Session(ort_session, context.io.input_name, context.io.output_name, "CPUExecutionProvider")
            evaluate(session, context.data)  # warm-up
            t0 = time.perf_counter()
            evaluate(session, context.data)
            rows.append({"threads": threads, "opt_level": name, "build_s": build,
                         "images_per_s": len(context.data) / (time.perf_counter() - t0)})
    return rows


def run_sweep_trials(args: argparse.Namespace, config: RunConfig, context: RunContext, rec: Recorder,
                     out: dict) -> tuple[int, float, float, TrialTiming]:
    """Run the measured trials with the engine; returns ``(trials, wall seconds, seconds per trial, timing)``."""
    if args.mode == "all":
        with instrument(context) as timing:
            started = time.perf_counter()
            result = run_bench(config, progress=rec, context=context)
            wall = time.perf_counter() - started
        return result.trials.height, wall, float(result.trials["seconds"].mean()), timing  # baseline + noisy
    # The plan has every seed (--trials of them); the measured trials are its first --trials per-layer trials:
    # every layer at seed 0, then every layer at seed 1, ...
    planned = [item for item in plan_trials(context, ("per-layer",)) if item.trial.mode == "per-layer"]
    planned = planned[: args.trials]
    executor = LocalExecutor(prefix_reuse=args.prefix)
    with instrument(context) as timing:
        started = time.perf_counter()
        executor.run(context, planned, MemoryRecorder(), rec)
        wall = time.perf_counter() - started
    if args.prefix:
        stats = context.prefix_runner().stats
        timing.build_s = [stats.build_seconds / len(planned)] * len(planned)  # suffix session builds
        out["prefix_stats"] = vars(stats)
        print("prefix reuse: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                            for k, v in vars(stats).items()))
    return len(planned), wall, wall / len(planned), timing


def interleaved_ratio(args: argparse.Namespace, config: RunConfig, context: RunContext) -> dict:
    """Sweep / clean throughput ratio over ``--repeats`` rounds of (clean pass, measured trials), interleaved.

    Each round times one clean pass and then the measured trials, so machine load hits both alike;
    the ratio is given as the mean over rounds with a two-sided 95% Student t interval.
    """
    session = context.factory.create(None)
    evaluate(session, context.data)  # warm-up
    ratios = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        evaluate(session, context.data)
        clean = len(context.data) / (time.perf_counter() - started)
        trials, wall, _, _ = run_sweep_trials(args, config, context, Recorder(), {})
        ratios.append(trials * len(context.data) / wall / clean)
    mean = float(np.mean(ratios))
    half = float(t_half_width(np.std(ratios, ddof=1), len(ratios))) if len(ratios) > 1 else math.nan
    return {"ratios": ratios, "mean": mean, "ci95": half}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--mode", choices=("all", "per-layer"), default="all")
    parser.add_argument("--trials", type=int, default=20,
                        help="noisy trials (per-layer: use a multiple of the layer count)")
    parser.add_argument("--snr", type=float, default=10.0)
    parser.add_argument("--preprocess", default=None, help="preset name (default: the model's own)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu",
                        help="execution provider for clean and sweep runs (default cpu)")
    parser.add_argument("--prefix", action=argparse.BooleanOptionalAction, default=True,
                        help="prefix reuse in per-layer mode (default on)")
    parser.add_argument("--clean-passes", type=int, default=2)
    parser.add_argument("--rss-from", type=int, default=10, help="RSS drift baseline: after this trial")
    parser.add_argument("--overhead-trials", type=int, default=5,
                        help="fixed overhead: mean over the last N noisy trials of the sweep (0: all of them)")
    parser.add_argument("--alternatives", action="store_true", help="measure weights-as-inputs vs rebuild")
    parser.add_argument("--tune", action="store_true", help="measure threads x optimization level")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: a fresh temporary folder")
    parser.add_argument("--json", action="store_true", help="also print all figures as one JSON object")
    parser.add_argument("--repeats", type=int, default=0,
                        help="only measure the sweep/clean ratio: this many interleaved rounds of (clean pass, "
                        "measured trials), printed with a 95%% t interval")
    args = parser.parse_args(argv)
    try:
        return _bench(args)
    except OnnxNoiseError as exc:
        print(f"bench_throughput: error: {exc}", file=sys.stderr)
        return 2


def _bench(args: argparse.Namespace) -> int:
    out: dict = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}}
    config = RunConfig(model=args.model, data=args.data, noise=NoiseConfig(strengths=(args.snr,), seeds=args.trials),
                       device=args.device, batch_size=args.batch_size, threads=args.threads, preset=args.preprocess,
                       limit=args.limit)
    t0 = time.perf_counter()
    context = prepare_context(config)
    out["prepare_s"] = time.perf_counter() - t0
    n = len(context.data)
    print(f"model {args.model.name}: {len(context.selected)} layers, {n} images, batch {context.data.batch_size}, "
          f"threads {args.threads or 'ort default'}, mode {args.mode}, {args.trials} trials, SNR {args.snr}, "
          f"{context.provider}")
    m = out["machine"]
    print(f"machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']} GiB RAM, onnxruntime {m['onnxruntime']}")
    if args.repeats:
        r = interleaved_ratio(args, config, context)
        print(f"sweep/clean throughput ratio over {args.repeats} interleaved rounds: {r['mean']:.3f}x "
              f"± {r['ci95']:.3f} (95% t interval); rounds {', '.join(f'{x:.3f}' for x in r['ratios'])}")
        if args.mode == "all" and r["mean"] - r["ci95"] > 1.0:
            print("whole-model trials cannot be faster than a clean pass: the interval above 1 is a measuring error")
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        out["data"] = time_data_loading(context, args.cache_dir or Path(tmp))
    d = out["data"]
    print(f"data loading: first {d['first_s']:.3f} s, second (cache hit) {d['second_s']:.4f} s "
          f"-> {d['speedup']:.1f}x")

    clean_session = context.factory.create(None)
    clean_before, cpu_before = clean_throughput(clean_session, context, args.clean_passes)
    cpu_started = time.process_time()

    rec = Recorder()
    trials, wall, trial_s, timing = run_sweep_trials(args, config, context, rec, out)
    layers = context.selected
    # Clean throughput measured before and after the sweep (the machine may be shared): mean of both.
    sweep_cpu = time.process_time() - cpu_started
    clean_after, cpu_after = clean_throughput(clean_session, context, args.clean_passes)
    clean = (clean_before + clean_after) / 2
    clean_cpu = (cpu_before + cpu_after) / 2
    out.update(clean_images_per_s=clean, clean_before=clean_before, clean_after=clean_after,
               clean_images_per_cpu_s=clean_cpu)
    print(f"clean ORT throughput: {clean:.1f} images/s (before sweep {clean_before:.1f}, after {clean_after:.1f}); "
          f"{clean_cpu:.1f} images per CPU-second")
    sweep = trials * n / wall
    out.update(sweep_images_per_cpu_s=trials * n / sweep_cpu, cpu_ratio=trials * n / sweep_cpu / clean_cpu)
    out.update(sweep_images_per_s=sweep, trials=trials, sweep_wall_s=wall, ratio=sweep / clean,
               failed=len(rec.errors))
    print(f"sweep: {trials} trials x {n} images in {wall:.1f} s -> {sweep:.1f} images/s, "
          f"ratio {sweep / clean:.3f}x clean; per CPU-second {out['sweep_images_per_cpu_s']:.1f}, "
          f"ratio {out['cpu_ratio']:.3f}x clean")
    for line in rec.errors:
        print(f"FAILED trial {line}")

    last = args.overhead_trials or None
    noise_s = timing.noise_s[-last:] if last else timing.noise_s
    build_s = timing.build_s[-last:] if last else timing.build_s
    oh = {"noise_s": float(np.mean(noise_s)) if noise_s else math.nan,
          "build_s": float(np.mean(build_s)) if build_s else math.nan,
          "measured_trials": len(noise_s)}
    oh["pct_of_trial"] = 100 * (oh["noise_s"] + oh["build_s"]) / trial_s
    oh["trial_s"] = trial_s
    out["overhead"] = oh
    build_what = "suffix session build" if args.mode == "per-layer" and args.prefix else "session build"
    print(f"fixed per-trial overhead (in the engine's trials): noise {1000 * oh['noise_s']:.1f} ms + {build_what} "
          f"{1000 * oh['build_s']:.1f} ms = {oh['pct_of_trial']:.2f}% of a {trial_s:.2f} s trial")

    rss = rec.rss
    k = min(args.rss_from, len(rss)) - 1
    if args.mode == "per-layer" and len(rss) - 1 - k >= len(layers):
        # The kept cut's size depends on the layer: compare trials at the same layer, whole cycles apart.
        k = len(rss) - 1 - len(layers) * ((len(rss) - 1 - k) // len(layers))
    drift = 100 * (rss[-1] - rss[k]) / rss[k] if rss else math.nan
    out.update(peak_rss_mb=peak_rss_mb(), rss_after_mb=rss[k] if rss else None, rss_last_mb=rss[-1] if rss else None,
               rss_drift_pct=drift)
    print(f"RSS: peak {peak_rss_mb():.0f} MiB; after trial {k + 1} {rss[k]:.0f} MiB, after trial {len(rss)} "
          f"{rss[-1]:.0f} MiB -> drift {drift:+.2f}%")

    if args.alternatives:
        alt = weights_as_inputs(context, args.snr)
        out["alternatives"] = alt
        print(f"per-trial alternatives (all layers noised): engine trial, new session via skeleton+patch "
              f"{alt['rebuild_trial_s']:.2f} s (build {1000 * alt['rebuild_build_s']:.0f} ms) vs weights as graph "
              f"inputs {alt['inputs_trial_s']:.2f} s (max |diff| {alt['inputs_max_abs_diff']:.2e}, "
              f"{'same' if alt['same_counts'] else 'DIFFERENT'} counts) -> {alt['faster']} is faster")
    if args.tune:
        out["tune"] = tune(context)
        for row in out["tune"]:
            print(f"tune: threads {row['threads'] or 'default'} opt {row['opt_level']:8s} "
                  f"{row['images_per_s']:8.1f} images/s (build {1000 * row['build_s']:.0f} ms)")

    checks = []
    if args.mode == "all":
        checks.append(("whole-model trials >= 0.95x clean (wall)", out["ratio"], out["ratio"] >= TARGETS["all_ratio"]))
        checks.append(("whole-model trials >= 0.95x clean (CPU time)", out["cpu_ratio"],
                       out["cpu_ratio"] >= TARGETS["all_ratio"]))
    elif args.prefix:
        for kind, key in (("wall", "ratio"), ("CPU time", "cpu_ratio")):
            checks.append((f"per-layer with prefix reuse >= 1.6x clean ({kind})", out[key],
                           out[key] >= TARGETS["per_layer_prefix_ratio"]))
    checks.append(("fixed per-trial overhead <= 3%", oh["pct_of_trial"], oh["pct_of_trial"] <= TARGETS["overhead_pct"]))
    if context.dataset.files is not None:  # in-memory datasets (CIFAR batches) are not decoded
        checks.append(("second data load >= 20x faster", d["speedup"], d["speedup"] >= TARGETS["cache_speedup"]))
    checks.append((f"RSS drift trial {k + 1}..{len(rss)} within 5%", drift, abs(drift) <= TARGETS["rss_drift_pct"]))
    checks.append(("no trial failed", float(len(rec.errors)), not rec.errors))
    for name, value, ok in checks:
        print(f"[{'MET' if ok else 'NOT MET'}] {name}: {value:.3f}")
    out["checks"] = [{"check": c, "value": v, "met": ok} for c, v, ok in checks]
    if args.json:
        print(json.dumps(out, default=float))
    return 1 if rec.errors else 0


if __name__ == "__main__":
    sys.exit(main())
