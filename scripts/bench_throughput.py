#!/usr/bin/env python3
"""Sweep throughput vs clean ONNX Runtime throughput, measured in one run on one machine.

Usage::

    python scripts/bench_throughput.py MODEL --data DATA [--mode all|per-layer] [--trials N]
        [--preprocess P] [--limit N] [--batch-size B] [--threads T] [--snr S] [--prefix/--no-prefix]
        [--alternatives] [--tune] [--json]

Prints (all ratios from this run):

- clean throughput: one session, data already in memory, ``--clean-passes`` timed passes;
- sweep throughput: images evaluated / wall time of ``--trials`` noisy trials, everything
  included (noise generation, session build, batching, counting, bookkeeping). ``all``
  runs :func:`onnxnoise.bench.run_bench` itself (its baseline trial included);
  ``per-layer`` visits layers in the sweep plan's order (:func:`onnxnoise.engine.plan.expand_sweep`:
  every layer at one seed, then the next seed), with :class:`onnxnoise.engine.prefix.PrefixRunner`
  unless ``--no-prefix``;
- fixed per-trial overhead: noise generation + session build, as % of a trial;
- data loading: first (decode) vs second (decoded-image cache hit) time;
- peak RSS and RSS drift (after trial ``--rss-from`` vs after the last trial);
- ``--alternatives``: per-trial cost of a new session with replaced initializers (the
  current skeleton+patch path) vs one session with the weights as graph inputs;
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
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from onnxnoise.bench import BenchConfig, BenchProgress, prepare_bench, run_bench  # noqa: E402
from onnxnoise.data import DataConfig, open_dataset  # noqa: E402
from onnxnoise.data.cache import load_images_cached  # noqa: E402
from onnxnoise.engine.evaluate import evaluate  # noqa: E402
from onnxnoise.model.graph import load_model  # noqa: E402
from onnxnoise.noise.legacy import NoiseSpec, apply_noise  # noqa: E402
from onnxnoise.engine.plan import expand_sweep  # noqa: E402
from onnxnoise.engine.prefix import PrefixRunner  # noqa: E402

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


def clean_throughput(session, data, passes: int) -> tuple[float, float]:
    """Images per wall second and per CPU second (all threads) of ``session`` over ``data``."""
    def one_pass() -> None:
        if session.on_cuda:  # the same path trials take: inputs on the device, IOBinding
            for x, _ in data.device_batches():
                session.run_bound(x)
        else:
            for x, _ in data.batches():
                session.run(x)

    one_pass()  # warm-up
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(passes):
        one_pass()
    images = passes * len(data)
    return images / (time.perf_counter() - started), images / (time.process_time() - cpu)


def time_data_loading(prep, cache_dir: Path) -> dict:
    """First (miss: decode + write) and second (hit) decoded-image load, in seconds."""
    cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in prep.data_config.items()}
    dataset = open_dataset(prep.config.data, ground_truth=prep.config.ground_truth, limit=prep.config.limit)
    config = DataConfig(**cfg)
    t0 = time.perf_counter()
    first = load_images_cached(dataset, config, cache_dir=cache_dir)
    t1 = time.perf_counter()
    second = load_images_cached(dataset, config, cache_dir=cache_dir)
    np.asarray(second.images[-1]).sum()  # touch the map
    t2 = time.perf_counter()
    assert first.images.shape == second.images.shape
    return {"first_s": t1 - t0, "second_s": t2 - t1, "speedup": (t1 - t0) / max(t2 - t1, 1e-9)}


class Recorder(BenchProgress):
    """Records wall time and RSS after every trial."""

    def __init__(self) -> None:
        self.rss: list[float] = []
        self.ends: list[float] = []

    def trial_done(self, row: dict) -> None:
        self.ends.append(time.perf_counter())
        self.rss.append(rss_mb())


def fixed_overhead(prep, snr: float, count: int, layers_for) -> dict:
    """Mean seconds of noise generation and session build over ``count`` trials."""
    noise_s, build_s = [], []
    for t in range(count):
        t0 = time.perf_counter()
        rep = apply_noise(prep.initializers, layers_for(t), NoiseSpec(snr=snr, seed=t)).arrays
        t1 = time.perf_counter()
        prep.factory.create(rep)
        t2 = time.perf_counter()
        noise_s.append(t1 - t0)
        build_s.append(t2 - t1)
    return {"noise_s": float(np.mean(noise_s)), "build_s": float(np.mean(build_s))}


def weights_as_inputs(prep, snr: float) -> dict:
    """Per-trial cost: new session per trial (skeleton+patch) vs weights fed as graph inputs."""
    model = load_model(prep.config.model)
    names = {n for layer in prep.selected for n in layer.tensors}
    kept = [t for t in model.graph.initializer if t.name not in names]
    moved = [t for t in model.graph.initializer if t.name in names]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    for t in moved:
        model.graph.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = prep.config.threads
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rep = apply_noise(prep.initializers, prep.selected, NoiseSpec(snr=snr, seed=0)).arrays
    feeds = {n: np.ascontiguousarray(rep[n]) for n in names}
    input_name = prep.factory.input_name
    output_name = prep.factory.output_name
    # exactness: same logits as the rebuilt session?
    rebuilt = prep.factory.create(rep)
    x0, _ = next(iter(prep.data.batches()))
    diff = float(np.abs(session.run([output_name], {input_name: x0, **feeds})[0].reshape(len(x0), -1)
                        - rebuilt.run(x0)).max())
    started = time.perf_counter()
    for x, _ in prep.data.batches():
        session.run([output_name], {input_name: x, **feeds})
    inputs_s = time.perf_counter() - started
    started = time.perf_counter()
    session2 = prep.factory.create(rep)
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    for x, _ in prep.data.batches():
        session2.run(x)
    rebuilt_s = build_s + time.perf_counter() - started
    return {"rebuild_trial_s": rebuilt_s, "rebuild_build_s": build_s, "inputs_trial_s": inputs_s,
            "inputs_max_abs_diff": diff, "faster": "rebuild" if rebuilt_s <= inputs_s else "inputs"}


def tune(prep) -> list[dict]:
    """Clean throughput over intra-op threads x graph optimization level."""
    data = prep.data
    model_bytes = prep.factory.model_bytes(None)
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
            session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
            build = time.perf_counter() - t0
            inp, out = prep.factory.input_name, prep.factory.output_name
            for x, _ in data.batches():
                session.run([out], {inp: x})
            t0 = time.perf_counter()
            for x, _ in data.batches():
                session.run([out], {inp: x})
            rows.append({"threads": threads, "opt_level": name, "build_s": build,
                         "images_per_s": len(data) / (time.perf_counter() - t0)})
    return rows


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
    parser.add_argument("--overhead-trials", type=int, default=5)
    parser.add_argument("--alternatives", action="store_true", help="measure weights-as-inputs vs rebuild")
    parser.add_argument("--tune", action="store_true", help="measure threads x optimization level")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: a fresh temporary folder")
    parser.add_argument("--json", action="store_true", help="also print all figures as one JSON object")
    args = parser.parse_args(argv)

    out: dict = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}}
    config = BenchConfig(model=args.model, data=args.data, snrs=(args.snr,), seeds=args.trials, device=args.device,
                         batch_size=args.batch_size, threads=args.threads, preset=args.preprocess, limit=args.limit)
    t0 = time.perf_counter()
    prep = prepare_bench(config)
    out["prepare_s"] = time.perf_counter() - t0
    n = len(prep.data)
    print(f"model {args.model.name}: {len(prep.selected)} layers, {n} images, batch {prep.data.batch_size}, "
          f"threads {args.threads or 'ort default'}, mode {args.mode}, {args.trials} trials, SNR {args.snr}")
    m = out["machine"]
    print(f"machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']} GiB RAM, onnxruntime {m['onnxruntime']}")

    with tempfile.TemporaryDirectory() as tmp:
        out["data"] = time_data_loading(prep, args.cache_dir or Path(tmp))
    d = out["data"]
    print(f"data loading: first {d['first_s']:.3f} s, second (cache hit) {d['second_s']:.4f} s "
          f"-> {d['speedup']:.1f}x")

    clean_session = prep.factory.create(None)
    clean_before, cpu_before = clean_throughput(clean_session, prep.data, args.clean_passes)
    cpu_started = time.process_time()

    rec = Recorder()
    layers = prep.selected
    if args.mode == "all":
        started = time.perf_counter()
        result = run_bench(config, prepared=prep, progress=rec)
        wall = time.perf_counter() - started
        trials = result.trials.height  # baseline + noisy
        layers_for = lambda t: layers  # noqa: E731
        trial_s = float(result.trials["seconds"].mean())
    else:
        seeds = math.ceil(args.trials / len(layers))
        plan = [t for t in expand_sweep(layers, modes=["per-layer"], snrs=[args.snr], seeds=seeds)
                if t.mode == "per-layer"][: args.trials]
        by_name = {layer.name: layer for layer in layers}
        runner = PrefixRunner.from_prepared(prep) if args.prefix else None
        started = time.perf_counter()
        for trial in plan:
            spec = NoiseSpec(snr=trial.snr, seed=trial.seed)
            rep = apply_noise(prep.initializers, [by_name[name] for name in trial.layers], spec).arrays
            if runner is not None:
                counts = runner.evaluate(rep)
            else:
                counts = evaluate(prep.factory.create(rep), prep.data)
            rec.trial_done({"images": counts.images})
        wall = time.perf_counter() - started
        trials = len(plan)
        layers_for = lambda t: [layers[t % len(layers)]]  # noqa: E731
        trial_s = wall / trials
        if runner is not None:
            out["prefix_stats"] = vars(runner.stats)
            print("prefix reuse: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                                for k, v in vars(runner.stats).items()))
    # Clean throughput measured before and after the sweep (the machine may be shared): mean of both.
    sweep_cpu = time.process_time() - cpu_started
    clean_after, cpu_after = clean_throughput(clean_session, prep.data, args.clean_passes)
    clean = (clean_before + clean_after) / 2
    clean_cpu = (cpu_before + cpu_after) / 2
    out.update(clean_images_per_s=clean, clean_before=clean_before, clean_after=clean_after,
               clean_images_per_cpu_s=clean_cpu)
    print(f"clean ORT throughput: {clean:.1f} images/s (before sweep {clean_before:.1f}, after {clean_after:.1f}); "
          f"{clean_cpu:.1f} images per CPU-second")
    sweep = trials * n / wall
    out.update(sweep_images_per_cpu_s=trials * n / sweep_cpu, cpu_ratio=trials * n / sweep_cpu / clean_cpu)
    out.update(sweep_images_per_s=sweep, trials=trials, sweep_wall_s=wall, ratio=sweep / clean)
    print(f"sweep: {trials} trials x {n} images in {wall:.1f} s -> {sweep:.1f} images/s, "
          f"ratio {sweep / clean:.3f}x clean; per CPU-second {out['sweep_images_per_cpu_s']:.1f}, "
          f"ratio {out['cpu_ratio']:.3f}x clean")

    oh = fixed_overhead(prep, args.snr, args.overhead_trials, layers_for)
    oh["pct_of_trial"] = 100 * (oh["noise_s"] + oh["build_s"]) / trial_s
    oh["trial_s"] = trial_s
    out["overhead"] = oh
    print(f"fixed per-trial overhead: noise {1000 * oh['noise_s']:.1f} ms + session build "
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
        alt = weights_as_inputs(prep, args.snr)
        out["alternatives"] = alt
        print(f"per-trial alternatives (all layers noised): new session via skeleton+patch "
              f"{alt['rebuild_trial_s']:.2f} s (build {1000 * alt['rebuild_build_s']:.0f} ms) vs weights as graph "
              f"inputs {alt['inputs_trial_s']:.2f} s (max |diff| {alt['inputs_max_abs_diff']:.2e}) -> "
              f"{alt['faster']} is faster")
    if args.tune:
        out["tune"] = tune(prep)
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
    if prep.dataset.files is not None:  # in-memory datasets (CIFAR batches) are not decoded
        checks.append(("second data load >= 20x faster", d["speedup"], d["speedup"] >= TARGETS["cache_speedup"]))
    checks.append((f"RSS drift trial {k + 1}..{len(rss)} within 5%", drift, abs(drift) <= TARGETS["rss_drift_pct"]))
    for name, value, ok in checks:
        print(f"[{'MET' if ok else 'NOT MET'}] {name}: {value:.3f}")
    out["checks"] = [{"check": c, "value": v, "met": ok} for c, v, ok in checks]
    if args.json:
        print(json.dumps(out, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
