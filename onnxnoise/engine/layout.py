"""How whole-model trials share the CPU: one session with every thread, or several trials side by side.

A trial's session with ``T`` intra-op threads splits each operator across the cores and waits for
the slowest at every operator; on small models (CIFAR ResNets) the cores idle between the many small
operators. ``k`` trials side by side, each session with ``T / k`` threads, keep every core on its own
trial: the clean ResNet20 pass ran 1.46 to 1.64x faster as two one-thread sessions than as one
two-thread session (issue 24, shared 2-core Xeon), the layout prefix reuse already uses for its
suffix sessions (:func:`onnxnoise.engine.prefix.run_lockstep`). docs/performance.md measures both
layouts in every benchmark round (``scripts/bench_throughput.py``).

The rule (:func:`whole_model_layout`), documented rather than probed, so that a run's layout does not
depend on the machine's load at start-up: on the CPU execution provider, with ``T = --threads`` (0:
one per usable CPU) of at least 2, ``k = T`` trials run side by side with ``T // k`` threads each (one
when ``k = T``), fewer when
their sessions would not fit in ``--lockstep-memory`` (counted as the lockstep group's suffix
sessions are: :func:`~onnxnoise.engine.prefix.lockstep_group_limit`) or when the ``k`` sessions'
weights would not fit together in the CPU's last-level cache (:func:`last_level_cache_bytes`); one
trial at a time otherwise (one thread, a GPU or another execution provider, a model too large for two
sessions or for two copies of its weights in the cache).

Why the cache: a session whose weights are not cache-resident reads them from memory at every batch;
``k`` sessions read ``k`` copies and share the memory bandwidth, where one ``T``-thread session reads
one. Measured on a 2-core AMD EPYC with a 32 MiB L3 (docs/performance.md): VGG16 (553 MB of weights,
32 ImageNet images) ran its noisy trials 0.76x as fast side by side as one at a time (the clean pass
0.92x; the draws and session builds of two trials at once also doubled), while the CIFAR ResNets
(1 to 3.4 MB) gained 1.04x on a quiet machine and up to 1.6x under load.

Counts and keys do not depend on the layout: a trial's draw depends on its seed alone, every trial
evaluates all images in dataset order, and the number of intra-op threads does not change ONNX
Runtime's CPU results (tests/engine/test_layout.py compares the rows both ways).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from onnxnoise.engine.plan import Trial
from onnxnoise.engine.prefix import lockstep_group_limit
from onnxnoise.engine.trial import draw_trial, run_trial

__all__ = ["DEFAULT_CACHE_BYTES", "TrialLayout", "last_level_cache_bytes", "whole_model_layout", "run_side_by_side"]

_CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class TrialLayout:
    """How whole-model trials run: ``sessions`` at once, each session with ``threads`` intra-op threads.

    Attributes:
        sessions: Trials run side by side (1: one at a time).
        threads: CPU intra-op threads of each trial's session (0: ONNX Runtime's default).
        reason: Why (the rule's case), for logs and ``bench.json``.
        draw_ahead: One at a time: each trial's noise is drawn while the trial before it builds its
            session and runs (one background thread), so the draw, mostly on other cores than a
            session build's one and between a GPU's kernels, leaves the trials' critical path.
    """

    sessions: int
    threads: int
    reason: str
    draw_ahead: bool = False

    def describe(self) -> str:
        """One line, e.g. ``whole-model trials: 2 side by side, 1 intra-op thread each (2 threads, ...)``."""
        threads = f"{self.threads} intra-op thread{'s' if self.threads != 1 else ''}" if self.threads else \
            "onnxruntime's default intra-op threads"
        if self.sessions == 1:
            ahead = "; each draw made while the trial before runs" if self.draw_ahead else ""
            return f"whole-model trials: one at a time, {threads} ({self.reason}){ahead}"
        return f"whole-model trials: {self.sessions} side by side, {threads} each ({self.reason})"

    def to_dict(self) -> dict[str, Any]:
        """``{"sessions", "threads", "reason", "draw_ahead"}``."""
        return asdict(self)


#: Last-level cache assumed where the machine does not say (:func:`last_level_cache_bytes`): 16 MiB.
DEFAULT_CACHE_BYTES = 16 << 20

_CACHE_DIR = "/sys/devices/system/cpu/cpu0/cache"


def last_level_cache_bytes(root: str = _CACHE_DIR) -> int:
    """Size in bytes of the CPU's last-level data cache (the highest ``level`` of Linux's ``cache/index*``).

    Reads ``<root>/index*/{level,type,size}`` (sizes like ``32768K``); :data:`DEFAULT_CACHE_BYTES`
    where they are missing or unreadable (not Linux, a container without ``/sys``).
    """
    best: tuple[int, int] | None = None
    for entry in sorted(Path(root).glob("index*")):
        try:
            level = int((entry / "level").read_text().strip())
            if (entry / "type").read_text().strip() == "Instruction":
                continue
            size = _cache_size((entry / "size").read_text().strip())
        except (OSError, ValueError):
            continue
        if best is None or level > best[0]:
            best = (level, size)
    return best[1] if best else DEFAULT_CACHE_BYTES


def _cache_size(text: str) -> int:
    """``"32768K"`` -> 33554432; ``"1M"``, ``"512"`` (bytes) alike. Raises ValueError on anything else."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text and text[-1].upper() in units:
        return int(text[:-1]) * units[text[-1].upper()]
    return int(text)


def whole_model_layout(*, provider: str, threads: int, cpus: int, weight_bytes: int,
                       memory_bytes: int, cache_bytes: int | None = None) -> TrialLayout:
    """The documented rule of the module doc.

    Args:
        provider: The execution provider the run's sessions get (``CPUExecutionProvider`` ...).
        threads: The run's ``--threads`` (0: ONNX Runtime's default, i.e. one per usable CPU).
        cpus: CPUs this process may use (:func:`onnxnoise.data.loading.usable_cpus`).
        weight_bytes: Bytes of the model's initializers, all together.
        memory_bytes: Memory, in bytes, the side-by-side sessions may take together (``--lockstep-memory``).
        cache_bytes: The CPU's last-level cache in bytes (default: :func:`last_level_cache_bytes`).

    One at a time, the next trial's draw is made ahead (``draw_ahead``) when ``memory_bytes`` holds two
    sessions (a second set of noisy weights) and a second core or a GPU is there to overlap it with.

    Returns:
        The :class:`TrialLayout`. E.g. CPU, ``threads=0``, 2 CPUs, 32 MiB cache, ResNet20 (1 MB): 2 side by
        side, 1 thread each; ``threads=4``: 4 side by side; VGG16 (553 MB): one at a time; CUDA: one at a
        time with ``threads``.
    """
    fit = lockstep_group_limit(weight_bytes, memory_bytes)
    ahead = fit >= 2 and (provider != _CPU or cpus >= 2)  # room for a second set of noisy weights, a core to draw on
    if provider != _CPU:
        return TrialLayout(1, threads, f"{provider}: one session at a time", ahead)
    total = threads or cpus
    if total < 2:
        return TrialLayout(1, threads, "one thread", ahead)
    cache = last_level_cache_bytes() if cache_bytes is None else int(cache_bytes)
    cached = cache // max(1, weight_bytes)
    sessions = min(total, fit, cached)
    weights = f"{weight_bytes / 2**20:.0f} MiB of weights"
    if sessions < 2:
        if fit < 2:
            return TrialLayout(1, threads, f"--lockstep-memory holds one session of {weights}")
        return TrialLayout(1, threads, f"two copies of {weights} exceed the {cache / 2**20:.0f} MiB "
                                       "last-level cache", ahead)
    why = f"{total} threads" + (f", --lockstep-memory holds {fit} sessions" if fit < total else "") + (
        f", the {cache / 2**20:.0f} MiB cache holds {cached} copies of the weights" if cached < min(total, fit) else "")
    return TrialLayout(sessions, total // sessions, why)


def run_side_by_side(context, trials: Sequence[Trial], layout: TrialLayout,
                     on_batch: Callable[[int], None] | None = None,
                     on_row: Callable[[int, dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run whole-model ``trials`` side by side, ``layout.sessions`` at once; their rows in the given order.

    Each trial runs through :func:`~onnxnoise.engine.trial.run_trial` in its own thread with a session of
    ``layout.threads`` intra-op threads (ONNX Runtime and numpy release the GIL while they compute). The
    rows equal :func:`run_trial`'s one at a time but for ``seconds``: each trial's own wall time scaled so
    that the trials' seconds add up to the wall time of the whole call (their share of it: trials that
    overlap would otherwise each count the time they shared). One session or one trial: run here, one
    after another, nothing scaled; a trial alone in a layout of several sessions gets the run's ``--threads``.

    Args:
        context: The :class:`~onnxnoise.engine.context.RunContext`; its clean reference must be measured
            (:func:`~onnxnoise.engine.trial.clean_outcomes`) before, as executors do.
        trials: Whole-model trials (not the baseline).
        layout: How many at once and their threads.
        on_batch: Called with the number of images after each batch of any trial (under a lock).
        on_row: Called with ``(index in trials, row)`` as each row is final: one at a time as each trial
            ends (the executor records it then), side by side when all have ended (their ``seconds``
            are shares of the whole call). An exception it raises ends the call.
    """
    if layout.sessions <= 1 or len(trials) <= 1:  # a trial alone gets every thread (the run's --threads)
        threads = layout.threads if layout.sessions <= 1 else None
        ahead = layout.sessions <= 1 and layout.draw_ahead and len(trials) > 1
        return _one_at_a_time(context, trials, threads, on_batch, on_row, ahead=ahead)
    lock = threading.Lock()

    def advance(images: int) -> None:
        with lock:
            on_batch(images)

    started = time.perf_counter()
    with ThreadPoolExecutor(max(1, layout.sessions)) as pool:
        futures = [pool.submit(run_trial, context, trial, on_batch=advance if on_batch else None,
                               threads=layout.threads) for trial in trials]
        rows = [f.result() for f in futures]
    wall = time.perf_counter() - started
    own = sum(row["seconds"] for row in rows)
    if own > 0:
        for row in rows:
            row["seconds"] = row["seconds"] * wall / own
    for i, row in enumerate(rows):
        if on_row is not None:
            on_row(i, row)
    return rows


def _one_at_a_time(context, trials: Sequence[Trial], threads: int | None, on_batch: Callable[[int], None] | None,
                   on_row: Callable[[int, dict[str, Any]], None] | None, *, ahead: bool) -> list[dict[str, Any]]:
    """``trials`` one after another, each row handed to ``on_row`` as its trial ends.

    With ``ahead``, each trial's draw is made in a background thread while the trial before runs: trial
    ``i`` takes its draw (waiting for what is left of it), then draw ``i + 1`` starts, so at most one draw
    runs at a time (a draw uses every core it is given) and two sets of noisy weights exist. A trial's
    ``seconds`` start when it starts waiting for its draw: the first trial pays its whole draw, later ones
    only what did not overlap; together they add up to the wall time. The same draws, so the same rows but
    for ``seconds``; a failed draw is its trial's error row.
    """
    pool = ThreadPoolExecutor(1, thread_name_prefix="onnxnoise-draw-ahead") if ahead else None
    pending = [pool.submit(draw_trial, context, trials[0])] if pool else []
    rows = []
    try:
        for i, trial in enumerate(trials):
            def drawn(future=pending[0] if pending else None, i=i):
                try:
                    return future.result()
                finally:  # the next draw starts as this trial builds its session and runs
                    if i + 1 < len(trials):
                        pending[0] = pool.submit(draw_trial, context, trials[i + 1])

            rows.append(run_trial(context, trial, on_batch=on_batch, threads=threads, drawn=drawn if pool else None))
            if on_row is not None:
                on_row(i, rows[-1])
    finally:
        if pool:
            pool.shutdown(wait=False, cancel_futures=True)
    return rows
