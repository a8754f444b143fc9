"""Values the rewrite reads from the graph: which tensors are constant, and a constant's clean value.

The model handed to :func:`onnxnoise.tile.insert_stages` may lack the weight initializers
(the session factory strips those it swaps in per trial), so a tensor is constant when it
is an initializer of the model, a name in ``weights`` (name -> clean array), a ``Constant``
output, or the output of a node whose inputs are all constant. A weight reaches its op
directly, or through ``Cast`` / ``DequantizeLinear`` / layout ops (``Transpose(W) -> MatMul``);
:func:`constant_value` evaluates that chain on the clean arrays with ONNX Runtime's CPU
provider (only the chain's few nodes, once per layer).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxnoise.lazy import lazy_module

ort = lazy_module("onnxruntime")

__all__ = ["constant_names", "constant_value"]


def constant_names(model: onnx.ModelProto, weights: Mapping[str, np.ndarray],
                   extra_nodes: Iterable[onnx.NodeProto] = ()) -> set[str]:
    """Names of the main graph's tensors that do not depend on the graph inputs (see the module docstring)."""
    static = {t.name for t in model.graph.initializer} | set(weights)
    static -= {i.name for i in model.graph.input if i.name not in weights
               and i.name not in {t.name for t in model.graph.initializer}}
    for node in [*model.graph.node, *extra_nodes]:
        inputs = [i for i in node.input if i]
        if node.op_type == "Constant" or (inputs and all(i in static for i in inputs)):
            static.update(o for o in node.output if o)
    return static


def constant_value(model: onnx.ModelProto, name: str, weights: Mapping[str, np.ndarray],
                   extra_nodes: Iterable[onnx.NodeProto] = ()) -> np.ndarray:
    """The clean value of constant tensor ``name`` (an initializer, a weight or a chain of nodes on them).

    Args:
        model: The model (its initializers and nodes; weight initializers may be missing).
        name: A tensor in :func:`constant_names`.
        weights: Clean arrays by initializer name; they win over the model's initializers.
        extra_nodes: Nodes not in the model that may produce ``name`` (the rewrite's own
            ``DequantizeLinear`` of a QLinear weight).

    Raises:
        ValueError: If ``name`` is not constant.
    """
    if name in weights:
        return np.asarray(weights[name])
    inits = {t.name: t for t in model.graph.initializer}
    if name in inits:
        return numpy_helper.to_array(inits[name])
    nodes = [*model.graph.node, *extra_nodes]
    producer = {o: n for n in nodes for o in n.output if o}
    needed: set[int] = set()
    sources: set[str] = set()
    todo, seen = [name], set()
    while todo:
        tensor = todo.pop()
        if tensor in seen or not tensor:
            continue
        seen.add(tensor)
        if tensor in weights or tensor in inits:
            sources.add(tensor)
        elif tensor in producer:
            node = producer[tensor]
            needed.add(id(node))
            todo.extend(node.input)
        else:
            msg = f"tensor {name!r} depends on {tensor!r}, which is not a constant (initializer or weight)"
            raise ValueError(msg)
    order = [n for n in nodes if id(n) in needed]
    initializers = [numpy_helper.from_array(np.asarray(weights[s]), s) if s in weights else inits[s]
                    for s in sorted(sources)]
    graph = helper.make_graph(order, "constant", [], [helper.make_value_info(name, onnx.TypeProto())],
                              initializers)
    sub = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    found = ort.InferenceSession(sub.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return np.asarray(found.run([name], {})[0])
