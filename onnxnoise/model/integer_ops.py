"""Integer-weight ops besides QDQ and QLinearConv / QLinearMatMul: find their weights or refuse.

Supported, with the ``dequantize-noise-requantize`` policy of :mod:`onnxnoise.model.quant`
(the layer is the op holding the integer weight):

- **dynamic quantization** (``onnxruntime.quantization.quantize_dynamic``):
  ``DynamicQuantizeLinear(x) -> MatMulInteger / ConvInteger(x_q, W_q, x_zp, W_zp) -> Cast
  -> Mul(x_scale * W_scale) [-> Add(bias)]``. The op does not take the weight scale: it is
  found by following the output through the ``Cast`` and the ``Mul`` chain, and must be a
  float initializer (per tensor, or per output channel: the last axis of a MatMul weight,
  axis 0 of a Conv weight). The float bias of the ``Add`` that follows (directly or
  through a ``Reshape`` of the initializer) joins the layer;
- ``com.microsoft`` ``DynamicQuantizeMatMul`` and ``MatMulIntegerToFloat`` (scales and
  zero points are inputs; their float bias joins the layer);
- ``com.microsoft`` ``QGemm`` (weight at input 3, scale 4, zero point 5, per-channel along
  ``N``; the int32 bias at input 6 has scale ``a_scale * b_scale`` and zero point 0).

An integer weight that reaches one of these ops, ``QLinearConv`` or ``QLinearMatMul`` through
layout ops (``Transpose`` / ``Reshape`` / ``Flatten`` / ``Squeeze`` / ``Unsqueeze`` / ``Identity``
/ ``Cast``, :data:`~onnxnoise.model.weight_chains.LAYOUT_OPS`) is refused naming the op, the
weight and the path: its scale's axis would have to be mapped through the layout, which is not
done for integer weights (float and QDQ weights behind layout ops are noised:
:mod:`onnxnoise.model.weight_chains`). Without this check such a weight was silently neither
listed nor noised.

Other ops that hold integer weights (:data:`UNSUPPORTED`: ``QAttention``, ``MatMulNBits``,
``DynamicQuantizeLSTM``, ...) and a weight whose scale cannot be found are refused with a
:class:`~onnxnoise.errors.GraphError`: the tool never reports their scales and biases as the
noised layers while the integer weights stay clean.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from onnxnoise.errors import GraphError
from onnxnoise.model.graph_view import GraphView
from onnxnoise.model.tensors import FLOAT_DTYPES, tensor_numel
from onnxnoise.model.quant import INT_DTYPES, QuantParams
from onnxnoise.model.quant_patterns import ONNX_DOMAINS, _quant_ok
from onnxnoise.model.weight_chains import LAYOUT_OPS

__all__ = ["DYNAMIC_FORMAT", "IntegerLayer", "UNSUPPORTED", "integer_layers"]

#: ``QuantParams.format`` of dynamically quantized weights.
DYNAMIC_FORMAT = "dynamic"

#: Ops whose weight scale is not an input: op -> (weight slot, zero-point slot, per-channel axis).
_CHAINED = {"MatMulInteger": (1, 3, -1), "ConvInteger": (1, 3, 0)}

#: Ops with scale inputs: op -> (weight, scale, zero point, float bias slot).
_SCALED = {"DynamicQuantizeMatMul": (1, 2, 3, 4), "MatMulIntegerToFloat": (1, 3, 5, 6)}

#: Ops holding integer weights that onnxnoise cannot noise: op -> weight slots.
UNSUPPORTED: dict[str, tuple[int, ...]] = {
    "QAttention": (1,), "DynamicQuantizeLSTM": (1, 2), "MatMulNBits": (1,), "MatMulBnb4": (1,),
    "QLinearAdd": (0, 3), "QLinearMul": (0, 3), "GatherBlockQuantized": (0,), "QEmbedLayerNormalization": (2, 3, 4),
    "QOrderedMatMul": (4,), "QLinearConvTranspose": (3,),
}

#: Integer-weight ops and the input slots where an integer weight may sit (checked for layout ops before them).
_WEIGHT_SLOTS: dict[str, tuple[int, ...]] = {
    "MatMulInteger": (0, 1), "ConvInteger": (1,), "DynamicQuantizeMatMul": (1,), "MatMulIntegerToFloat": (1,),
    "QGemm": (3,), "QLinearConv": (3,), "QLinearMatMul": (0, 3),
}

#: Ops a bias initializer may pass through before its ``Add``.
_BIAS_PATH = frozenset({"Reshape", "Unsqueeze", "Flatten", "Identity"})


@dataclass(frozen=True)
class IntegerLayer:
    """The integer weight (and bias) of one op found by :func:`integer_layers`.

    Attributes:
        tensors: The weight, then the bias if any.
        roles: ``weight`` / ``bias``.
        quant: Per tensor, its :class:`QuantParams` (``None`` for a float bias).
        axes: Per tensor, the output-channel axis (see ``Layer.channel_axes``).
        path_nodes: Positions of nodes that only carry the bias to its ``Add`` (not layers).
        quant_names: Scale and zero-point initializers (not parameters themselves).
        outputs: Tensors holding the layer's float result (a later ``Add`` bias joins it).
    """

    tensors: tuple[str, ...]
    roles: tuple[str, ...]
    quant: tuple[QuantParams | None, ...]
    axes: tuple[int | None, ...]
    path_nodes: frozenset[int]
    quant_names: frozenset[str]
    outputs: tuple[str, ...]


def _is_int_weight(view: GraphView, name: str) -> bool:
    tensor = view.tensors.get(name)
    return tensor is not None and tensor.data_type not in FLOAT_DTYPES and tensor_numel(tensor) > 1


def _axis(node: onnx.NodeProto, axis: int, rank: int) -> int:
    if node.op_type == "QGemm":
        axis = 0 if next((a.i for a in node.attribute if a.name == "transB"), 0) else 1
    return axis + rank if axis < 0 else axis


def integer_layers(view: GraphView) -> dict[int, IntegerLayer]:
    """The integer-weight layers of the ops in this module, by node position.

    Raises:
        GraphError: For an op in :data:`UNSUPPORTED` holding an integer weight, an
            integer weight as the first operand of ``MatMulInteger``, or a weight whose
            scale or zero point is not a graph constant onnxnoise can find.
    """
    found: dict[int, IntegerLayer] = {}
    for position, node in enumerate(view.nodes):
        if node.domain not in ONNX_DOMAINS:
            continue
        op, label = node.op_type, f"{node.op_type} {view.names[position]!r}"
        inputs = list(node.input) + [""] * 10
        for slot in _WEIGHT_SLOTS.get(op, ()):
            _refuse_layout_path(view, label, inputs[slot])
        if op in UNSUPPORTED:
            weights = [inputs[s] for s in UNSUPPORTED[op] if _is_int_weight(view, inputs[s])]
            if weights:
                msg = (f"{label} holds integer weight {weights[0]!r}: onnxnoise cannot noise {op} weights, and "
                       "will not report its other tensors as the noised layer; export the model in QDQ format")
                raise GraphError(msg)
            continue
        if op in _CHAINED:
            if _is_int_weight(view, inputs[0]):
                msg = f"{label} has its integer weight {inputs[0]!r} as the first operand; only the second is supported"
                raise GraphError(msg)
            w_slot, z_slot, axis = _CHAINED[op]
            if not _is_int_weight(view, inputs[w_slot]):
                continue  # integer activations times integer activations: no weight
            scale, chain = _chained_scale(view, position, label, inputs[w_slot])
            layer = _layer(view, node, label, inputs[w_slot], scale, inputs[z_slot], axis, chain)
        elif op in _SCALED:
            w_slot, s_slot, z_slot, b_slot = _SCALED[op]
            if not _is_int_weight(view, inputs[w_slot]):
                continue
            layer = _layer(view, node, label, inputs[w_slot], inputs[s_slot], inputs[z_slot], -1, [],
                           bias=inputs[b_slot])
        elif op == "QGemm":
            if not _is_int_weight(view, inputs[3]):
                continue
            layer = _layer(view, node, label, inputs[3], inputs[4], inputs[5], 0, [], int_bias=(inputs[6], inputs[1]))
        else:
            continue
        found[position] = layer
    return found


def _refuse_layout_path(view: GraphView, label: str, name: str) -> None:
    """Raise when ``name`` is an integer initializer seen through layout ops (see the module docstring)."""
    path: list[str] = []
    while name and name not in view.tensors and len(path) < 16:
        position = view.producer.get(name)
        if position is None or view.nodes[position].op_type not in LAYOUT_OPS or not view.nodes[position].input:
            return
        path.append(view.nodes[position].op_type)
        name = view.nodes[position].input[0]
    if path and _is_int_weight(view, name):
        msg = (f"{label} reads its integer weight {name!r} through {' -> '.join(reversed(path))}: onnxnoise cannot "
               "noise an integer weight behind layout ops (its scale's channel axis is not mapped through them) and "
               "will not leave it exact while reporting the layer as noised; quantize the model with the weight in "
               "the layout the op reads (onnxruntime's quantize_dynamic / quantize_static do) or in QDQ format")
        raise GraphError(msg)


def _layer(view: GraphView, node: onnx.NodeProto, label: str, weight: str, scale: str, zero: str, axis: int,
           chain: list[int], *, bias: str = "", int_bias: tuple[str, str] = ("", "")) -> IntegerLayer:
    tensors = view.tensors
    rank = len(tensors[weight].dims)
    axis = _axis(node, axis, rank)
    if tensors[weight].data_type not in INT_DTYPES:
        dtype = onnx.TensorProto.DataType.Name(tensors[weight].data_type)
        msg = f"{label} holds a {dtype} weight {weight!r}: only 8-, 16- and 32-bit integer weights can be noised"
        raise GraphError(msg)
    if (zero and zero not in tensors) or not scale or scale not in tensors:
        missing = zero if zero and zero not in tensors else scale or "(none)"
        msg = (f"{label}: the scale or zero point {missing!r} of its integer weight {weight!r} is not a graph "
               "constant; onnxnoise cannot dequantize the weight to noise it")
        raise GraphError(msg)
    params = _quant_ok(tensors, weight, scale, zero or None, axis)
    if params is None:
        msg = (f"{label}: the scale {scale!r} (shape {list(tensors[scale].dims)}) of its integer weight {weight!r} "
               f"(shape {list(tensors[weight].dims)}) is neither per tensor nor per channel along axis {axis}")
        raise GraphError(msg)
    fmt = "QLinear" if node.op_type == "QGemm" else DYNAMIC_FORMAT
    names = [weight]
    roles = ["weight"]
    quant: list[QuantParams | None] = [QuantParams(params.scale, params.zero_point, params.axis, fmt)]
    axes: list[int | None] = [axis if rank >= 2 else None]
    outputs = [view.nodes[chain[-1]].output[0]] if chain else [node.output[0]]
    path: set[int] = set()
    if not bias and chain:
        bias, path, add_out = _chained_bias(view, outputs[0])
        if add_out:
            outputs.append(add_out)
    if bias and bias in tensors and tensors[bias].data_type in FLOAT_DTYPES and tensor_numel(tensors[bias]) > 1:
        names.append(bias)
        roles.append("bias")
        quant.append(None)
        axes.append(None)
    b, a_scale = int_bias
    if b and b in tensors and tensors[b].data_type == onnx.TensorProto.INT32 and a_scale in tensors \
            and tensor_numel(tensors[a_scale]) == 1:
        names.append(b)
        roles.append("bias")
        quant.append(QuantParams((a_scale, scale), None, None if params.axis is None else 0, fmt))
        axes.append(None)
    qnames = {scale, *([zero] if zero else []), *([a_scale] if a_scale else [])}
    return IntegerLayer(tuple(names), tuple(roles), tuple(quant), tuple(axes), frozenset(path), frozenset(qnames),
                        tuple(outputs))


def _activation_scale(view: GraphView, name: str) -> str | None:
    """The scale of the quantizer that produced the integer activation ``name``."""
    position = view.producer.get(name)
    if position is None:
        return None
    node = view.nodes[position]
    if node.op_type == "DynamicQuantizeLinear" and len(node.output) > 1:
        return node.output[1]
    if node.op_type == "QuantizeLinear" and len(node.input) > 1:
        return node.input[1]
    return None


def _factors(view: GraphView, name: str, act_scale: str | None, depth: int = 0) -> list[str] | None:
    """Leaves of a product of scales: initializers or the activation scale; None otherwise."""
    if name in view.tensors or name == act_scale:
        return [name]
    position = view.producer.get(name)
    if position is None or depth > 4 or view.nodes[position].op_type != "Mul":
        return None
    leaves: list[str] = []
    for operand in view.nodes[position].input:
        more = _factors(view, operand, act_scale, depth + 1)
        if more is None:
            return None
        leaves += more
    return leaves


def _chained_scale(view: GraphView, position: int, label: str, weight: str) -> tuple[str, list[int]]:
    """The weight scale of a MatMulInteger / ConvInteger: ``-> Cast -> Mul [-> Mul]`` (see module docstring)."""
    node = view.nodes[position]
    act_scale = _activation_scale(view, node.input[0])
    chain: list[int] = []
    leaves: list[str] = []
    current = node.output[0]
    uses = view.consumers.get(current, [])
    if len(uses) == 1 and view.nodes[uses[0][0]].op_type == "Cast":
        chain.append(uses[0][0])
        current = view.nodes[uses[0][0]].output[0]
        while len(chain) < 3:
            uses = view.consumers.get(current, [])
            if len(uses) != 1 or view.nodes[uses[0][0]].op_type != "Mul":
                break
            mul_pos, slot = uses[0]
            more = _factors(view, view.nodes[mul_pos].input[1 - slot], act_scale)
            if more is None:
                break
            chain.append(mul_pos)
            leaves += more
            current = view.nodes[mul_pos].output[0]
    candidates = [n for n in leaves if n != act_scale and view.tensors[n].data_type in FLOAT_DTYPES]
    if len(candidates) != 1:
        msg = (f"{label}: the scale of its integer weight {weight!r} is not a graph constant onnxnoise can find "
               f"(expected {node.op_type} -> Cast -> Mul by the weight scale initializer, found "
               f"{', '.join(candidates) or 'none'}); refusing rather than leave the weight un-noised")
        raise GraphError(msg)
    return candidates[0], chain[1:]


def _chained_bias(view: GraphView, output: str) -> tuple[str, set[int], str]:
    """``(bias initializer, nodes carrying it, Add output)`` of an ``Add`` after ``output``, or empties."""
    uses = view.consumers.get(output, [])
    if len(uses) != 1 or view.nodes[uses[0][0]].op_type != "Add":
        return "", set(), ""
    add_pos, slot = uses[0]
    add = view.nodes[add_pos]
    other = add.input[1 - slot]
    path: set[int] = set()
    while other not in view.tensors:
        position = view.producer.get(other)
        if position is None or view.nodes[position].op_type not in _BIAS_PATH:
            return "", set(), ""
        path.add(position)
        other = view.nodes[position].input[0]
    return other, path, add.output[0]
