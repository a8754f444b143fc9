"""Prefix reuse: run only the part of the graph that the noise can change.

When the noised layers of a trial start at node ``p`` (graph order), everything the
nodes before ``p`` compute is the clean model's. The graph is split at ``p``
(:class:`~onnxnoise.engine.graph_split.GraphSplitter`); the *cut* is the set of tensors
produced before ``p`` (or graph inputs) that nodes at or after ``p`` consume, e.g. a
residual branch that lives across the split. The clean cut activations are computed
once per batch and kept; each trial then runs only the *suffix* model (cut tensors as
inputs, scores as output) with its noisy weights.

:class:`PrefixRunner` does this for any order of trials and keeps one cut at a time:

- moving the split forward (e.g. per-layer sweep, layer ``i`` then ``i + 1``) runs
  only the clean *segment* between the two cuts, batch by batch, so a pass over all
  layers costs one clean forward pass of prefix work in total;
- moving it backward recomputes the cut from the input images;
- memory is bounded whatever the dataset size (``memory_limit_bytes``,
  ``--prefix-memory``): a cut is stored batch by batch, in memory while the bound
  allows; beyond it, per cut, on disk in the cache folder or recomputed from the
  images in every trial, whichever the measured costs say is cheaper (early CNN cuts
  are large and cheap to compute); recomputed for lack of room only when the disk has
  none (a warning says so; see :mod:`onnxnoise.engine.cut_store`). No trial falls
  back to the full model;
- on the CUDA provider kept activations are device ``OrtValue`` s, produced and
  consumed through ``IOBinding``: they never cross to the host.

Grouping trials by first noised layer (or sorting them by it) gets the most reuse.

Exactness: a split changes what ONNX Runtime can fuse only across the split. The one
fusion a split would break is a noised ``BatchNormalization`` folded into the Conv or
Gemm that feeds it; the split is then placed before that producer, so the suffix
holds the same fused pattern as the full model. Spilled batches are read back
bit-identical. Tests compare predictions and logits with full-model evaluation
(ResNet20, every layer, BN kept and folded; a memory bound forcing many spilled batches).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from onnxnoise.data.cache import get_cache_dir
from onnxnoise.engine.cut_store import DISK, MEMORY, RECOMPUTE, CutStore, DeviceValues, HostValues, Slot, SpillFile
from onnxnoise.engine.evaluate import EvalSet, Outcomes
from onnxnoise.engine.graph_split import GraphSplitter
from onnxnoise.engine.metrics import Counts
from onnxnoise.engine.runtime import Session, SessionFactory

__all__ = ["GraphSplitter", "PrefixRunner", "PrefixStats", "DEFAULT_MEMORY_BYTES"]

log = logging.getLogger(__name__)


@dataclass
class PrefixStats:
    """Work done by a :class:`PrefixRunner`, in seconds, counts and bytes.

    Attributes:
        trials: Trials evaluated.
        prefix_seconds: Time computing clean cut activations (segment session builds and runs,
            spill writes).
        build_seconds: Time building suffix sessions (model slicing + ORT session creation).
        first_run_seconds: Time of each trial's first suffix batch (a new session's cold first run).
        suffix_seconds: Time of the other suffix batches (``suffix_batches`` of them).
        load_seconds: Time in trials reading spilled batches and recomputing batches kept nowhere.
        advances: Cut moves computed incrementally from the previous cut.
        rebuilds: Cut moves computed from the input images.
        fallbacks: Trials that recomputed at least one batch's cut from the images for lack
            of room (not in ``memory_limit_bytes``, no disk; a warning says so). No trial ever
            falls back to the full model.
        kept_batches, spilled_batches, recomputed_batches: Where the batches of the cuts
            went (memory, spill file, nowhere: recomputed in each trial, by choice or for lack
            of room), summed over the cuts computed.
        peak_kept_bytes: Most bytes of cut activations held in memory at once (device
            memory on the CUDA provider); never above ``memory_limit_bytes``.
        spill_bytes_written, spill_bytes_read: Disk traffic of spilled batches.
    """

    trials: int = 0
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


@dataclass
class _Cut:
    """Cut activations at ``position`` for every batch (``slots is None``: the input images)."""

    position: int
    names: tuple[str, ...]
    slots: list[Slot] | None = None
    file: SpillFile | None = None
    batch_seconds: float = 0.0  # estimated time to compute one batch of this cut from the images
    trials: int = 0  # trials evaluated on this cut

    @property
    def recompute(self) -> bool:
        return self.slots is not None and any(s.kind == RECOMPUTE for s in self.slots)

    @property
    def forced(self) -> bool:
        return self.slots is not None and any(s.forced for s in self.slots)


#: Default of ``memory_limit_bytes`` (``--prefix-memory 4``).
DEFAULT_MEMORY_BYTES = 4 << 30


class _Inline:
    """Stand-in for a ``ThreadPoolExecutor`` that runs each call at once (``parallel`` 1)."""

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


@dataclass
class PrefixRunner:
    """Evaluates noisy trials by running only the suffix after the first noised node.

    Results equal full-model evaluation (same predictions; logits equal up to float
    rounding, see the module docstring), whatever ``memory_limit_bytes``.

    Args:
        model: The clean model (from :func:`onnxnoise.model.load_model`).
        data: Evaluation set; its batches define the cached activations.
        input_name: Name of the image input.
        output_name: Name of the score output.
        replaceable: Initializer names trials may replace (default: all).
        device: ``auto``, ``cpu`` or ``cuda``.
        threads: CPU intra-op threads (``0``: ONNX Runtime's default).
        parallel: Suffix sessions :meth:`evaluate_lockstep` runs at once on the CPU, each
            with one intra-op thread (``1``: one at a time with ``threads`` threads). Two
            single-threaded sessions side by side keep both cores of a 2-core machine busy
            where one two-threaded session leaves them idle between small operators.
        memory_limit_bytes: Most bytes of cut activations kept in memory, all batches
            together (device memory on the CUDA provider); batches beyond it go to disk
            (:class:`~onnxnoise.engine.cut_store.CutStore`). ``--prefix-memory`` in GiB.
        spill_dir: Folder for spill files (default: ``prefix`` in the decoded-image cache
            folder, :func:`onnxnoise.data.cache.get_cache_dir`); ``False``: no disk, batches
            beyond the bound are recomputed from the images in every trial (with a warning).
        overflow: Where batches beyond the bound go: ``auto`` (per cut, the cheaper of the
            spill file and recomputing them in every trial: a read per trial plus one write
            per cut, at the measured disk throughput, against the measured time to compute
            the cut from the images), ``disk`` or ``recompute``.
        tf32: Let the CUDA provider use TF32 (:func:`onnxnoise.engine.runtime.cuda_options`).

    Attributes:
        provider: Execution provider of the last suffix session.
        warnings: Lines the user must see (batches recomputed for lack of room).

    Example:
        >>> runner = context.prefix_runner()  # doctest: +SKIP
        >>> for layer in context.selected:              # group trials by layer
        ...     for seed in seeds:
        ...         draw = draw_noise(model, 10.0, seed, [layer], context.initializers)
        ...         counts = runner.evaluate(draw.arrays)
    """

    model: onnx.ModelProto
    data: EvalSet
    input_name: str
    output_name: str
    replaceable: Iterable[str] | None = None
    device: str = "auto"
    threads: int = 0
    parallel: int = 1
    memory_limit_bytes: int = DEFAULT_MEMORY_BYTES
    spill_dir: Path | bool | None = None
    overflow: str = "auto"
    tf32: bool = False
    stats: PrefixStats = field(default_factory=PrefixStats)

    def __post_init__(self) -> None:
        self.splitter = GraphSplitter(self.model, output_name=self.output_name)
        inits = {t.name for t in self.model.graph.initializer}
        self._replaceable = inits if self.replaceable is None else set(self.replaceable)
        self._cut: _Cut | None = None
        self._factory: tuple[tuple[int, int], SessionFactory] | None = None
        self._segments: dict[tuple[int, int], tuple[Session, list[str]]] = {}
        self._store: CutStore | None = None
        self._last_trials = 1  # trials the previous cut served (how often a spilled batch is read)
        self.provider: str | None = None
        if self.overflow not in ("auto", "disk", "recompute"):
            msg = f"`overflow` must be auto, disk or recompute, got {self.overflow!r}"
            raise ValueError(msg)

    @property
    def warnings(self) -> list[str]:
        """Lines the user must see (batches whose cut is recomputed for lack of room)."""
        return [] if self._store is None else list(self._store.warnings)

    def position(self, replacements: Mapping[str, np.ndarray] | Iterable[str]) -> int:
        """Split position (node index) used for noise in these tensors."""
        pos = self.splitter.position(replacements)
        return 0 if pos >= len(self.splitter) else pos  # no noise: the full model

    def evaluate(
        self,
        replacements: Mapping[str, np.ndarray],
        *,
        on_batch: Callable[[int], None] | None = None,
    ) -> Counts:
        """Top-1 / top-5 counts of the model with ``replacements`` swapped in.

        Args:
            replacements: ``tensor name -> noisy array`` (e.g. ``NoiseResult.arrays``).
            on_batch: Called with the number of images after each batch.

        Returns:
            Summed :class:`~onnxnoise.engine.metrics.Counts` over ``data``, counted by
            :meth:`~onnxnoise.engine.evaluate.EvalSet.count` (label offset included), exactly
            as :func:`~onnxnoise.engine.evaluate.evaluate` counts the full model.
        """
        return self.data.count_all(self.iter_scores(replacements), on_batch=on_batch)

    def iter_scores(self, replacements: Mapping[str, np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``((n, C) scores, (n,) labels)`` per batch in dataset order, padding rows dropped."""
        position = self.position(replacements)
        started = time.perf_counter()
        session = self._suffix_factory(position).create(replacements)
        self.provider = session.provider
        self._use(session)
        self.stats.build_seconds += time.perf_counter() - started
        cut = self._cut_for(position)
        self.stats.trials += 1
        self.stats.fallbacks += cut.forced
        cut.trials += 1
        first = True
        for feed, labels in self._feeds(cut):
            started = time.perf_counter()
            out = self._scores(session, feed)
            elapsed = time.perf_counter() - started
            if first:
                self.stats.first_run_seconds += elapsed
                first = False
            else:
                self.stats.suffix_seconds += elapsed
                self.stats.suffix_batches += 1
            yield out.reshape(out.shape[0], -1)[: len(labels)], labels

    def evaluate_lockstep(
        self,
        replacements: Sequence[Mapping[str, np.ndarray]],
        *,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[Outcomes | Exception]:
        """Evaluate several trials together, batch by batch, without keeping any cut.

        For each batch the clean prefix runs once, segment by segment, in the order of
        the trials' split positions, and each trial's suffix session runs on the cut
        values at its own position as soon as they exist. Memory holds one batch's
        activations and the trials' suffix sessions, whatever the dataset size; the clean
        prefix work is one forward pass (up to the last position) per group, shared by
        its trials. On the CPU, ``parallel`` suffix sessions run at once (one thread each)
        while the next segment of the prefix is computed; a batch ends when all of its
        suffixes have. A per-layer sweep's plan order (every layer at one strength and seed,
        then the next) gives groups of one pass over the layers (``LocalExecutor``).

        Counts equal :meth:`evaluate` (the same suffix models, the same segment chain as
        a kept cut advanced layer by layer).

        Args:
            replacements: Per trial, ``tensor name -> noisy array``.
            on_batch: Called with the number of images evaluated (all trials of a batch together).

        Returns:
            Per trial, in the given order, its :class:`~onnxnoise.engine.evaluate.Outcomes`,
            or the exception that stopped it (the others go on).
        """
        n = len(replacements)
        positions = [self.position(r) for r in replacements]
        order = sorted(range(n), key=lambda i: positions[i])
        results: list[Outcomes | Exception | None] = [None] * n
        sessions: list[Session | None] = [None] * n
        workers = max(1, self.parallel)
        for i in order:
            started = time.perf_counter()
            try:
                factory = self._suffix_factory(positions[i], threads=1 if workers > 1 else None)
                sessions[i] = factory.create(replacements[i])
                self.provider = sessions[i].provider
                self._use(sessions[i])
            except Exception as exc:  # noqa: BLE001 - that trial's error row; the others run
                results[i] = exc
            self.stats.build_seconds += time.perf_counter() - started
        if self._store is not None and self._store.values.on_device:
            workers = 1  # one GPU stream: sessions one after another
        live = [i for i in order if results[i] is None]
        self.stats.trials += len(live)
        parts: list[list[Outcomes]] = [[] for _ in range(n)]
        seen: list[np.ndarray] = []
        first = set(live)

        def suffix(i: int, values: dict, labels: np.ndarray) -> tuple[Outcomes, float]:
            started = time.perf_counter()
            out = self._scores(sessions[i], values)
            counts = self.data.count(out.reshape(out.shape[0], -1)[: len(labels)], labels)
            return counts, time.perf_counter() - started

        with ThreadPoolExecutor(workers) if workers > 1 else _Inline() as pool:
            for feed, labels in zip(self._inputs() if live else (), self.data.batch_labels()):
                position, names, values = 0, (self.input_name,), feed
                running = []
                for i in live:
                    if results[i] is not None:
                        continue
                    if positions[i] != position:
                        started = time.perf_counter()
                        try:
                            cut = self.splitter.cut(positions[i])
                            values = self._compute(position, names, values, positions[i], cut)
                            position, names = positions[i], cut
                        except Exception as exc:  # noqa: BLE001
                            results[i] = exc
                            continue
                        finally:
                            self.stats.prefix_seconds += time.perf_counter() - started
                    running.append((i, pool.submit(suffix, i, values, labels)))
                for i, future in running:  # in trial order, so each trial's parts stay in batch order
                    try:
                        counts, elapsed = future.result()
                    except Exception as exc:  # noqa: BLE001
                        results[i] = exc
                        continue
                    parts[i].append(counts)
                    if i in first:
                        self.stats.first_run_seconds += elapsed
                        first.discard(i)
                    else:
                        self.stats.suffix_seconds += elapsed
                        self.stats.suffix_batches += 1
                seen.append(labels)
                if on_batch is not None:
                    on_batch(len(labels) * sum(results[i] is None for i in live))
        for i in live:
            if results[i] is None:
                try:
                    results[i] = self.data.merge(parts[i], seen)
                except Exception as exc:  # noqa: BLE001
                    results[i] = exc
        return results

    # -- values on the host or the device ------------------------------------------

    def _use(self, session: Session) -> None:
        """Decide once, from the provider sessions really get, where cut values live."""
        if self._store is not None:
            return
        if self.spill_dir is False:
            spill = None
        elif self.spill_dir is None or self.spill_dir is True:
            spill = get_cache_dir() / "prefix"
        else:
            spill = Path(self.spill_dir)
        values = DeviceValues() if session.on_cuda else HostValues()
        self._store = CutStore(self.memory_limit_bytes, spill, values)

    def _inputs(self) -> Iterator[dict]:
        """``{input name: batch}`` per batch: host arrays, or on CUDA inputs uploaded once (IOBinding)."""
        if self._store.values.on_device:
            return ({self.input_name: x} for x, _ in self.data.device_batches())
        return ({self.input_name: x} for x, _ in self.data.batches())

    def _run(self, session: Session, feed: dict, outputs: list[str]) -> list:
        """Outputs of a clean segment: host arrays, or device OrtValues (never copied to the host)."""
        if self._store.values.on_device:
            return session.run_values(feed, outputs, device="cuda")
        return session.session.run(outputs, feed)

    def _scores(self, session: Session, feed: dict) -> np.ndarray:
        if self._store.values.on_device:
            return session.run_values(feed, [self.output_name], device="cpu")[0]
        return session.session.run([self.output_name], feed)[0]

    # -- cuts ----------------------------------------------------------------------

    def _feeds(self, cut: _Cut) -> Iterator[tuple[dict, np.ndarray]]:
        """``(suffix feed, labels)`` per batch of ``cut``: kept, read back from disk, or recomputed."""
        labels = self.data.batch_labels()
        if cut.slots is None:
            yield from zip(self._inputs(), labels)
            return
        inputs = self._inputs() if cut.recompute else None
        for slot, batch_labels in zip(cut.slots, labels):
            image = next(inputs) if inputs is not None else None
            if slot.kind == MEMORY:
                yield slot.values, batch_labels
                continue
            started = time.perf_counter()
            if slot.kind == RECOMPUTE:
                feed = self._compute(0, (self.input_name,), image, cut.position, cut.names)
            else:
                feed = self._store.load(slot, cut.file)
            self.stats.load_seconds += time.perf_counter() - started
            yield feed, batch_labels
        if inputs is not None:
            for _ in inputs:  # run the generator to its end (on CUDA that keeps the uploaded inputs)
                pass
        self._sync_stats()

    def _cut_for(self, position: int) -> _Cut:
        """Cut activations at ``position``, moving the kept cut forward or rebuilding it."""
        current = self._cut
        if current is not None and current.position == position:
            return current
        if position == 0:
            return _Cut(0, (self.input_name,))
        started = time.perf_counter()
        if current is not None:
            self._last_trials = max(current.trials, 1)
        if current is not None and current.position < position:
            self.stats.advances += 1
            base = current
        else:
            self.stats.rebuilds += 1
            self._drop(current)
            base = _Cut(0, (self.input_name,))
        self._cut = None
        new = self._advance(base, position, self.splitter.cut(position))
        self._drop(base)
        self._segments = {k: v for k, v in self._segments.items() if k[0] == 0 and k[1] == position}
        self._cut = new
        self.stats.prefix_seconds += time.perf_counter() - started
        self._sync_stats()
        return new

    def _advance(self, base: _Cut, position: int, names: tuple[str, ...]) -> _Cut:
        """Run the clean segment ``[base.position, position)`` on every batch of ``base``.

        Each batch's new values are stored (memory, disk or nowhere) as soon as they are
        computed and the base batch is released first, so memory never holds two whole cuts.
        A base batch kept nowhere is computed from the images when the new cut can keep it.
        """
        store = self._store
        file = store.new_file()
        slots: list[Slot] = []
        from_images = base.slots is None
        feeds = self._inputs() if from_images else self._base_feeds(base)
        images = self._inputs() if base.recompute else None
        disk: bool | None = None  # decided at the first batch beyond the memory bound
        last = 0
        costs = []
        for feed in feeds:
            image = next(images) if images is not None else None
            if feed is None and disk is False and not store.fits(last):
                slots.append(Slot(RECOMPUTE, nbytes=last))  # kept nowhere by choice, as in the base
                self.stats.recomputed_batches += 1
                continue
            started = time.perf_counter()
            if feed is None:
                values = self._compute(0, (self.input_name,), image, position, names)
                costs.append(time.perf_counter() - started)
            else:
                values = self._compute(base.position, base.names, feed, position, names)
                costs.append(time.perf_counter() - started + (0.0 if from_images else base.batch_seconds))
            last = store.nbytes(values)
            if disk is None and not store.fits(last):
                disk = self._disk_cheaper(last, float(np.mean(costs)), position)
            slot = store.put(values, file, position=position, disk=disk is not False)
            slots.append(slot)
            self.stats.kept_batches += slot.kind == MEMORY
            self.stats.spilled_batches += slot.kind == DISK
            self.stats.recomputed_batches += slot.kind == RECOMPUTE
        if images is not None:
            for _ in images:  # run the generator to its end (on CUDA that keeps the uploaded inputs)
                pass
        if file is not None and not any(s.kind == DISK for s in slots):
            file.close()
            file = None
        return _Cut(position, names, slots, file, batch_seconds=float(np.mean(costs)) if costs else 0.0)

    def _disk_cheaper(self, nbytes: int, compute_seconds: float, position: int) -> bool:
        """Whether batches beyond the bound go to disk (else: recomputed in every trial).

        Disk: one read per trial plus one write per cut (shared by the trials the previous
        cut served); recompute: the clean prefix of one batch, per trial.
        """
        if self.overflow != "auto":
            return self.overflow == "disk"
        store = self._store
        disk = nbytes / store.read_speed + nbytes / store.write_speed / self._last_trials
        choice = disk <= compute_seconds
        log.info("prefix reuse before node %d: batches beyond --prefix-memory are %s (per batch and trial: disk "
                 "%.1f ms, recompute %.1f ms)", position, "spilled to disk" if choice else "recomputed",
                 1000 * disk, 1000 * compute_seconds)
        return choice

    def _base_feeds(self, base: _Cut) -> Iterator[dict | None]:
        """A kept cut's batches in order, each released (memory back to the budget) once handed out."""
        for slot in base.slots:
            values = self._store.load(slot, base.file)
            self._store.release(slot)
            yield values

    def _compute(self, start: int, have: tuple[str, ...], feed: dict, position: int,
                 names: tuple[str, ...]) -> dict:
        """Values of the cut ``names`` at ``position`` for one batch, from ``feed`` (the cut ``have`` at ``start``)."""
        values = {n: feed[n] for n in names if n in have}
        computed = [n for n in names if n not in have]
        if computed:
            session, inputs = self._segment(start, position, computed)
            values.update(zip(computed, self._run(session, {n: feed[n] for n in inputs}, computed)))
        return values

    def _segment(self, start: int, stop: int, outputs: list[str]) -> tuple[Session, list[str]]:
        """Clean session of nodes ``[start, stop)`` with ``outputs`` (built once per span), and its inputs."""
        key = (start, stop)
        if key not in self._segments:
            segment = self.splitter.submodel(start, stop, outputs)
            factory = SessionFactory(segment, (), input_name=outputs[0], output_name=outputs[0],
                                     device=self.device, threads=self.threads, tf32=self.tf32, spinning=False, arena=False)
            self._segments[key] = (factory.create(), [i.name for i in segment.graph.input])
        return self._segments[key]

    def _drop(self, cut: _Cut | None) -> None:
        """Release a cut's memory and delete its spill file."""
        if cut is None or cut.slots is None:
            return
        for slot in cut.slots:
            self._store.release(slot)
        if cut.file is not None:
            cut.file.close()
            cut.file = None

    def _sync_stats(self) -> None:
        store = self._store
        self.stats.peak_kept_bytes = store.peak_bytes
        self.stats.spill_bytes_written = store.spilled_bytes
        self.stats.spill_bytes_read = store.read_bytes

    def _suffix_factory(self, position: int, threads: int | None = None) -> SessionFactory:
        """The suffix model's session factory at ``position`` (the last one is kept), with
        ``threads`` intra-op threads (default: the runner's ``threads``)."""
        threads = self.threads if threads is None else threads
        if self._factory is not None and self._factory[0] == (position, threads):
            return self._factory[1]
        self._factory = None
        names = self.splitter.cut(position) if position else (self.input_name,)
        suffix = self.splitter.submodel(position, len(self.splitter), [self.output_name])
        suffix_inits = {t.name for t in suffix.graph.initializer}
        factory = SessionFactory(
            suffix, sorted(self._replaceable & suffix_inits), input_name=names[0], output_name=self.output_name,
            device=self.device, threads=threads, tf32=self.tf32, spinning=False, arena=False,
        )
        self._factory = ((position, threads), factory)
        return factory
