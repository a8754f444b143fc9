"""Executing planned trials: the seam between planning, running and recording.

Planning (:func:`onnxnoise.engine.plan.plan_trials`) says which trials and their
keys; an :class:`Executor` runs them with :func:`onnxnoise.engine.trial.run_trial`
and hands each row to a :class:`Recorder` (the trial store for sweeps, memory for
bench). :class:`LocalExecutor` runs in this process, in plan order (per-layer
trials of one pass over the layers run in lockstep, sharing the clean prefix work). A
distributed executor is another :class:`Executor` subclass; nothing else changes.

With ``--seeds auto`` (:class:`~onnxnoise.engine.plan.SeedRule`) the plan holds seeds
``0 .. max_seeds-1`` and the executor decides trial by trial: before the draw with seed
``s`` of a group (same mode, strength and layers) it looks at that group's draws with
seeds ``< s`` (run now, or recorded before: looked up by key) and skips the draw when
:func:`~onnxnoise.engine.plan.enough_draws` says the group has enough. The decision for
seed ``s`` depends only on those recorded draws, so a resumed sweep decides as a fresh one.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from onnxnoise.data.loading import usable_cpus
from onnxnoise.engine.layout import TrialLayout, run_side_by_side, whole_model_layout
from onnxnoise.engine.plan import PlannedTrial, SeedRule, Trial, draw_group, plan_trial, seed_rule, trial_key
from onnxnoise.engine.prefix import lockstep_group_limit
from onnxnoise.engine.run_errors import baseline_failure
from onnxnoise.engine.trial import BASELINE_TRIAL, clean_outcomes, run_trials
from onnxnoise.lazy import lazy_module
from onnxnoise.store.schema import trial_frame

pl = lazy_module("polars")

__all__ = ["Progress", "Recorder", "MemoryRecorder", "ExecutionResult", "Executor", "LocalExecutor", "DrawHistory",
           "SIDE_BY_SIDE_ROUNDS"]

log = logging.getLogger(__name__)

#: Whole-model trials side by side are recorded in groups of at most this many times the layout's sessions:
#: within a group a trial starts as soon as another ends (no core waits for the slowest of each pair), and a
#: killed run loses at most the group in progress.
SIDE_BY_SIDE_ROUNDS = 4


class Progress:
    """Receives progress events; the CLI subclasses it with a rich progress bar. Silent by default."""

    def start(self, trials: int, images_per_trial: int) -> None:
        """Called once before the first trial."""

    def group(self, trials: int) -> None:
        """Called before ``trials`` trials run together (per-layer trials in lockstep: each batch of images
        goes through all of them); until their last :meth:`trial_done`, :meth:`advance` counts the images
        of all of them, up to ``trials x images_per_trial``. Without this call a trial runs alone."""

    def advance(self, images: int) -> None:
        """Called after each batch with its number of images (summed over the trials of a :meth:`group`)."""

    def trial_done(self, row: dict) -> None:
        """Called with each finished trial's row (``key`` included)."""


class Recorder(Protocol):
    """Where trial rows go."""

    def has(self, key: str) -> bool:
        """Whether a finished (error-free) row with this key is recorded."""

    def record(self, row: dict[str, Any]) -> bool:
        """Record one row; ``False`` if another writer recorded that key first."""

    def find(self, key: str) -> dict[str, Any] | None:
        """The recorded row with ``key`` (failed rows too), or None."""


class MemoryRecorder:
    """Keeps rows in a list (``bench``); optionally calls ``on_record(rows)`` after each.

    Args:
        on_record: Called with all rows so far after every record (e.g. to write the
            trial table, so a half-finished run loses nothing).
    """

    def __init__(self, on_record: Callable[[list[dict[str, Any]]], None] | None = None) -> None:
        self.rows: list[dict[str, Any]] = []
        self._on_record = on_record

    def has(self, key: str) -> bool:
        """Whether a finished row with ``key`` is held."""
        return any(r["key"] == key and r.get("error") is None for r in self.rows)

    def find(self, key: str) -> dict[str, Any] | None:
        """The held row with ``key``, or None."""
        return next((row for row in self.rows if row["key"] == key), None)

    def record(self, row: dict[str, Any]) -> bool:
        """Append ``row`` (replacing an earlier failed row of the same key)."""
        if self.has(row["key"]):
            return False
        self.rows = [r for r in self.rows if r["key"] != row["key"]] + [row]
        if self._on_record is not None:
            self._on_record(self.rows)
        return True

    def frame(self) -> pl.DataFrame:
        """The rows as a table with the trial store's schema (as ``TrialStore.to_frame()``).

        Returns:
            Columns of :data:`onnxnoise.store.TRIAL_COLUMNS` (JSON columns as sorted-key
            JSON text; ``run_id``/``finished_at`` null) plus ``top1_acc``, ``top5_acc``
            (percent, null for failed trials).
        """
        return trial_frame(self.rows)


@dataclass(frozen=True)
class ExecutionResult:
    """What an executor did.

    Attributes:
        ran: Trials run by this executor.
        failed: Of those, trials that ended with an error row.
        taken: Trials skipped because another writer recorded them first.
        settled: Trials not run because their group had enough draws (``--seeds auto``).
    """

    ran: int
    failed: int
    taken: int
    settled: int = 0


class Executor(ABC):
    """Runs planned trials of one run context and records their rows."""

    @abstractmethod
    def run(self, context, planned: Sequence[PlannedTrial], recorder: Recorder,
            progress: Progress | None = None) -> ExecutionResult:
        """Run every trial of ``planned`` not yet in ``recorder``.

        Args:
            context: The :class:`~onnxnoise.engine.context.RunContext`.
            planned: Keyed trials, in the order they should run.
            recorder: Receives each row (with ``key``) as soon as it is finished.
            progress: Progress receiver.
        """

    def close(self) -> None:
        """Release what the executor holds between runs (workers); nothing for the local one."""


class LocalExecutor(Executor):
    """In-process executor, plan order.

    With prefix reuse, consecutive per-layer trials of one pass over the layers (same
    strength and seed) run as one lockstep group
    (:func:`~onnxnoise.engine.trial.run_trials`): batch by batch, sharing the clean
    prefix work, with no cut kept, so memory is bounded by a batch whatever the dataset
    size. A group's rows are recorded when it ends (a killed run loses at most the group
    in progress); a group holds at most as many trials as their suffix sessions fit in
    ``lockstep_memory_bytes`` (:func:`~onnxnoise.engine.prefix.lockstep_group_limit`, at most
    :data:`~onnxnoise.engine.prefix.MAX_LOCKSTEP`). Consecutive whole-model trials (``all``, or
    per-layer without prefix reuse) run side by side in the run's :class:`~onnxnoise.engine.layout.TrialLayout`
    (:func:`~onnxnoise.engine.layout.run_side_by_side`, groups of up to :data:`SIDE_BY_SIDE_ROUNDS` x its
    sessions, recorded when the group ends, or one at a time in one group of every consecutive such
    trial, each recorded as it ends, the next draw made ahead; with ``--seeds auto`` never two draws of one
    group at once, so each draw is decided on the rows of the lower seeds, as one at a time). The
    baseline runs alone. Rows and keys do not depend on the grouping or the layout.

    Args:
        prefix_reuse: Evaluate per-layer trials through the context's prefix runner.
        lockstep: Group per-layer trials as above (default). False runs each alone on the
            runner's kept cut, as a Ray worker does (for benchmarks of that path).
        lockstep_memory_bytes: Memory, in bytes, the suffix sessions of one lockstep group may
            take together; default ``None``: the run's ``--lockstep-memory``
            (``context.config.lockstep_memory`` GiB). Group sizes never change counts.
            ``--prefix-memory`` does not enter it.
        layout: How whole-model trials share the CPU; default ``None``: the rule of
            :func:`~onnxnoise.engine.layout.whole_model_layout` for the run (:meth:`trial_layout`).

    Attributes:
        last_layout: The layout of the last :meth:`run` (``None`` before), for ``bench.json``.

    Raises:
        ValueError: ``lockstep_memory_bytes`` is not a positive integer.
    """

    def __init__(self, *, prefix_reuse: bool = True, lockstep: bool = True,
                 lockstep_memory_bytes: int | None = None, layout: TrialLayout | None = None) -> None:
        if lockstep_memory_bytes is not None and (isinstance(lockstep_memory_bytes, bool)
                                                  or not isinstance(lockstep_memory_bytes, int)
                                                  or lockstep_memory_bytes <= 0):
            msg = f"`lockstep_memory_bytes` must be a positive number of bytes, got {lockstep_memory_bytes!r}"
            raise ValueError(msg)
        self.prefix_reuse = prefix_reuse
        self.lockstep = lockstep
        self.lockstep_memory_bytes = lockstep_memory_bytes
        self.layout = layout
        self.last_layout: TrialLayout | None = None

    def run(self, context, planned: Sequence[PlannedTrial], recorder: Recorder,
            progress: Progress | None = None) -> ExecutionResult:
        """See :meth:`Executor.run`; a trial another writer finished meanwhile is skipped.

        Before the first noisy trial, the clean reference of the paired counts is taken
        from the baseline trial, or (resumed sweep) measured by
        :func:`~onnxnoise.engine.trial.clean_outcomes` and checked against the recorded
        baseline row. With ``--seeds auto`` draws of settled groups are skipped (module doc).

        Raises:
            BaselineError: The clean baseline failed (a deterministic failure: every noisy
                trial would fail too, or be compared with nothing); its row is recorded first.
                Built by :func:`onnxnoise.engine.run_errors.baseline_failure` (an ONNX
                Runtime error while running a batch: node, input fed, likely flag).
        """
        progress = progress or Progress()
        progress.start(len(planned), len(context.data))
        counts = {"ran": 0, "failed": 0, "taken": 0, "settled": 0}
        draws = DrawHistory(context, recorder, seed_rule(context.config.noise))
        group: list[PlannedTrial] = []
        limit = self.group_limit(context)
        layout = self.last_layout = self.layout or self.trial_layout(context)
        if any(self._kind(item.trial) == "side" for item in planned):
            log.info(layout.describe())

        def flush() -> None:
            if group:
                self._run_group(context, list(group), recorder, progress, draws, counts, layout)
                group.clear()

        for item in planned:
            kind = self._kind(item.trial)
            if group and not self._joins(group, item, kind, limit, layout, draws):
                flush()  # before deciding on this trial: --seeds auto reads the rows of earlier groups
            if draws.settled(item.trial):
                counts["settled"] += 1
                continue
            if recorder.has(item.key):
                counts["taken"] += 1
                continue
            if item.trial.mode != "baseline" and context.clean_outcomes is None:
                clean_outcomes(context, stored=recorder.find(trial_key(BASELINE_TRIAL, context.key_fields())))
            if kind != "alone":
                group.append(item)
                continue
            self._run_group(context, [item], recorder, progress, draws, counts, layout)
        flush()
        return ExecutionResult(**counts)

    def _kind(self, trial: Trial) -> str:
        """``lockstep`` (per-layer with prefix reuse), ``side`` (whole-model) or ``alone`` (the baseline)."""
        if trial.mode == "baseline":
            return "alone"
        return "lockstep" if self.prefix_reuse and trial.mode == "per-layer" else "side"

    def _joins(self, group: list[PlannedTrial], item: PlannedTrial, kind: str, limit: int, layout: TrialLayout,
               draws: DrawHistory) -> bool:
        """Whether ``item`` may run in the pending ``group`` (same kind, room left, no dependency)."""
        last = group[-1].trial
        if kind != self._kind(last):
            return False
        if kind == "lockstep":
            return _pass_of(last) == _pass_of(item.trial) and len(group) < limit
        # side by side; --seeds auto decides a draw on its group's lower seeds: those rows must be recorded first
        # one at a time rows are recorded as each trial ends: the group only spans the draws made ahead
        room = layout.sessions * SIDE_BY_SIDE_ROUNDS if layout.sessions > 1 else math.inf
        return kind == "side" and len(group) < room and (
            draws.rule is None or all(draw_group(g.trial) != draw_group(item.trial) for g in group))

    def _run_group(self, context, items: list[PlannedTrial], recorder: Recorder, progress: Progress,
                   draws: DrawHistory, counts: dict[str, int], layout: TrialLayout) -> None:
        """Run ``items`` (one trial, per-layer trials of one pass in lockstep, or whole-model trials side by
        side) and record their rows."""
        trials = [item.trial for item in items]
        alone = self._kind(trials[0]) == "side" and layout.sessions <= 1
        progress.group(1 if alone else len(items))  # one at a time: each trial's images (trial_done resets to 1)

        def record(i: int, row: dict) -> None:  # as each row is final: one at a time, a trial's as it ends
            item = items[i]
            row.update(key=item.key, key_version=item.key_version)
            if not recorder.record(row):
                counts["taken"] += 1
                return
            counts["ran"] += 1
            counts["failed"] += row["error"] is not None
            draws.add(item.trial, row)
            progress.trial_done(row)
            if item.trial.mode == "baseline" and row["error"] is not None:
                raise baseline_failure(context, row["error"])

        if self._kind(trials[0]) == "side":
            run_side_by_side(context, trials, layout, on_batch=progress.advance, on_row=record)
        else:
            for i, row in enumerate(run_trials(context, trials, prefix_reuse=self.prefix_reuse,
                                               on_batch=progress.advance)):
                record(i, row)

    def trial_layout(self, context) -> TrialLayout:
        """The rule's layout of whole-model trials in ``context`` (:func:`~onnxnoise.engine.layout.whole_model_layout`):
        the context's provider and ``--threads``, this process's CPUs, the model's weights and the lockstep memory."""
        weights = sum(int(a.nbytes) for a in context.initializers.values())
        memory = self.lockstep_memory_bytes or int(context.config.lockstep_memory * 2**30)
        return whole_model_layout(provider=context.provider, threads=context.config.threads, cpus=usable_cpus(),
                                  weight_bytes=weights, memory_bytes=memory)

    def group_limit(self, context) -> int:
        """Most per-layer trials this executor runs in one lockstep group in ``context``.

        :func:`~onnxnoise.engine.prefix.lockstep_group_limit` of the context's weights (all
        initializers, in bytes) and ``lockstep_memory_bytes`` (or the run's ``--lockstep-memory``);
        1 without lockstep.
        """
        if not self.lockstep:
            return 1
        weights = sum(int(a.nbytes) for a in context.initializers.values())
        memory = self.lockstep_memory_bytes or int(context.config.lockstep_memory * 2**30)
        return lockstep_group_limit(weights, memory)


def _pass_of(trial: Trial) -> tuple:
    """Per-layer trials of one pass over the layers (same strength and seed) run in lockstep."""
    return (trial.strength, trial.seed)


class DrawHistory:
    """Top-1 accuracies of each group's draws by seed, for the ``--seeds auto`` rule (no rule: inert).

    Every executor asks it before a draw (:meth:`settled`) and tells it each finished row
    (:meth:`add`), so local and Ray runs skip the same draws.

    Args:
        context: The run context (its key fields find recorded draws).
        recorder: Where earlier draws are looked up by key.
        rule: The :class:`~onnxnoise.engine.plan.SeedRule`, or ``None`` (fixed seeds: nothing is skipped).
    """

    def __init__(self, context, recorder: Recorder, rule: SeedRule | None) -> None:
        self.context, self.recorder, self.rule = context, recorder, rule
        self._top1: dict[tuple, dict[int, float | None]] = {}

    def add(self, trial: Trial, row: dict[str, Any]) -> None:
        """Remember a finished draw's top-1 accuracy (failed rows as missing)."""
        if self.rule is not None and trial.mode != "baseline":
            self._top1.setdefault(draw_group(trial), {})[trial.seed] = _top1(row)

    def settled(self, trial: Trial) -> bool:
        """Whether the draws of ``trial``'s group with lower seeds are enough (recorded ones looked up by key)."""
        if self.rule is None or trial.mode == "baseline":
            return False
        seen = self._top1.setdefault(draw_group(trial), {})
        fields = None
        for seed in range(trial.seed):
            if seed not in seen:
                fields = fields or self.context.key_fields()
                key = plan_trial(self.context, Trial(trial.mode, trial.layer_index, trial.layers, trial.strength,
                                                     seed), fields).key
                seen[seed] = _top1(self.recorder.find(key))
        return self.rule.enough([v for s, v in sorted(seen.items()) if s < trial.seed and v is not None])


def _top1(row: dict[str, Any] | None) -> float | None:
    """Top-1 accuracy in percent of a finished row; None for a missing or failed one."""
    if row is None or row.get("error") is not None or not row.get("images"):
        return None
    return 100.0 * row["top1_correct"] / row["images"]
