"""Prefix reuse: run only the part of the graph that the noise can change.

When the noised layers of a trial start at node ``p`` (graph order), everything the
nodes before ``p`` compute is the clean model's. The graph is split at ``p``; the
*cut* is the set of tensors produced before ``p`` (or graph inputs) that nodes at or
after ``p`` consume, e.g. a residual branch that lives across the split. The clean
cut activations are computed once per batch and kept; each trial then runs only the
*suffix* model (cut tensors as inputs, scores as output) with its noisy weights.

:class:`PrefixRunner` does this for any order of trials and keeps one cut in memory
at a time:

- moving the split forward (e.g. per-layer sweep, layer ``i`` then ``i + 1``) runs
  only the clean *segment* between the two cuts, so a pass over all layers costs one
  clean forward pass of prefix work in total;
- moving it backward recomputes the cut from the input images;
- a cut larger than ``cache_limit_bytes`` (e.g. ResNet20's first cut on 10k CIFAR
  images is 10k x 16 x 32 x 32 float32 = 655 MB) is not kept: that trial runs the
  full model (exact, no reuse).

Grouping trials by first noised layer (or sorting them by it) gets the most reuse.

Exactness: a split changes what ONNX Runtime can fuse only across the split. The one
fusion a split would break is a noised ``BatchNormalization`` folded into the Conv or
Gemm that feeds it; the split is then placed before that producer, so the suffix
holds the same fused pattern as the full model. Tests compare predictions and logits
with full-model evaluation (ResNet20, every layer, BN kept and folded).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from onnxnoise.errors import GraphError
from onnxnoise.engine.evaluate import EvalSet
from onnxnoise.engine.metrics import Counts
from onnxnoise.engine.runtime import SessionFactory

__all__ = ["GraphSplitter", "PrefixRunner", "PrefixStats"]

#: Ops that ONNX Runtime folds a following BatchNormalization into.
_BN_PRODUCERS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


def _node_inputs(node: onnx.NodeProto) -> list[str]:
    """Names a node reads: its inputs and, for If/Loop/Scan, every name its subgraphs read."""
    names = [n for n in node.input if n]
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for graph in graphs:
            for sub in graph.node:
                names.extend(_node_inputs(sub))
    return names


class GraphSplitter:
    """Split points, cuts and sub-models of one topologically ordered ONNX graph.

    Args:
        model: The clean model (not modified).
        output_name: Name of the score output.

    Raises:
        GraphError: If the nodes are not in topological order, or a tensor at a
            split has no type after shape inference.
    """

    def __init__(self, model: onnx.ModelProto, *, output_name: str) -> None:
        self.model = model
        self.output_name = output_name
        graph = model.graph
        self._nodes = list(graph.node)
        self._inits = {t.name: t for t in graph.initializer}
        self._graph_inputs = [i.name for i in graph.input if i.name not in self._inits]
        self._inputs = [_node_inputs(n) for n in self._nodes]
        self._producer: dict[str, int] = {}
        self._first_use: dict[str, int] = {}
        self._last_use: dict[str, int] = {}
        known = set(self._inits) | set(self._graph_inputs)
        for pos, (node, names) in enumerate(zip(self._nodes, self._inputs)):
            for name in names:
                self._first_use.setdefault(name, pos)
                self._last_use[name] = pos
                if name not in known and name not in self._producer and not _is_outer(name, node):
                    msg = f"node {pos} ({node.op_type} {node.name!r}) reads {name!r} before it is produced"
                    raise GraphError(msg + "; the graph is not topologically sorted")
            for out in node.output:
                if out:
                    self._producer[out] = pos
        if output_name not in self._producer:
            msg = f"score output {output_name!r} is not produced by any node"
            raise GraphError(msg)
        self._output_pos = self._producer[output_name]
        inferred = onnx.shape_inference.infer_shapes(_without_data(model))
        self._types = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}

    def __len__(self) -> int:
        return len(self._nodes)

    def position(self, tensor_names: Iterable[str]) -> int:
        """Split position for noise in ``tensor_names``: the first node reading any of them.

        A noised ``BatchNormalization`` whose input comes only from a Conv/Gemm/MatMul
        moves the split before that producer (keeps ORT's Conv+BN fusion intact).

        Args:
            tensor_names: Initializer names that a trial replaces.

        Returns:
            Node position in ``[0, len(self)]``; ``len(self)`` when none is read.
        """
        pos = min((self._first_use[n] for n in tensor_names if n in self._first_use), default=len(self._nodes))
        if pos < len(self._nodes) and self._nodes[pos].op_type == "BatchNormalization":
            x = self._nodes[pos].input[0]
            prev = self._producer.get(x)
            if (
                prev is not None
                and self._nodes[prev].op_type in _BN_PRODUCERS
                and self._last_use.get(x) == pos
                and self._first_use.get(x) == pos
            ):
                pos = prev
        return pos

    def cut(self, position: int) -> tuple[str, ...]:
        """Tensors live across the split before node ``position`` (in production order).

        Graph inputs and tensors produced before ``position`` that a node at or after
        ``position`` reads (initializers excluded).
        """
        if position > self._output_pos:
            msg = f"split position {position} is after the score output's producer (node {self._output_pos})"
            raise GraphError(msg)
        live = [n for n in self._graph_inputs if self._last_use.get(n, -1) >= position]
        produced = sorted(
            (p, n) for n, p in self._producer.items() if p < position and self._last_use.get(n, -1) >= position
        )
        return tuple(live + [n for _, n in produced])

    def submodel(self, start: int, stop: int, outputs: Iterable[str]) -> onnx.ModelProto:
        """Model of nodes ``[start, stop)``: every tensor they read from before ``start``
        becomes a graph input, ``outputs`` the graph outputs, with the initializers they use.
        """
        nodes = self._nodes[start:stop]
        produced = {o for n in nodes for o in n.output if o}
        inputs: list[str] = []
        used_inits: list[str] = []
        for names in self._inputs[start:stop]:
            for name in names:
                if name in produced:
                    continue
                if name in self._inits:
                    if name not in used_inits:
                        used_inits.append(name)
                elif name not in inputs and (name in self._producer or name in self._graph_inputs):
                    inputs.append(name)
        graph = helper.make_graph(
            nodes,
            f"{self.model.graph.name or 'graph'}[{start}:{stop}]",
            [self._value_info(n) for n in inputs],
            [self._value_info(n) for n in outputs],
            initializer=[self._inits[n] for n in used_inits],
        )
        sub = helper.make_model(graph, opset_imports=list(self.model.opset_import), ir_version=self.model.ir_version)
        sub.functions.extend(self.model.functions)
        return sub

    def _value_info(self, name: str) -> onnx.ValueInfoProto:
        info = self._types.get(name)
        if info is None or not info.type.HasField("tensor_type"):
            msg = f"tensor {name!r} has no type after shape inference; cannot split the graph there"
            raise GraphError(msg)
        return info


def _is_outer(name: str, node: onnx.NodeProto) -> bool:
    """True if ``name`` is only read inside a subgraph of ``node`` (may be defined there)."""
    return name not in node.input


def _without_data(model: onnx.ModelProto) -> onnx.ModelProto:
    """Copy of ``model`` whose large float initializers keep dims and type but no data.

    Shape inference then runs fast; small and integer tensors (shapes, axes) keep
    their values, which shape inference of Reshape, Slice, ... needs.
    """
    light = onnx.ModelProto()
    light.CopyFrom(model)
    graph = light.graph
    kept = []
    for tensor in graph.initializer:
        if tensor.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                                onnx.TensorProto.BFLOAT16) and int(np.prod(tensor.dims)) > 64:
            graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
        else:
            kept.append(tensor)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return light


@dataclass
class PrefixStats:
    """Work done by a :class:`PrefixRunner`, in seconds and counts.

    Attributes:
        prefix_seconds: Time computing clean cut activations (segments and full prefixes).
        build_seconds: Time building suffix sessions (model slicing + ORT session creation).
        suffix_seconds: Time running suffix sessions (and counting).
        advances: Cut moves computed incrementally from the previous cut.
        rebuilds: Cut moves computed from the input images.
        fallbacks: Trials run on the full model because the cut exceeded the memory limit.
    """

    prefix_seconds: float = 0.0
    build_seconds: float = 0.0
    suffix_seconds: float = 0.0
    advances: int = 0
    rebuilds: int = 0
    fallbacks: int = 0


@dataclass
class _Cut:
    position: int
    names: tuple[str, ...]
    acts: list[dict[str, np.ndarray]]  # one feed dict per batch


@dataclass
class PrefixRunner:
    """Evaluates noisy trials by running only the suffix after the first noised node.

    Results equal full-model evaluation (same predictions; logits equal up to float
    rounding, see the module docstring).

    Args:
        model: The clean model (from :func:`onnxnoise.model.load_model`).
        data: Evaluation set; its batches define the cached activations.
        input_name: Name of the image input.
        output_name: Name of the score output.
        replaceable: Initializer names trials may replace (default: all).
        device: ``auto``, ``cpu`` or ``cuda``.
        threads: CPU intra-op threads (``0``: ONNX Runtime's default).
        cache_limit_bytes: Largest cut (all batches together) kept in memory.

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
    cache_limit_bytes: int = 2 << 30
    stats: PrefixStats = field(default_factory=PrefixStats)

    def __post_init__(self) -> None:
        self.splitter = GraphSplitter(self.model, output_name=self.output_name)
        inits = {t.name for t in self.model.graph.initializer}
        self._replaceable = inits if self.replaceable is None else set(self.replaceable)
        self._cut: _Cut | None = None
        self._factory: tuple[int, SessionFactory] | None = None

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
        """Yield ``((n, C) scores, (n,) labels)`` per batch, padding rows dropped."""
        cut = self._cut_for(self.position(replacements))
        started = time.perf_counter()
        factory = self._suffix_factory(cut.position)
        session = factory.create(replacements)
        self.provider = session.provider
        self.stats.build_seconds += time.perf_counter() - started
        started = time.perf_counter()
        ort_session = session.session
        for feed, (_, labels) in zip(cut.acts, self.data.batches()):
            (out,) = ort_session.run([self.output_name], feed)
            yield out.reshape(out.shape[0], -1)[: len(labels)], labels
        self.stats.suffix_seconds += time.perf_counter() - started

    # -- internals ---------------------------------------------------------------

    def _inputs(self) -> _Cut:
        acts = [{self.input_name: x} for x, _ in self.data.batches()]
        return _Cut(0, (self.input_name,), acts)

    def _cut_for(self, position: int) -> _Cut:
        """Cut activations at ``position``, moving the kept cut (or full model if too big)."""
        current = self._cut
        if current is not None and current.position == position:
            return current
        if position == 0:
            return self._inputs()
        started = time.perf_counter()
        if current is not None and current.position < position:
            self.stats.advances += 1
            base = current
        else:
            self.stats.rebuilds += 1
            base = self._inputs()
        self._cut = None  # release the old cut before building the new one
        names = self.splitter.cut(position)
        new = self._advance(base, position, names)
        self.stats.prefix_seconds += time.perf_counter() - started
        if new is None:
            self.stats.fallbacks += 1
            return self._inputs()
        self._cut = new
        return new

    def _advance(self, base: _Cut, position: int, names: tuple[str, ...]) -> _Cut | None:
        """Run the clean segment ``[base.position, position)`` on every batch; None if too big."""
        carried = [n for n in names if n in base.names]
        computed = [n for n in names if n not in base.names]
        segment = self.splitter.submodel(base.position, position, computed)
        factory = SessionFactory(
            segment, (), input_name=computed[0] if computed else "", output_name=computed[0] if computed else "",
            device=self.device, threads=self.threads,
        )
        session = factory.create().session if computed else None
        seg_inputs = [i.name for i in segment.graph.input]
        acts = base.acts
        size = 0
        for i, feed in enumerate(acts):
            new = {n: feed[n] for n in carried}
            if session is not None:
                outs = session.run(computed, {n: feed[n] for n in seg_inputs})
                new.update(zip(computed, outs))
            acts[i] = new  # in place: the old batch's arrays can be freed now
            size += sum(a.nbytes for a in new.values())
            if size * len(acts) > self.cache_limit_bytes * (i + 1):  # projected total over all batches
                return None
        return _Cut(position, names, acts)

    def _suffix_factory(self, position: int) -> SessionFactory:
        if self._factory is not None and self._factory[0] == position:
            return self._factory[1]
        self._factory = None
        names = self.splitter.cut(position) if position else (self.input_name,)
        suffix = self.splitter.submodel(position, len(self.splitter), [self.output_name])
        suffix_inits = {t.name for t in suffix.graph.initializer}
        factory = SessionFactory(
            suffix, sorted(self._replaceable & suffix_inits), input_name=names[0], output_name=self.output_name,
            device=self.device, threads=self.threads,
        )
        self._factory = (position, factory)
        return factory

