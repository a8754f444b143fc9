"""A weight reaching its matrix op through layout ops (Transpose, Reshape, Flatten, Squeeze, Unsqueeze, chains)
or as an Einsum operand belongs to that op, as role ``weight``, with its output axis mapped back to the stored
tensor (onnxnoise.model.weight_chains)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxnoise.model import list_layers

from tests._builders import WEIGHT_ROUTES, routed_classifier
from tests._graphs import float_init, graph_model, int_init, run_onnx, xy_model

#: route -> (op type of the layer ``fc``, output-channel axis of the stored ``W``).
EXPECTED = {"direct": ("MatMul", 1), "transpose": ("MatMul", 0), "transpose-gemm": ("Gemm", 0),
            "reshape": ("MatMul", None), "flatten": ("Gemm", 0), "squeeze": ("MatMul", 2),
            "unsqueeze": ("MatMul", 1), "chain": ("MatMul", 0), "einsum": ("Einsum", 0),
            "bias-reshape": ("MatMul", 1)}  # before: the bias Add after the Reshape was a layer of its own


@pytest.mark.parametrize("route", WEIGHT_ROUTES)
def test_a_weight_reaching_its_op_through_layout_ops_is_that_ops_weight(route):
    model = routed_classifier(route)
    shape = tuple(next(t.dims for t in model.graph.initializer if t.name == "W"))
    op_type, axis = EXPECTED[route]
    (layer,) = list_layers(model)  # before: the Transpose / Reshape / ... owned W as `input0`, the op only b
    assert (layer.name, layer.op_type, layer.tensors, layer.roles) == ("fc", op_type, ("W", "b"), ("weight", "bias"))
    assert layer.channel_axes == (axis, None) and layer.shapes == (shape, (10,))
    if axis is not None:
        assert shape[axis] == 10  # the axis really runs along the 10 outputs


def test_conv_weight_through_a_transpose_gets_its_output_axis():
    rng = np.random.default_rng(0)
    hwio = rng.normal(size=(3, 3, 2, 5)).astype(np.float32)  # TensorFlow's kernel layout
    nodes = [helper.make_node("Transpose", ["k"], ["k_oihw"], name="to_oihw", perm=[3, 2, 0, 1]),
             helper.make_node("Conv", ["x", "k_oihw"], ["y"], name="conv", pads=[1, 1, 1, 1])]
    model = graph_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 4, 4])],
                        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5, 4, 4])],
                        [float_init("k", hwio)])
    (layer,) = list_layers(model)
    assert (layer.name, layer.op_type, layer.tensors, layer.roles, layer.channel_axes) == (
        "conv", "Conv", ("k",), ("weight",), (3,))


def test_quantized_weight_through_dequantize_and_transpose_keeps_its_quantization():
    q = np.arange(-8, 8, dtype=np.int8).reshape(4, 4)
    nodes = [helper.make_node("DequantizeLinear", ["q", "s", "z"], ["w"], name="dq"),
             helper.make_node("Transpose", ["w"], ["wt"], name="t", perm=[1, 0]),
             helper.make_node("MatMul", ["x", "wt"], ["logits"], name="mm")]
    inputs, outputs = xy_model()
    model = graph_model(nodes, inputs, outputs, [numpy_helper.from_array(q, "q"),
                                                 numpy_helper.from_array(np.float32(0.1), "s"),
                                                 numpy_helper.from_array(np.int8(0), "z")])
    (layer,) = list_layers(model)
    assert (layer.name, layer.tensors, layer.roles, layer.channel_axes) == ("mm", ("q",), ("weight",), (0,))
    assert layer.quant[0] is not None and layer.quant[0].scale == ("s",)


@pytest.mark.parametrize(("equation", "role", "axis"), [
    ("ij,jk->ik", "weight", 1),
    ("ij,jk", "weight", 1),            # implicit output "ik"
    ("...j,kj->...k", "weight", 0),
    ("ij,ij->ij", "input1", None),     # elementwise: no index summed with the data, not a matrix weight
])
def test_einsum_operand_role_and_axis_from_the_equation(equation, role, axis):
    inputs, outputs = xy_model()
    model = graph_model([helper.make_node("Einsum", ["x", "W"], ["logits"], name="es", equation=equation)],
                        inputs, outputs, [float_init("W", np.random.default_rng(0).normal(size=(4, 4)))])
    (layer,) = list_layers(model)
    assert (layer.op_type, layer.roles, layer.channel_axes) == ("Einsum", (role,), (axis,))
    x = np.eye(4, dtype=np.float32)
    assert run_onnx(model, {"x": x}).shape == (4, 4)


def test_a_layout_chain_that_reaches_no_weight_op_is_left_as_it_was():
    # Reshape(scale) -> Mul on activations: not a matrix weight; the Reshape stays the layer, as before
    inputs, outputs = xy_model()
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Reshape", ["gamma", "shape"], ["g"], name="g_r"),
             helper.make_node("Mul", ["r", "g"], ["logits"], name="scale")]
    model = graph_model(nodes, inputs, outputs, [float_init("gamma", [1.0, 2.0, 3.0, 4.0]), int_init("shape", [1, 4])])
    (layer,) = list_layers(model)
    assert (layer.name, layer.op_type, layer.roles, layer.channel_axes) == ("g_r", "Reshape", ("input0",), (None,))


def test_a_bias_reshaped_into_the_add_after_a_matmul_joins_the_layer():
    inputs, outputs = xy_model()
    nodes = [helper.make_node("MatMul", ["x", "W"], ["mm"], name="fc"),
             helper.make_node("Reshape", ["b", "shape"], ["b2"], name="b_r"),
             helper.make_node("Add", ["mm", "b2"], ["logits"], name="fc_bias")]
    model = graph_model(nodes, inputs, outputs, [float_init("W", np.ones((4, 4))), float_init("b", [1.0, 2.0, 3.0, 4.0]),
                                                 int_init("shape", [1, 4])])
    (layer,) = list_layers(model)
    assert (layer.name, layer.tensors, layer.roles) == ("fc", ("W", "b"), ("weight", "bias"))


@pytest.mark.parametrize(("trans_a", "axis"), [(0, 0), (1, 1)])
def test_a_gemm_whose_weight_is_its_first_operand_is_a_weight_with_its_output_axis(trans_a, axis):
    """``Gemm(W, X, transB=1) = W X^T``: the weight is A, its rows (columns with transA) the outputs; it was role
    ``a`` without an axis, so device models refused the only layer with advice to select a Gemm."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 12)).astype(np.float32)  # 5 outputs, 12 inputs
    stored = w.T.copy() if trans_a else w
    nodes = [helper.make_node("Gemm", ["W", "x"], ["yt"], name="fc", transA=trans_a, transB=1)]
    model = graph_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 12])],
                        [helper.make_tensor_value_info("yt", TensorProto.FLOAT, [5, "N"])], [float_init("W", stored)])
    (layer,) = list_layers(model)
    assert (layer.roles, layer.channel_axes) == (("weight",), (axis,)) and stored.shape[axis] == 5
    x = rng.normal(size=(3, 12)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(model, {"x": x}), w @ x.T, rtol=1e-5)  # the axis really is the outputs
    # a Gemm of two constants (folded or not) has no data operand: A stays `a`
    const = graph_model([helper.make_node("Gemm", ["W", "V"], ["y"], name="fold", transB=1)], [],
                        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 5])],
                        [float_init("W", w), float_init("V", w)])
    assert [(layer.roles, layer.channel_axes) for layer in list_layers(const)] == [(("a", "weight"), (0, 0))]


def test_an_embedding_added_after_layout_ops_is_not_taken_for_a_bias():
    """``MatMul -> Reshape [N, 2, 4] -> Add(pos [1, 2, 4])``: a positional embedding (two axes longer than 1) stays
    a layer of its own; a ``[4]`` vector there is the MatMul's bias (the ``bias-reshape`` route)."""
    rng = np.random.default_rng(0)
    for added, layers in (((1, 2, 4), [("fc", ("W",)), ("pos", ("e",))]), ((4,), [("fc", ("W", "e"))])):
        nodes = [helper.make_node("MatMul", ["x", "W"], ["mm"], name="fc"),
                 helper.make_node("Reshape", ["mm", "shape"], ["r"], name="r"),
                 helper.make_node("Add", ["r", "e"], ["y"], name="pos")]
        model = graph_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 4])],
                            [float_init("W", rng.normal(size=(8, 8))), float_init("e", rng.normal(size=added)),
                             numpy_helper.from_array(np.array([-1, 2, 4], np.int64), "shape")])
        assert [(layer.name, layer.tensors) for layer in list_layers(model)] == layers
