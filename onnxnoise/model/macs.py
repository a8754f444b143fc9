"""Multiply-accumulates (MACs) of each node of a graph, and the speed-up prefix reuse can reach at best.

A node's MACs per image are counted from the shapes ONNX shape inference gives (the first
dimension of every activation is the batch):

- ``Conv``: ``numel(Y) * C_in/group * prod(kernel)``, i.e. ``numel(Y[1:]) * prod(W.shape[1:])``
  (``W`` is ``[C_out, C_in/group, k...]``);
- ``ConvTranspose``: ``numel(X[1:]) * prod(W.shape[1:])`` (``W`` is ``[C_in, C_out/group, k...]``:
  every input element is multiplied into ``C_out/group * prod(kernel)`` outputs);
- ``Gemm`` and ``MatMul``: ``numel(Y[1:]) * K``, ``K`` the reduced dimension (``A``'s last, or its
  first with ``transA=1``);
- every other op: 0 (normalization, activations, additions and pooling are not multiply-accumulates
  of a weight; they are memory-bound and cost time, not MACs).

Prefix reuse (:mod:`onnxnoise.engine.prefix`) runs, per trial, only the nodes from the trial's split
position on; its best possible speed-up over full-model evaluation, when the work is the MACs, is
the full model's MACs per trial over the MACs it spends per trial: each trial's suffix plus its share
of the clean prefix pass its group runs once (:func:`prefix_reuse_ideal`). Ops outside :data:`MAC_OPS`
are not counted, yet they take time: BatchNormalization, activations, additions and pooling cost
time per element, and in a CNN their time per MAC is largest in the early, high-resolution layers,
which the suffixes of later layers skip. So a measured speed-up can pass the MAC ideal for real; its
limit is the same formula on measured per-node times (:func:`onnxnoise.model.node_cost.measured_ideal`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx

from onnxnoise.errors import GraphError

__all__ = ["MAC_OPS", "node_macs", "prefix_reuse_ideal"]

#: Op types whose MACs :func:`node_macs` counts; every other op counts 0.
MAC_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int | None, ...]]:
    """``tensor name -> shape`` (``None`` for a symbolic dimension) of every typed tensor after inference."""
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    inferred = onnx.shape_inference.infer_shapes(bare)
    shapes: dict[str, tuple[int | None, ...]] = {}
    graph = inferred.graph
    for info in [*graph.input, *graph.value_info, *graph.output]:
        tensor = info.type.tensor_type
        if tensor.HasField("shape"):
            shapes[info.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
    for init in graph.initializer:
        shapes[init.name] = tuple(int(d) for d in init.dims)
    return shapes


def _per_image(shape: tuple[int | None, ...] | None, name: str, node: onnx.NodeProto) -> int:
    """Elements of one image's slice of an activation (every dimension but the first)."""
    if shape is None or len(shape) < 1 or any(d is None for d in shape[1:]):
        msg = (f"node {node.name or node.op_type!r}: the shape of {name!r} is unknown after shape inference "
               f"({shape}); MACs need every dimension but the batch")
        raise GraphError(msg)
    return int(np.prod(shape[1:], dtype=np.int64))


def _known(shape: tuple[int | None, ...] | None, name: str, node: onnx.NodeProto) -> tuple[int, ...]:
    if shape is None or any(d is None for d in shape):
        msg = f"node {node.name or node.op_type!r}: the shape of {name!r} is unknown after shape inference ({shape})"
        raise GraphError(msg)
    return tuple(int(d) for d in shape)


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((int(a.i) for a in node.attribute if a.name == name), default)


def node_macs(model: onnx.ModelProto) -> list[int]:
    """MACs per image of every node of ``model.graph``, in graph order (module doc for each op).

    Args:
        model: A model whose activations have a leading batch dimension (fixed or symbolic) and
            whose other dimensions shape inference resolves.

    Returns:
        One ``int`` per node of ``model.graph.node``: 0 for ops outside :data:`MAC_OPS`.
        E.g. a ``Conv`` with ``W`` ``[16, 3, 3, 3]`` and output ``[N, 16, 32, 32]``:
        ``16 * 32 * 32 * 3 * 3 * 3 = 442,368``.

    Raises:
        GraphError: A shape a counted node needs is unknown after shape inference.
    """
    shapes = _shapes(model)
    out = []
    for node in model.graph.node:
        op = node.op_type if node.domain in ("", "ai.onnx") else ""
        if op in ("Conv", "ConvTranspose"):
            weight = _known(shapes.get(node.input[1]), node.input[1], node)
            moving = node.output[0] if op == "Conv" else node.input[0]
            out.append(_per_image(shapes.get(moving), moving, node) * int(np.prod(weight[1:], dtype=np.int64)))
        elif op in ("Gemm", "MatMul"):
            a = shapes.get(node.input[0])
            k = None if not a else (a[0] if op == "Gemm" and _attr(node, "transA", 0) else a[-1])
            if k is None:
                msg = (f"node {node.name or node.op_type!r}: the reduced dimension of {node.input[0]!r} is unknown "
                       f"after shape inference ({a})")
                raise GraphError(msg)
            out.append(_per_image(shapes.get(node.output[0]), node.output[0], node) * k)
        else:
            out.append(0)
    return out


def prefix_reuse_ideal(macs: Sequence[float], groups: Sequence[Sequence[int]]) -> float:
    """The limit of prefix reuse: full-model cost per trial over the cost prefix reuse spends per trial.

    With ``macs`` from :func:`node_macs` this is the MAC ideal; with measured per-node times, the
    time ideal (:func:`onnxnoise.model.node_cost.measured_ideal`). Issue 24: "cost of the full model over
    the mean cost of the suffixes".

    Each group of trials (a lockstep group, or trials sharing a kept cut) runs the clean prefix once,
    up to its deepest split position, and each trial its own suffix from its position on. Full-model
    evaluation runs the whole model per trial. When the work is the MACs, prefix reuse is faster by at
    most ``N * sum(macs) / sum over groups of (sum(macs[:max(g)]) + sum over p in g of sum(macs[p:]))``
    (``N`` trials in all). With many trials per group the shared prefix vanishes and this tends to the
    full model over the mean suffix.

    Args:
        macs: Cost per node in graph order (MACs from :func:`node_macs`, or seconds; >= 0).
        groups: Per group, each trial's split position (node index; the suffix is ``macs[p:]``, 0 the
            whole model), e.g. from :meth:`onnxnoise.engine.prefix.GraphSplitter.position`.

    Returns:
        The ideal speed-up (>= 1). E.g. layers of 100, 200 and 300 MACs, one trial per layer in one
        group (positions 0, 1, 2): suffixes 600 + 500 + 300, shared prefix 100 + 200:
        ``3 * 600 / 1700 = 1.0588``.

    Raises:
        ValueError: No trial, a position outside ``0 .. len(macs) - 1``, or costs summing to 0.
    """
    positions = [p for g in groups for p in g]
    if not positions:
        raise ValueError("no trial positions: the ideal of prefix reuse needs at least one trial")
    bad = [p for p in positions if not 0 <= p < len(macs)]
    if bad:
        raise ValueError(f"split positions {bad[:5]} outside the graph's {len(macs)} nodes")
    costs = np.asarray(macs, dtype=np.float64)
    heads = np.concatenate([[0.0], np.cumsum(costs)])  # heads[p] = sum(macs[:p])
    total = heads[-1]
    spent = sum(heads[max(g)] + sum(total - heads[p] for p in g) for g in groups if len(g))
    if total <= 0:
        raise ValueError("the nodes' costs sum to 0 (no multiply-accumulates, or no measured time): "
                         "the ideal is undefined")
    return float(len(positions) * total / spent)
