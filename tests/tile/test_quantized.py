"""Quantized ops expressed in float: with no quantization or noise in the stages, the float path matches
the integer op within one output quantization step (QLinear*) or exactly (*Integer)."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxnoise.model import list_layers
from onnxnoise.tile import TileSettings, calibrate, insert_stages
from tests.tile._tile_models import session, weights_of

RNG = np.random.default_rng(5)


def _model(node, inits, x_type, x_shape, y_type, scale=np.float32(0.01)) -> onnx.ModelProto:
    nodes = [node]
    if y_type == TensorProto.INT32:  # dynamic quantization: the int32 sum is cast and scaled (integer_ops pattern)
        node.output[0] = "acc"
        inits = {**inits, "scale": scale}
        nodes += [helper.make_node("Cast", ["acc"], ["acc_float"], to=TensorProto.FLOAT),
                  helper.make_node("Mul", ["acc_float", "scale"], ["y"])]
        y_type = TensorProto.FLOAT
    graph = helper.make_graph(nodes, "q", [helper.make_tensor_value_info("x", x_type, x_shape)],
                              [helper.make_tensor_value_info("y", y_type, None)],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    model.graph.output[0].CopyFrom(inferred.graph.output[0])
    return model


def _qlinear_conv():
    inits = {"xs": np.float32(0.02), "xz": np.uint8(128), "w": RNG.integers(-127, 128, (6, 4, 3, 3), dtype=np.int8),
             "ws": RNG.uniform(0.002, 0.01, 6).astype(np.float32), "wz": np.zeros(6, np.int8),
             "ys": np.float32(0.05), "yz": np.uint8(120), "b": RNG.integers(-3000, 3000, 6).astype(np.int32)}
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], name="qconv",
                            pads=[1, 1, 1, 1])
    return _model(node, inits, TensorProto.UINT8, ["N", 4, 5, 5], TensorProto.UINT8), (2, 4, 5, 5), 12, 1


def _qlinear_matmul():
    inits = {"xs": np.float32(0.03), "xz": np.uint8(128), "w": RNG.integers(-127, 128, (40, 5), dtype=np.int8),
             "ws": np.float32(0.01), "wz": np.int8(0), "ys": np.float32(0.2), "yz": np.uint8(128)}
    node = helper.make_node("QLinearMatMul", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], name="qmm")
    return _model(node, inits, TensorProto.UINT8, ["N", 40], TensorProto.UINT8), (3, 40), 16, 1


def _conv_integer():
    inits = {"w": RNG.integers(0, 256, (6, 4, 3, 3), dtype=np.uint8), "xz": np.uint8(128), "wz": np.uint8(100)}
    node = helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], name="iconv")
    return _model(node, inits, TensorProto.UINT8, ["N", 4, 5, 5], TensorProto.INT32), (2, 4, 5, 5), 12, 0


def _matmul_integer():
    inits = {"w": RNG.integers(-127, 128, (40, 5), dtype=np.int8), "xz": np.uint8(128),
             "wz": RNG.integers(-3, 3, 5).astype(np.int8)}
    node = helper.make_node("MatMulInteger", ["x", "w", "xz", "wz"], ["y"], name="imm")
    scale = RNG.uniform(0.005, 0.02, 5).astype(np.float32)  # per column, as the per-column zero point
    return _model(node, inits, TensorProto.UINT8, ["N", 40], TensorProto.INT32, scale), (3, 40), 16, 0


@pytest.mark.parametrize("build", [_qlinear_conv, _qlinear_matmul, _conv_integer, _matmul_integer])
def test_float_path_matches_the_integer_op(build):
    model, x_shape, rows, tolerance = build()
    x = RNG.integers(0, 256, x_shape, dtype=np.uint8)
    clean = session(model).run(["y"], {"x": x})[0]
    result = insert_stages(model, list_layers(model), TileSettings(tile_rows=rows), None, seed=0,
                           weights=weights_of(model))
    onnx.checker.check_model(result.model)
    staged = session(result.model).run(["y"], {"x": x})[0]
    assert staged.dtype == clean.dtype and staged.shape == clean.shape
    if clean.dtype == np.uint8:  # one output quantization step
        assert np.abs(staged.astype(np.int64) - clean.astype(np.int64)).max() <= tolerance
    else:                        # the exact integer sum, then the model's own Cast and Mul
        assert np.array_equal(staged, clean)


def test_a_qlinear_conv_takes_the_stages():
    model, x_shape, rows, _ = _qlinear_conv()
    x = RNG.integers(0, 256, x_shape, dtype=np.uint8)
    settings = TileSettings(dac_bits=4, adc_bits=4, tile_rows=rows)
    cal = calibrate(model, list_layers(model), [x], input_name="x", settings=settings, weights=weights_of(model))
    # DAC input: dequantized uint8 around zero point 128 at scale 0.02: |x| <= 128 * 0.02
    assert 0 < cal.layers["qconv"].x_max <= 2.56
    result = insert_stages(model, list_layers(model), settings, cal, seed=0, weights=weights_of(model))
    outs = session(result.model).run(None, {"x": x})
    assert outs[0].dtype == np.uint8
    assert not np.array_equal(outs[0], session(model).run(["y"], {"x": x})[0])  # 4-bit stages change it
