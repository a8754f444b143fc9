"""A read-only index of an ONNX graph for layer discovery: nodes, producers, consumers, constants.

Layer discovery asks, for each initializer, where its value goes. :class:`GraphView`
answers that once per model:

- ``nodes``: the main graph's nodes in graph order, each followed by the nodes of its
  subgraphs (``If`` branches, ``Loop`` / ``Scan`` bodies, recursively), so a weight read
  inside a branch is found like any other;
- ``consumers[name]``: every ``(position, input slot)`` that reads a tensor;
- ``static``: the tensors whose value does not depend on the image (initializers,
  ``Constant`` outputs, ``Shape`` / ``Size`` outputs, and the outputs of any node whose
  inputs are all static), e.g. a float initializer cast to int64 for a ``Reshape``.

Functions here are pure: they never change the model they are given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

__all__ = ["GraphView", "graph_view", "subgraphs"]

#: Ops whose output depends only on the shape of their input, never on its values.
SHAPE_OPS = frozenset({"Shape", "Size"})


def subgraphs(node: onnx.NodeProto) -> list[tuple[str, onnx.GraphProto]]:
    """``(attribute name, graph)`` of every subgraph attribute of ``node`` (If/Loop/Scan bodies)."""
    found = []
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            found.append((attr.name, attr.g))
        elif attr.type == onnx.AttributeProto.GRAPHS:
            found.extend((f"{attr.name}[{i}]", g) for i, g in enumerate(attr.graphs))
    return found


@dataclass
class GraphView:
    """Nodes (subgraph nodes after their parent), tensors and data flow of one model.

    Attributes:
        nodes: Flattened nodes, main graph order with each node's subgraph nodes after it.
        names: Per node, the name a layer owned by it gets: the node's name, or
            ``<op_type>_<position>`` (position in its own graph), prefixed by the
            parent's name inside a subgraph.
        depth: Per node, 0 in the main graph, 1 inside a subgraph, ...
        tensors: ``name -> initializer`` of the main graph.
        inputs: Main graph inputs that are not initializers (the image input).
        outputs: Main graph output names.
        producer: ``tensor -> position`` of the node producing it.
        consumers: ``tensor -> [(position, slot), ...]`` of the nodes reading it.
        static: Tensors whose value does not depend on the graph's inputs' values.
    """

    nodes: list[onnx.NodeProto] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    depth: list[int] = field(default_factory=list)
    tensors: dict[str, onnx.TensorProto] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    outputs: set[str] = field(default_factory=set)
    producer: dict[str, int] = field(default_factory=dict)
    consumers: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    static: set[str] = field(default_factory=set)

    def is_static_node(self, position: int) -> bool:
        """True when every output of the node at ``position`` is static."""
        outs = [o for o in self.nodes[position].output if o]
        return bool(outs) and all(o in self.static for o in outs)


def graph_view(model: onnx.ModelProto) -> GraphView:
    """Build the :class:`GraphView` of ``model`` (see the module docstring)."""
    graph = model.graph
    view = GraphView(tensors={t.name: t for t in graph.initializer})
    view.inputs = [i.name for i in graph.input if i.name not in view.tensors]
    view.outputs = {o.name for o in graph.output}
    view.static = set(view.tensors)
    _add_nodes(view, graph.node, prefix="", depth=0)
    for position, node in enumerate(view.nodes):
        for slot, name in enumerate(node.input):
            if name:
                view.consumers.setdefault(name, []).append((position, slot))
        for out in node.output:
            if out:
                view.producer.setdefault(out, position)
        if _static_outputs(view, node):
            view.static.update(o for o in node.output if o)
    return view


def _add_nodes(view: GraphView, nodes, *, prefix: str, depth: int) -> None:
    for position, node in enumerate(nodes):
        name = node.name or f"{node.op_type}_{position}"
        view.nodes.append(node)
        view.names.append(f"{prefix}{name}")
        view.depth.append(depth)
        for attr_name, sub in subgraphs(node):
            view.static.update(t.name for t in sub.initializer)
            _add_nodes(view, sub.node, prefix=f"{prefix}{name}/{attr_name}/", depth=depth + 1)


def _static_outputs(view: GraphView, node: onnx.NodeProto) -> bool:
    if node.op_type == "Constant" or node.op_type in SHAPE_OPS:
        return True
    if subgraphs(node):
        return False
    inputs = [i for i in node.input if i]
    return bool(inputs) and all(i in view.static for i in inputs)
