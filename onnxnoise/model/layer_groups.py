"""Group parameter tensors into layers: which op owns which tensors (see :func:`onnxnoise.model.list_layers`).

A weight seen through ``Cast`` / ``Identity`` / ``DequantizeLinear`` (:func:`~onnxnoise.model.quant_patterns.weight_paths`)
or through a chain of layout ops that ends in an op's weight slot (``Transpose(W) -> MatMul``,
``Reshape -> Gemm``, ``Unsqueeze``, ``Flatten``, ``Squeeze``:
:func:`~onnxnoise.model.weight_chains.layout_chains`) belongs to the op applying it, with that
op's role and output-channel axis mapped back to the stored tensor; an ``Einsum`` operand
contracted with the data is a ``weight`` with its axis read from the equation. The ``Add`` of an
initializer after a MatMul / Einsum (or a dynamically quantized MatMul) joins that layer as its
``bias``, also when layout ops carry the product to it (``MatMul -> Reshape -> Add(b)``, as
TensorFlow conversions write a Dense layer over a sequence); there only an initializer with at most one
axis longer than 1 joins (a ``[1, N, D]`` positional embedding added after a ``Reshape`` stays its own layer).

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
from onnxnoise.model.weight_chains import LAYOUT_OPS, Chain, einsum_axis, layout_chains, weight_slot

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
_BIAS_TAKERS = frozenset({"MatMul", "MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "Einsum"})


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
    chains = layout_chains(view, alias, parameters)
    path_nodes |= _chain_nodes(view, chains)
    for found in integer.values():
        path_nodes |= found.path_nodes
    owned: set[str] = set()
    groups: list[dict] = []
    by_output: dict[str, dict] = {}
    laid_out: set[str] = set()  # products carried by layout ops: only a vector joins as their bias
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
                params, chain = None, chains.get(name)
                if name in alias:
                    name, params = alias[name]
                elif chain is not None and chain.nodes[-1] in path_nodes:
                    name, params = chain.source, chain.params
                else:
                    chain = None
                if name in owned or name in names or name not in tensors:
                    continue
                if params is None and name not in parameters:
                    continue
                names.append(name)
                roles.append(_role(view, position, slot, role_names))
                quant.append(params)
                axes.append(_axis(view, position, slot, chain, len(tensors[name].dims)))
        if not names:
            carried = by_output.get(node.input[0]) if node.op_type in LAYOUT_OPS and node.input else None
            if carried is not None and carried["op_type"] in _BIAS_TAKERS:
                by_output.update(dict.fromkeys(node.output, carried))  # a bias Add after it still joins the layer
                laid_out.update(node.output)
            continue
        owned.update(names)
        taker = next((by_output[i] for i in node.input if i in by_output), None)
        through_layout = any(i in laid_out for i in node.input)
        if node.op_type == "Add" and taker is not None and taker["op_type"] in _BIAS_TAKERS and (
                not through_layout or all(_bias_shaped(tensors[n]) for n in names)):
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


def _bias_shaped(tensor: onnx.TensorProto) -> bool:
    """At most one axis longer than 1 (``[C]``, ``[1, C]``): a bias, not a positional embedding ``[1, N, D]``."""
    return sum(1 for d in tensor.dims if d > 1) <= 1


def _chain_nodes(view: GraphView, chains: dict[str, Chain]) -> set[int]:
    """Positions of the layout nodes of every chain from an initializer that some chain brings to a weight slot
    (or, as a bias, to an ``Add`` after a MatMul / Einsum): those nodes are paths, not layers."""
    sources = set()
    for name, chain in chains.items():
        for position, slot in view.consumers.get(name, ()):
            if weight_slot(view, position, slot) or _bias_add(view, position, slot):
                sources.add(chain.source)
    return {n for chain in chains.values() if chain.source in sources for n in chain.nodes}


def _bias_add(view: GraphView, position: int, slot: int) -> bool:
    """An ``Add`` whose other operand is the output of a MatMul / Einsum, directly or through layout ops (the
    ``Add`` then joins that layer)."""
    node = view.nodes[position]
    if node.op_type != "Add" or len(node.input) != 2:
        return False
    other = view.producer.get(node.input[1 - slot])
    while other is not None and view.nodes[other].op_type in LAYOUT_OPS and view.nodes[other].input:
        other = view.producer.get(view.nodes[other].input[0])  # the product carried by Reshape / Squeeze ...
    return other is not None and view.nodes[other].op_type in _BIAS_TAKERS


def _role(view: GraphView, position: int, slot: int, role_names: tuple[str, ...]) -> str:
    if view.nodes[position].op_type == "Einsum":
        return "weight" if weight_slot(view, position, slot) else f"input{slot}"
    if view.nodes[position].op_type == "Gemm" and slot == 0 and weight_slot(view, position, slot):
        return "weight"
    return role_names[slot] if slot < len(role_names) else f"input{slot}"


def _axis(view: GraphView, position: int, slot: int, chain: Chain | None, ndim: int) -> int | None:
    """The output-channel axis of the stored tensor read at ``slot`` (directly or through ``chain``)."""
    node = view.nodes[position]
    if node.op_type == "Einsum":
        axis = einsum_axis(node, slot) if weight_slot(view, position, slot) else None
    elif chain is not None:
        axis = None if chain.shape is None else channel_axis(node, slot, len(chain.shape))
    else:
        return channel_axis(node, slot, ndim)
    return axis if chain is None else chain.source_axis(axis)


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
    if op == "Gemm" and slot == 0:  # A [M, K] (transA: [K, M]) gives the output's rows
        trans_a = next((int(a.i) for a in node.attribute if a.name == "transA"), 0)
        return 1 if trans_a else 0
    if op in ("MatMul", "QLinearMatMul") and slot == 1:
        return ndim - 1
    if op == "MatMul" and slot == 0:
        return ndim - 2
    return None
