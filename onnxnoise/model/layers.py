"""Enumerate and select a model's parameter layers.

A *layer* is the parameter group of one op, as in Fagbohungbe & Qian (arXiv
2011.11840, Sec. III): a Conv/ConvTranspose/Gemm/MatMul weight with its bias, or one
BatchNormalization's scale, bias, running mean and running variance together. Every
float initializer that an op consumes as a parameter belongs to exactly one layer
(the first op that consumes it, in graph order), so tied weights are one layer.

Functions here are pure: they read a ``ModelProto`` and return new objects, never
changing the model they are given.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np
import onnx

from onnxnoise.errors import GraphError
from onnxnoise.model.loading import FLOAT_DTYPES, tensor_array, tensor_numel
from onnxnoise.model.quant import QUANT_POLICY, QuantParams, dequantize
from onnxnoise.model.quant_patterns import is_qlinear, qlinear_params, weight_paths

__all__ = ["Layer", "list_layers", "select_layers"]

#: Input positions that are never parameters even when fed by a float initializer
#: (scales, pads, bounds, shapes). Positions are 0-based.
_NON_PARAMETER_INPUTS: dict[str, frozenset[int]] = {
    "Resize": frozenset({1, 2, 3}),
    "Upsample": frozenset({1}),
    "Pad": frozenset({1, 2, 3}),
    "Clip": frozenset({1, 2}),
    "Reshape": frozenset({1}),
    "Expand": frozenset({1}),
    "Tile": frozenset({1}),
    "Slice": frozenset({1, 2, 3, 4}),
    "Range": frozenset({0, 1, 2}),
    "ConstantOfShape": frozenset({0}),
    "Dropout": frozenset({1, 2}),
    "QuantizeLinear": frozenset({1, 2}),
    "DequantizeLinear": frozenset({1, 2}),
}

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


@dataclass(frozen=True)
class Layer:
    """One parameter layer: the float initializers one op owns.

    Attributes:
        index: 0-based position among the model's layers, in graph order.
        name: The node's name, or ``<op_type>_<node position>`` when it has none.
        op_type: ONNX op type of the owning node (e.g. ``Conv``, ``BatchNormalization``).
        tensors: Initializer names owned by the layer, in input order.
        roles: Role of each tensor (``weight``, ``bias``, ``scale``, ``mean``, ``var``, ...).
        shapes: Shape of each tensor.
        num_params: Total number of elements over ``tensors``.
        sigma_w: Standard deviation of the layer's first tensor (the weight or BN
            scale), the ``sigma_w`` of paper eq. 1; noise uses each tensor's own std.
            For an integer-quantized tensor it is the std of the dequantized values.
        quant: Per tensor, its :class:`onnxnoise.model.QuantParams` when the tensor is
            an integer-quantized weight (QDQ or QLinear op), else ``None``; empty for
            a layer built without it (all float).
        quantization_policy: :data:`onnxnoise.model.QUANT_POLICY` when the layer holds
            a quantized tensor, else ``None``.
        channel_axes: Per tensor, the axis that runs along the op's output channels
            (non-negative), or ``None`` where the tensor has none; empty for a layer
            built without it. Conv / QLinearConv weight ``[C_out, C_in/g, k...]``: 0;
            ConvTranspose weight ``[C_in, C_out/g, k...]``: 1; Gemm ``B``: 0 with
            ``transB=1`` (``[N, K]``), 1 with ``transB=0`` (``[K, N]``); MatMul /
            QLinearMatMul ``B`` ``[..., K, N]``: its last axis, a MatMul ``A`` initializer
            ``[..., M, K]``: its second-to-last. Biases, 1-D tensors, normalization
            parameters and other ops: ``None``.
    """

    index: int
    name: str
    op_type: str
    tensors: tuple[str, ...]
    roles: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    num_params: int
    sigma_w: float
    quant: tuple[QuantParams | None, ...] = ()
    quantization_policy: str | None = None
    channel_axes: tuple[int | None, ...] = ()

    def to_dict(self) -> dict:
        """Return the layer as a JSON-ready dict."""
        d = asdict(self)
        d["tensors"] = list(self.tensors)
        d["roles"] = list(self.roles)
        d["shapes"] = [list(s) for s in self.shapes]
        d["quant"] = [None if q is None else q.to_dict() for q in self.quant]
        d["channel_axes"] = list(self.channel_axes)
        return d


def list_layers(model: onnx.ModelProto) -> list[Layer]:
    """List the model's parameter layers in graph order.

    A node input counts as a parameter when it is a float initializer (float32,
    float16, bfloat16, float64) with more than one element, and its position is not a
    known non-parameter slot (Resize scales, Pad pads, Clip bounds, ...). Integer
    tensors, shape tensors and scalars are never parameters, except integer-quantized
    weights: an integer initializer behind a ``DequantizeLinear`` (QDQ; the layer is
    the op consuming the dequantized value), or the weight and bias of a
    ``QLinearConv`` / ``QLinearMatMul``; see :mod:`onnxnoise.model.quant`. An ``Add`` that
    adds a float (or dequantized) initializer to the output of a ``MatMul`` layer
    joins that layer as its bias. A float weight reached through ``Cast`` (fp16/bf16
    weights cast to float32) or ``QuantizeLinear -> DequantizeLinear`` belongs to the
    op consuming the cast / dequantized value.

    Args:
        model: A model from :func:`onnxnoise.model.load_model`.

    Returns:
        Layers sorted by ``index``; an empty list when nothing is perturbable.

    Raises:
        GraphError: If a parameter initializer's data does not match its dtype and shape.
    """
    tensors = {t.name: t for t in model.graph.initializer}
    groups = _parameter_groups(model.graph.node, tensors)
    arrays_by_name: dict[str, np.ndarray] = {}

    def array(name: str) -> np.ndarray:
        if name not in arrays_by_name:
            arrays_by_name[name] = tensor_array(tensors[name])
        return arrays_by_name[name]

    layers = []
    for index, group in enumerate(groups):
        arrays = [array(n) for n in group["tensors"]]
        first, first_params = arrays[0], group["quant"][0]
        if first_params is not None:
            needed = [*first_params.scale, *([first_params.zero_point] if first_params.zero_point else [])]
            first = dequantize(first, first_params, {n: array(n) for n in needed})
        quantized = any(q is not None for q in group["quant"])
        layers.append(
            Layer(
                index=index,
                name=group["name"],
                op_type=group["op_type"],
                tensors=tuple(group["tensors"]),
                roles=tuple(group["roles"]),
                shapes=tuple(tuple(int(d) for d in a.shape) for a in arrays),
                num_params=int(sum(a.size for a in arrays)),
                sigma_w=float(np.std(first.astype(np.float64))),
                quant=tuple(group["quant"]),
                quantization_policy=QUANT_POLICY if quantized else None,
                channel_axes=tuple(group["axes"]),
            )
        )
    return layers


def _parameter_groups(nodes, tensors: dict[str, onnx.TensorProto]) -> list[dict]:
    """The parameter tensors of each layer-owning node, in graph order (see :func:`list_layers`).

    Returns:
        One dict per layer with ``name``, ``op_type``, ``tensors``, ``roles``,
        ``quant`` and ``axes`` (lists, one entry per tensor; see :attr:`Layer.channel_axes`).
    """
    alias, path_nodes = weight_paths(nodes, tensors)
    owned: set[str] = set()
    groups: list[dict] = []
    by_output: dict[str, dict] = {}
    for position, node in enumerate(nodes):
        if position in path_nodes:
            continue
        skip = _NON_PARAMETER_INPUTS.get(node.op_type, frozenset())
        names: list[str] = []
        roles: list[str] = []
        quant: list[QuantParams | None] = []
        axes: list[int | None] = []
        role_names = _ROLES.get(node.op_type, ())
        if is_qlinear(node):
            for name, role, params in qlinear_params(node, tensors):
                if name not in owned:
                    names.append(name)
                    roles.append(role)
                    quant.append(params)
                    slot = 1 if role == "weight" else None
                    axes.append(None if slot is None else _channel_axis(node, slot, len(tensors[name].dims)))
        else:
            for slot, name in enumerate(node.input):
                if slot in skip:
                    continue
                params = None
                if name in alias:
                    name, params = alias[name]
                if name in owned or name in names or name not in tensors:
                    continue
                if params is None:
                    tensor = tensors[name]
                    if tensor.data_type not in FLOAT_DTYPES or tensor_numel(tensor) <= 1:
                        continue
                names.append(name)
                roles.append(role_names[slot] if slot < len(role_names) else f"input{slot}")
                quant.append(params)
                axes.append(_channel_axis(node, slot, len(tensors[name].dims)))
        if not names:
            continue
        owned.update(names)
        matmul = next((by_output[i] for i in node.input if i in by_output), None)
        if node.op_type == "Add" and matmul is not None and matmul["op_type"] == "MatMul":
            matmul["tensors"] += names
            matmul["roles"] += ["bias"] * len(names)
            matmul["quant"] += quant
            matmul["axes"] += [None] * len(names)
            continue
        group = {
            "name": node.name or f"{node.op_type}_{position}",
            "op_type": node.op_type,
            "tensors": names,
            "roles": roles,
            "quant": quant,
            "axes": axes,
        }
        if node.op_type == "MatMul":
            group["roles"] = ["weight"] * len(names)
        groups.append(group)
        for out in node.output:
            by_output[out] = group
    return groups


def _channel_axis(node: onnx.NodeProto, slot: int, ndim: int) -> int | None:
    """Output-channel axis of the tensor at input ``slot`` of ``node`` (see :attr:`Layer.channel_axes`).

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


def select_layers(layers: list[Layer], pattern: str | None = None) -> list[Layer]:
    """Keep the layers whose name or op type matches a regular expression.

    Args:
        layers: Output of :func:`list_layers`.
        pattern: ``None`` or ``"all"`` keeps every layer; otherwise a Python regular
            expression searched (``re.search``) in each layer's name and op type.

    Returns:
        The matching layers, in their original order (indices unchanged).

    Raises:
        GraphError: If the pattern is not a valid regular expression or matches nothing.
    """
    if pattern is None or pattern == "all":
        return list(layers)
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        msg = f"`--layer-regex` {pattern!r} is not a valid regular expression: {exc}"
        raise GraphError(msg) from exc
    chosen = [layer for layer in layers if regex.search(layer.name) or regex.search(layer.op_type)]
    if not chosen:
        examples = ", ".join(layer.name for layer in layers[:3])
        msg = f"`--layer-regex` {pattern!r} matches no layer (names look like: {examples}); see `onnxnoise layers MODEL`"
        raise GraphError(msg)
    return chosen
