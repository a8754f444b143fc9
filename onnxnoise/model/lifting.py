"""Move weights stored where the layer list does not look into the main graph's initializers.

At load time (:func:`onnxnoise.model.load_model`) :func:`lift_weights` rewrites the model
so that every weight is a main-graph initializer, which is what layer discovery lists and
what a trial replaces:

- ``sparse_initializer`` entries are densified (a sparse tensor's missing values are
  zeros; after densifying, noise reaches them like any weight unless ``--keep-zeros``);
- float ``Constant`` nodes holding more than one value (``value``, ``value_floats`` or
  ``sparse_value``) become initializers;
- initializers (dense or sparse) and such ``Constant`` nodes inside subgraphs (``If``
  branches, ``Loop`` / ``Scan`` bodies) move to the main graph, where the subgraph still
  reads them as outer-scope values. ONNX Runtime gives the same results.

What cannot be moved (a subgraph initializer that is also a subgraph input, or whose name
is defined elsewhere too; a float ``Constant`` inside a model-local function) stays where
it is and is reported by :func:`left_out`, so ``layers`` and ``bench`` say so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import numpy as np
import onnx
from onnx import numpy_helper

from onnxnoise.errors import GraphError
from onnxnoise.model.graph_view import subgraphs
from onnxnoise.model.sizes import declared_numel
from onnxnoise.model.tensors import FLOAT_DTYPES, tensor_numel

__all__ = ["all_graphs", "densify", "left_out", "lift_weights"]


def all_graphs(graph: onnx.GraphProto, where: str = "") -> Iterator[tuple[onnx.GraphProto, str]]:
    """``(graph, description)`` of ``graph`` and every subgraph in it, depth first."""
    yield graph, where
    for node in graph.node:
        for attr, sub in subgraphs(node):
            label = f"{node.op_type} {node.name or (node.output[0] if node.output else '')!r}"
            yield from all_graphs(sub, f"{where}{label} {attr}/")


def densify(sparse: onnx.SparseTensorProto) -> onnx.TensorProto:
    """The dense ``TensorProto`` of a sparse tensor (missing values are 0), named like its values.

    Raises:
        GraphError: If its shape has a negative dimension or its indices do not fit it.
    """
    name = sparse.values.name
    declared_numel(name, sparse.dims, "sparse tensor")
    values = numpy_helper.to_array(sparse.values)
    indices = numpy_helper.to_array(sparse.indices).astype(np.int64)
    dims = tuple(int(d) for d in sparse.dims)
    dense = np.zeros(int(np.prod(dims, dtype=np.int64)), dtype=values.dtype)
    try:
        flat = indices.reshape(-1) if indices.ndim == 1 else np.ravel_multi_index(tuple(indices.T), dims)
        dense[flat] = values.reshape(-1)
    except (ValueError, IndexError) as exc:
        msg = f"sparse tensor {name!r} of shape {list(dims)} has indices that do not fit it: {exc}"
        raise GraphError(msg) from None
    return numpy_helper.from_array(dense.reshape(dims), name)


def _constant_tensor(node: onnx.NodeProto) -> onnx.TensorProto | None:
    """The float tensor of more than one value that a ``Constant`` node holds, else ``None``."""
    if node.op_type != "Constant" or node.domain not in ("", "ai.onnx") or len(node.attribute) != 1:
        return None
    attr = node.attribute[0]
    if attr.name == "value" and attr.t.data_type in FLOAT_DTYPES:
        tensor = onnx.TensorProto()
        tensor.CopyFrom(attr.t)
    elif attr.name == "value_floats":
        tensor = numpy_helper.from_array(np.asarray(attr.floats, dtype=np.float32))
    elif attr.name == "sparse_value" and attr.sparse_tensor.values.data_type in FLOAT_DTYPES:
        tensor = densify(attr.sparse_tensor)
    else:
        return None
    if tensor_numel(tensor) <= 1:
        return None
    tensor.name = node.output[0]
    return tensor


def _definitions(graph: onnx.GraphProto, counts: Counter) -> Counter:
    """How many times each name is defined (input, initializer, node output) in ``graph`` and below."""
    counts.update(i.name for i in graph.input)
    counts.update(t.name for t in graph.initializer)
    counts.update(s.values.name for s in graph.sparse_initializer)
    for node in graph.node:
        counts.update(o for o in node.output if o)
        for _, sub in subgraphs(node):
            _definitions(sub, counts)
    return counts


def lift_weights(model: onnx.ModelProto) -> None:
    """Densify, lift and hoist weights into the main graph's initializers (module docstring)."""
    main = model.graph
    counts = _definitions(main, Counter())
    lifted: list[onnx.TensorProto] = [densify(s) for s in main.sparse_initializer]
    del main.sparse_initializer[:]
    _lift_constants(main, lifted, counts, top=True)
    for graph, _ in list(all_graphs(main))[1:]:
        inputs = {i.name for i in graph.input} | {o.name for o in graph.output}  # positional: stay
        kept = []
        for tensor in graph.initializer:
            movable = tensor.name not in inputs and counts[tensor.name] == 1
            (lifted if movable else kept).append(tensor)
        del graph.initializer[:]
        graph.initializer.extend(kept)
        kept_sparse = []
        for sparse in graph.sparse_initializer:
            name = sparse.values.name
            if name not in inputs and counts[name] == 1:
                lifted.append(densify(sparse))
            else:
                kept_sparse.append(sparse)
        del graph.sparse_initializer[:]
        graph.sparse_initializer.extend(kept_sparse)
        _lift_constants(graph, lifted, counts, top=False)
    main.initializer.extend(lifted)


def _lift_constants(graph: onnx.GraphProto, lifted: list, counts: Counter, *, top: bool) -> None:
    outputs = {o.name for o in graph.output}
    keep = []
    for node in graph.node:
        tensor = _constant_tensor(node)
        if tensor is not None and (top or (counts[tensor.name] == 1 and tensor.name not in outputs)):
            lifted.append(tensor)
        else:
            keep.append(node)
    if len(keep) != len(graph.node):
        del graph.node[:]
        graph.node.extend(keep)


def left_out(model: onnx.ModelProto) -> list[str]:
    """One line per weight that layer discovery cannot see (not listed, not noised).

    Float tensors of more than one value stored as a main-graph ``sparse_initializer``
    (a model not loaded with :func:`onnxnoise.model.load_model`), in a ``Constant`` node,
    or as an initializer inside a subgraph or a model-local function.
    """
    lines = []
    for graph, where in all_graphs(model.graph):
        place = f"inside {where.rstrip('/')}" if where else "in the main graph"
        why = ("(it is also a subgraph input or output, or its name is defined twice, so it cannot move to the "
               "main graph)") if where else "(load the model with load_model to move it into the initializers)"
        if where:
            for tensor in graph.initializer:
                if tensor.data_type in FLOAT_DTYPES and tensor_numel(tensor) > 1:
                    lines.append(f"initializer {tensor.name!r} {place} {why}")
        for sparse in graph.sparse_initializer:
            lines.append(f"sparse_initializer {sparse.values.name!r} {place} {why}")
        for node in graph.node:
            if _constant_tensor(node) is not None:
                lines.append(f"Constant {node.output[0]!r} {place} {why}")
    for function in model.functions:
        for node in function.node:
            if _constant_tensor(node) is not None:
                lines.append(f"Constant {node.output[0]!r} inside local function {function.domain}.{function.name}")
    return lines
