"""What prefix reuse did: time, counts and bytes, summed over a runner's trials."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PrefixStats"]


@dataclass
class PrefixStats:
    """Work done by a :class:`~onnxnoise.engine.prefix.PrefixRunner`, in seconds, counts and bytes.

    Attributes:
        trials: Trials evaluated (kept cut and lockstep together).
        lockstep_groups: Groups evaluated in lockstep
            (:meth:`~onnxnoise.engine.prefix.PrefixRunner.evaluate_lockstep` calls with a trial left
            to run).
        prefix_seconds: Time computing clean cut activations (segment session builds and runs,
            spill writes).
        build_seconds: Time building suffix sessions (model slicing + ORT session creation).
        first_run_seconds: Time of each trial's first suffix batch (a new session's cold first run).
        suffix_seconds: Time of the other suffix batches (``suffix_batches`` of them).
        load_seconds: Time in trials reading spilled batches and recomputing batches kept nowhere.
        advances: Kept-cut moves computed incrementally from the previous cut.
        rebuilds: Kept-cut moves computed from the input images.
        fallbacks: Trials that recomputed at least one batch's cut from the images for lack
            of room (not in ``memory_limit_bytes``, no disk; a warning says so). No trial ever
            falls back to the full model.
        kept_batches, spilled_batches, recomputed_batches: Where the batches of the kept cuts
            went (memory, spill file, nowhere: recomputed in each trial, by choice or for lack
            of room), summed over the cuts computed. Lockstep keeps none.
        peak_kept_bytes: Most bytes of cut activations held in memory at once (device
            memory on the CUDA provider); never above ``memory_limit_bytes``.
        spill_bytes_written, spill_bytes_read: Disk traffic of spilled batches.
    """

    trials: int = 0
    lockstep_groups: int = 0
    prefix_seconds: float = 0.0
    build_seconds: float = 0.0
    first_run_seconds: float = 0.0
    suffix_seconds: float = 0.0
    suffix_batches: int = 0
    load_seconds: float = 0.0
    advances: int = 0
    rebuilds: int = 0
    fallbacks: int = 0
    kept_batches: int = 0
    spilled_batches: int = 0
    recomputed_batches: int = 0
    peak_kept_bytes: int = 0
    spill_bytes_written: int = 0
    spill_bytes_read: int = 0
