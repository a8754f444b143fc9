"""Sweeps: the paper's experiments as resumable lists of trials in a durable store.

Modes (Fagbohungbe & Qian, arXiv 2011.11840, Sec. IV):

- ``all``: noise in every selected layer at once (Table III, Fig. 2);
- ``per-layer``: noise in layer i only, for every selected i (Figs. 3-4);
- ``cumulative``: noise in layers 1..L, for L = 1..N (Fig. 5).

Every trial is committed to the SQLite store before the next one starts, under a
key that hashes the trial with its context (model sha256, dataset fingerprint,
preprocessing, noise settings, image subset). Running the same sweep again skips
finished trials, so a sweep killed at any moment loses at most the trial in
flight; a changed model file or preprocessing gives new keys, never stale reuse.
"""

from __future__ import annotations

import random
import time
import traceback
from dataclasses import dataclass
from importlib import metadata

import polars as pl

from onnxnoise import __version__
from onnxnoise.bench import BenchConfig, BenchProgress, Prepared, prepare_bench
from onnxnoise.errors import OnnxNoiseError
from onnxnoise.engine.evaluate import evaluate
from onnxnoise.noise.legacy import NoiseSpec, apply_noise
from onnxnoise.engine.prefix import PrefixRunner
from onnxnoise.engine.plan import SWEEP_MODES, Trial, expand_sweep, make_context
from onnxnoise.store.store import TrialStore

__all__ = ["SweepConfig", "SweepResult", "plan_sweep", "run_sweep", "recheck_sweep", "package_versions",
           "SWEEP_MODES"]

NOISE_MODEL = "gaussian-snr"


@dataclass(frozen=True)
class SweepConfig(BenchConfig):
    """Settings of one sweep: a :class:`~onnxnoise.bench.BenchConfig` plus modes.

    Attributes:
        modes: Any of ``all``, ``per-layer``, ``cumulative`` (see module docstring).
        prefix_reuse: Run per-layer trials on cached clean activations before the
            noised layer (:mod:`onnxnoise.engine.prefix`); off = full-model evaluation.
    """

    modes: tuple[str, ...] = ("all",)
    prefix_reuse: bool = True


@dataclass
class SweepResult:
    """Outcome of :func:`run_sweep`.

    Attributes:
        planned: Trials in the sweep plan (baseline included).
        skipped: Trials already in the store (not run again).
        ran: Trials run now.
        failed: Trials run now that ended with an error row.
        run_id: The store's id for this invocation.
    """

    planned: int
    skipped: int
    ran: int
    failed: int
    run_id: int


def package_versions() -> dict[str, str]:
    """Versions of the packages that determine a trial's numbers."""
    versions = {"onnxnoise": __version__}
    for name in ("onnxruntime", "onnxruntime-gpu", "onnx", "numpy", "pillow"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _context(prep: Prepared, config: SweepConfig) -> dict[str, str]:
    return make_context(
        model_sha256=prep.model_sha256,
        dataset_fingerprint=prep.meta["dataset_fingerprint"],
        preprocess=prep.data_config,
        noise=_noise_settings(config),
        images=len(prep.data),
        limit=config.limit,
        output=prep.factory.output_name,
    )


def _noise_settings(config: SweepConfig) -> dict:
    return {"noise_model": NOISE_MODEL, "bn_variance": config.bn_variance, "keep_zeros": config.keep_zeros}


def plan_sweep(config: SweepConfig, prepared: Prepared | None = None) -> dict[str, Trial]:
    """The sweep's trials keyed by their store key, in run order (baseline first).

    Args:
        config: Sweep settings.
        prepared: Output of :func:`onnxnoise.bench.prepare_bench` to reuse.

    Returns:
        ``key -> Trial``; a store holds a trial when it holds its key.
    """
    prep = prepared or prepare_bench(config)
    context = _context(prep, config)
    trials = expand_sweep(prep.selected, modes=config.modes, snrs=config.snrs, seeds=config.seeds)
    return {trial.key(context): trial for trial in trials}


def run_sweep(
    config: SweepConfig,
    store: TrialStore,
    *,
    progress: BenchProgress | None = None,
    prepared: Prepared | None = None,
) -> SweepResult:
    """Run every trial of the sweep that the store does not hold yet.

    Args:
        config: Sweep settings; ``seeds`` is a count or explicit seeds.
        store: Open trial store of the run folder.
        progress: Progress receiver; ``start`` gets the number of trials to run now.
        prepared: Output of :func:`onnxnoise.bench.prepare_bench` to reuse.

    Returns:
        Counts of planned, skipped, run and failed trials.

    Raises:
        OnnxNoiseError: Bad model, data or settings (before any trial runs).
        StoreError: The store cannot be written.
    """
    prep = prepared or prepare_bench(config)
    planned = plan_sweep(config, prep)
    done = store.done_keys(include_errors=False)
    todo = [(trial, key) for key, trial in planned.items() if key not in done]
    trials = list(planned.values())
    versions = package_versions()
    run_id = store.record_run({
        "model": prep.meta["model"],
        "model_sha256": prep.model_sha256,
        "dataset": prep.meta["dataset"],
        "dataset_fingerprint": prep.meta["dataset_fingerprint"],
        "preprocess": prep.data_config,
        "noise_model": NOISE_MODEL,
        "noise": _noise_settings(config),
        "config": {**config.to_dict(),
                   "layers_total": len(prep.layers), "layers_selected": len(prep.selected),
                   "params_total": sum(layer.num_params for layer in prep.layers),
                   "params_selected": sum(layer.num_params for layer in prep.selected),
                   "images": len(prep.data), "skipped_images": prep.skipped_images},
        "versions": versions,
    })
    by_name = {layer.name: layer for layer in prep.selected}
    # Per-layer trials run only the part of the graph after the noised layer, on clean
    # activations computed once (same predictions as the full model; see prefix.py).
    runner = PrefixRunner.from_prepared(prep) if config.prefix_reuse and any(
        trial.mode == "per-layer" for trial, _ in todo) else None
    progress = progress or BenchProgress()
    progress.start(len(todo), len(prep.data))
    failed = 0
    for trial, key in todo:
        row = _run_trial(trial, prep, config, by_name, progress, runner)
        failed += row["error"] is not None
        row.update(
            key=key, run_id=run_id, model=prep.meta["model"], model_sha256=prep.model_sha256,
            dataset=prep.meta["dataset"], dataset_fingerprint=prep.meta["dataset_fingerprint"],
            preprocess=prep.data_config, mode=trial.mode, layer_index=trial.layer_index,
            layers=list(trial.layers), noise_model=NOISE_MODEL, noise=_noise_settings(config),
            snr=trial.snr, seed=trial.seed, versions=versions,
        )
        store.record(row)
        progress.trial_done({**row, "top1_acc": 100.0 * (row["top1_correct"] or 0) / max(row["images"] or 1, 1)})
    return SweepResult(planned=len(trials), skipped=len(trials) - len(todo), ran=len(todo), failed=failed,
                       run_id=run_id)


def _run_trial(trial: Trial, prep: Prepared, config: SweepConfig, by_name: dict, progress: BenchProgress,
               runner: PrefixRunner | None = None) -> dict:
    """Evaluate one trial; an exception becomes an ``error`` row instead of ending the sweep."""
    started = time.perf_counter()
    try:
        if trial.mode == "baseline":
            replacements, changed = None, 0
        else:
            spec = NoiseSpec(snr=trial.snr, seed=trial.seed, bn_variance=config.bn_variance,
                             keep_zeros=config.keep_zeros)
            result = apply_noise(prep.initializers, [by_name[n] for n in trial.layers], spec)
            replacements, changed = result.arrays, result.bn_variance_changed
        if runner is not None and trial.mode == "per-layer":
            counts = runner.evaluate(replacements, on_batch=progress.advance)
            provider = runner.provider
        else:
            session = prep.factory.create(replacements)
            counts = evaluate(session, prep.data, on_batch=progress.advance)
            provider = session.provider
    except (OnnxNoiseError, RuntimeError, ValueError, MemoryError) as exc:
        detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return {"images": None, "top1_correct": None, "top5_correct": None, "nan_count": None,
                "bn_variance_changed": None, "seconds": time.perf_counter() - started, "provider": None,
                "error": detail}
    return {
        "images": counts.images,
        "top1_correct": counts.top1_correct,
        "top5_correct": counts.top5_correct,
        "nan_count": counts.nan_count,
        "bn_variance_changed": changed,
        "seconds": time.perf_counter() - started,
        "provider": provider,
        "error": None,
    }


def recheck_sweep(config: SweepConfig, store: TrialStore, *, sample: int, seed: int = 0) -> tuple[int, list[str]]:
    """Run again a random sample of the sweep's stored trials and compare their counts.

    Shows that a stored result is reproducible: same model, data, settings and seed give
    the same top-1 / top-5 / NaN counts (noise depends only on seed and tensor name).

    Args:
        config: The sweep's settings (as in the experiment file).
        store: The trial store holding its results.
        sample: How many stored trials to run again (fewer if fewer are stored).
        seed: Seed of the random choice of trials.

    Returns:
        ``(trials checked, one line per mismatch)``; an empty list means all equal.
    """
    prep = prepare_bench(config)
    planned = plan_sweep(config, prep)
    stored = store.to_frame().filter(pl.col("key").is_in(list(planned)) & pl.col("error").is_null())
    rows = stored.rows(named=True)
    chosen = random.Random(seed).sample(rows, min(sample, len(rows)))
    by_name = {layer.name: layer for layer in prep.selected}
    runner = PrefixRunner.from_prepared(prep) if config.prefix_reuse else None
    mismatches = []
    for row in chosen:
        trial = planned[row["key"]]
        again = _run_trial(trial, prep, config, by_name, BenchProgress(), runner)
        for column in ("top1_correct", "top5_correct", "nan_count"):
            if again[column] != row[column]:
                mismatches.append(f"{trial.mode} layer {trial.layer_index} SNR {trial.snr:g} seed {trial.seed}: "
                                  f"{column} stored {row[column]}, now {again[column]}")
    return len(chosen), mismatches
