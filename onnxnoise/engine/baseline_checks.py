"""Checks on the clean baseline before any noisy trial runs (``bench`` and ``sweep`` alike).

A clean top-1 at chance level is almost always wrong preprocessing, labels or dataset
layout, not a bad model: it becomes a warning (:func:`chance_warning`). A clean top-1
outside ``--expect-top1 V +- --tolerance T`` stops the run (:func:`check_expected_top1`),
for CI and vendor model checks. :func:`run_baseline_first` runs a plan's baseline,
applies both checks, then runs the rest of the plan with the same executor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from onnxnoise.engine.executor import ExecutionResult, Executor, Progress, Recorder
from onnxnoise.engine.plan import PlannedTrial, Trial, trial_key
from onnxnoise.errors import BaselineExpectationError
from onnxnoise.intervals import binomial_interval

__all__ = ["CheckedRun", "chance_classes", "chance_warning", "check_expected_top1", "check_baseline",
           "run_baseline_first"]


def chance_classes(labels: np.ndarray) -> int:
    """Number of distinct classes among the evaluated labels (``(N,)`` ints): chance is one over it."""
    return int(np.unique(np.asarray(labels)).size)


def chance_warning(top1_correct: int, images: int, classes: int) -> str | None:
    """A warning when a clean top-1 cannot be told apart from guessing, else None.

    Chance is ``1 / classes`` (the classes present among the evaluated images). The
    baseline is suspect when ``top1_correct / images`` is at or below chance, or when
    its 95% Wilson interval (:func:`~onnxnoise.intervals.binomial_interval`) reaches
    down to chance: almost always wrong preprocessing, labels or dataset layout.

    Args:
        top1_correct: Images whose top-1 prediction was right.
        images: Images evaluated.
        classes: Classes present among them; ``<= 1`` gives no warning.
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
    """Raise when ``top1_acc`` (percent) is outside ``expected +- tolerance`` (percentage points).

    Raises:
        BaselineExpectationError: Outside the band (nothing happens when ``expected`` is None).
    """
    if expected is None or abs(top1_acc - expected) <= tolerance + 1e-9:
        return
    msg = (f"clean top-1 {top1_acc:.2f}% is outside the expected {expected:g}% ± {tolerance:g} "
           f"(--expect-top1 {expected:g} --tolerance {tolerance:g}); no noisy trial was run")
    raise BaselineExpectationError(msg)


def check_baseline(row: dict[str, Any], classes: int, expect_top1: float | None, tolerance: float,
                   io=None) -> list[str]:
    """Both checks on a finished baseline row (``top1_correct``, ``images``).

    ``io`` (the run's :class:`~onnxnoise.model.ModelIO`) names, in a chance-level warning of a
    model with several float outputs, the one read and the others (``--score-output``): a
    feature output first in the graph scores at chance.

    Returns:
        The warnings (a baseline at chance level), possibly empty.

    Raises:
        BaselineExpectationError: See :func:`check_expected_top1`.
    """
    check_expected_top1(100.0 * row["top1_correct"] / row["images"], expect_top1, tolerance)
    warning = chance_warning(row["top1_correct"], row["images"], classes)
    others = io.other_outputs() if io is not None and warning else ""
    if others:
        warning += f"; the scores were read from `{io.output_name}`{others}"
    return [warning] if warning else []


class _Continued(Progress):
    """Forwards progress of the baseline and the noisy trials to one receiver, started once."""

    def __init__(self, inner: Progress) -> None:
        self.inner = inner

    def group(self, trials: int) -> None:
        self.inner.group(trials)

    def advance(self, images: int) -> None:
        self.inner.advance(images)

    def trial_done(self, row: dict) -> None:
        self.inner.trial_done(row)


@dataclass(frozen=True)
class CheckedRun:
    """What :func:`run_baseline_first` did.

    Attributes:
        result: Trials run, failed and taken, baseline and noisy together.
        warnings: Baseline warnings (:func:`chance_warning`).
    """

    result: ExecutionResult
    warnings: list[str]


def run_baseline_first(
    executor: Executor,
    context,
    planned: Sequence[PlannedTrial],
    recorder: Recorder,
    progress: Progress | None,
    find_row: Callable[[str], dict[str, Any] | None],
) -> CheckedRun:
    """Run the plan's baseline, check it, then run the rest of ``planned``.

    The baseline may already be recorded (a resumed sweep): it is then looked up with
    ``find_row`` and checked all the same, before any noisy trial runs.

    Args:
        executor: Runs the trials (a failed baseline raises ``BaselineError`` there).
        context: The :class:`~onnxnoise.engine.context.RunContext`; its config gives
            ``expect_top1`` and ``tolerance``, its data the labels.
        planned: Trials to run now, in order (the baseline may be absent: already done).
        recorder: Receives the rows.
        progress: Progress receiver, started once with ``len(planned)``.
        find_row: ``key -> recorded row`` (``None`` if not recorded); asked for the
            key of ``context``'s baseline trial.

    Returns:
        The :class:`CheckedRun`.

    Raises:
        BaselineExpectationError: The baseline is outside ``expect_top1 +- tolerance``
            (no noisy trial of ``planned`` was run).
        BaselineError: The baseline trial failed.
    """
    progress = progress or Progress()
    progress.start(len(planned), len(context.data))
    each = _Continued(progress)
    first = [item for item in planned if item.trial.mode == "baseline"]
    rest = [item for item in planned if item.trial.mode != "baseline"]
    done = executor.run(context, first, recorder, each)
    warnings: list[str] = []
    key = first[0].key if first else trial_key(Trial("baseline", None, (), None, None), context.key_fields())
    row = find_row(key)
    if row is not None and row.get("error") is None and row.get("images"):
        config = context.config
        warnings = check_baseline(row, chance_classes(context.data.labels), config.expect_top1, config.tolerance,
                                  context.io)
    more = executor.run(context, rest, recorder, each) if rest else ExecutionResult(0, 0, 0)
    result = ExecutionResult(ran=done.ran + more.ran, failed=done.failed + more.failed, taken=done.taken + more.taken)
    return CheckedRun(result=result, warnings=warnings)
