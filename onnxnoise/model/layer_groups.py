"""Group parameter tensors into layers: which op owns which tensors (see :func:`onnxnoise.model.list_layers`).

Used by :mod:`onnxnoise.model.layers`; pure functions over a
:class:`~onnxnoise.model.graph_view.GraphView`.
"""

from __future__ import annotations

import onnx

from onnxnoise.model.graph_view import GraphView
from onnxnoise.model.integer_ops import IntegerLayer
from onnxnoise.model.quant import QuantParams
from onnxnoise.model.quant_patterns import is_qlinear, qlinear_params, weight_paths
from onnxnoise.model.tensor_roles import NON_PARAMETER_INPUTS

__all__ = ["channel_axis", "parameter_groups"]

#: Role names of parameter inputs, by op type and input position.
_ROLES: dict[str, tuple[str, ...]] = {
    "Conv": ("input", "weight", "bias"),
    "ConvTranspose": ("input", "weight", "bias"),
    "Gemm": ("a", "weight", "bias"),
    "MatMul": ("a", "b"),
    "BatchNormalization": ("input", "scale", "bias", "mean", "var"),
    "InstanceNormalization": ("input", "scale", "bias"),
    "LayerNormalization": ("input", "scale", "bias"),
    "GroupNormalization": ("input", "scale", "bias"),
    "PRelu": ("input", "slope"),
}

#: Layers that a following ``Add`` of an initializer joins as their bias.
_BIAS_TAKERS = frozenset({"MatMul", "MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"})


def parameter_groups(view: GraphView, parameters: frozenset[str],
                     integer: dict[int, IntegerLayer]) -> tuple[list[dict], dict[str, tuple]]:
    """The parameter tensors of each layer-owning node, in graph order.

    Args:
        view: The model's graph view.
        parameters: Float initializers that are parameters
            (:func:`onnxnoise.model.tensor_roles.tensor_roles`).
        integer: Integer-weight layers by node position
            (:func:`onnxnoise.model.integer_ops.integer_layers`).

    Returns:
        ``(groups, alias)``: one dict per layer with ``name``, ``op_type``, ``tensors``,
        ``roles``, ``quant`` and ``axes`` (lists, one entry per tensor; see
        ``Layer.channel_axes``), and the QDQ / Cast aliases of
        :func:`~onnxnoise.model.quant_patterns.weight_paths`.
    """
    tensors = view.tensors
    alias, path_nodes = weight_paths(view.nodes, tensors)
    for found in integer.values():
        path_nodes |= found.path_nodes
    owned: set[str] = set()
    groups: list[dict] = []
    by_output: dict[str, dict] = {}
    for position, node in enumerate(view.nodes):
        if position in path_nodes:
            continue
        skip = NON_PARAMETER_INPUTS.get(node.op_type, {})
        names: list[str] = []
        roles: list[str] = []
        quant: list[QuantParams | None] = []
        axes: list[int | None] = []
        role_names = _ROLES.get(node.op_type, ())
        outputs = list(node.output)
        if position in integer:
            found = integer[position]
            for name, role, params, axis in zip(found.tensors, found.roles, found.quant, found.axes):
                if name not in owned:
                    names.append(name)
                    roles.append(role)
                    quant.append(params)
                    axes.append(axis)
            outputs += found.outputs
        elif is_qlinear(node):
            for name, role, params in qlinear_params(node, tensors):
                if name not in owned:
                    names.append(name)
                    roles.append(role)
                    quant.append(params)
                    slot = 1 if role == "weight" else None
                    axes.append(None if slot is None else channel_axis(node, slot, len(tensors[name].dims)))
        else:
            for slot, name in enumerate(node.input):
                if slot in skip:
                    continue
                params = None
                if name in alias:
                    name, params = alias[name]
                if name in owned or name in names or name not in tensors:
                    continue
                if params is None and name not in parameters:
                    continue
                names.append(name)
                roles.append(role_names[slot] if slot < len(role_names) else f"input{slot}")
                quant.append(params)
                axes.append(channel_axis(node, slot, len(tensors[name].dims)))
        if not names:
            continue
        owned.update(names)
        taker = next((by_output[i] for i in node.input if i in by_output), None)
        if node.op_type == "Add" and taker is not None and taker["op_type"] in _BIAS_TAKERS:
            taker["tensors"] += names
            taker["roles"] += ["bias"] * len(names)
            taker["quant"] += quant
            taker["axes"] += [None] * len(names)
            continue
        group = {"name": view.names[position], "op_type": node.op_type, "tensors": names, "roles": roles,
                 "quant": quant, "axes": axes}
        if node.op_type == "MatMul":
            group["roles"] = ["weight"] * len(names)
        groups.append(group)
        for out in outputs:
            by_output[out] = group
    return groups, alias


def channel_axis(node: onnx.NodeProto, slot: int, ndim: int) -> int | None:
    """Output-channel axis of the tensor at input ``slot`` of ``node`` (see ``Layer.channel_axes``).

    ``slot`` is the position of the weight among the op's float inputs: 1 for the
    weight of Conv, ConvTranspose, Gemm and MatMul ``B``, 0 for MatMul ``A``
    (QLinear weights are passed as slot 1).
    """
    if ndim < 2:
        return None
    op = node.op_type
    if op in ("Conv", "QLinearConv") and slot == 1:
        return 0
    if op == "ConvTranspose" and slot == 1:
        return 1
    if op == "Gemm" and slot == 1:
        trans_b = next((int(a.i) for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    if op in ("MatMul", "QLinearMatMul") and slot == 1:
        return ndim - 1
    if op == "MatMul" and slot == 0:
        return ndim - 2
    return None
