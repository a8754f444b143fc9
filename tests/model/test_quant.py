"""model/quant.py and model/integer_ops.py: integer weights of dynamically and statically quantized models
(MatMulInteger, QGemm, QDQ) are listed and noised; unsupported forms are refused or reported as left out."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxnoise.errors import GraphError
from onnxnoise.model import describe_quantization, get_initializers, layer_report, list_layers, load_model

from tests._builders import tiny_cnn
from tests._graphs import float_init, graph_model, noisy_run, run_onnx, save_model, xy_model


@pytest.fixture(scope="module")
def dynamic_models(tmp_path_factory):
    """tiny_cnn and its ``quantize_dynamic`` int8 versions (per tensor and per channel)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder = tmp_path_factory.mktemp("dynamic")
    float_path = save_model(tiny_cnn(), folder / "float.onnx")
    paths = {}
    for per_channel in (False, True):
        out = folder / f"dyn{'_pc' if per_channel else ''}.onnx"
        quantize_dynamic(float_path, str(out), weight_type=QuantType.QInt8, per_channel=per_channel,
                         op_types_to_quantize=["Conv", "Gemm", "MatMul"])
        paths[per_channel] = str(out)
    return float_path, paths


@pytest.mark.parametrize("per_channel", [False, True])
def test_dynamic_quantization_lists_the_integer_weights(dynamic_models, per_channel):
    float_path, paths = dynamic_models
    model = load_model(paths[per_channel])
    assert {n.op_type for n in model.graph.node} >= {"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"}
    layers = list_layers(model)
    float_layers = list_layers(load_model(float_path))
    assert [l.op_type for l in layers] == ["ConvInteger", "BatchNormalization", "MatMulInteger"]
    assert [l.num_params for l in layers] == [l.num_params for l in float_layers] == [112, 16, 50]
    conv, _, fc = layers
    assert conv.roles == ("weight", "bias") and conv.tensors[1] == "conv.bias"
    assert fc.roles == ("weight", "bias") and fc.tensors[1] == "fc.bias"
    inits = get_initializers(model)
    assert inits[conv.tensors[0]].dtype == np.int8 and inits[fc.tensors[0]].dtype == np.int8
    assert conv.quant[0].format == fc.quant[0].format == "dynamic" and conv.quant[1] is None
    assert conv.quant[0].scale == ("conv.weight_scale",) and conv.quant[0].zero_point == "conv.weight_zero_point"
    assert fc.quant[0].axis == (1 if per_channel else None)  # fc weight [4, 10]: per output column
    assert conv.channel_axes[0] == 0 and fc.channel_axes[0] == 1
    # sigma_w is the std of the dequantized weight, close to the float weight's
    assert conv.sigma_w == pytest.approx(float_layers[0].sigma_w, rel=0.05)
    assert describe_quantization(layers) == "quantized dynamic weights (2 layers): dequantize-noise-requantize"
    # no scale is presented as a layer, and none is set aside as if it were a weight
    report = layer_report(model)
    assert not any(t.endswith(("_scale", "_zero_point")) for l in report.layers for t in l.tensors)
    assert report.set_aside == [] and report.left_out == []


def test_dynamic_quantization_noises_the_int8_weights(dynamic_models):
    _, paths = dynamic_models
    model = load_model(paths[True])
    layers = list_layers(model)
    inits = get_initializers(model)
    x = np.random.default_rng(1).normal(size=(16, 3, 8, 8)).astype(np.float32)
    clean = run_onnx(model, {"input": x})
    noisy, draw = noisy_run(model, layers, 3.0, 0, {"input": x})
    for layer in (layers[0], layers[2]):
        weight = layer.tensors[0]
        assert draw.arrays[weight].dtype == np.int8
        changed = (draw.arrays[weight] != inits[weight]).mean()
        assert changed > 0.5, f"{weight}: only {changed:.0%} of the int8 values changed"
    assert not np.allclose(noisy, clean)
    # The session ran the noisy integers: the same as the model rewritten with them.
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    for tensor in rewritten.graph.initializer:
        if tensor.name in draw.arrays:
            tensor.CopyFrom(numpy_helper.from_array(draw.arrays[tensor.name], tensor.name))
    np.testing.assert_array_equal(noisy, run_onnx(rewritten, {"input": x}))


def test_static_qoperator_qgemm_weight_and_bias_are_listed_and_noised(tmp_path):
    """``quantize_static(QOperator)`` writes the Gemm as com.microsoft QGemm (int8 weight, int32 bias)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.batches = iter([{"input": rng.normal(size=(2, 3, 8, 8)).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.batches, None)

    float_path, out = save_model(tiny_cnn(), tmp_path / "float.onnx"), tmp_path / "qop.onnx"
    quantize_static(float_path, str(out), Reader(), quant_format=QuantFormat.QOperator, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    model = load_model(out)
    layers = list_layers(model)
    assert [l.op_type for l in layers] == ["QLinearConv", "BatchNormalization", "QGemm"]
    assert [l.num_params for l in layers] == [112, 16, 50]
    fc = layers[2]
    assert fc.roles == ("weight", "bias") and fc.quant[0].axis == 0 and fc.quant[1].scale[1] == fc.quant[0].scale[0]
    x = np.random.default_rng(1).normal(size=(16, 3, 8, 8)).astype(np.float32)
    noisy, draw = noisy_run(model, [fc], 3.0, 0, {"input": x})
    inits = get_initializers(model)
    assert (draw.arrays[fc.tensors[0]] != inits[fc.tensors[0]]).mean() > 0.5
    assert not np.allclose(noisy, run_onnx(model, {"input": x}))


def _matmul_integer(scale_from_input: bool) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.arange(16, dtype=np.int8).reshape(4, 4), "Wq"),
             numpy_helper.from_array(np.int8(0), "Wzp")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])]
    if scale_from_input:
        inputs.append(helper.make_tensor_value_info("w_scale", TensorProto.FLOAT, []))
    else:
        inits.append(float_init("w_scale", 0.1))
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xzp"], name="dql"),
        helper.make_node("MatMulInteger", ["xq", "Wq", "xzp", "Wzp"], ["acc"], name="mmi"),
        helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Mul", ["xs", "w_scale"], ["scales"], name="scales"),
        helper.make_node("Mul", ["accf", "scales"], ["logits"], name="rescale"),
    ]
    return graph_model(nodes, inputs, [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])], inits)


def test_dynamic_weight_scale_not_a_constant_is_refused():
    (layer,) = list_layers(_matmul_integer(scale_from_input=False))
    assert layer.tensors == ("Wq",) and layer.quant[0].scale == ("w_scale",)
    with pytest.raises(GraphError) as info:
        list_layers(_matmul_integer(scale_from_input=True))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("MatMulInteger 'mmi': the scale of its integer weight 'Wq' is not a graph constant")


def test_unsupported_integer_weight_op_is_refused():
    nodes = [helper.make_node("MatMulNBits", ["x", "Wq", "s"], ["y"], name="mmnb", domain="com.microsoft",
                              K=4, N=4, bits=4, block_size=16)]
    model = graph_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                   [numpy_helper.from_array(np.zeros((4, 1, 8), np.uint8), "Wq"), float_init("s", np.ones(4))])
    with pytest.raises(GraphError, match="MatMulNBits 'mmnb' holds integer weight 'Wq': onnxnoise cannot noise"):
        list_layers(model)


def test_unsupported_qdq_weight_is_reported_left_out(caplog):
    """A blocked DequantizeLinear (block_size) is not noised, and says so."""
    inits = [numpy_helper.from_array(np.arange(-8, 8, dtype=np.int8).reshape(4, 4), "Wq"),
             float_init("Wq_scale", np.full((2, 4), 0.1))]
    nodes = [helper.make_node("DequantizeLinear", ["Wq", "Wq_scale"], ["W"], axis=0, block_size=2, name="dq"),
             helper.make_node("MatMul", ["x", "W"], ["logits"], name="mm")]
    inputs, outputs = xy_model()
    model = graph_model(nodes, inputs, outputs, inits, opset=21, ir=10)
    with caplog.at_level(logging.WARNING, logger="onnxnoise.model"):
        assert list_layers(model) == []
    assert layer_report(model).left_out == [
        "INT8 weight 'Wq' of DequantizeLinear 'dq' (blocked, 4-bit or malformed quantization is not supported)"]
    assert "weight left out (not listed, not noised): INT8 weight 'Wq'" in caplog.text


def _integer_weight_behind(op: str, path: str) -> onnx.ModelProto:
    """``MatMulInteger`` / ``QLinearMatMul`` whose int8 weight ``Wq`` reaches it through ``path`` (Transpose or
    Reshape of a flat initializer)."""
    if path == "Transpose":
        inits = [numpy_helper.from_array(np.arange(16, dtype=np.int8).reshape(4, 4), "Wq")]
        route = [helper.make_node("Transpose", ["Wq"], ["Wv"], perm=[1, 0], name="w_t")]
    else:
        inits = [numpy_helper.from_array(np.arange(16, dtype=np.int8), "Wq"),
                 numpy_helper.from_array(np.array([4, 4], np.int64), "shape")]
        route = [helper.make_node("Reshape", ["Wq", "shape"], ["Wv"], name="w_r")]
    if op == "MatMulInteger":
        inits += [numpy_helper.from_array(np.int8(0), "Wzp"), float_init("w_scale", 0.1)]
        nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xzp"], name="dql"), *route,
                 helper.make_node("MatMulInteger", ["xq", "Wv", "xzp", "Wzp"], ["acc"], name="mmi"),
                 helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT, name="cast"),
                 helper.make_node("Mul", ["xs", "w_scale"], ["scales"], name="scales"),
                 helper.make_node("Mul", ["accf", "scales"], ["logits"], name="rescale")]
    else:
        inits += [float_init("a_s", 0.05), numpy_helper.from_array(np.uint8(128), "a_z"), float_init("b_s", 0.1),
                  numpy_helper.from_array(np.int8(0), "b_z"), float_init("y_s", 0.2),
                  numpy_helper.from_array(np.uint8(128), "y_z")]
        nodes = [helper.make_node("QuantizeLinear", ["x", "a_s", "a_z"], ["xq"], name="q"), *route,
                 helper.make_node("QLinearMatMul", ["xq", "a_s", "a_z", "Wv", "b_s", "b_z", "y_s", "y_z"], ["yq"],
                                  name="qmm"),
                 helper.make_node("DequantizeLinear", ["yq", "y_s", "y_z"], ["logits"], name="dq")]
    return graph_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                       [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])], inits)


@pytest.mark.parametrize(("op", "name", "path"), [("MatMulInteger", "mmi", "Transpose"),
                                                  ("MatMulInteger", "mmi", "Reshape"),
                                                  ("QLinearMatMul", "qmm", "Transpose")])
def test_an_integer_weight_behind_layout_ops_is_refused_naming_it(op, name, path):
    """Before: no layer was listed, nothing was left out, and the weight stayed exact in every noisy trial."""
    model = _integer_weight_behind(op, path)
    onnx.checker.check_model(model)
    with pytest.raises(GraphError) as refused:
        list_layers(model)
    assert str(refused.value) == (
        f"{op} {name!r} reads its integer weight 'Wq' through {path}: onnxnoise cannot noise an integer weight behind "
        "layout ops (its scale's channel axis is not mapped through them) and will not leave it exact while "
        "reporting the layer as noised; quantize the model with the weight in the layout the op reads "
        "(onnxruntime's quantize_dynamic / quantize_static do) or in QDQ format")


def test_a_dynamic_matmul_bias_after_a_reshape_joins_its_layer():
    """``MatMulInteger -> Cast -> Mul -> Reshape -> Add(b)``: b is the layer's bias (was a layer 'Add' of its own)."""
    model = _matmul_integer(scale_from_input=False)
    model.graph.node[-1].output[0] = "scaled"
    model.graph.node.extend([helper.make_node("Reshape", ["scaled", "shape"], ["flat"], name="r"),
                             helper.make_node("Add", ["flat", "b"], ["logits"], name="bias")])
    model.graph.initializer.extend([numpy_helper.from_array(np.array([-1, 4], np.int64), "shape"),
                                    float_init("b", np.arange(4.0))])
    onnx.checker.check_model(model)
    (layer,) = list_layers(model)
    assert (layer.name, layer.op_type, layer.tensors, layer.roles) == ("mmi", "MatMulInteger", ("Wq", "b"),
                                                                       ("weight", "bias"))
