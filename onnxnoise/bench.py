"""Bench one model on one dataset: the clean baseline, then noise in all selected layers.

A bench run is the plan of mode ``all`` (:func:`onnxnoise.engine.plan.plan_trials`),
executed by the same :class:`~onnxnoise.engine.executor.LocalExecutor` and
:func:`~onnxnoise.engine.trial.run_trial` as a sweep, recorded in memory instead of a
trial store. Its trial table and summary have the sweep's schema.

Normalized accuracy is ``A = a / a_0`` (Fagbohungbe & Qian, arXiv 2011.11840, eq. 2)
with ``a_0`` the clean baseline accuracy measured in the same run on the same images.

The baseline runs first and is checked before any noisy trial, as in a sweep
(:func:`onnxnoise.engine.baseline_checks.run_baseline_first`): a clean top-1 outside
``RunConfig.expect_top1 +- tolerance`` stops the run (:class:`BaselineExpectationError`),
and a clean top-1 indistinguishable from chance (:func:`chance_warning`) becomes a
warning in ``meta["warnings"]``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from onnxnoise import __version__
from onnxnoise.config import RunConfig
from onnxnoise.engine.baseline_checks import chance_classes, chance_warning, check_expected_top1, run_baseline_first
from onnxnoise.engine.context import RunContext, prepare_context
from onnxnoise.engine.executor import LocalExecutor, MemoryRecorder, Progress
from onnxnoise.engine.plan import plan_trials
from onnxnoise.engine.stages import CALIBRATION_FILE
from onnxnoise.errors import BaselineExpectationError
from onnxnoise.files import write_text
from onnxnoise.lazy import lazy_module
from onnxnoise.noise import axis_of
from onnxnoise.noise_config import NoiseConfig
from onnxnoise.report.paired import collapse_hints, short_of_target
from onnxnoise.report.scope_effect import scope_effect, scope_sentence
from onnxnoise.report.stages import stages_line
from onnxnoise.report.stats import summarize_trials
from onnxnoise.report.strength import noise_rank
from onnxnoise.report.tables import with_planned_provider
from onnxnoise.report.unchanged import unchanged_layers_warnings
from onnxnoise.report.nested import json_rows
from onnxnoise.report.results import facts_by_model, results_table
from onnxnoise.report.tables import write_table
from onnxnoise.store.schema import COUNTER, column_names
from onnxnoise.strict_json import json_text

pl = lazy_module("polars")

__all__ = ["BenchResult", "ScopeCheck", "BaselineExpectationError", "chance_warning", "check_expected_top1",
           "run_bench", "bench_in_folder", "bench_files", "bench_record", "scope_check_config", "run_scope_check"]


@dataclass
class BenchResult:
    """Outcome of :func:`run_bench`.

    Attributes:
        trials: One row per trial (baseline first), the trial store's columns
            (:data:`onnxnoise.store.TRIAL_COLUMNS`) plus ``top1_acc``/``top5_acc``.
        summary: :func:`onnxnoise.report.stats.summarize_trials` of ``trials``: one row
            per (mode, strength), mean and 95% CI over seeds, paired statistics against
            the clean model (flip rate, McNemar, collapsed draws; chance = one over the
            classes among the images).
        meta: Run facts (:meth:`onnxnoise.engine.context.RunContext.facts`) plus
            ``failed`` (trials that ended with an error), the counters' totals (every column
            of role :data:`~onnxnoise.store.schema.COUNTER`, summed over the trials), ``stages_line``
            (the tile's stages that are on and the fractions they clipped,
            :func:`onnxnoise.report.stages.stages_line`; ``None`` when none is on),
            ``warnings`` (``RunContext.warnings``, a baseline at chance level, the noise model's advice where
            draws collapsed, :func:`~onnxnoise.report.paired.collapse_hints`, noised layers a draw left
            unchanged: :func:`onnxnoise.report.unchanged.unchanged_layers_warnings`) and, with
            ``--seeds auto``, ``seeds_auto`` (target, max draws, and the groups that
            stopped at the max short of the target:
            :func:`onnxnoise.report.paired.short_of_target`).
    """

    trials: pl.DataFrame
    summary: pl.DataFrame
    meta: dict
    scope_check: ScopeCheck | None = None


@dataclass
class ScopeCheck:
    """Outcome of ``--scope-check`` (:func:`run_scope_check`).

    Attributes:
        scope: The run's own scope (``tensor`` unless ``--noise MODEL:scope=layer``).
        trials: The re-run trials with ``scope=channel`` (mode ``all``, the run's seeds), trial-table schema.
        effect: :func:`onnxnoise.report.scope_effect.scope_effect` per strength, plus ``strength_text``.
        lines: One sentence per strength (:func:`onnxnoise.report.scope_effect.scope_sentence`).
    """

    scope: str
    trials: pl.DataFrame
    effect: pl.DataFrame
    lines: list[str]

    def to_dict(self) -> dict:
        """JSON-ready: ``scope``, ``strengths`` (the effect rows) and ``lines``."""
        return {"scope": self.scope, "strengths": self.effect.to_dicts(), "lines": self.lines}


def run_bench(
    config: RunConfig,
    *,
    progress: Progress | None = None,
    on_trial: Callable[[pl.DataFrame], None] | None = None,
    context: RunContext | None = None,
) -> BenchResult:
    """Run the baseline and every (strength, seed) trial with noise in all selected layers.

    Args:
        config: Run settings.
        progress: Progress receiver (default: silent).
        on_trial: Called with the trial table so far after every trial, so the caller
            can persist it (a half-finished run loses nothing).
        context: A prepared context of ``config`` (:func:`prepare_context`), to reuse.

    Returns:
        The :class:`BenchResult`; failed trials are rows with ``error`` set.

    Raises:
        OnnxNoiseError: Any input problem, see :func:`prepare_context`.
        BaselineExpectationError: ``config.expect_top1`` is set and the clean top-1 is
            outside ``expect_top1 +- tolerance`` (raised after the baseline, before any
            noisy trial; the baseline row is recorded).
    """
    context = context or prepare_context(config)
    recorder = MemoryRecorder(on_record=None if on_trial is None else lambda rows: on_trial(recorder.frame()))
    planned = plan_trials(context, ("all",))

    executor = LocalExecutor(prefix_reuse=False)
    checked = run_baseline_first(executor, context, planned, recorder, progress, recorder.find)
    trials = with_planned_provider(recorder.frame())
    meta = context.facts()
    meta["trial_layout"] = None if executor.last_layout is None else executor.last_layout.to_dict()
    meta["warnings"] = [*context.warnings, *checked.warnings, *unchanged_layers_warnings(trials)]
    totals = {c: int(trials[c].fill_null(0).sum()) for c in column_names(COUNTER)}
    meta.update(totals, failed=int(trials["error"].is_not_null().sum()),
                stages_line=stages_line(meta["stages"], totals))
    if meta["quantization"]:
        meta["quantization"] = config.noise.noise_model.describe_quantization(context.selected,
                                                                              totals["clipped_count"])
    summary = summarize_trials(trials, chance=100.0 / max(chance_classes(context.data.labels), 1))
    meta["warnings"] += collapse_hints(summary)
    noise = config.noise
    if noise.seeds == "auto":
        meta["seeds_auto"] = {"ci_halfwidth": noise.ci_halfwidth, "max_seeds": noise.max_seeds, "min_seeds": 3,
                              "short_of_target": short_of_target(summary, noise.ci_halfwidth, noise.max_seeds)}
    result = BenchResult(trials=trials, summary=summary, meta=meta)
    if config.scope_check:
        result.scope_check = run_scope_check(config, result, context, progress)
    return result


def bench_record(result: BenchResult, config: RunConfig, out: str | os.PathLike[str] | None, *,
                 demo: bool = False) -> dict:
    """The JSON-ready record of a bench run: what ``bench.json`` holds and ``bench --json`` prints.

    Keys: ``tool`` (``"onnxnoise bench"``), ``version`` (onnxnoise's), ``demo``, every key of ``result.meta``, ``config`` (:meth:`RunConfig.to_dict`),
    ``strength_unit``, ``out_dir`` (``None`` when nothing was written), ``baseline`` (clean ``top1_acc``
    and ``top5_acc`` in percent) and ``results`` (the summary's rows, its JSON-text cells as values);
    ``scope_check`` with ``--scope-check``.
    """
    base = result.summary.filter(pl.col("mode") == "baseline")
    record = {
        "tool": "onnxnoise bench", "version": __version__,
        "demo": demo,
        **result.meta,
        "config": config.to_dict(),
        "strength_unit": axis_of(config.noise.noise_model).unit,
        "out_dir": None if out is None else str(out),
        "baseline": {"top1_acc": base["top1_acc_mean"][0] if base.height else None,
                     "top5_acc": base["top5_acc_mean"][0] if base.height else None},
        "results": json_rows(result.summary),
    }
    if result.scope_check is not None:
        record["scope_check"] = result.scope_check.to_dict()
    return record


def bench_in_folder(config: RunConfig, out: str | os.PathLike[str], *, progress: Progress | None = None,
                    context: RunContext | None = None, demo: bool = False) -> tuple[BenchResult, dict]:
    """:func:`run_bench` writing its files in ``out`` (the CLI's ``bench`` and the API's ``bench(out=...)``).

    Writes ``trials.parquet``/``trials.csv`` after every trial (a half-finished run loses nothing),
    then ``summary.parquet``/``summary.csv``, ``results.parquet``/``results.csv`` (one row per strength in
    timm's columns, :func:`onnxnoise.report.results.results_table`), ``scope-check.parquet``/``.csv`` with
    ``--scope-check``,
    and ``bench.json`` (:func:`bench_record`); every file whole or not at all (:mod:`onnxnoise.files`).

    Returns:
        ``(result, record)``: the :class:`BenchResult` and the ``bench.json`` record.

    Raises:
        As :func:`run_bench`; OSError: a file could not be written.
    """
    context = context or prepare_context(config, calibration_dir=Path(out))
    result = run_bench(config, progress=progress, context=context,
                       on_trial=lambda frame: write_table(frame, out, "trials"))
    write_table(result.summary, out, "summary")
    write_table(results_table(result.summary, facts_by_model([result.meta])), out, "results",
                json_text=False)
    if result.scope_check is not None:
        write_table(result.scope_check.trials, out, "scope-check")
    record = bench_record(result, config, out, demo=demo)
    write_text(Path(out) / "bench.json", json_text(record, indent=2) + "\n")
    return result, record



def bench_files(result: BenchResult, out: str | os.PathLike[str]) -> tuple[Path, ...]:
    """The files :func:`bench_in_folder` wrote in ``out`` for ``result``, tables first.

    ``results``, ``summary``, ``trials`` and, with ``--scope-check``, ``scope-check`` (each ``.parquet`` then
    ``.csv``), ``bench.json``, and ``calibration.json`` when the tile stages' calibration is kept there
    (:data:`onnxnoise.engine.stages.CALIBRATION_FILE`).
    """
    folder = Path(out)
    stems = ("results", "summary", "trials") + (("scope-check",) if result.scope_check is not None else ())
    kept = folder / CALIBRATION_FILE
    return (*(folder / f"{s}.{x}" for s in stems for x in ("parquet", "csv")), folder / "bench.json",
            *((kept,) if kept.is_file() else ()))


def scope_check_config(config: RunConfig) -> NoiseConfig:
    """The noise settings of ``--scope-check``: the run's with ``scope=channel``.

    ``RunConfig`` has refused a noise model without a ``scope`` parameter or one already per channel.
    """
    return dataclasses.replace(config.noise, params={**config.noise.params, "scope": "channel"})


def run_scope_check(config: RunConfig, result: BenchResult, context: RunContext,
                    progress: Progress | None = None) -> ScopeCheck:
    """Re-run the ``config.scope_check`` strengths that lost the most top-1 with ``scope=channel``.

    The strengths are those of ``result.summary``'s noisy rows with the lowest mean top-1 (ties: more
    noise first), each with the run's own seeds; the clean baseline and the images are the run's
    (``context`` is reused, only its noise settings change). The comparison is paired by seed
    (:mod:`onnxnoise.report.scope_effect`).

    """
    noise = scope_check_config(config)
    noisy = result.summary.filter((pl.col("mode") == "all") & (pl.col("seeds") > 0))
    worst = noisy.sort([pl.col("top1_acc_mean"), noise_rank(noisy)], descending=[False, True]).head(config.scope_check)
    strengths = tuple(worst["strength"].to_list())
    channel = dataclasses.replace(context, config=dataclasses.replace(
        config, noise=dataclasses.replace(noise, strengths=strengths), scope_check=0), _prefix=None)
    recorder = MemoryRecorder()
    planned = [item for item in plan_trials(channel, ("all",)) if item.trial.mode != "baseline"]
    LocalExecutor(prefix_reuse=False).run(channel, planned, recorder, progress)
    trials = recorder.frame()
    order = worst.select("strength", "strength_text").with_row_index("_worst")
    effect = scope_effect(result.trials, trials).join(order, on="strength", how="left").sort("_worst").drop("_worst")
    scope = str(config.noise.noise_model.scope)
    lines = [scope_sentence(row, row["strength_text"], scope) for row in effect.iter_rows(named=True)]
    return ScopeCheck(scope=scope, trials=trials, effect=effect, lines=lines)
