"""Split points, cuts and sub-models of an ONNX graph (used by prefix reuse).

When the noised layers of a trial start at node ``p`` (graph order), the graph is split
before ``p``: the *cut* is the set of tensors produced before ``p`` (or graph inputs)
that nodes at or after ``p`` consume, e.g. a residual branch that lives across the
split. :class:`GraphSplitter` finds split positions and cuts and builds the sub-models
(a clean segment between two splits, the suffix after a split).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
from onnx import helper

from onnxnoise.errors import GraphError

__all__ = ["GraphSplitter"]

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
