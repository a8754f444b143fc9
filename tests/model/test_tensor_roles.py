"""What is a weight (issue 9, class 1): tensors that are not weights are never noised, and
weights stored in unusual places or as integers are listed and noised (or refused, loudly).

Models are built here like real exported ones, and the right answer is asserted: the layer
list, what was set aside and why, and accuracy that noise cannot move.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from tests._builders import conv_bn_resnet, labeled_npz, tiny_cnn
from onnx import TensorProto, helper, numpy_helper

from onnxnoise.bench import run_bench
from onnxnoise.cli import main
from onnxnoise.config import NoiseConfig, RunConfig
from onnxnoise.engine.runtime import SessionFactory
from onnxnoise.errors import GraphError, SessionError
from onnxnoise.model import (
    Layer, describe_quantization, get_initializers, layer_report, list_layers, load_model,
)
from onnxnoise.noise import NoisePolicies, draw_noise, make_noise_model

GAUSS = make_noise_model("gaussian-snr")


def _model(nodes, inputs, outputs, inits, opset=17, ir=8, **kwargs) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits, **kwargs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir
    return model


def _save(model: onnx.ModelProto, path) -> str:
    onnx.save(model, str(path))
    return str(path)


def _f(name: str, values) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.float32), name)


def _i(name: str, values) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def _cast(src: str, out: str) -> onnx.NodeProto:
    return helper.make_node("Cast", [src], [out], to=TensorProto.INT64, name=f"cast_{src}")


def _run(model: onnx.ModelProto, feeds: dict) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _noisy_run(model: onnx.ModelProto, layers, snr: float, seed: int, feeds: dict, output: str = "logits"):
    """Outputs of ``model`` with ``layers`` noised (gaussian-snr), through the engine's SessionFactory."""
    draw = draw_noise(GAUSS, snr, seed, layers, get_initializers(model), NoisePolicies())
    names = [t for layer in layers for t in layer.tensors]
    factory = SessionFactory(model, names, input_name=next(iter(feeds)), output_name=output, device="cpu")
    return factory.create(draw.arrays).session.run([output], feeds)[0], draw


# ------------------------------------------------------------------ (a) shapes and indices are not weights


def _window_model() -> onnx.ModelProto:
    """``input [N,3,8,8]`` -> Reshape(-1 target from floats) -> Slice window (from floats) = 10 logits.

    The window is the answer, so the model is noise-proof: its only weight (a MatMul) is
    multiplied by zero before it reaches the logits. Reshape's ``[0, -1]`` and Slice's starts
    and ends are float initializers that reach their slots through ``Cast(to=INT64)`` (and,
    for the ends, through an ``Identity`` and a ``Mul`` by a constant), as some converters write them.
    """
    rng = np.random.default_rng(0)
    inits = [
        _f("flat_f", [0, -1]), _f("starts_f", [0, 5]), _f("ends_f", [1_000_000, 7.5]), _f("two", [1, 2]),
        _i("axes", [0, 1]), _f("W", rng.normal(size=(192, 10))), numpy_helper.from_array(np.float32(0), "zero"),
    ]
    nodes = [
        _cast("flat_f", "flat"),
        helper.make_node("Reshape", ["input", "flat"], ["x"], name="flatten"),
        _cast("starts_f", "starts"),
        helper.make_node("Identity", ["ends_f"], ["ends_id"], name="ends_identity"),
        helper.make_node("Mul", ["ends_id", "two"], ["ends_f2"], name="ends_times_two"),
        _cast("ends_f2", "ends"),
        helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["window"], name="window"),
        helper.make_node("MatMul", ["x", "W"], ["h"], name="dead_mm"),
        helper.make_node("Mul", ["h", "zero"], ["h0"], name="times_zero"),
        helper.make_node("Add", ["window", "h0"], ["logits"], name="logits"),
    ]
    return _model(nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
                  [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)


def test_float_shapes_and_indices_are_not_layers(tmp_path):
    report = layer_report(load_model(_save(_window_model(), tmp_path / "m.onnx")))
    assert [(l.name, l.op_type, l.tensors) for l in report.layers] == [("dead_mm", "MatMul", ("W",))]
    reasons = {s.tensor: s.reason for s in report.set_aside}
    assert set(reasons) == {"flat_f", "starts_f", "ends_f", "two"}
    assert reasons["flat_f"] == "not a parameter: its value only becomes Cast to INT64 -> Reshape shape"
    assert reasons["starts_f"] == "not a parameter: its value only becomes Cast to INT64 -> Slice starts"
    assert reasons["ends_f"] == reasons["two"] == "not a parameter: its value only becomes Cast to INT64 -> Slice ends"


def test_noise_proof_model_stays_at_100_percent_under_strong_noise(tmp_path):
    model = _window_model()
    path = _save(model, tmp_path / "window.onnx")
    data = labeled_npz(model, tmp_path / "data.npz", n=64, relabel=0.0)
    assert data.top1_correct == 64
    config = RunConfig(model=path, data=data.path, device="cpu", preset="raw",
                       noise=NoiseConfig(strengths=(1.0, 0.3), seeds=(0, 1, 2)))
    result = run_bench(config)
    assert result.meta["layers_total"] == 1 and result.meta["params_noised"] == 192 * 10
    assert result.trials["error"].to_list() == [None] * 7
    assert result.trials["top1_correct"].to_list() == [64] * 7  # noise at SNR 1 and 0.3 changes nothing
    # Noising the Slice starts (what onnxnoise used to do: the Cast owned them) moves the window,
    # or makes a window of the wrong width that onnxruntime rejects (a trial error blaming the model).
    starts = Layer(0, "cast", "Cast", ("starts_f",), ("input0",), ((2,),), 2, 2.5)
    x = np.random.default_rng(0).uniform(size=(64, 3, 8, 8)).astype(np.float32)
    clean = _run(model, {"input": x}).argmax(1)
    for seed in range(3):
        try:
            noisy = _noisy_run(model, [starts], 1.0, seed, {"input": x})[0].argmax(1)
        except SessionError:
            continue
        assert (noisy != clean).any()


@pytest.mark.parametrize("op, slot, extra", [
    ("Reshape", 1, {}), ("Expand", 1, {}), ("Tile", 1, {}), ("Pad", 1, {}), ("Resize", 3, {}), ("TopK", 1, {}),
])
def test_each_non_parameter_slot(op, slot, extra):
    inputs = ["x", "", "", ""][: slot + 1]
    inputs[slot] = "target"
    nodes = [_cast("target_f", "target"), helper.make_node(op, inputs, ["y"] + (["i"] if op == "TopK" else []),
                                                              name="op", **extra)]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [_f("target_f", [1, 2, 1, 1])])
    report = layer_report(model)
    assert report.layers == []
    assert [s.tensor for s in report.set_aside] == ["target_f"]


def test_float_slot_without_cast_and_mixed_use():
    """A float Resize ``scales`` initializer is not a weight; one also used as a value is set aside, said so."""
    nodes = [
        helper.make_node("Resize", ["x", "", "scales"], ["y"], name="rs"),
        helper.make_node("Add", ["y", "both"], ["y2"], name="add"),
        _cast("both", "both_i"),
        helper.make_node("Reshape", ["y2", "both_i"], ["out"], name="rshp"),
    ]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
                   [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
                   [_f("scales", [1, 1, 2, 2]), _f("both", [1, 1, 4, 4])])
    report = layer_report(model)
    assert report.layers == []
    reasons = {s.tensor: s.reason for s in report.set_aside}
    assert reasons["scales"] == "not a parameter: its value only becomes Resize scales"
    assert reasons["both"].startswith("used both as a value and as Cast to INT64 -> Reshape shape: ")


# ------------------------------------------------------------------ (b) input normalization is preprocessing

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def _normalized_inside(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with ``Sub(mean) -> Div(std)`` on its input, inside the graph (per-channel constants)."""
    inside = onnx.ModelProto()
    inside.CopyFrom(model)
    for node in inside.graph.node:
        node.input[:] = ["input_n" if i == "input" else i for i in node.input]
    norm = [helper.make_node("Sub", ["input", "norm.mean"], ["input_c"], name="norm.sub"),
            helper.make_node("Div", ["input_c", "norm.std"], ["input_n"], name="norm.div")]
    nodes = norm + list(inside.graph.node)
    del inside.graph.node[:]
    inside.graph.node.extend(nodes)
    inside.graph.initializer.extend([_f("norm.mean", MEAN.reshape(1, 3, 1, 1)),
                                     _f("norm.std", STD.reshape(1, 3, 1, 1))])
    onnx.checker.check_model(inside)
    return inside


def _layer_key(layers):
    return [(l.index, l.name, l.op_type, l.tensors, l.num_params, round(l.sigma_w, 6)) for l in layers]


def test_normalization_inside_or_outside_the_graph_gives_the_same_layers_and_counts(tmp_path):
    outside = conv_bn_resnet(seed=3)
    inside = _normalized_inside(outside)
    outside_path, inside_path = _save(outside, tmp_path / "outside.onnx"), _save(inside, tmp_path / "inside.onnx")
    outside_layers, inside_layers = list_layers(load_model(outside_path)), list_layers(load_model(inside_path))
    assert len(outside_layers) == 13
    assert _layer_key(inside_layers) == _layer_key(outside_layers)
    report = layer_report(load_model(inside_path))
    assert {(s.tensor, s.preprocessing) for s in report.set_aside} == {("norm.mean", True), ("norm.std", True)}
    assert all(s.reason.startswith("input preprocessing: ") for s in report.set_aside)
    with_pre = list_layers(load_model(inside_path), include_preprocessing=True)
    assert [l.name for l in with_pre[:2]] == ["norm.sub", "norm.div"] and len(with_pre) == 15

    data = labeled_npz(inside, tmp_path / "data.npz", n=120, relabel=0.25)
    noise = NoiseConfig(strengths=(10.0, 4.0), seeds=(0, 1, 2))
    got_inside = run_bench(RunConfig(model=inside_path, data=data.path, device="cpu", preset="raw", noise=noise))
    got_outside = run_bench(RunConfig(model=outside_path, data=data.path, device="cpu", preset="raw", noise=noise,
                                      preprocess={"mean": tuple(map(float, MEAN)), "std": tuple(map(float, STD))}))
    assert got_inside.trials["top1_correct"][0] == data.top1_correct
    counts = got_inside.trials["top1_correct"].to_list()
    assert counts == got_outside.trials["top1_correct"].to_list()
    assert len(set(counts[1:])) > 1  # the noise is strong enough to move the counts
    for key in ("layers_total", "layers_noised", "params_noised"):
        assert got_inside.meta[key] == got_outside.meta[key]
    included = run_bench(RunConfig(model=inside_path, data=data.path, device="cpu", preset="raw",
                                   noise=NoiseConfig(strengths=(10.0,), seeds=1), include_preprocessing=True))
    assert (included.meta["layers_total"], included.meta["layers_noised"]) == (15, 15)


def test_uint8_nhwc_and_keras_normalization_are_preprocessing():
    """uint8 NHWC input -> Cast -> Transpose -> Sub(mean) -> Div(sqrt(max(var, eps))) -> Conv (Keras Normalization)."""
    rng = np.random.default_rng(0)
    inits = [_f("mean", rng.uniform(100, 150, (1, 3, 1, 1))), _f("var", rng.uniform(900, 4000, (1, 3, 1, 1))),
             numpy_helper.from_array(np.float32(1e-7), "eps"), _f("w", rng.normal(size=(4, 3, 3, 3)))]
    nodes = [
        helper.make_node("Cast", ["image"], ["xf"], to=TensorProto.FLOAT, name="to_float"),
        helper.make_node("Transpose", ["xf"], ["xt"], perm=[0, 3, 1, 2], name="to_nchw"),
        helper.make_node("Sub", ["xt", "mean"], ["xc"], name="sub_mean"),
        helper.make_node("Max", ["var", "eps"], ["var_eps"], name="var_floor"),
        helper.make_node("Sqrt", ["var_eps"], ["std"], name="std"),
        helper.make_node("Div", ["xc", "std"], ["xn"], name="div_std"),
        helper.make_node("Conv", ["xn", "w"], ["logits"], name="conv"),
    ]
    model = _model(nodes, [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", 8, 8, 3])],
                   [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)], inits)
    report = layer_report(model)
    assert [l.name for l in report.layers] == ["conv"]
    assert {s.tensor for s in report.set_aside if s.preprocessing} == {"mean", "var"}
    assert [l.name for l in list_layers(model, include_preprocessing=True)] == ["sub_mean", "var_floor", "conv"]


def test_constant_after_the_first_weight_op_is_a_weight():
    """A per-channel Mul after the first Conv (a learned scale) stays a layer; so does a positional embedding
    added to a Gather of a token table (the Gather is a weight op, not preprocessing)."""
    rng = np.random.default_rng(0)
    inits = [_f("w", rng.normal(size=(4, 3, 1, 1))), _f("gamma", rng.normal(size=(1, 4, 1, 1))),
             _f("table", rng.normal(size=(50, 8))), _f("pos", rng.normal(size=(5, 8)))]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("Mul", ["c", "gamma"], ["y"], name="layer_scale"),
        helper.make_node("Gather", ["table", "ids"], ["e"], name="embed"),
        helper.make_node("Add", ["e", "pos"], ["z"], name="pos_embed"),
    ]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4]),
                           helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 5])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                    helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], inits)
    assert [l.name for l in list_layers(model)] == ["conv", "layer_scale", "embed", "pos_embed"]


# ------------------------------------------------------------------ (c) dynamically quantized models


@pytest.fixture(scope="module")
def dynamic_models(tmp_path_factory):
    """tiny_cnn and its ``quantize_dynamic`` int8 versions (per tensor and per channel)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder = tmp_path_factory.mktemp("dynamic")
    float_path = _save(tiny_cnn(), folder / "float.onnx")
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
    clean = _run(model, {"input": x})
    noisy, draw = _noisy_run(model, layers, 3.0, 0, {"input": x})
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
    np.testing.assert_array_equal(noisy, _run(rewritten, {"input": x}))


def test_static_qoperator_qgemm_weight_and_bias_are_listed_and_noised(tmp_path):
    """``quantize_static(QOperator)`` writes the Gemm as com.microsoft QGemm (int8 weight, int32 bias)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.batches = iter([{"input": rng.normal(size=(2, 3, 8, 8)).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.batches, None)

    float_path, out = _save(tiny_cnn(), tmp_path / "float.onnx"), tmp_path / "qop.onnx"
    quantize_static(float_path, str(out), Reader(), quant_format=QuantFormat.QOperator, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    model = load_model(out)
    layers = list_layers(model)
    assert [l.op_type for l in layers] == ["QLinearConv", "BatchNormalization", "QGemm"]
    assert [l.num_params for l in layers] == [112, 16, 50]
    fc = layers[2]
    assert fc.roles == ("weight", "bias") and fc.quant[0].axis == 0 and fc.quant[1].scale[1] == fc.quant[0].scale[0]
    x = np.random.default_rng(1).normal(size=(16, 3, 8, 8)).astype(np.float32)
    noisy, draw = _noisy_run(model, [fc], 3.0, 0, {"input": x})
    inits = get_initializers(model)
    assert (draw.arrays[fc.tensors[0]] != inits[fc.tensors[0]]).mean() > 0.5
    assert not np.allclose(noisy, _run(model, {"input": x}))


def _matmul_integer(scale_from_input: bool) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.arange(16, dtype=np.int8).reshape(4, 4), "Wq"),
             numpy_helper.from_array(np.int8(0), "Wzp")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])]
    if scale_from_input:
        inputs.append(helper.make_tensor_value_info("w_scale", TensorProto.FLOAT, []))
    else:
        inits.append(_f("w_scale", 0.1))
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xzp"], name="dql"),
        helper.make_node("MatMulInteger", ["xq", "Wq", "xzp", "Wzp"], ["acc"], name="mmi"),
        helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Mul", ["xs", "w_scale"], ["scales"], name="scales"),
        helper.make_node("Mul", ["accf", "scales"], ["logits"], name="rescale"),
    ]
    return _model(nodes, inputs, [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])], inits)


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
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                   [numpy_helper.from_array(np.zeros((4, 1, 8), np.uint8), "Wq"), _f("s", np.ones(4))])
    with pytest.raises(GraphError, match="MatMulNBits 'mmnb' holds integer weight 'Wq': onnxnoise cannot noise"):
        list_layers(model)


# ------------------------------------------------------------------ (d) weights stored where the list did not look


def _xy(n=4):
    return ([helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n])])


X = np.random.default_rng(5).normal(size=(8, 4)).astype(np.float32)


def test_sparse_initializer_is_densified_listed_and_noised(tmp_path, caplog):
    w = np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32)
    w[w < 0] = 0  # a pruned weight
    flat = np.flatnonzero(w)
    sparse = helper.make_sparse_tensor(_f("W", w.reshape(-1)[flat]), _i("W_idx", flat), [4, 4])
    inputs, outputs = _xy()
    model = _model([helper.make_node("Gemm", ["x", "W", "b"], ["logits"], name="fc")], inputs, outputs,
                   [_f("b", np.arange(4))], sparse_initializer=[sparse])
    with caplog.at_level(logging.WARNING, logger="onnxnoise.model"):
        assert [l.tensors for l in list_layers(model)] == [("b",)]  # not loaded: W is not seen ...
    assert "weight left out (not listed, not noised): sparse_initializer 'W' in the main graph" in caplog.text
    loaded = load_model(_save(model, tmp_path / "sparse.onnx"))  # ... load_model densifies it
    assert len(loaded.graph.sparse_initializer) == 0
    np.testing.assert_array_equal(get_initializers(loaded)["W"], w)
    (layer,) = list_layers(loaded)
    assert layer.tensors == ("W", "b") and layer.num_params == 20
    np.testing.assert_allclose(_run(loaded, {"x": X}), _run(model, {"x": X}), rtol=1e-6)
    noisy, draw = _noisy_run(loaded, [layer], 2.0, 0, {"x": X})
    assert (draw.arrays["W"] != w).all()
    np.testing.assert_allclose(noisy, X @ draw.arrays["W"] + draw.arrays["b"], rtol=1e-5, atol=1e-5)


def test_constant_value_floats_is_lifted(tmp_path):
    w = np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32)
    inputs, outputs = _xy()
    nodes = [helper.make_node("Constant", [], ["bias_c"], value_floats=[0.5, -1.0, 2.0, 0.25]),
             helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
             helper.make_node("Add", ["h", "bias_c"], ["logits"], name="add")]
    model = load_model(_save(_model(nodes, inputs, outputs, [_f("W", w)]), tmp_path / "m.onnx"))
    assert not any(n.op_type == "Constant" for n in model.graph.node)
    (layer,) = list_layers(model)
    assert layer.tensors == ("W", "bias_c") and layer.roles == ("weight", "bias")
    noisy, draw = _noisy_run(model, [layer], 2.0, 0, {"x": X})
    assert (draw.arrays["bias_c"] != np.array([0.5, -1.0, 2.0, 0.25], np.float32)).all()
    np.testing.assert_allclose(noisy, X @ draw.arrays["W"] + draw.arrays["bias_c"], rtol=1e-5, atol=1e-5)


def _if_model(then_name: str, else_name: str) -> onnx.ModelProto:
    rng = np.random.default_rng(0)

    def branch(label: str, weight: str) -> onnx.GraphProto:
        return helper.make_graph([helper.make_node("MatMul", ["x", weight], [f"y_{label}"], name=f"mm_{label}")],
                                 label, [], [helper.make_tensor_value_info(f"y_{label}", TensorProto.FLOAT, None)],
                                 [_f(weight, rng.normal(size=(4, 4)))])

    inputs, outputs = _xy()
    nodes = [helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0, name="total"),
             helper.make_node("Greater", ["total", "floor"], ["cond"], name="cond"),
             helper.make_node("If", ["cond"], ["logits"], name="branch", then_branch=branch("then", then_name),
                              else_branch=branch("else", else_name))]
    return _model(nodes, inputs, outputs, [numpy_helper.from_array(np.float32(-1e30), "floor")])


def test_subgraph_initializers_are_listed_and_noised(tmp_path):
    original = _if_model("W_then", "W_else")
    model = load_model(_save(original, tmp_path / "if.onnx"))
    report = layer_report(model)
    assert sorted((l.name, l.tensors) for l in report.layers) == [("branch/else_branch/mm_else", ("W_else",)),
                                                                ("branch/then_branch/mm_then", ("W_then",))]
    assert report.left_out == []
    np.testing.assert_array_equal(_run(model, {"x": X}), _run(original, {"x": X}))
    then = next(l for l in report.layers if l.tensors == ("W_then",))
    noisy, draw = _noisy_run(model, [then], 2.0, 0, {"x": X})  # the then-branch runs (sum > -1e30)
    np.testing.assert_allclose(noisy, X @ draw.arrays["W_then"], rtol=1e-5, atol=1e-5)
    assert not np.allclose(noisy, _run(model, {"x": X}))


def test_loop_body_initializer_is_listed_and_noised(tmp_path):
    w = np.random.default_rng(2).normal(size=(4, 4)).astype(np.float32)
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep_going"),
         helper.make_node("MatMul", ["v_in", "W_body"], ["v_out"], name="mm")],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)],
        [_f("W_body", w)])
    inputs, outputs = _xy()
    model = _model([helper.make_node("Loop", ["trips", "go", "x"], ["logits"], name="loop", body=body)], inputs,
                   outputs, [_i("trips", 2), numpy_helper.from_array(np.array(True), "go")])
    loaded = load_model(_save(model, tmp_path / "loop.onnx"))
    (layer,) = list_layers(loaded)
    assert (layer.name, layer.op_type, layer.tensors) == ("loop/body/mm", "MatMul", ("W_body",))
    np.testing.assert_allclose(_run(loaded, {"x": X}), X @ w @ w, rtol=1e-5, atol=1e-5)
    noisy, draw = _noisy_run(loaded, [layer], 2.0, 0, {"x": X})
    np.testing.assert_allclose(noisy, X @ draw.arrays["W_body"] @ draw.arrays["W_body"], rtol=1e-4, atol=1e-4)


def test_subgraph_external_data_escaping_the_folder_is_refused(tmp_path):
    (tmp_path / "sub").mkdir()
    onnx.save(_if_model("W_then", "W_else"), str(tmp_path / "sub" / "m.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    model = onnx.load(str(tmp_path / "sub" / "m.onnx"), load_external_data=False)
    then = next(a.g for a in model.graph.node[-1].attribute if a.name == "then_branch")
    assert then.initializer[0].data_location == TensorProto.EXTERNAL
    for entry in then.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../weights.bin"
    (tmp_path / "weights.bin").write_bytes((tmp_path / "sub" / "weights.bin").read_bytes())
    onnx.save(model, str(tmp_path / "sub" / "evil.onnx"))
    with pytest.raises(GraphError, match="of tensor 'W_then' escapes the model's folder"):
        load_model(tmp_path / "sub" / "evil.onnx")
    assert len(list_layers(load_model(tmp_path / "sub" / "m.onnx"))) == 2


def test_subgraph_weight_that_cannot_move_is_reported(tmp_path, caplog):
    model = load_model(_save(_if_model("W", "W"), tmp_path / "if.onnx"))  # one name in both branches
    with caplog.at_level(logging.WARNING, logger="onnxnoise.model"):
        assert list_layers(model) == []
    report = layer_report(model)
    assert len(report.left_out) == 2
    assert any(line.startswith("initializer 'W' inside If 'branch' then_branch") for line in report.left_out)
    assert caplog.text.count("weight left out (not listed, not noised): initializer 'W'") == 2


def test_unsupported_qdq_weight_is_reported_left_out(caplog):
    """A blocked DequantizeLinear (block_size) is not noised, and says so."""
    inits = [numpy_helper.from_array(np.arange(-8, 8, dtype=np.int8).reshape(4, 4), "Wq"),
             _f("Wq_scale", np.full((2, 4), 0.1))]
    nodes = [helper.make_node("DequantizeLinear", ["Wq", "Wq_scale"], ["W"], axis=0, block_size=2, name="dq"),
             helper.make_node("MatMul", ["x", "W"], ["logits"], name="mm")]
    inputs, outputs = _xy()
    model = _model(nodes, inputs, outputs, inits, opset=21, ir=10)
    with caplog.at_level(logging.WARNING, logger="onnxnoise.model"):
        assert list_layers(model) == []
    assert layer_report(model).left_out == [
        "INT8 weight 'Wq' of DequantizeLinear 'dq' (blocked, 4-bit or malformed quantization is not supported)"]
    assert "weight left out (not listed, not noised): INT8 weight 'Wq'" in caplog.text


# ------------------------------------------------------------------ the `layers` command says what it set aside


def test_layers_command_says_what_it_set_aside_and_why(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    path = _save(_normalized_inside(conv_bn_resnet(seed=3)), tmp_path / "inside.onnx")
    assert main(["layers", path]) == 0
    out = capsys.readouterr().out
    assert "13 layers" in out
    assert "set aside, not noised (2 float tensor(s)):" in out
    assert ("norm.mean [1, 3, 1, 1]: input preprocessing: Sub applied to the graph input before the first weight op "
            "(normalization inside the graph), not a weight") in out
    assert main(["layers", path, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["total_layers"] == 13 and report["left_out"] == []
    assert [(e["tensor"], e["preprocessing"]) for e in report["set_aside"]] == [("norm.mean", True), ("norm.std", True)]
    # weights left where discovery does not look: a warning line
    bad = _save(_if_model("W", "W"), tmp_path / "if.onnx")
    assert main(["layers", bad]) == 0
    out = capsys.readouterr().out
    assert out.count("WARNING: weight left out (not listed, not noised): initializer 'W' inside If 'branch'") == 2


# ------------------------------------------------------------------ real models lose no weight


@pytest.mark.parametrize("keep_batchnorm, count, params", [(False, 20, 269_034), (True, 39, 271_098)])
def test_resnet20_keeps_every_weight(cifar_resnet_onnx, keep_batchnorm, count, params):
    report = layer_report(load_model(cifar_resnet_onnx(20, keep_batchnorm=keep_batchnorm)))
    assert len(report.layers) == count and sum(l.num_params for l in report.layers) == params
    assert report.set_aside == [] and report.left_out == []
