"""Tiles without quantization or noise equal the untiled op (float tolerance), for every op kind."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxnoise.model import list_layers
from onnxnoise.tile import TileSettings, insert_stages
from onnxnoise.tile.rewrite import analog_ops
from tests.tile._tile_models import one_op, run, session, staged, weights_of

RNG = np.random.default_rng(7)


def _f(*shape):
    return RNG.normal(size=shape).astype(np.float32)


CASES = {
    # name: (op, initializers, inputs, x shape, attrs, R, expected tiles)
    "conv": ("Conv", {"w": _f(6, 5, 3, 3), "b": _f(6)}, ["x", "w", "b"], [2, 5, 7, 7], dict(pads=[1, 1, 1, 1]), 18, 3),
    "conv_grouped": ("Conv", {"w": _f(8, 3, 3, 3), "b": _f(8)}, ["x", "w", "b"], [2, 6, 6, 6],
                     dict(group=2, strides=[2, 2]), 9, 3),
    "conv_depthwise": ("Conv", {"w": _f(4, 1, 3, 3)}, ["x", "w"], [2, 4, 6, 6], dict(group=4), 9, 1),
    "conv_transpose": ("ConvTranspose", {"w": _f(6, 4, 2, 2), "b": _f(4)}, ["x", "w", "b"], [2, 6, 5, 5],
                       dict(strides=[2, 2]), 8, 3),
    "conv_transpose_grouped": ("ConvTranspose", {"w": _f(6, 2, 3, 3)}, ["x", "w"], [2, 6, 4, 4], dict(group=2), 9, 3),
    "gemm": ("Gemm", {"w": _f(40, 7), "c": _f(7)}, ["x", "w", "c"], [3, 40], dict(alpha=0.5, beta=2.0), 16, 3),
    "gemm_transB": ("Gemm", {"w": _f(7, 40), "c": _f(1, 7)}, ["x", "w", "c"], [3, 40], dict(transB=1), 16, 3),
    "gemm_transA": ("Gemm", {"w": _f(40, 7)}, ["x", "w"], [40, 3], dict(transA=1), 10, 4),
    "matmul_b": ("MatMul", {"w": _f(40, 7)}, ["x", "w"], [2, 3, 40], {}, 16, 3),
    "matmul_a": ("MatMul", {"w": _f(7, 40)}, ["w", "x"], [2, 40, 5], {}, 16, 3),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tiles_equal_the_untiled_op(case):
    op, inits, inputs, x_shape, attrs, rows, tiles = CASES[case]
    model = one_op(op, inits, inputs, x_shape, **attrs)
    (site,) = analog_ops(model, list_layers(model), rows, weights_of(model))
    assert site.op.tiles == tiles
    x = RNG.normal(size=x_shape).astype(np.float32)
    clean = run(model, x)["y"]
    tiled = run(staged(model, TileSettings(tile_rows=rows), None).model, x)["y"]
    assert tiled.shape == clean.shape
    np.testing.assert_allclose(tiled, clean, rtol=1e-5, atol=1e-5)


def test_conv_tiles_hold_whole_kernels_per_group():
    model = one_op("Conv", {"w": _f(8, 3, 3, 3)}, ["x", "w"], [1, 6, 6, 6], group=2)
    (site,) = analog_ops(model, list_layers(model), 20, weights_of(model))
    # 3 channels per group of 9 rows each: floor(20 / 9) = 2 channels per tile -> rows 18, 9
    assert site.op.chunks == ((0, 2), (2, 3)) and [site.op.rows(t) for t in range(2)] == [18, 9]
    (site,) = analog_ops(model, list_layers(model), 4, weights_of(model))  # R below one kernel: 1 channel
    assert site.op.tiles == 3


def test_a_replaced_weight_of_the_same_name_reaches_every_tile():
    """The session factory strips the weights and appends per-trial ones: the tiles must read them by name."""
    w = _f(40, 7)
    model = one_op("MatMul", {"w": w}, ["x", "w"], [3, 40])
    weights = weights_of(model)
    stripped = type(model)()
    stripped.CopyFrom(model)
    del stripped.graph.initializer[:]
    result = insert_stages(stripped, list_layers(model), TileSettings(tile_rows=16), None, seed=0, weights=weights)
    assert [t.name for t in result.model.graph.initializer if t.name == "w"] == []
    noisy = w + _f(40, 7)
    result.model.graph.initializer.append(numpy_helper.from_array(noisy, "w"))
    x = _f(3, 40)
    np.testing.assert_allclose(session(result.model).run(["y"], {"x": x})[0], x @ noisy, rtol=1e-5, atol=1e-5)


def test_einsum_is_refused_with_the_layer_name():
    model = one_op("Einsum", {"w": _f(4, 3)}, ["x", "w"], [2, 4], equation="ij,jk->ik", name="mix")
    with pytest.raises(ValueError, match="layer 'mix': the tile stages cannot split an Einsum op"):
        staged(model, TileSettings(tile_rows=2), None)


@pytest.mark.parametrize("chain", ["transpose", "dequantize"])
def test_a_weight_reached_through_a_chain_is_split_in_the_graph(chain):
    """``Transpose(W) -> MatMul`` and QDQ ``DequantizeLinear(W_int8) -> MatMul``: the chain's output is sliced."""
    if chain == "transpose":
        inits = [numpy_helper.from_array(_f(7, 40), "w")]
        pre = [helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0])]
    else:
        inits = [numpy_helper.from_array(RNG.integers(-127, 128, (40, 7), dtype=np.int8), "w"),
                 numpy_helper.from_array(np.float32(0.02), "s"), numpy_helper.from_array(np.int8(0), "z")]
        pre = [helper.make_node("DequantizeLinear", ["w", "s", "z"], ["wt"])]
    graph = helper.make_graph(pre + [helper.make_node("MatMul", ["x", "wt"], ["y"], name="mm")], "chain",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 40])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 7])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (site,) = analog_ops(model, list_layers(model), 16, weights_of(model))
    assert site.op.tiles == 3 and site.op.w == "wt"
    x = _f(3, 40)
    w = weights_of(model)["w"]
    # numpy's float product (ONNX Runtime may run the untiled DQ -> MatMul with a dynamically quantized input)
    expected = x @ (w.T if chain == "transpose" else w.astype(np.float32) * np.float32(0.02))
    np.testing.assert_allclose(run(staged(model, TileSettings(tile_rows=16), None).model, x)["y"], expected,
                               rtol=1e-5, atol=1e-5)
