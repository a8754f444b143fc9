"""Weights that reach their matrix op through layout ops, and the weight operands of ``Einsum``.

Converters (tf2onnx, keras2onnx, some PyTorch exports) often store a weight in another layout
than its op reads and leave the conversion in the graph: ``Transpose(W) -> MatMul``,
``Reshape(W) -> Gemm``, ``Unsqueeze(W) -> MatMul``, ``Flatten``, ``Squeeze`` and chains of them
(with ``Cast`` / ``Identity`` between), and TensorFlow / Keras ``EinsumDense`` layers become
``Einsum("...ij,jk->...ik", x, W)``. Layer discovery (:mod:`onnxnoise.model.layer_groups`)
asks this module:

- :func:`layout_chains`: for each output of such a chain, the initializer behind it, the
  layout ops on the way and how each axis of the output maps back to an axis of the stored
  initializer (:meth:`Chain.source_axis`), so the matrix op owns the initializer with its
  role (``weight``) and output-channel axis, as if it read it directly;
- :func:`weight_slot` and :func:`einsum_axis`: whether an input slot of an op is its weight
  (Conv / ConvTranspose / Gemm input 1, either MatMul operand, an ``Einsum`` operand that
  shares a summed index with an operand computed from the image) and, for ``Einsum``, the
  weight's output axis read from the equation.

Functions here are pure: they never change the model they are given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import onnx

from onnxnoise.errors import GraphError
from onnxnoise.model.graph_view import GraphView
from onnxnoise.model.quant import QuantParams
from onnxnoise.model.tensors import FLOAT_DTYPES, tensor_array, tensor_numel

__all__ = ["LAYOUT_OPS", "Chain", "einsum_axis", "layout_chains", "weight_slot"]

#: Ops that only move, group or cast a weight's values on its way to the op that applies it.
LAYOUT_OPS = frozenset({"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Cast"})

#: Input slots holding the weight, by op type (``Einsum``: :func:`weight_slot` reads the equation).
_WEIGHT_SLOTS: dict[str, tuple[int, ...]] = {"Conv": (1,), "ConvTranspose": (1,), "Gemm": (1,), "MatMul": (0, 1)}

_STANDARD = ("", "ai.onnx")

Shape = tuple[int, ...]
AxisMap = tuple[int | None, ...]


@dataclass(frozen=True)
class Chain:
    """An initializer seen through layout ops.

    Attributes:
        source: The initializer's name.
        params: Its quantization when the chain starts at a ``DequantizeLinear`` of an
            integer initializer (QDQ), else ``None``.
        nodes: Positions of the layout nodes, in order from the initializer.
        shape: Shape of the chain's output, or ``None`` when a step's shape is not a constant.
        maps: Per step, the input axis each output axis comes from (``None``: an axis
            that merges or splits input axes, or was inserted); ``None`` for a step of
            unknown shape.
    """

    source: str
    params: QuantParams | None
    nodes: tuple[int, ...]
    shape: Shape | None
    maps: tuple[AxisMap | None, ...]

    def source_axis(self, axis: int | None) -> int | None:
        """The initializer's axis that becomes ``axis`` of the chain's output, or ``None`` when no single one does."""
        for step in reversed(self.maps):
            if axis is None or step is None or not 0 <= axis < len(step):
                return None
            axis = step[axis]
        return axis


def weight_slot(view: GraphView, position: int, slot: int) -> bool:
    """Whether input ``slot`` of the node at ``position`` is a weight its op applies to the data.

    Conv / ConvTranspose / Gemm input 1, Gemm input 0 when input 1 is computed from the
    image (``Gemm(W, X, transB=1)``), MatMul input 0 or 1, and an ``Einsum`` operand
    that shares a summed index with an operand that is not a constant (a contraction with
    the data, not an elementwise product).
    """
    node = view.nodes[position]
    if node.domain not in _STANDARD:
        return False
    if node.op_type == "Einsum":
        terms = _einsum_terms(node)
        if terms is None or slot >= len(terms[0]):
            return False
        inputs, output = terms
        data = {c for i, term in enumerate(inputs) if i != slot and node.input[i] not in view.static for c in term}
        return bool((set(inputs[slot]) & data) - set(output) - {"."})
    if node.op_type == "Gemm" and slot == 0:  # Gemm(W, X, transB=1) = W X^T: the weight is A, the data B
        return len(node.input) > 1 and node.input[1] not in view.static
    return slot in _WEIGHT_SLOTS.get(node.op_type, ())


def einsum_axis(node: onnx.NodeProto, slot: int) -> int | None:
    """Output axis of the ``Einsum`` operand at ``slot``: its one index kept in the output and in no other operand.

    ``"ij,jk->ik"``, slot 1: ``k``, axis 1. ``None`` when there is no such index or more than
    one, or the operand has an ellipsis.
    """
    terms = _einsum_terms(node)
    if terms is None or slot >= len(terms[0]) or "." in terms[0][slot]:
        return None
    inputs, output = terms
    others = {c for i, term in enumerate(inputs) if i != slot for c in term}
    own = [i for i, c in enumerate(inputs[slot]) if c in output and c not in others]
    return own[0] if len(own) == 1 else None


def _einsum_terms(node: onnx.NodeProto) -> tuple[list[str], str] | None:
    """The operand terms and the output term of an ``Einsum`` equation (implicit output made explicit)."""
    equation = next((a.s.decode("utf-8", "replace") for a in node.attribute if a.name == "equation"), "")
    equation = equation.replace(" ", "")
    lhs, arrow, output = equation.partition("->")
    inputs = lhs.split(",")
    if not lhs or len(inputs) != len(node.input):
        return None
    if not arrow:
        letters = [c for term in inputs for c in term if c.isalpha()]
        output = ("..." if any("..." in t for t in inputs) else "") + "".join(
            sorted(c for c in set(letters) if letters.count(c) == 1))
    return inputs, output


def layout_chains(view: GraphView, alias: Mapping[str, tuple[str, QuantParams | None]],
                  parameters: frozenset[str]) -> dict[str, Chain]:
    """Every output of a layout-op chain that starts at a parameter initializer, by output name.

    Args:
        view: The model's graph view.
        alias: Outputs of ``Cast`` / ``Identity`` / ``DequantizeLinear`` that are an initializer
            seen directly (:func:`onnxnoise.model.quant_patterns.weight_paths`): a chain may
            start there.
        parameters: Float initializers that are parameters
            (:func:`onnxnoise.model.tensor_roles.tensor_roles`).

    Returns:
        ``output name -> Chain`` for each standard-domain :data:`LAYOUT_OPS` node whose data
        input is such an initializer, alias or chain output and whose other inputs are
        constants; a ``Cast`` to a non-float type ends a chain.
    """
    chains: dict[str, Chain] = {}
    for position, node in enumerate(view.nodes):
        if node.domain not in _STANDARD or node.op_type not in LAYOUT_OPS or not node.input or not node.output:
            continue
        if not node.output[0] or node.output[0] in alias or not view.is_static_node(position):
            continue
        if node.op_type == "Cast" and _attr_int(node, "to", 0) not in FLOAT_DTYPES:
            continue
        start = _start(view, node.input[0], alias, chains, parameters)
        if start is None:
            continue
        shape, step = _step(view, node, start.shape)
        chains[node.output[0]] = Chain(start.source, start.params, (*start.nodes, position), shape,
                                       (*start.maps, step))
    return chains


def _start(view: GraphView, name: str, alias, chains: dict[str, Chain], parameters) -> Chain | None:
    if name in chains:
        return chains[name]
    if name in alias:
        source, params = alias[name]
        return Chain(source, params, (), tuple(int(d) for d in view.tensors[source].dims), ())
    tensor = view.tensors.get(name)
    if tensor is None or name not in parameters or tensor.data_type not in FLOAT_DTYPES or tensor_numel(tensor) <= 1:
        return None
    return Chain(name, None, (), tuple(int(d) for d in tensor.dims), ())


def _step(view: GraphView, node: onnx.NodeProto, shape: Shape | None) -> tuple[Shape | None, AxisMap | None]:
    """The output shape of one layout node and the input axis of each output axis."""
    if shape is None:
        return None, None
    op, rank = node.op_type, len(shape)
    if op in ("Identity", "Cast"):
        return shape, tuple(range(rank))
    if op == "Transpose":
        perm = _attr_ints(node, "perm") or list(reversed(range(rank)))
        if sorted(perm) != list(range(rank)):
            return None, None
        return tuple(shape[p] for p in perm), tuple(perm)
    if op == "Flatten":
        axis = _attr_int(node, "axis", 1)
        axis = axis + rank if axis < 0 else axis
        if not 0 <= axis <= rank:
            return None, None
        out = (math.prod(shape[:axis]), math.prod(shape[axis:]))
        return out, _regroup(shape, out)
    if op == "Reshape":
        spec = _ints(view, node.input[1]) if len(node.input) > 1 else None
        out = None if spec is None else _reshaped(shape, spec, allow_zero=bool(_attr_int(node, "allowzero", 0)))
        return (None, None) if out is None else (out, _regroup(shape, out))
    given = len(node.input) > 1 and bool(node.input[1])
    axes = _ints(view, node.input[1]) if given else _attr_ints(node, "axes")
    if op == "Squeeze":
        if given and axes is None:
            return None, None
        drop = {a + rank if a < 0 else a for a in axes} if axes else {i for i, d in enumerate(shape) if d == 1}
        kept = [i for i in range(rank) if i not in drop]
        return tuple(shape[i] for i in kept), tuple(kept)
    if op == "Unsqueeze":
        if not axes:
            return None, None
        size = rank + len(axes)
        added = {a + size if a < 0 else a for a in axes}
        if len(added) != len(axes) or not all(0 <= a < size for a in added):
            return None, None
        source = iter(range(rank))
        mapped = tuple(None if i in added else next(source) for i in range(size))
        return tuple(1 if m is None else shape[m] for m in mapped), mapped
    return None, None


def _reshaped(shape: Shape, spec: list[int], *, allow_zero: bool) -> Shape | None:
    """The shape ``Reshape`` gives ``shape`` with the target ``spec`` (``0`` copies, ``-1`` infers), or None."""
    out = [shape[i] if d == 0 and not allow_zero and i < len(shape) else d for i, d in enumerate(spec)]
    total = math.prod(shape)
    if out.count(-1) == 1:
        known = math.prod(d for d in out if d != -1)
        if known <= 0 or total % known:
            return None
        out[out.index(-1)] = total // known
    if any(d < 0 for d in out) or math.prod(out) != total:
        return None
    return tuple(out)


def _regroup(before: Shape, after: Shape) -> AxisMap:
    """For a row-major reshape ``before -> after``: the axis of ``before`` each axis of ``after`` is, else None.

    An axis is kept when the elements before it and its own size are the same on both sides
    (a Conv weight ``[O, I, kH, kW]`` flattened to ``[O, I kH kW]`` keeps ``O`` as axis 0).
    """
    found: list[int | None] = []
    for a, size in enumerate(after):
        lead = math.prod(after[:a])
        match = [b for b in range(len(before)) if before[b] == size and math.prod(before[:b]) == lead]
        found.append(match[0] if size != 1 and match else None)
    return tuple(found)


def _ints(view: GraphView, name: str) -> list[int] | None:
    """The integer values of a constant input (an initializer or a ``Constant`` node), or None."""
    tensor = view.tensors.get(name)
    if tensor is None and name in view.producer:
        producer = view.nodes[view.producer[name]]
        if producer.op_type != "Constant":
            return None
        attr = next((a for a in producer.attribute if a.name in ("value", "value_ints", "value_int")), None)
        if attr is None:
            return None
        if attr.name != "value":
            return list(attr.ints) if attr.name == "value_ints" else [int(attr.i)]
        tensor = attr.t
    if tensor is None or tensor.data_type not in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
        return None
    try:
        return [int(v) for v in tensor_array(tensor).reshape(-1)]
    except GraphError:  # an unreadable shape is an unknown shape here; the run reports the damaged tensor
        return None


def _attr_int(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((int(a.i) for a in node.attribute if a.name == name), default)


def _attr_ints(node: onnx.NodeProto, name: str) -> list[int] | None:
    found = next((a for a in node.attribute if a.name == name), None)
    return None if found is None else [int(v) for v in found.ints]
