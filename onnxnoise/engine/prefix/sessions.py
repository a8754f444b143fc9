"""The sessions both prefix-reuse strategies share: clean segments and noisy suffixes of one split graph.

:class:`SplitSessions` builds, from one clean model, the *suffix* session after a split
(cut tensors as inputs, scores as output, noisy weights swapped in) and the clean
*segment* sessions between two splits, each built once and cached; it runs them on host
arrays, or on the CUDA provider on device ``OrtValue`` s through ``IOBinding`` (cut values
never cross to the host, only the scores do). Both the kept-cut runner
(:mod:`onnxnoise.engine.prefix.kept_cut`) and lockstep groups
(:mod:`onnxnoise.engine.prefix.lockstep`) go through it, so they run the same sub-models.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import onnx

from onnxnoise.engine.evaluate import EvalSet
from onnxnoise.engine.prefix.cut_store import DeviceValues, HostValues
from onnxnoise.engine.graph_edit import GraphEdit
from onnxnoise.engine.prefix.graph_split import GraphSplitter
from onnxnoise.engine.providers import ProviderChoice
from onnxnoise.engine.runtime import Session, SessionFactory, external_skeleton

__all__ = ["SplitSessions"]


class SplitSessions:
    """Suffix and segment sessions of one model split at the first noised node.

    Args:
        model: The clean model (from :func:`onnxnoise.model.load_model`).
        data: Evaluation set whose batches feed position 0.
        input_name: Name of the image input.
        output_name: Name of the score output.
        replaceable: Initializer names trials may replace (default: all).
        device: ``auto``, ``cpu`` or ``cuda``.
        threads: CPU intra-op threads of every session (``0``: ONNX Runtime's default), unless a
            suffix asks for its own.
        tf32: Let the CUDA provider use TF32 (:func:`onnxnoise.engine.runtime.cuda_options`).
        choice: The run's providers (``--provider``, :func:`onnxnoise.engine.providers.choose_providers`);
            ``None``: from ``device`` and ``tf32``.

    Attributes:
        splitter: The :class:`~onnxnoise.engine.prefix.graph_split.GraphSplitter` of ``model``.
        provider: Execution provider of the last suffix session built (``None`` before the first).
        values: Where cut values live, decided once from the provider the first suffix session
            really gets: :class:`~onnxnoise.engine.prefix.cut_store.HostValues` or
            :class:`~onnxnoise.engine.prefix.cut_store.DeviceValues` (``None`` before).

    Raises:
        GraphError: The graph cannot be split (:class:`GraphSplitter`).
    """

    def __init__(self, model: onnx.ModelProto, data: EvalSet, input_name: str, output_name: str, *,
                 replaceable: Iterable[str] | None = None, device: str = "auto", threads: int = 0,
                 tf32: bool = False, choice: ProviderChoice | None = None) -> None:
        self.data, self.input_name, self.output_name = data, input_name, output_name
        inits = {t.name for t in model.graph.initializer}
        self.replaceable = inits if replaceable is None else set(replaceable)
        # split a copy without weight bytes: a suffix or segment factory per position copies and parses none
        light, self._arrays = external_skeleton(model, self.replaceable)
        self.splitter = GraphSplitter(light, output_name=output_name)
        self.device, self.threads, self.tf32, self.choice = device, threads, tf32, choice
        self.provider: str | None = None
        self.values: HostValues | DeviceValues | None = None
        self._factory: tuple[tuple[int, int], SessionFactory] | None = None
        self._segments: dict[tuple[int, int], tuple[Session, list[str]]] = {}

    @property
    def on_device(self) -> bool:
        """Whether cut values are device ``OrtValue`` s (the CUDA provider)."""
        return self.values is not None and self.values.on_device

    def position(self, replacements: Mapping[str, np.ndarray] | Iterable[str]) -> int:
        """Split position (node index) for noise in these tensors; ``0`` (the full model) for none."""
        pos = self.splitter.position(replacements)
        return 0 if pos >= len(self.splitter) else pos

    def cut_names(self, position: int) -> tuple[str, ...]:
        """Names of the cut tensors at ``position`` (the image input at position 0)."""
        return self.splitter.cut(position) if position else (self.input_name,)

    def suffix_factory(self, position: int, threads: int | None = None) -> SessionFactory:
        """The suffix model's session factory at ``position`` (the last one is kept).

        Args:
            position: Split position (node index); ``0`` is the full model.
            threads: Intra-op threads (default: ``threads`` of this object).

        Returns:
            A :class:`~onnxnoise.engine.runtime.SessionFactory` of the nodes from ``position`` on,
            replacing the replaceable initializers they hold; sessions neither spin nor keep a
            CPU memory arena (suffix and segment sessions take turns).
        """
        threads = self.threads if threads is None else threads
        if self._factory is not None and self._factory[0] == (position, threads):
            return self._factory[1]
        self._factory = None
        names = self.cut_names(position)
        suffix = self.splitter.submodel(position, len(self.splitter), [self.output_name])
        suffix_inits = {t.name for t in suffix.graph.initializer}
        factory = SessionFactory(
            suffix, sorted(self.replaceable & suffix_inits), input_name=names[0], output_name=self.output_name,
            device=self.device, threads=threads, tf32=self.tf32, spinning=False, arena=False, choice=self.choice,
            arrays=self._arrays,
        )
        self._factory = ((position, threads), factory)
        return factory

    def suffix(self, position: int, replacements: Mapping[str, np.ndarray], threads: int | None = None, *,
               edit: GraphEdit | None = None) -> Session:
        """A suffix session at ``position`` with ``replacements`` swapped in; sets :attr:`provider` (and
        :attr:`values` the first time).

        ``edit`` rewrites the suffix graph (the tile's stages in the noised layer, which the suffix
        holds); its counters go to ``edit.tally``.

        Raises:
            SessionError: ONNX Runtime rejects the model or a replacement (e.g. a wrong shape).
        """
        session = self.suffix_factory(position, threads).create(replacements, edit=edit)
        self.provider = session.provider
        if self.values is None:
            self.values = DeviceValues() if session.on_cuda else HostValues()
        return session

    def inputs(self) -> Iterator[dict]:
        """``{input name: batch}`` per batch of ``data``: host arrays, or on CUDA inputs uploaded once."""
        if self.on_device:
            return ({self.input_name: x} for x, _ in self.data.device_batches())
        return ({self.input_name: x} for x, _ in self.data.batches())

    def cut_values(self, feed: Mapping, start: int, stop: int) -> dict:
        """Clean values of the cut at ``stop`` for one batch, from ``feed``: the cut at ``start`` (``start <= stop``).

        Args:
            feed: ``name -> value`` of :meth:`cut_names` ``(start)`` (at ``start`` 0: ``{input name: batch}``).
            start, stop: Split positions.

        Returns:
            ``name -> value`` of :meth:`cut_names` ``(stop)``: values passed through from ``feed``,
            the others computed by the clean segment ``[start, stop)`` (host arrays, or device
            ``OrtValue`` s that never cross to the host).
        """
        have, names = self.cut_names(start), self.cut_names(stop)
        values = {n: feed[n] for n in names if n in have}
        computed = [n for n in names if n not in have]
        if computed:
            session, inputs = self._segment(start, stop, computed)
            values.update(zip(computed, self._run(session, {n: feed[n] for n in inputs}, computed)))
        return values

    def scores(self, session: Session, feed: dict) -> np.ndarray:
        """The score output of a suffix ``session`` on one batch's cut values ``feed``, as a host array
        (its counters, if any, tallied: :meth:`~onnxnoise.engine.session.Session.run_feed`)."""
        return session.run_feed(feed, bound=self.on_device)

    def retain_segment(self, start: int, stop: int) -> None:
        """Drop every cached segment session but ``[start, stop)`` (a kept cut needs no other)."""
        self._segments = {k: v for k, v in self._segments.items() if k == (start, stop)}

    def _segment(self, start: int, stop: int, outputs: list[str]) -> tuple[Session, list[str]]:
        """Clean session of nodes ``[start, stop)`` with ``outputs`` (built once per span), and its inputs."""
        key = (start, stop)
        if key not in self._segments:
            segment = self.splitter.submodel(start, stop, outputs)
            factory = SessionFactory(segment, (), input_name=outputs[0], output_name=outputs[0], device=self.device,
                                     threads=self.threads, tf32=self.tf32, spinning=False, arena=False,
                                     choice=self.choice, arrays=self._arrays)
            self._segments[key] = (factory.create(), [i.name for i in segment.graph.input])
        return self._segments[key]

    def _run(self, session: Session, feed: dict, outputs: list[str]) -> list:
        """Outputs of a clean segment: host arrays, or device OrtValues (never copied to the host)."""
        if self.on_device:
            return session.run_values(feed, outputs, device="cuda")
        return session.session.run(outputs, feed)
