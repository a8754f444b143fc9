"""Bench one model on one dataset: the clean baseline, then noise in all selected layers.

A bench run is the plan of mode ``all`` (:func:`onnxnoise.engine.plan.plan_trials`),
executed by the same :class:`~onnxnoise.engine.executor.LocalExecutor` and
:func:`~onnxnoise.engine.trial.run_trial` as a sweep, recorded in memory instead of a
trial store. Its trial table and summary have the sweep's schema.

Normalized accuracy is ``A = a / a_0`` (Fagbohungbe & Qian, arXiv 2011.11840, eq. 2)
with ``a_0`` the clean baseline accuracy measured in the same run on the same images.

The baseline runs first (it is first in the plan) and is checked before any noisy
trial: a clean top-1 outside ``RunConfig.expect_top1 +- tolerance`` stops the run
(:class:`BaselineExpectationError`), and a clean top-1 indistinguishable from chance
(:func:`chance_warning`) becomes a warning in ``meta["warnings"]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from onnxnoise.config import RunConfig
from onnxnoise.engine.context import RunContext, prepare_context
from onnxnoise.engine.executor import LocalExecutor, MemoryRecorder, Progress
from onnxnoise.engine.plan import plan_trials
from onnxnoise.errors import BaselineExpectationError
from onnxnoise.model.quant import describe_quantization
from onnxnoise.report.stats import binomial_interval, summarize_trials

__all__ = ["BenchResult", "BaselineExpectationError", "chance_warning", "check_expected_top1", "run_bench"]


def chance_warning(top1_correct: int, images: int, classes: int) -> str | None:
    """A warning when a clean top-1 cannot be told apart from guessing, else None.

    Chance is ``1 / classes`` (the classes present among the evaluated images). The
    baseline is suspect when ``top1_correct / images`` is at or below chance, or when
    its 95% Wilson interval (:func:`~onnxnoise.report.stats.binomial_interval`) reaches
    down to chance: almost always wrong preprocessing, labels or dataset layout.
    """
    if images <= 0 or classes <= 1:
        return None
    chance = 1.0 / classes
    low, high = binomial_interval(int(top1_correct), int(images))
    if float(low) > chance:
        return None
    acc = top1_correct / images
    where = "at or below" if acc <= chance else "within the 95% interval of"
    return (f"clean top-1 {100 * acc:.2f}% ({top1_correct}/{images} images, 95% interval "
            f"{100 * float(low):.2f}-{100 * float(high):.2f}%) is {where} chance (1/{classes} classes = "
            f"{100 * chance:.2f}%): the preprocessing, the labels or the dataset layout are probably wrong")


def check_expected_top1(top1_acc: float, expected: float | None, tolerance: float) -> None:
    """Raise :class:`BaselineExpectationError` when ``top1_acc`` (percent) is outside ``expected +- tolerance``."""
    if expected is None or abs(top1_acc - expected) <= tolerance + 1e-9:
        return
    msg = (f"clean top-1 {top1_acc:.2f}% is outside the expected {expected:g}% ± {tolerance:g} "
           f"(--expect-top1 {expected:g} --tolerance {tolerance:g}); no noisy trial was run")
    raise BaselineExpectationError(msg)


class _Continued(Progress):
    """Forwards progress of the baseline and the noisy trials to one receiver, started once."""

    def __init__(self, inner: Progress) -> None:
        self.inner = inner

    def advance(self, images: int) -> None:
        self.inner.advance(images)

    def trial_done(self, row: dict) -> None:
        self.inner.trial_done(row)


@dataclass
class BenchResult:
    """Outcome of :func:`run_bench`.

    Attributes:
        trials: One row per trial (baseline first), the trial store's columns
            (:data:`onnxnoise.store.TRIAL_COLUMNS`) plus ``top1_acc``/``top5_acc``.
        summary: :func:`onnxnoise.report.stats.summarize_trials` of ``trials``: one row
            per (mode, strength), mean and 95% CI over seeds.
        meta: Run facts (:meth:`onnxnoise.engine.context.RunContext.facts`) plus
            ``failed`` (trials that ended with an error), the counters' totals and
            ``warnings`` (``RunContext.warnings`` and a baseline at chance level).
    """

    trials: pl.DataFrame
    summary: pl.DataFrame
    meta: dict


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
    progress = progress or Progress()
    progress.start(len(planned), len(context.data))
    executor, each = LocalExecutor(prefix_reuse=False), _Continued(progress)
    baseline = [item for item in planned if item.trial.mode == "baseline"]
    executor.run(context, baseline, recorder, each)
    warnings = list(context.warnings)
    base = next((row for row in recorder.rows if row["mode"] == "baseline" and row.get("error") is None), None)
    if base is not None:
        check_expected_top1(100.0 * base["top1_correct"] / base["images"], config.expect_top1, config.tolerance)
        classes = int(np.unique(np.asarray(context.data.labels)).size)
        warning = chance_warning(base["top1_correct"], base["images"], classes)
        if warning:
            warnings.append(warning)
    executor.run(context, [item for item in planned if item.trial.mode != "baseline"], recorder, each)
    trials = recorder.frame()
    meta = context.facts()
    meta["warnings"] = warnings
    totals = {c: int(trials[c].fill_null(0).sum()) for c in ("bn_variance_changed", "clipped_count",
                                                              "overflow_count", "zeros_kept", "nan_count")}
    meta.update(totals, failed=int(trials["error"].is_not_null().sum()))
    if meta["quantization"]:
        meta["quantization"] = describe_quantization(context.selected, totals["clipped_count"])
    return BenchResult(trials=trials, summary=summarize_trials(trials), meta=meta)

