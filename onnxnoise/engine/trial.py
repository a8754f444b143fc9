"""Run one trial: the only code that turns (run context, trial) into a trial row.

Draw the noise (:func:`onnxnoise.noise.draw_noise`), build the session (the full
model, or the suffix after the noised layer with prefix reuse), evaluate and count
(:meth:`onnxnoise.engine.evaluate.EvalSet.count`, label offset included), time it,
and turn any failure into an error row. ``bench``, ``sweep``, ``recheck`` and the
throughput script all call :func:`run_trial`, or :func:`run_trials` for a group of
per-layer trials evaluated in lockstep with prefix reuse (the same rows, built by the
same helpers; only the order of the batch runs differs).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from onnxnoise.engine.evaluate import Outcomes, evaluate, paired_counts
from onnxnoise.engine.graph_edit import GraphEdit
from onnxnoise.engine.plan import Trial
from onnxnoise.engine.runtime import ort_message
from onnxnoise.engine.stages import stage_edit
from onnxnoise.errors import BaselineError
from onnxnoise.noise import NoiseDraw, draw_noise
from onnxnoise.store.schema import IDENTITY, PAIRED, TRIAL_COLUMNS, column_names, measured_values

__all__ = ["BASELINE_TRIAL", "run_trial", "run_trials", "clean_outcomes", "draw_trial"]

#: The clean trial (no noise) every plan starts with.
BASELINE_TRIAL = Trial("baseline", None, (), None, None)


def run_trial(
    context,
    trial: Trial,
    *,
    prefix_reuse: bool = False,
    on_batch: Callable[[int], None] | None = None,
    threads: int | None = None,
    drawn: Callable[[], NoiseDraw] | None = None,
) -> dict[str, Any]:
    """Execute ``trial`` in ``context`` and return its row.

    Args:
        context: The :class:`~onnxnoise.engine.context.RunContext`.
        trial: What to noise, at which strength and seed.
        prefix_reuse: Evaluate a per-layer trial on the suffix after the noised
            layer, from clean activations kept by ``context.prefix_runner()`` (same
            counts as the full model).
        on_batch: Called with the number of images after each batch.
        threads: CPU intra-op threads of a full-model trial's session (default: the run's
            ``--threads``; :mod:`onnxnoise.engine.layout` runs trials side by side with fewer).
            Counts do not depend on it.
        drawn: Gives the trial's draw, already made (:func:`draw_trial` run ahead while the trial
            before ran: :func:`onnxnoise.engine.layout.run_side_by_side`); its exception, if any,
            becomes the trial's error row. Default: the draw is made here. The same values
            either way.

    Returns:
        The trial row: every column of :data:`onnxnoise.store.TRIAL_COLUMNS` but those of
        role ``identity`` (the recorder adds the key) and ``finished_at`` (null until
        recorded). The settings come from ``context.row_fields()``, the trial's own columns
        from ``trial.to_dict()``, the measured columns from
        :func:`onnxnoise.store.schema.measured_values` (the evaluation, the draw's counters,
        and the paired counts against the clean model on the same images,
        :func:`~onnxnoise.engine.evaluate.paired_counts`; 0 for the baseline, which becomes
        the context's clean reference). A failure (ONNX Runtime error, invalid noise, out
        of memory, ...) gives a row with ``error`` set and null measured columns instead of
        an exception.

    Raises:
        BaselineError: A noisy trial needs the clean reference, none was measured in
            this context yet (a resumed sweep) and the clean pass fails.
    """
    row = _start_row(context, trial)
    reference = None if trial.mode == "baseline" else clean_outcomes(context)
    started = time.perf_counter()
    try:
        draw = drawn() if drawn is not None else draw_trial(context, trial)
        edit = _edit(context, trial)
        if prefix_reuse and trial.mode == "per-layer":
            runner = context.prefix_runner()
            counts = runner.evaluate(draw.arrays, on_batch=on_batch, edit=edit)
            provider = runner.provider
        else:
            session = context.factory.create(draw.arrays, edit=edit, threads=threads)
            counts = evaluate(session, context.data, on_batch=on_batch)
            provider = session.provider
    except Exception as exc:  # noqa: BLE001 - every failure becomes a visible error row
        return _error_row(row, exc, time.perf_counter() - started)
    return _finish_row(context, row, counts, draw, reference, provider, time.perf_counter() - started, edit)


def run_trials(
    context,
    trials: Sequence[Trial],
    *,
    prefix_reuse: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Execute several trials and return their rows (in the given order), as :func:`run_trial` would.

    Per-layer trials with prefix reuse run in lockstep
    (:meth:`~onnxnoise.engine.prefix.PrefixRunner.evaluate_lockstep`): batch by batch, the
    clean prefix runs once for all of them and no cut is kept, so memory stays bounded by
    one batch whatever the dataset size while the prefix work is shared. Any other
    trial (or a group of one) runs through :func:`run_trial`. Rows are the same as
    :func:`run_trial`'s (same draws, counts and paired counts); ``seconds`` is the
    trial's own noise draw, session build and suffix runs plus an equal share of the
    group's clean prefix work.

    Raises:
        BaselineError: As :func:`run_trial`.
    """
    lockstep = prefix_reuse and len(trials) > 1 and all(t.mode == "per-layer" for t in trials)
    if not lockstep:
        return [run_trial(context, t, prefix_reuse=prefix_reuse, on_batch=on_batch) for t in trials]
    reference = clean_outcomes(context)
    rows = [_start_row(context, t) for t in trials]
    draws: list[NoiseDraw | None] = [None] * len(trials)
    edits: list[GraphEdit | None] = [_edit(context, t) for t in trials]
    spent = [0.0] * len(trials)
    failed: dict[int, Exception] = {}
    for i, trial in enumerate(trials):
        started = time.perf_counter()
        try:
            draws[i] = draw_trial(context, trial)
        except Exception as exc:  # noqa: BLE001
            failed[i] = exc
        spent[i] = time.perf_counter() - started
    runner = context.prefix_runner()
    todo = [i for i in range(len(trials)) if i not in failed]
    before = runner.stats.prefix_seconds
    started = time.perf_counter()
    results = runner.evaluate_lockstep([draws[i].arrays for i in todo], on_batch=on_batch,
                                       edits=[edits[i] for i in todo])
    elapsed = time.perf_counter() - started
    share = (runner.stats.prefix_seconds - before) / max(len(todo), 1)
    own = (elapsed - (runner.stats.prefix_seconds - before)) / max(len(todo), 1)
    by_trial = dict(zip(todo, results))
    out = []
    for i, trial in enumerate(trials):
        result = failed[i] if i in failed else by_trial[i]
        seconds = spent[i] + (0.0 if i in failed else share + own)
        if isinstance(result, Exception):
            out.append(_error_row(rows[i], result, seconds))
        else:
            out.append(_finish_row(context, rows[i], result, draws[i], reference, runner.provider, seconds,
                                   edits[i]))
    return out


def _start_row(context, trial: Trial) -> dict[str, Any]:
    """Every row column (null until measured) with the context's settings and the trial's own columns."""
    row = dict.fromkeys(_row_columns(), None)
    row.update(context.row_fields(), **trial.to_dict(), layers_noised=len(trial.layers))
    return row


def _row_columns() -> list[str]:
    identity = set(column_names(IDENTITY))
    return [name for name in TRIAL_COLUMNS if name not in identity and name != "finished_at"]


def _error_row(row: dict[str, Any], exc: Exception, seconds: float) -> dict[str, Any]:
    """``row`` with null counts and ``error`` set from ``exc``."""
    detail = f"{type(exc).__name__}: {ort_message(exc)}"
    row.update(measured_values(None), provider=None, seconds=seconds, error=detail)
    return row


def _finish_row(context, row: dict[str, Any], counts: Outcomes, draw: NoiseDraw, reference: Outcomes | None,
                provider: str | None, seconds: float, edit: GraphEdit | None = None) -> dict[str, Any]:
    """``row`` with the measured columns: evaluation counts, the draw's counters, the paired counts and the
    counters of the tile's stages (``edit.tally``; NULL without stages).

    The baseline (no ``reference``) becomes the context's clean reference, paired counts 0.
    """
    if reference is None:
        context.clean_outcomes = counts
        paired = dict.fromkeys(column_names(PAIRED), 0)
    else:
        paired = paired_counts(reference, counts)
        if context.outcome_sink is not None:
            context.outcome_sink(row, counts)
    stages = None if edit is None else edit.tally
    row.update(measured_values({"evaluation": counts, "draw": draw, "paired": paired, "stages": stages}),
               provider=provider, seconds=seconds, error=None)
    return row


def clean_outcomes(context, *, stored: Mapping[str, Any] | None = None) -> Outcomes:
    """The clean model's per-image outcomes in ``context``: the reference of every paired count.

    The baseline trial sets them (``context.clean_outcomes``); when none ran in this
    context (a resumed sweep whose baseline row is stored), the baseline trial is run
    here once, through :func:`run_trial`, and its row is not recorded.

    Args:
        context: The :class:`~onnxnoise.engine.context.RunContext`.
        stored: The stored baseline row of this context, if any: its columns measured by
            the evaluation (source ``evaluation``: ``images``, ``top1_correct``,
            ``top5_correct``, ``nan_count``) must equal the clean pass's where stored
            (checked only when this call runs the clean pass).

    Returns:
        The :class:`~onnxnoise.engine.evaluate.Outcomes` (``(N,)`` arrays, 6 bytes per image).

    Raises:
        BaselineError: The clean pass fails, or differs from ``stored`` (the stored
            rows were measured under conditions the trial key does not cover).
    """
    if context.clean_outcomes is not None:
        return context.clean_outcomes
    row = run_trial(context, BASELINE_TRIAL)
    if row["error"] is not None:
        msg = f"the clean pass (the paired counts' reference) failed, so no noisy trial was run: {row['error']}"
        raise BaselineError(msg)
    if stored is not None and stored.get("error") is None:
        differ = [f"{name} {stored.get(name)} stored, {row[name]} now" for name in column_names(source="evaluation")
                  if stored.get(name) is not None and stored.get(name) != row[name]]
        if differ:
            context.clean_outcomes = None
            msg = (f"the clean model now counts differently from the stored baseline row ({'; '.join(differ)}): "
                   "the store was measured under other conditions; write this run to a new folder (--out)")
            raise BaselineError(msg)
    return context.clean_outcomes


def _edit(context, trial: Trial) -> GraphEdit | None:
    """The trial's graph edit: the tile's stages in the layers it noises (``None``: baseline, stages off)."""
    return stage_edit(getattr(context, "stages", None), trial.layers, trial.seed)


def draw_trial(context, trial: Trial) -> NoiseDraw:
    """The noise draw of ``trial`` in ``context`` (:func:`onnxnoise.noise.draw_noise` with the run's
    settings and statistics); no arrays for the baseline. Depends only on the trial and the context."""
    if trial.mode == "baseline":
        return NoiseDraw(arrays={})
    by_name = context.layers_by_name
    layers = [by_name[name] for name in trial.layers]
    noise = context.config.noise
    return draw_noise(noise.noise_model, trial.strength, trial.seed, layers, context.initializers, noise.policies,
                      model_layers=context.layers, tile_rows=context.config.tile.tile_rows, stats=context.noise_stats)
