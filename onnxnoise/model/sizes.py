"""Declared tensor sizes checked against what a model file holds, before any tensor is built.

A 600-byte file may declare a sparse initializer of 100000 x 100000 values, a dense one of
shape ``[-3, 4]`` or ``[2**40, 2**40]``, or ``[1000, 1000]`` over three stored values. Building
any of them would take the memory first and fail later (or never). :func:`check_tensor_sizes`
walks every tensor of a loaded model (initializers, sparse initializers, attribute tensors;
main graph, subgraphs, model-local functions) and refuses, with one :class:`GraphError`:

- a negative dimension;
- a dense tensor whose stored values (``raw_data`` bytes or the typed ``*_data`` field, external
  data once read) are not the number its shape declares: a dense tensor's declared bytes are
  thus at most the bytes the files hold;
- sparse tensors whose densified sizes (shape x element size) total more than half the memory
  available (:func:`available_memory`), or more than :data:`SPARSE_EXPANSION` times the bytes
  their values and indices hold plus :data:`SPARSE_SLACK` (a pruned model keeps at least 1 value
  in 1000): densifying them (see :mod:`onnxnoise.model.lifting`) would exhaust the machine.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import onnx

from onnxnoise.errors import GraphError

__all__ = ["SPARSE_EXPANSION", "SPARSE_SLACK", "all_tensors", "available_memory", "check_tensor_sizes", "declared_numel",
           "sparse_tensors"]

#: Sparse tensors may densify to at most this many times the bytes of their stored values and indices ...
SPARSE_EXPANSION = 1000
#: ... plus this many bytes.
SPARSE_SLACK = 64 << 20

_PACKED_4BIT = {getattr(onnx.TensorProto, n) for n in ("INT4", "UINT4", "FLOAT4E2M1") if hasattr(onnx.TensorProto, n)}
_COMPLEX = {onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128}


def _graph_protos(graph: onnx.GraphProto) -> Iterator[tuple[str, object]]:
    """``("dense", TensorProto)`` / ``("sparse", SparseTensorProto)`` of ``graph`` and its subgraphs."""
    for tensor in graph.initializer:
        yield "dense", tensor
    for sparse in graph.sparse_initializer:
        yield "sparse", sparse
    yield from _node_protos(graph.node)


def _node_protos(nodes) -> Iterator[tuple[str, object]]:
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield "dense", attr.t
            for tensor in attr.tensors:
                yield "dense", tensor
            if attr.HasField("sparse_tensor"):
                yield "sparse", attr.sparse_tensor
            for sparse in attr.sparse_tensors:
                yield "sparse", sparse
            for graph in [attr.g] if attr.HasField("g") else list(attr.graphs):
                yield from _graph_protos(graph)


def _model_protos(model: onnx.ModelProto) -> Iterator[tuple[str, object]]:
    yield from _graph_protos(model.graph)
    for function in model.functions:
        yield from _node_protos(function.node)


def all_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every ``TensorProto`` of the model: dense ones and the values and indices of sparse ones, in the main
    graph, every subgraph and every model-local function (those that may hold external data)."""
    for kind, proto in _model_protos(model):
        if kind == "dense":
            yield proto
        else:
            yield from (proto.values, proto.indices)


def sparse_tensors(model: onnx.ModelProto) -> Iterator[onnx.SparseTensorProto]:
    """Every ``SparseTensorProto`` of the model (sparse initializers and ``sparse_value`` attributes)."""
    for kind, proto in _model_protos(model):
        if kind == "sparse":
            yield proto


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (``MemAvailable`` of /proc/meminfo, else the free
    physical pages), or ``None`` where the platform says neither."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def declared_numel(name: str, dims, what: str = "tensor") -> int:
    """The element count of shape ``dims`` (a Python int: no int64 overflow) of the ``what`` named ``name``.

    Raises:
        GraphError: A negative dimension.
    """
    dims = [int(d) for d in dims]
    if any(d < 0 for d in dims):
        msg = (f"{what} {name!r} declares a negative dimension in its shape {dims}; the model file is damaged, "
               "export it again")
        raise GraphError(msg)
    return math.prod(dims)


def _stored(tensor: onnx.TensorProto) -> tuple[int, int] | None:
    """``(stored, expected)``: how many units a dense tensor's data field holds and how many its shape
    needs (bytes for ``raw_data``, items for a typed field), or ``None`` when it cannot be told."""
    numel = math.prod(int(d) for d in tensor.dims)
    dtype = tensor.data_type
    if dtype == onnx.TensorProto.STRING:
        return len(tensor.string_data), numel
    if tensor.data_location == onnx.TensorProto.EXTERNAL and not tensor.HasField("raw_data"):
        return None
    if tensor.HasField("raw_data"):
        if dtype in _PACKED_4BIT:
            return len(tensor.raw_data), (numel + 1) // 2
        try:
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(dtype).itemsize
        except (KeyError, TypeError, ValueError):
            return None
        return len(tensor.raw_data), numel * itemsize
    try:
        field = onnx.helper.tensor_dtype_to_field(dtype)
    except (KeyError, TypeError, ValueError):
        return None
    count = len(getattr(tensor, field))
    if dtype in _PACKED_4BIT:
        return count, (numel + 1) // 2
    return count, numel * (2 if dtype in _COMPLEX else 1)


def check_tensor_sizes(model: onnx.ModelProto, *, memory: int | None = None) -> None:
    """Refuse declared sizes the model's data cannot back (module docstring), before anything is built.

    Args:
        model: A parsed model whose external data has been read.
        memory: Bytes of memory available (default :func:`available_memory`); the sparse tensors
            together may densify to at most half of it.

    Raises:
        GraphError: A negative dimension, a dense tensor whose stored data is not what its shape
            declares, or sparse tensors too large to densify (past ``SPARSE_EXPANSION`` x their
            bytes + ``SPARSE_SLACK``, or half of ``memory``); one line naming the tensor and sizes.
    """
    for tensor in all_tensors(model):
        declared_numel(tensor.name, tensor.dims)
        counts = _stored(tensor)
        if counts is not None and counts[0] != counts[1]:
            unit = "bytes" if tensor.HasField("raw_data") else "values"
            msg = (f"tensor {tensor.name!r} of shape {list(tensor.dims)} needs {counts[1]} {unit} of data but the "
                   f"model holds {counts[0]}; the model file is damaged, export it again")
            raise GraphError(msg)
    dense_bytes = stored_bytes = 0
    largest = None
    for sparse in sparse_tensors(model):
        name = sparse.values.name
        numel = declared_numel(name, sparse.dims, "sparse tensor")
        try:
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(sparse.values.data_type).itemsize
        except (KeyError, TypeError, ValueError):
            itemsize = 8
        size = numel * itemsize
        dense_bytes += size
        stored_bytes += sparse.values.ByteSize() + sparse.indices.ByteSize()
        if largest is None or size > largest[1]:
            largest = (f"{name!r} of shape {[int(d) for d in sparse.dims]}", size)
    if largest is None:
        return
    what = f"the model's sparse tensors densify to {dense_bytes} bytes (the largest, {largest[0]}, to {largest[1]})"
    bound = SPARSE_EXPANSION * stored_bytes + SPARSE_SLACK
    if dense_bytes > bound:
        msg = (f"{what}, more than {SPARSE_EXPANSION} x the {stored_bytes} bytes of values and indices they hold "
               f"+ {SPARSE_SLACK}; the model file is damaged, export it again")
        raise GraphError(msg)
    memory = available_memory() if memory is None else memory
    if memory is not None and 2 * dense_bytes > memory:
        msg = (f"{what}, more than half the {memory} bytes of memory available; the model needs a larger machine "
               "(or its weights stored dense)")
        raise GraphError(msg)
