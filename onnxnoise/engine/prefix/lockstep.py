"""Prefix reuse in lockstep: a group of trials batch by batch, sharing the clean prefix, keeping no cut.

For each batch the clean prefix runs once, segment by segment, in the order of the
trials' split positions, and each trial's suffix session runs on the cut values at its
own position as soon as they exist. Memory holds one batch's activations and the group's
suffix sessions, whatever the dataset size; the clean prefix work is one forward pass (up
to the last position) per group, shared by its trials. A per-layer sweep's plan order
(every layer at one strength and seed, then the next) gives groups of one pass over the
layers (:class:`~onnxnoise.engine.executor.LocalExecutor`).

How many trials a group may hold is bounded by the memory of their suffix sessions
(:func:`lockstep_group_limit`), not by ``--prefix-memory`` (which bounds a kept cut).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from onnxnoise.config import DEFAULT_LOCKSTEP_MEMORY_GIB
from onnxnoise.engine.evaluate import Outcomes
from onnxnoise.engine.graph_edit import GraphEdit
from onnxnoise.engine.prefix.sessions import SplitSessions
from onnxnoise.engine.prefix.stats import PrefixStats
from onnxnoise.engine.runtime import Session

__all__ = ["MAX_LOCKSTEP", "SESSION_BYTES", "DEFAULT_LOCKSTEP_MEMORY", "lockstep_group_limit", "run_lockstep"]

#: Most trials one lockstep group holds, whatever the memory allows.
MAX_LOCKSTEP = 256

#: Memory of one idle suffix session beyond twice its weights (graph, kernels, ONNX Runtime's
#: bookkeeping; measured: ResNet56 BN, 111 suffix sessions, CPU arenas off: about 21 MiB each, 7 of them
#: twice its weights).
SESSION_BYTES = 16 << 20

#: Default memory, in bytes, the suffix sessions of one lockstep group may take together
#: (:data:`onnxnoise.config.DEFAULT_LOCKSTEP_MEMORY_GIB` GiB).
DEFAULT_LOCKSTEP_MEMORY = int(DEFAULT_LOCKSTEP_MEMORY_GIB * 2**30)


def lockstep_group_limit(weight_bytes: int, memory_bytes: int = DEFAULT_LOCKSTEP_MEMORY) -> int:
    """Most trials one lockstep group may run together, their suffix sessions within ``memory_bytes``.

    Each suffix session is counted at its worst, the whole model: ``2 * weight_bytes`` (the
    weights and ONNX Runtime's pre-packed copies) plus :data:`SESSION_BYTES`.

    Args:
        weight_bytes: Bytes of the model's initializers, all together.
        memory_bytes: Memory the group's suffix sessions may take together, in bytes.

    Returns:
        ``min(MAX_LOCKSTEP, max(1, memory_bytes // (2 * weight_bytes + SESSION_BYTES)))``: at
        least 1 (a trial always runs), at most :data:`MAX_LOCKSTEP`. E.g. 4 GiB: 3 for VGG16
        (553 MiB of weights), 18 for 100 MiB, 227 for 1 MiB.
    """
    per_session = 2 * int(weight_bytes) + SESSION_BYTES
    return int(min(MAX_LOCKSTEP, max(1, int(memory_bytes) // per_session)))


class _Inline:
    """Stand-in for a ``ThreadPoolExecutor`` that runs each call at once (one worker)."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn: Callable, *args: object) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001 - delivered through the future, as a pool would
            future.set_exception(exc)
        return future


def run_lockstep(
    sessions: SplitSessions,
    replacements: Sequence[Mapping[str, np.ndarray]],
    *,
    parallel: int,
    stats: PrefixStats,
    on_batch: Callable[[int], None] | None = None,
    edits: Sequence[GraphEdit | None] | None = None,
) -> list[Outcomes | Exception]:
    """Evaluate several trials together, batch by batch, without keeping any cut (module doc).

    Counts equal the kept-cut path's (the same suffix models, the same segment chain as a
    kept cut advanced layer by layer) and the full model's.

    Args:
        sessions: The shared :class:`~onnxnoise.engine.prefix.sessions.SplitSessions`.
        replacements: Per trial, ``tensor name -> noisy array``.
        parallel: Suffix sessions run at once on the CPU, each with one intra-op thread, while
            the next prefix segment is computed (``1``: one at a time with the sessions' threads).
            On the CUDA provider they run one after another (one stream).
        stats: Where the work done is added up.
        on_batch: Called with the number of images evaluated (all trials of a batch together).
        edits: Per trial, its suffix graph's rewrite (the tile's stages) or ``None``; counters go
            to each edit's ``tally``. Each suffix session sees the batches in dataset order, as on
            the kept-cut path and the full model, so read noise is the same on every path.

    Returns:
        Per trial, in the given order, its :class:`~onnxnoise.engine.evaluate.Outcomes`, or the
        exception that stopped it (the others go on).
    """
    n = len(replacements)
    edits = list(edits) if edits is not None else [None] * n
    positions = [sessions.position(r) for r in replacements]
    order = sorted(range(n), key=lambda i: positions[i])
    results: list[Outcomes | Exception | None] = [None] * n
    suffixes: list[Session | None] = [None] * n
    workers = max(1, parallel)
    for i in order:
        started = time.perf_counter()
        try:
            suffixes[i] = sessions.suffix(positions[i], replacements[i], threads=1 if workers > 1 else None,
                                          edit=edits[i])
        except Exception as exc:  # noqa: BLE001 - that trial's error row; the others run
            results[i] = exc
        stats.build_seconds += time.perf_counter() - started
    if sessions.on_device:
        workers = 1  # one GPU stream: sessions one after another
    live = [i for i in order if results[i] is None]
    stats.trials += len(live)
    stats.lockstep_groups += bool(live)
    parts: list[list[Outcomes]] = [[] for _ in range(n)]
    seen: list[np.ndarray] = []
    first = set(live)
    data = sessions.data

    def suffix(i: int, values: dict, labels: np.ndarray) -> tuple[Outcomes, float]:
        started = time.perf_counter()
        out = sessions.scores(suffixes[i], values)
        counts = data.count(out.reshape(out.shape[0], -1)[: len(labels)], labels)
        return counts, time.perf_counter() - started

    with ThreadPoolExecutor(workers) if workers > 1 else _Inline() as pool:
        for feed, labels in zip(sessions.inputs() if live else (), data.batch_labels()):
            position, values = 0, feed
            running = []
            for i in live:
                if results[i] is not None:
                    continue
                if positions[i] != position:
                    started = time.perf_counter()
                    try:
                        values = sessions.cut_values(values, position, positions[i])
                        position = positions[i]
                    except Exception as exc:  # noqa: BLE001
                        results[i] = exc
                        continue
                    finally:
                        stats.prefix_seconds += time.perf_counter() - started
                running.append((i, pool.submit(suffix, i, values, labels)))
            for i, future in running:  # in trial order, so each trial's parts stay in batch order
                try:
                    counts, elapsed = future.result()
                except Exception as exc:  # noqa: BLE001
                    results[i] = exc
                    continue
                parts[i].append(counts)
                if i in first:
                    stats.first_run_seconds += elapsed
                    first.discard(i)
                else:
                    stats.suffix_seconds += elapsed
                    stats.suffix_batches += 1
            seen.append(labels)
            if on_batch is not None:
                on_batch(len(labels) * sum(results[i] is None for i in live))
    for i in live:
        if results[i] is None:
            try:
                results[i] = data.merge(parts[i], seen)
            except Exception as exc:  # noqa: BLE001
                results[i] = exc
    return results
