"""Graph patterns that lead a weight initializer to the op consuming it.

Layer discovery (:func:`onnxnoise.model.list_layers`) asks this module two questions:

- which node outputs are a weight seen through ``DequantizeLinear`` (QDQ),
  ``QuantizeLinear -> DequantizeLinear``, ``Cast`` or ``Identity`` (:func:`weight_paths`), and
- which inputs of a ``QLinearConv`` / ``QLinearMatMul`` are its quantized weight and
  bias (:func:`qlinear_params`).

The supported encodings and the noise policy are described in
:mod:`onnxnoise.model.quant`; anything else (blocked quantization, a scale that does not
fit the weight's axis, a zero point that is neither a scalar nor the scale's size) is not matched,
so such tensors are never listed as layers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import onnx

from onnxnoise.model.tensors import FLOAT_DTYPES, tensor_numel
from onnxnoise.model.quant import INT_DTYPES, QuantParams

__all__ = ["ONNX_DOMAINS", "QLINEAR_OPS", "is_qlinear", "qlinear_params", "weight_paths"]

#: QLinear ops: op type -> ((weight slot, scale slot, zero-point slot, per-axis axis), bias slot or None).
#: The per-axis axis is relative to the weight (``-1``: last axis).
QLINEAR_OPS: dict[str, tuple[tuple[int, int, int, int], int | None]] = {
    "QLinearConv": ((3, 4, 5, 0), 8),
    "QLinearMatMul": ((3, 4, 5, -1), None),
}

#: Op domains whose ``Cast`` / ``QuantizeLinear`` / ``DequantizeLinear`` / QLinear ops are matched.
ONNX_DOMAINS = ("", "ai.onnx", "com.microsoft")

Tensors = Mapping[str, onnx.TensorProto]


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    for attr in node.attribute:
        if attr.name == name:
            return int(attr.i)
    return default


def _quant_ok(tensors: Tensors, q: str, scale: str, zero: str | None, axis: int) -> QuantParams | None:
    """QuantParams for an integer weight ``q`` with scale/zero point initializers, else None."""
    if q not in tensors or tensors[q].data_type not in INT_DTYPES or tensor_numel(tensors[q]) <= 1:
        return None
    if scale not in tensors or (zero and zero not in tensors):
        return None
    scale_t = tensors[scale]
    n = tensor_numel(scale_t)
    if zero and tensor_numel(tensors[zero]) not in (1, n):
        return None  # a zero point that fits neither the scale nor a scalar: malformed, not supported
    rank = len(tensors[q].dims)
    if n == 1:
        return QuantParams(scale=(scale,), zero_point=zero or None, axis=None, format="")
    axis = axis + rank if axis < 0 else axis
    if len(scale_t.dims) != 1 or not 0 <= axis < rank or tensors[q].dims[axis] != n:
        return None  # blocked or malformed quantization: not supported
    return QuantParams(scale=(scale,), zero_point=zero or None, axis=axis, format="")


def weight_paths(
    nodes: Iterable[onnx.NodeProto], tensors: Tensors
) -> tuple[dict[str, tuple[str, QuantParams | None]], set[int]]:
    """Map the float outputs of weight-dequantizing nodes to the initializer behind them.

    Args:
        nodes: The graph's nodes, in graph order.
        tensors: ``name -> initializer`` of the graph.

    Returns:
        ``(alias, path_nodes)``: ``alias[output] = (initializer, QuantParams or None)``
        for ``DequantizeLinear(int initializer)`` (QDQ, params set), for
        ``DequantizeLinear(QuantizeLinear(float initializer))`` (params ``None``: the float
        weight is noised and the graph quantizes it), for ``Cast(float initializer)``
        to a float type (fp16/bf16 weights cast to float32) and for
        ``Identity(float initializer)``; ``path_nodes`` are those
        nodes' positions, which are not layers themselves.
    """
    alias: dict[str, tuple[str, QuantParams | None]] = {}
    path_nodes: set[int] = set()
    quantized_float: dict[str, tuple[str, int]] = {}
    for position, node in enumerate(nodes):
        if node.domain not in ONNX_DOMAINS or not node.input:
            continue
        source = node.input[0]
        if node.op_type in ("Cast", "Identity") and source in tensors and tensors[source].data_type in FLOAT_DTYPES:
            to_float = node.op_type == "Identity" or _attr(node, "to", 0) in FLOAT_DTYPES
            if tensor_numel(tensors[source]) > 1 and to_float:
                alias[node.output[0]] = (source, None)  # fp16/bf16 weight cast to float32, or an Identity
                path_nodes.add(position)
        elif node.op_type == "QuantizeLinear":
            if source in tensors and tensors[source].data_type in FLOAT_DTYPES and tensor_numel(tensors[source]) > 1:
                quantized_float[node.output[0]] = (source, position)
        elif node.op_type == "DequantizeLinear" and len(node.input) >= 2:
            if source in quantized_float:
                name, q_position = quantized_float[source]
                alias[node.output[0]] = (name, None)
                path_nodes.update({position, q_position})
            elif _attr(node, "block_size", 0) == 0:
                zero = node.input[2] if len(node.input) > 2 else None
                params = _quant_ok(tensors, source, node.input[1], zero, _attr(node, "axis", 1))
                if params is not None:
                    alias[node.output[0]] = (source, QuantParams(params.scale, params.zero_point, params.axis, "QDQ"))
                    path_nodes.add(position)
    return alias, path_nodes


def is_qlinear(node: onnx.NodeProto) -> bool:
    """True for a ``QLinearConv`` / ``QLinearMatMul`` node of a standard domain."""
    return node.op_type in QLINEAR_OPS and node.domain in ONNX_DOMAINS


def qlinear_params(node: onnx.NodeProto, tensors: Tensors) -> list[tuple[str, str, QuantParams]]:
    """``(tensor, role, params)`` of a QLinearConv / QLinearMatMul node's weight and bias.

    Args:
        node: A node for which :func:`is_qlinear` is true.
        tensors: ``name -> initializer`` of the graph.

    Returns:
        The weight (role ``weight``) and, for ``QLinearConv``, its int32 bias (role
        ``bias``, scale ``x_scale * w_scale``); empty when the weight is not a supported
        integer initializer.
    """
    (w_slot, s_slot, z_slot, axis), bias_slot = QLINEAR_OPS[node.op_type]
    inputs = list(node.input)
    if len(inputs) <= z_slot:
        return []
    params = _quant_ok(tensors, inputs[w_slot], inputs[s_slot], inputs[z_slot], axis)
    if params is None:
        return []
    found = [(inputs[w_slot], "weight", QuantParams(params.scale, params.zero_point, params.axis, "QLinear"))]
    if bias_slot is not None and len(inputs) > bias_slot and inputs[bias_slot]:
        bias, x_scale = inputs[bias_slot], inputs[1]
        ok = (
            bias in tensors
            and tensors[bias].data_type == onnx.TensorProto.INT32
            and x_scale in tensors
            and tensor_numel(tensors[x_scale]) == 1
        )
        if ok:
            axis_b = None if params.axis is None else 0
            found.append((bias, "bias", QuantParams((x_scale, inputs[s_slot]), None, axis_b, "QLinear")))
    return found
