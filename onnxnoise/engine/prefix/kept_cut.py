"""Prefix reuse on a kept cut: one trial at a time, in any order, the clean cut kept between trials.

The cut at a split position is computed once per batch and kept (one cut at a time):

- moving the split forward (e.g. a per-layer sweep, layer ``i`` then ``i + 1``) runs only
  the clean *segment* between the two cuts, batch by batch, so a pass over all layers costs
  one clean forward pass of prefix work in total;
- moving it backward recomputes the cut from the input images;
- memory is bounded whatever the dataset size (``memory_limit_bytes``, ``--prefix-memory``):
  a cut is stored batch by batch, in memory while the bound allows; beyond it, per cut, on
  disk in the cache folder or recomputed from the images in every trial, whichever the
  measured costs say is cheaper (early CNN cuts are large and cheap to compute); recomputed
  for lack of room only when the disk has none (a warning says so; see
  :mod:`onnxnoise.engine.prefix.cut_store`). No trial falls back to the full model;
- on the CUDA provider kept activations are device ``OrtValue`` s: they never cross to the host.

This is the path of a per-layer trial run alone (a Ray worker's trials, a group of one);
grouping trials by first noised layer, or sorting them by it, gets the most reuse.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onnxnoise.data.cache import get_cache_dir
from onnxnoise.engine.graph_edit import GraphEdit
from onnxnoise.engine.prefix.cut_store import DISK, MEMORY, RECOMPUTE, CutStore, Slot, SpillFile
from onnxnoise.engine.prefix.sessions import SplitSessions
from onnxnoise.engine.prefix.stats import PrefixStats

__all__ = ["Cut", "KeptCut", "OVERFLOW", "check_overflow"]

log = logging.getLogger(__name__)

#: Where batches beyond the memory bound may go (``KeptCut`` ``overflow``).
OVERFLOW = ("auto", "disk", "recompute")


def check_overflow(overflow: str) -> None:
    """Refuse an ``overflow`` outside :data:`OVERFLOW`.

    Raises:
        ValueError: ``overflow`` is not ``auto``, ``disk`` or ``recompute``.
    """
    if overflow not in OVERFLOW:
        msg = f"`overflow` must be auto, disk or recompute, got {overflow!r}"
        raise ValueError(msg)


@dataclass
class Cut:
    """Clean cut activations at ``position`` for every batch (``slots is None``: the input images).

    Attributes:
        position: Split position (node index).
        slots: Per batch, where its values live (:class:`~onnxnoise.engine.prefix.cut_store.Slot`).
        file: The spill file of the batches on disk, if any.
        batch_seconds: Estimated time to compute one batch of this cut from the images.
        trials: Trials evaluated on this cut.
    """

    position: int
    slots: list[Slot] | None = None
    file: SpillFile | None = None
    batch_seconds: float = 0.0
    trials: int = 0

    @property
    def recompute(self) -> bool:
        """Whether some batch is kept nowhere (recomputed from the images in each trial)."""
        return self.slots is not None and any(s.kind == RECOMPUTE for s in self.slots)

    @property
    def forced(self) -> bool:
        """Whether some batch is kept nowhere for lack of room (warned)."""
        return self.slots is not None and any(s.forced for s in self.slots)


class KeptCut:
    """Evaluates trials one at a time on the suffix, keeping one clean cut between them.

    Args:
        sessions: The shared :class:`~onnxnoise.engine.prefix.sessions.SplitSessions`.
        stats: Where the work done is added up.
        memory_limit_bytes: Most bytes of cut activations kept in memory, all batches together
            (device memory on the CUDA provider).
        spill_dir: Folder for spill files (``None``/``True``: ``prefix`` in the decoded-image cache
            folder, :func:`onnxnoise.data.cache.get_cache_dir`); ``False``: no disk, batches beyond
            the bound are recomputed from the images in every trial (with a warning).
        overflow: One of :data:`OVERFLOW`: ``auto`` (per cut, the cheaper of the spill file and
            recomputing in every trial: a read per trial plus one write per cut at the measured disk
            throughput, against the measured time to compute the cut from the images), ``disk`` or
            ``recompute``.

    Raises:
        ValueError: ``overflow`` not in :data:`OVERFLOW`.
    """

    def __init__(self, sessions: SplitSessions, stats: PrefixStats, *, memory_limit_bytes: int,
                 spill_dir: Path | bool | None = None, overflow: str = "auto") -> None:
        check_overflow(overflow)
        self.sessions, self.stats = sessions, stats
        self.memory_limit_bytes, self.spill_dir, self.overflow = memory_limit_bytes, spill_dir, overflow
        self._store: CutStore | None = None
        self._cut: Cut | None = None
        self._last_trials = 1  # trials the previous cut served (how often a spilled batch is read)

    @property
    def store(self) -> CutStore | None:
        """The :class:`~onnxnoise.engine.prefix.cut_store.CutStore` (``None`` before the first trial)."""
        return self._store

    @property
    def cut(self) -> Cut | None:
        """The cut kept now (``None``: none, e.g. the last trial ran on the full model)."""
        return self._cut

    def iter_scores(self, replacements: Mapping[str, np.ndarray], *,
                    edit: GraphEdit | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``((n, C) scores, (n,) labels)`` per batch in dataset order, padding rows dropped.

        Args:
            replacements: ``tensor name -> noisy array``.
            edit: The suffix graph's rewrite (the tile's stages), counters to ``edit.tally``.

        Raises:
            SessionError: ONNX Runtime rejects the suffix model or a replacement.
        """
        sessions = self.sessions
        position = sessions.position(replacements)
        started = time.perf_counter()
        session = sessions.suffix(position, replacements, edit=edit)
        if self._store is None:
            self._store = CutStore(self.memory_limit_bytes, self._spill_folder(), sessions.values)
        self.stats.build_seconds += time.perf_counter() - started
        cut = self._cut_for(position)
        self.stats.trials += 1
        self.stats.fallbacks += cut.forced
        cut.trials += 1
        first = True
        for feed, labels in self._feeds(cut):
            started = time.perf_counter()
            out = sessions.scores(session, feed)
            elapsed = time.perf_counter() - started
            if first:
                self.stats.first_run_seconds += elapsed
                first = False
            else:
                self.stats.suffix_seconds += elapsed
                self.stats.suffix_batches += 1
            yield out.reshape(out.shape[0], -1)[: len(labels)], labels

    def _spill_folder(self) -> Path | None:
        if self.spill_dir is False:
            return None
        if self.spill_dir is None or self.spill_dir is True:
            return get_cache_dir() / "prefix"
        return Path(self.spill_dir)

    def _feeds(self, cut: Cut) -> Iterator[tuple[dict, np.ndarray]]:
        """``(suffix feed, labels)`` per batch of ``cut``: kept, read back from disk, or recomputed."""
        labels = self.sessions.data.batch_labels()
        if cut.slots is None:
            yield from zip(self.sessions.inputs(), labels)
            return
        inputs = self.sessions.inputs() if cut.recompute else None
        for slot, batch_labels in zip(cut.slots, labels):
            image = next(inputs) if inputs is not None else None
            if slot.kind == MEMORY:
                yield slot.values, batch_labels
                continue
            started = time.perf_counter()
            if slot.kind == RECOMPUTE:
                feed = self.sessions.cut_values(image, 0, cut.position)
            else:
                feed = self._store.load(slot, cut.file)
            self.stats.load_seconds += time.perf_counter() - started
            yield feed, batch_labels
        if inputs is not None:
            for _ in inputs:  # run the generator to its end (on CUDA that keeps the uploaded inputs)
                pass
        self._sync_stats()

    def _cut_for(self, position: int) -> Cut:
        """Cut activations at ``position``, moving the kept cut forward or rebuilding it."""
        current = self._cut
        if current is not None and current.position == position:
            return current
        if position == 0:
            return Cut(0)
        started = time.perf_counter()
        if current is not None:
            self._last_trials = max(current.trials, 1)
        if current is not None and current.position < position:
            self.stats.advances += 1
            base = current
        else:
            self.stats.rebuilds += 1
            self._drop(current)
            base = Cut(0)
        self._cut = None
        new = self._advance(base, position)
        self._drop(base)
        self.sessions.retain_segment(0, position)
        self._cut = new
        self.stats.prefix_seconds += time.perf_counter() - started
        self._sync_stats()
        return new

    def _advance(self, base: Cut, position: int) -> Cut:
        """Run the clean segment ``[base.position, position)`` on every batch of ``base``.

        Each batch's new values are stored (memory, disk or nowhere) as soon as they are
        computed and the base batch is released first, so memory never holds two whole cuts.
        A base batch kept nowhere is computed from the images when the new cut can keep it.
        """
        store, sessions = self._store, self.sessions
        file = store.new_file()
        slots: list[Slot] = []
        from_images = base.slots is None
        feeds = sessions.inputs() if from_images else self._base_feeds(base)
        images = sessions.inputs() if base.recompute else None
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
                values = sessions.cut_values(image, 0, position)
                costs.append(time.perf_counter() - started)
            else:
                values = sessions.cut_values(feed, base.position, position)
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
        return Cut(position, slots, file, batch_seconds=float(np.mean(costs)) if costs else 0.0)

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

    def _base_feeds(self, base: Cut) -> Iterator[dict | None]:
        """A kept cut's batches in order, each released (memory back to the budget) once handed out."""
        for slot in base.slots:
            values = self._store.load(slot, base.file)
            self._store.release(slot)
            yield values

    def _drop(self, cut: Cut | None) -> None:
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
