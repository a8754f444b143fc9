"""Run one trial: the only code that turns (run context, trial) into a trial row.

Draw the noise (:func:`onnxnoise.noise.draw_noise`), build the session (the full
model, or the suffix after the noised layer with prefix reuse), evaluate and count
(:meth:`onnxnoise.engine.evaluate.EvalSet.count`, label offset included), time it,
and turn any failure into an error row. ``bench``, ``sweep``, ``recheck`` and the
throughput script all call :func:`run_trial`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from onnxnoise.engine.evaluate import evaluate
from onnxnoise.engine.plan import Trial
from onnxnoise.engine.runtime import ort_message
from onnxnoise.noise import NoiseDraw, draw_noise

__all__ = ["ROW_COUNTERS", "run_trial"]

#: Counts every trial row carries (besides images and top-1 / top-5 hits).
ROW_COUNTERS: tuple[str, ...] = ("nan_count", "bn_variance_changed", "overflow_count", "clipped_count", "zeros_kept")


def run_trial(
    context,
    trial: Trial,
    *,
    prefix_reuse: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Execute ``trial`` in ``context`` and return its row.

    Args:
        context: The :class:`~onnxnoise.engine.context.RunContext`.
        trial: What to noise, at which strength and seed.
        prefix_reuse: Evaluate a per-layer trial on the suffix after the noised
            layer, from clean activations kept by ``context.prefix_runner()`` (same
            counts as the full model).
        on_batch: Called with the number of images after each batch.

    Returns:
        The trial row: the columns of :data:`onnxnoise.store.TRIAL_COLUMNS` except
        ``key``, ``run_id``, ``key_version`` and ``finished_at``. A failure (ONNX
        Runtime error, invalid noise, out of memory, ...) gives a row with ``error``
        set and null counts instead of an exception.
    """
    row: dict[str, Any] = {**context.row_fields(), **trial.to_dict(), "layers_noised": len(trial.layers)}
    started = time.perf_counter()
    try:
        draw = _draw(context, trial)
        if prefix_reuse and trial.mode == "per-layer":
            runner = context.prefix_runner()
            counts = runner.evaluate(draw.arrays, on_batch=on_batch)
            provider = runner.provider
        else:
            session = context.factory.create(draw.arrays)
            counts = evaluate(session, context.data, on_batch=on_batch)
            provider = session.provider
    except Exception as exc:  # noqa: BLE001 - every failure becomes a visible error row
        detail = f"{type(exc).__name__}: {ort_message(exc)}"
        row.update({name: None for name in ("images", "top1_correct", "top5_correct", *ROW_COUNTERS)})
        row.update(provider=None, seconds=time.perf_counter() - started, error=detail)
        return row
    row.update(
        images=counts.images, top1_correct=counts.top1_correct, top5_correct=counts.top5_correct,
        nan_count=counts.nan_count, **draw.counters(), provider=provider,
        seconds=time.perf_counter() - started, error=None,
    )
    return row


def _draw(context, trial: Trial) -> NoiseDraw:
    if trial.mode == "baseline":
        return NoiseDraw(arrays={})
    by_name = context.layers_by_name
    layers = [by_name[name] for name in trial.layers]
    noise = context.config.noise
    return draw_noise(noise.noise_model, trial.strength, trial.seed, layers, context.initializers, noise.policies,
                      model_layers=context.layers)
