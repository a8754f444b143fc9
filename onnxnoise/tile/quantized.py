"""Quantized matrix ops expressed in float, so the tile stages can act on them.

An analog tile computes in the analog domain whatever the digital format around it: the
rewrite turns each quantized op into ``dequantize -> float op -> (stages) -> requantize``:

- ``QLinearConv`` / ``QLinearMatMul``: both operands through ``DequantizeLinear`` (a
  per-channel weight scale with ``axis`` = the weight's output-channel axis), the bias
  ``B`` (int32, scale ``x_scale * w_scale``) as ``Cast(B) * x_scale * w_scale``, then
  ``QuantizeLinear`` to the op's own ``y_scale`` / ``y_zero_point``. Without stages the float
  path differs from the integer op by at most one output quantization step (float32
  accumulation and one rounding instead of the exact integer sum).
- ``ConvInteger`` / ``MatMulInteger``: ``Cast(x) - Cast(zero_point)`` for each operand, the
  float op, then ``Cast(Round(y), int32)``: exact while the integer sums stay below ``2**24``.

QDQ patterns (``DequantizeLinear`` feeding a float ``Conv`` / ``MatMul``) need nothing here:
the float op is split as it is and its ``QuantizeLinear`` consumer stays in the graph.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnxnoise.tile.stages import Builder

__all__ = ["QUANTIZED_OPS", "as_float"]

#: Quantized ops the rewrite expresses in float.
QUANTIZED_OPS = frozenset({"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"})


def as_float(b: Builder, node: onnx.NodeProto, constants: set[str],
             tensor_rank: Callable[[str], int]) -> tuple[onnx.NodeProto, Callable[[str], str]]:
    """The float op standing for quantized ``node``, built in ``b``, and how its output goes back.

    Args:
        b: The layer's builder; the dequantizing nodes are appended to it.
        node: A node of :data:`QUANTIZED_OPS`.
        constants: Constant tensor names (which operand is the weight).
        tensor_rank: ``name -> rank`` of a constant tensor (a weight's zero point / scale layout).

    Returns:
        ``(float node, finish)``: ``finish(y)`` appends the nodes mapping the float result
        ``y`` back to the node's output name (requantize or round) and returns that name.
    """
    op, inp = node.op_type, list(node.input) + [""] * 9
    out = node.output[0]
    if op == "QLinearConv":
        x = b.op("DequantizeLinear", _given([inp[0], inp[1], inp[2]]), "x_float")
        w = _dequantize(b, inp[3], inp[4], inp[5], axis=0, per_axis=tensor_rank(inp[4]) == 1)
        inputs = [x, w]
        if inp[8]:
            scale = b.op("Mul", [inp[1], inp[4]], "bias_scale")
            inputs.append(b.op("Mul", [b.op("Cast", [inp[8]], to=TensorProto.FLOAT), scale], "bias_float"))
        float_node = _like(b, node, "Conv", inputs)
        return float_node, lambda y: b.op("QuantizeLinear", _given([y, inp[6], inp[7]]), output=out)
    if op == "QLinearMatMul":
        a_const = inp[0] in constants
        a = _dequantize(b, inp[0], inp[1], inp[2], axis=0, per_axis=a_const and tensor_rank(inp[1]) == 1)
        w = _dequantize(b, inp[3], inp[4], inp[5], axis=1, per_axis=not a_const and tensor_rank(inp[4]) == 1)
        float_node = _like(b, node, "MatMul", [a, w])
        return float_node, lambda y: b.op("QuantizeLinear", _given([y, inp[6], inp[7]]), output=out)
    if op == "ConvInteger":
        x = _centred(b, inp[0], inp[2], None)
        w = _centred(b, inp[1], inp[3], tensor_rank(inp[1]) if inp[3] and tensor_rank(inp[3]) == 1 else None)
        float_node = _like(b, node, "Conv", [x, w])
    elif op == "MatMulInteger":
        a_const = inp[0] in constants
        per_row = 2 if a_const and inp[2] and tensor_rank(inp[2]) == 1 else None
        a = _centred(b, inp[0], inp[2], per_row)
        w = _centred(b, inp[1], inp[3], None)
        float_node = _like(b, node, "MatMul", [a, w])
    else:
        msg = f"{op} is not a quantized op the tile stages know ({', '.join(sorted(QUANTIZED_OPS))})"
        raise ValueError(msg)
    return float_node, lambda y: b.op("Cast", [b.op("Round", [y])], output=out, to=TensorProto.INT32)


def _given(names: list[str]) -> list[str]:
    while names and not names[-1]:
        names.pop()
    return names


def _dequantize(b: Builder, x: str, scale: str, zero: str, *, axis: int, per_axis: bool) -> str:
    attrs = {"axis": axis} if per_axis else {}
    return b.op("DequantizeLinear", _given([x, scale, zero]), "dequantized", **attrs)


def _centred(b: Builder, x: str, zero: str, channel_rank: int | None) -> str:
    """``Cast(x) - Cast(zero)``; a per-channel zero point on axis 0 of a rank-``channel_rank`` tensor is reshaped."""
    value = b.op("Cast", [x], "float", to=TensorProto.FLOAT)
    if not zero:
        return value
    z = b.op("Cast", [zero], "zero_float", to=TensorProto.FLOAT)
    if channel_rank is not None:
        z = b.op("Reshape", [z, b.const([-1] + [1] * (channel_rank - 1), "zero_shape", dtype=np.int64)], "zero")
    return b.op("Sub", [value, z], "centred")


def _like(b: Builder, node: onnx.NodeProto, op_type: str, inputs: list[str]) -> onnx.NodeProto:
    """A float ``op_type`` node with ``node``'s attributes (not appended: the tiles replace it)."""
    float_node = helper.make_node(op_type, inputs, [b.name("float_out")], name=b.name("float_op"))
    float_node.attribute.extend(node.attribute)
    return float_node
