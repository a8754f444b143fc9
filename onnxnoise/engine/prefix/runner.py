"""The prefix-reuse runner of a run: one model, one evaluation set, both strategies.

:class:`PrefixRunner` is what the rest of the package uses
(:meth:`onnxnoise.engine.context.RunContext.prefix_runner`): :meth:`PrefixRunner.evaluate`
runs one trial on a kept cut (:mod:`~onnxnoise.engine.prefix.kept_cut`),
:meth:`PrefixRunner.evaluate_lockstep` a group of trials together keeping no cut
(:mod:`~onnxnoise.engine.prefix.lockstep`); both build their sessions through one
:class:`~onnxnoise.engine.prefix.sessions.SplitSessions` and add up one
:class:`~onnxnoise.engine.prefix.stats.PrefixStats`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from onnxnoise.config import DEFAULT_PREFIX_MEMORY_GIB
from onnxnoise.engine.evaluate import EvalSet, Outcomes
from onnxnoise.engine.graph_edit import GraphEdit
from onnxnoise.engine.metrics import Counts
from onnxnoise.engine.prefix.cut_store import CutStore
from onnxnoise.engine.prefix.graph_split import GraphSplitter
from onnxnoise.engine.prefix.kept_cut import Cut, KeptCut, check_overflow
from onnxnoise.engine.prefix.lockstep import run_lockstep
from onnxnoise.engine.prefix.sessions import SplitSessions
from onnxnoise.engine.prefix.stats import PrefixStats
from onnxnoise.engine.providers import ProviderChoice

__all__ = ["PrefixRunner", "DEFAULT_MEMORY_BYTES"]

#: Default of ``memory_limit_bytes``: :data:`onnxnoise.config.DEFAULT_PREFIX_MEMORY_GIB` GiB.
DEFAULT_MEMORY_BYTES = int(DEFAULT_PREFIX_MEMORY_GIB * 2**30)


@dataclass
class PrefixRunner:
    """Evaluates noisy trials by running only the suffix after the first noised node.

    Results equal full-model evaluation (same predictions; logits equal up to float
    rounding, see :mod:`onnxnoise.engine.prefix`), whatever ``memory_limit_bytes``.
    Fields are read at construction, except ``parallel`` (read by each lockstep call) and
    the kept-cut settings ``memory_limit_bytes``, ``spill_dir`` and ``overflow`` (read at
    the first kept-cut trial).

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
        memory_limit_bytes: Most bytes of cut activations a kept cut holds in memory, all
            batches together (device memory on the CUDA provider); batches beyond it go to disk
            or are recomputed (:class:`~onnxnoise.engine.prefix.kept_cut.KeptCut`).
            ``--prefix-memory`` in GiB; default :data:`DEFAULT_MEMORY_BYTES`. Lockstep keeps no cut.
        spill_dir: Folder for spill files (default: ``prefix`` in the decoded-image cache
            folder, :func:`onnxnoise.data.cache.get_cache_dir`); ``False``: no disk, batches
            beyond the bound are recomputed from the images in every trial (with a warning).
        overflow: Where batches beyond the bound go: ``auto`` (the cheaper of disk and
            recomputing, measured), ``disk`` or ``recompute``.
        tf32: Let the CUDA provider use TF32 (:func:`onnxnoise.engine.runtime.cuda_options`).
        choice: The run's providers (``--provider``); ``None``: from ``device`` and ``tf32``.

    Attributes:
        sessions: The shared :class:`~onnxnoise.engine.prefix.sessions.SplitSessions`.
        stats: :class:`~onnxnoise.engine.prefix.stats.PrefixStats` of every trial so far.

    Raises:
        ValueError: ``overflow`` is not ``auto``, ``disk`` or ``recompute``.
        GraphError: The graph cannot be split.

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
    choice: ProviderChoice | None = None
    stats: PrefixStats = field(default_factory=PrefixStats)

    def __post_init__(self) -> None:
        check_overflow(self.overflow)
        self.sessions = SplitSessions(self.model, self.data, self.input_name, self.output_name,
                                      replaceable=self.replaceable, device=self.device, threads=self.threads,
                                      tf32=self.tf32, choice=self.choice)
        self._kept: KeptCut | None = None

    @property
    def splitter(self) -> GraphSplitter:
        """The :class:`~onnxnoise.engine.prefix.graph_split.GraphSplitter` of ``model``."""
        return self.sessions.splitter

    @property
    def provider(self) -> str | None:
        """Execution provider of the last suffix session (``None`` before the first trial)."""
        return self.sessions.provider

    @property
    def kept_cut(self) -> Cut | None:
        """The cut kept now (:class:`~onnxnoise.engine.prefix.kept_cut.Cut`; ``None``: none yet)."""
        return None if self._kept is None else self._kept.cut

    @property
    def cut_store(self) -> CutStore | None:
        """Where the kept cut's batches live (:class:`~onnxnoise.engine.prefix.cut_store.CutStore`;
        ``None`` before the first kept-cut trial)."""
        return None if self._kept is None else self._kept.store

    @property
    def warnings(self) -> list[str]:
        """Lines the user must see (batches whose cut is recomputed for lack of room)."""
        store = self.cut_store
        return [] if store is None else list(store.warnings)

    def position(self, replacements: Mapping[str, np.ndarray] | Iterable[str]) -> int:
        """Split position (node index) used for noise in these tensors (``0``: the full model)."""
        return self.sessions.position(replacements)

    def evaluate(
        self,
        replacements: Mapping[str, np.ndarray],
        *,
        on_batch: Callable[[int], None] | None = None,
        edit: GraphEdit | None = None,
    ) -> Counts:
        """Top-1 / top-5 counts of the model with ``replacements`` swapped in, on the kept cut.

        Args:
            replacements: ``tensor name -> noisy array`` (e.g. ``NoiseResult.arrays``).
            on_batch: Called with the number of images after each batch.
            edit: The suffix graph's rewrite (the tile's stages in the noised layer); its
                counters go to ``edit.tally``.

        Returns:
            Summed :class:`~onnxnoise.engine.metrics.Counts` over ``data``, counted by
            :meth:`~onnxnoise.engine.evaluate.EvalSet.count` (label offset included), exactly
            as :func:`~onnxnoise.engine.evaluate.evaluate` counts the full model.

        Raises:
            SessionError: ONNX Runtime rejects the suffix model or a replacement.
        """
        return self.data.count_all(self.iter_scores(replacements, edit=edit), on_batch=on_batch)

    def iter_scores(self, replacements: Mapping[str, np.ndarray], *,
                    edit: GraphEdit | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``((n, C) scores, (n,) labels)`` per batch in dataset order, padding rows dropped (kept cut)."""
        if self._kept is None:
            self._kept = KeptCut(self.sessions, self.stats, memory_limit_bytes=self.memory_limit_bytes,
                                 spill_dir=self.spill_dir, overflow=self.overflow)
        return self._kept.iter_scores(replacements, edit=edit)

    def evaluate_lockstep(
        self,
        replacements: Sequence[Mapping[str, np.ndarray]],
        *,
        on_batch: Callable[[int], None] | None = None,
        edits: Sequence[GraphEdit | None] | None = None,
    ) -> list[Outcomes | Exception]:
        """Evaluate several trials together, batch by batch, without keeping any cut.

        See :func:`~onnxnoise.engine.prefix.lockstep.run_lockstep` (``parallel`` suffix
        sessions at once on the CPU). Counts equal :meth:`evaluate`'s.

        Args:
            replacements: Per trial, ``tensor name -> noisy array``.
            on_batch: Called with the number of images evaluated (all trials of a batch together).
            edits: Per trial, its suffix graph's rewrite or ``None`` (:func:`run_lockstep`).

        Returns:
            Per trial, in the given order, its :class:`~onnxnoise.engine.evaluate.Outcomes`,
            or the exception that stopped it (the others go on).
        """
        return run_lockstep(self.sessions, replacements, parallel=self.parallel, stats=self.stats, on_batch=on_batch,
                            edits=edits)
