"""Executing planned trials: the seam between planning, running and recording.

Planning (:func:`onnxnoise.engine.plan.plan_trials`) says which trials and their
keys; an :class:`Executor` runs them with :func:`onnxnoise.engine.trial.run_trial`
and hands each row to a :class:`Recorder` (the trial store for sweeps, memory for
bench). :class:`LocalExecutor` runs in this process, in plan order (per-layer
trials walk the layers forward, so prefix reuse advances its cut incrementally). A
distributed executor is another :class:`Executor` subclass; nothing else changes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import polars as pl

from onnxnoise.engine.plan import KEY_VERSION, PlannedTrial
from onnxnoise.engine.run_errors import baseline_failure
from onnxnoise.engine.trial import run_trial
from onnxnoise.store.schema import JSON_COLUMNS, TRIAL_COLUMNS, canonical_json, trial_frame

__all__ = ["Progress", "Recorder", "MemoryRecorder", "ExecutionResult", "Executor", "LocalExecutor"]


class Progress:
    """Receives progress events; the CLI subclasses it with a rich progress bar. Silent by default."""

    def start(self, trials: int, images_per_trial: int) -> None:
        """Called once before the first trial."""

    def advance(self, images: int) -> None:
        """Called after each batch with its number of images."""

    def trial_done(self, row: dict) -> None:
        """Called with each finished trial's row (``key`` included)."""


class Recorder(Protocol):
    """Where trial rows go."""

    def has(self, key: str) -> bool:
        """Whether a finished (error-free) row with this key is recorded."""

    def record(self, row: dict[str, Any]) -> bool:
        """Record one row; ``False`` if another writer recorded that key first."""


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
        return trial_frame([
            {name: (canonical_json(row[name]) if name in JSON_COLUMNS and row.get(name) is not None
                    else row.get(name)) for name in TRIAL_COLUMNS}
            for row in self.rows
        ])


@dataclass(frozen=True)
class ExecutionResult:
    """What an executor did.

    Attributes:
        ran: Trials run by this executor.
        failed: Of those, trials that ended with an error row.
        taken: Trials skipped because another writer recorded them first.
    """

    ran: int
    failed: int
    taken: int


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


class LocalExecutor(Executor):
    """In-process executor, plan order, one trial at a time.

    Args:
        prefix_reuse: Evaluate per-layer trials through the context's prefix runner.
    """

    def __init__(self, *, prefix_reuse: bool = True) -> None:
        self.prefix_reuse = prefix_reuse

    def run(self, context, planned: Sequence[PlannedTrial], recorder: Recorder,
            progress: Progress | None = None) -> ExecutionResult:
        """See :meth:`Executor.run`; a trial another writer finished meanwhile is skipped.

        Raises:
            BaselineError: The clean baseline failed (a deterministic failure: every noisy
                trial would fail too, or be compared with nothing); its row is recorded first.
                Built by :func:`onnxnoise.engine.run_errors.baseline_failure` (an ONNX
                Runtime error while running a batch: node, input fed, likely flag).
        """
        progress = progress or Progress()
        progress.start(len(planned), len(context.data))
        ran = failed = taken = 0
        for item in planned:
            if recorder.has(item.key):
                taken += 1
                continue
            row = run_trial(context, item.trial, prefix_reuse=self.prefix_reuse, on_batch=progress.advance)
            row.update(key=item.key, key_version=KEY_VERSION)
            if not recorder.record(row):
                taken += 1
                continue
            ran += 1
            failed += row["error"] is not None
            progress.trial_done(row)
            if item.trial.mode == "baseline" and row["error"] is not None:
                raise baseline_failure(context, row["error"])
        return ExecutionResult(ran=ran, failed=failed, taken=taken)
