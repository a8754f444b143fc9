"""Sweeps: the paper's experiments as resumable plans of trials in a durable store.

Modes (Fagbohungbe & Qian, arXiv 2011.11840, Sec. IV): ``all`` (noise in every
selected layer at once, Table III), ``per-layer`` (one layer at a time, Figs. 3-4),
``cumulative`` (layers 1..L, Fig. 5).

A sweep plans its trials (:func:`onnxnoise.engine.plan.plan_trials`), drops those the
store already holds, and runs the rest with an executor
(:class:`~onnxnoise.engine.executor.LocalExecutor` by default, Ray workers with
``executor="ray"``: :mod:`onnxnoise.engine.ray_executor`) that commits each row as soon
as its trial finishes. Running the same sweep again skips finished trials, so a
sweep killed at any moment loses at most the trial in flight; a change to any setting
that can change a count gives new keys, never stale reuse. Several processes may run
sweeps into one store: each skips what another has recorded.

The baseline runs first and is checked before any noisy trial, as in ``bench``
(:func:`onnxnoise.engine.baseline_checks.run_baseline_first`): a clean top-1 outside
``expect_top1 +- tolerance`` stops the sweep, one at chance level is a warning.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from onnxnoise.config import SweepConfig
from onnxnoise.engine.baseline_checks import chance_classes, run_baseline_first
from onnxnoise.engine.context import RunContext, prepare_context
from onnxnoise.engine.executor import Executor, LocalExecutor, Progress
from onnxnoise.engine.plan import PlannedTrial, plan_trials
from onnxnoise.engine.ray_executor import RayExecutor
from onnxnoise.engine.trial import run_trial
from onnxnoise.lazy import lazy_module
from onnxnoise.noise import make_noise_model
from onnxnoise.report.paired import short_of_target
from onnxnoise.report.stats import summarize_trials
from onnxnoise.report.unchanged import unchanged_layers_warnings
from onnxnoise.store import TrialStore
from onnxnoise.report.stages import stages_lines
from onnxnoise.store.migrate import v1_make_context, v1_trial_key
from onnxnoise.store.schema import PAIRED, column_names

pl = lazy_module("polars")

__all__ = ["SweepResult", "StoreRecorder", "make_executor", "run_sweep", "recheck_sweep"]


@dataclass(frozen=True)
class SweepResult:
    """Outcome of :func:`run_sweep`.

    Attributes:
        planned: Trials in the plan (baseline included).
        done: Trials already in the store before this run (including adopted v1 rows).
        adopted: Rows of a migrated version 1 store that were recognized as trials of this plan.
        ran: Trials run now.
        failed: Trials run now that ended with an error row.
        taken: Trials another process recorded while this one was running.
        run_id: The store's id for this invocation.
        warnings: Baseline warnings (a clean top-1 at chance level,
            :func:`onnxnoise.engine.baseline_checks.chance_warning`) and noised layers a draw
            of the plan left unchanged (:func:`onnxnoise.report.unchanged.unchanged_layers_warnings`).
        settled: ``--seeds auto``: planned draws not run because their group had enough.
        short_of_target: ``--seeds auto``: groups that stopped at ``max_seeds`` short of
            ``ci_halfwidth`` (:func:`onnxnoise.report.paired.short_of_target`).
        stages: The analog tile's stages that are on and the fractions they clipped over the
            sweep's trials (:func:`onnxnoise.report.stages.stages_lines`); empty when none is on.
        trials: The store's rows of this sweep's plan (run now or before), trial-table schema
            (:data:`onnxnoise.store.TRIAL_COLUMNS`), one row per trial.
        summary: :func:`onnxnoise.report.stats.summarize_trials` of ``trials``: one row per (mode, layer,
            strength), mean and 95% interval over seeds.
    """

    planned: int
    done: int
    adopted: int
    ran: int
    failed: int
    taken: int
    run_id: int
    warnings: tuple[str, ...] = ()
    settled: int = 0
    short_of_target: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    trials: pl.DataFrame | None = None
    summary: pl.DataFrame | None = None


class StoreRecorder:
    """Records rows into a :class:`~onnxnoise.store.TrialStore` under one ``run_id``."""

    def __init__(self, store: TrialStore, run_id: int) -> None:
        self.store = store
        self.run_id = run_id

    def has(self, key: str) -> bool:
        """Whether the store holds a finished row with ``key``."""
        return self.store.has(key)

    def record(self, row: dict[str, Any]) -> bool:
        """Commit ``row``; ``False`` if another writer recorded its key first."""
        return self.store.record({**row, "run_id": self.run_id})

    def find(self, key: str) -> dict[str, Any] | None:
        """The recorded row with ``key`` (the store's columns), or None."""
        return self.store.row(key)


def _adopt_v1(context: RunContext, store: TrialStore, planned: list[PlannedTrial]) -> int:
    """Re-key rows of a migrated v1 store that are provably this plan's trials.

    Version 1 keys left out the label offset, batch size, execution provider and
    onnxruntime version. A v1 row counts as the v2 trial only when its provider and
    onnxruntime version match this run's and the label offset is 0 (v1 per-layer
    trials with prefix reuse ignored a non-zero offset, so those rows are re-run).
    """
    if context.label_offset != 0:
        return 0
    config = context.config
    if config.noise.noise_model != make_noise_model("gaussian-snr"):  # v1 knew only its defaults
        return 0
    v1_context = v1_make_context(
        model_sha256=context.model_sha256, dataset_fingerprint=context.dataset_fingerprint,
        preprocess=context.data_config.to_dict(),
        noise={"noise_model": config.noise.model, "bn_variance": config.noise.bn_variance,
               "keep_zeros": config.noise.keep_zeros},
        images=len(context.data), limit=config.limit, output=context.io.output_name)
    mapping = {v1_trial_key(item.trial.to_dict(), v1_context): item.key for item in planned}

    def ok(row: dict[str, Any]) -> bool:
        versions = json.loads(row.get("versions") or "{}")
        return row.get("provider") == context.provider and versions.get("onnxruntime") == context.versions.get(
            "onnxruntime")

    return store.adopt_v1(mapping, ok)


def make_executor(config: SweepConfig) -> Executor:
    """The executor ``config.executor`` names, set up from ``config`` (nothing starts yet).

    ``local``: :class:`LocalExecutor`. ``ray``:
    :class:`~onnxnoise.engine.ray_executor.RayExecutor` with ``config.address``,
    ``workers`` and ``gpus_per_trial``, each worker single-threaded unless
    ``config.run.threads`` says otherwise.

    Raises:
        ConfigError: ``ray`` without Ray installed (one line: install ``onnxnoise[ray]``).
    """
    if config.executor == "ray":
        return RayExecutor(prefix_reuse=config.prefix_reuse, address=config.address, workers=config.workers,
                           gpus_per_trial=config.gpus_per_trial, threads=config.run.threads or 1)
    return LocalExecutor(prefix_reuse=config.prefix_reuse)


def run_sweep(
    config: SweepConfig,
    store: TrialStore,
    *,
    progress: Progress | None = None,
    context: RunContext | None = None,
    executor: Executor | None = None,
) -> SweepResult:
    """Run every trial of the sweep that the store does not hold yet.

    Args:
        config: Sweep settings.
        store: Open trial store of the run folder.
        progress: Progress receiver; ``start`` gets the number of trials to run now.
        context: A prepared context of ``config.run``, to reuse.
        executor: Runs the trials (default: :func:`make_executor` of ``config``, closed
            at the end; a given executor is left open for the caller to close).

    Returns:
        Counts of planned, already done, run, failed and taken trials.

    Raises:
        OnnxNoiseError: Bad model, data or settings (before any trial runs).
        StoreError: The store cannot be written.
        BaselineExpectationError: ``config.run.expect_top1`` is set and the clean top-1
            (run now or already stored) is outside ``expect_top1 +- tolerance``; raised
            before any noisy trial runs.
        BaselineError: The clean baseline trial failed (its row is recorded).
    """
    context = context or prepare_context(config.run)
    planned = plan_trials(context, config.modes)
    adopted = _adopt_v1(context, store, planned)
    done = store.done_keys(include_errors=False)  # one query; the executor re-checks each key before running it
    todo = [item for item in planned if item.key not in done]
    facts = context.facts()
    run_id = store.record_run({
        "model": facts["model"], "model_sha256": context.model_sha256, "dataset": facts["dataset"],
        "dataset_fingerprint": facts["dataset_fingerprint"], "preprocess": facts["preprocess"],
        "noise_model": config.run.noise.model, "noise": config.run.noise.settings(),
        "config": {**config.to_dict(), **{k: facts[k] for k in (
            "layers_total", "layers_noised", "params_total", "params_noised", "images", "skipped_images",
            "label_offset", "batch_size", "provider", "provider_nodes", "input_size")}, "chance_classes": chance_classes(context.data.labels),
                   "model_outputs": context.score_width},
        "context": context.key_fields(), "versions": context.versions,
    })
    own = executor is None
    executor = executor or make_executor(config)
    recorder = StoreRecorder(store, run_id)
    try:
        checked = run_baseline_first(executor, context, todo, recorder, progress, recorder.find)
    finally:
        if own:
            executor.close()
    result = checked.result
    noise, short = config.run.noise, ()
    keys = [item.key for item in planned]
    rows = store.to_frame().filter(pl.col("key").is_in(keys))
    summary = summarize_trials(rows, chance=100.0 / max(chance_classes(context.data.labels), 1))
    if noise.seeds == "auto":
        short = tuple(short_of_target(summary, noise.ci_halfwidth, noise.max_seeds))
    warnings = (*checked.warnings, *unchanged_layers_warnings(rows))
    return SweepResult(planned=len(planned), done=len(planned) - len(todo), adopted=adopted, ran=result.ran,
                       failed=result.failed, taken=result.taken, run_id=run_id, warnings=warnings,
                       settled=len(todo) - result.ran - result.taken, short_of_target=short,
                       stages=tuple(stages_lines(rows)), trials=rows, summary=summary)


def recheck_sweep(config: SweepConfig, store: TrialStore, *, sample: int, seed: int = 0,
                  context: RunContext | None = None) -> tuple[int, list[str]]:
    """Run again a random sample of the sweep's stored trials and compare their counts.

    Same model, data, settings and seed must give the same counts of the evaluation
    (images, top-1 / top-5, NaN: the columns of source ``evaluation``) and paired counts
    (role ``paired``; noise depends only on seed and tensor name); a column stored as
    NULL (rows stored before the paired counts existed) is not compared.

    Args:
        config: The sweep's settings (as in the experiment file).
        store: The trial store holding its results.
        sample: How many stored trials to run again (fewer if fewer are stored).
        seed: Seed of the random choice of trials.
        context: A prepared context of ``config.run``, to reuse.

    Returns:
        ``(trials checked, one line per mismatch)``; an empty list means all equal.
    """
    context = context or prepare_context(config.run)
    planned = {item.key: item.trial for item in plan_trials(context, config.modes)}
    stored = store.to_frame().filter(pl.col("key").is_in(list(planned)) & pl.col("error").is_null())
    rows = stored.rows(named=True)
    chosen = random.Random(seed).sample(rows, min(sample, len(rows)))
    mismatches = []
    for row in chosen:
        trial = planned[row["key"]]
        again = run_trial(context, trial, prefix_reuse=config.prefix_reuse)
        for column in (*column_names(source="evaluation"), *column_names(PAIRED)):
            if row[column] is not None and again[column] != row[column]:
                mismatches.append(f"{trial.mode} layer {trial.layer_index} strength {trial.strength} seed "
                                  f"{trial.seed}: {column} stored {row[column]}, now {again[column]}")
    return len(chosen), mismatches
