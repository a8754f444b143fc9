"""model/tensor_roles.py: what is a weight. Tensors that are not weights (shapes, indices, input
normalization) are never noised; constants after the first weight op are.

Models are built here like real exported ones, and the right answer is asserted: the layer
list, what was set aside and why, and accuracy that noise cannot move."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxnoise.bench import run_bench
from onnxnoise.config import NoiseConfig, RunConfig
from onnxnoise.errors import SessionError
from onnxnoise.model import Layer, layer_report, list_layers, load_model
from onnxnoise.noise import make_noise_model

from tests._builders import conv_bn_resnet, labeled_npz
from tests._graphs import (
    float_init,
    graph_model,
    int_init,
    noisy_run,
    normalized_inside,
    run_onnx,
    save_model,
)

GAUSS = make_noise_model("gaussian-snr")


def _cast(src: str, out: str) -> onnx.NodeProto:
    return helper.make_node("Cast", [src], [out], to=TensorProto.INT64, name=f"cast_{src}")


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
        float_init("flat_f", [0, -1]), float_init("starts_f", [0, 5]), float_init("ends_f", [1_000_000, 7.5]), float_init("two", [1, 2]),
        int_init("axes", [0, 1]), float_init("W", rng.normal(size=(192, 10))), numpy_helper.from_array(np.float32(0), "zero"),
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
    return graph_model(nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
                  [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)


def test_float_shapes_and_indices_are_not_layers(tmp_path):
    report = layer_report(load_model(save_model(_window_model(), tmp_path / "m.onnx")))
    assert [(l.name, l.op_type, l.tensors) for l in report.layers] == [("dead_mm", "MatMul", ("W",))]
    reasons = {s.tensor: s.reason for s in report.set_aside}
    assert set(reasons) == {"flat_f", "starts_f", "ends_f", "two"}
    assert reasons["flat_f"] == "not a parameter: its value only becomes Cast to INT64 -> Reshape shape"
    assert reasons["starts_f"] == "not a parameter: its value only becomes Cast to INT64 -> Slice starts"
    assert reasons["ends_f"] == reasons["two"] == "not a parameter: its value only becomes Cast to INT64 -> Slice ends"


def test_noise_proof_model_stays_at_100_percent_under_strong_noise(tmp_path):
    model = _window_model()
    path = save_model(model, tmp_path / "window.onnx")
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
    clean = run_onnx(model, {"input": x}).argmax(1)
    for seed in range(3):
        try:
            noisy = noisy_run(model, [starts], 1.0, seed, {"input": x})[0].argmax(1)
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
    model = graph_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [float_init("target_f", [1, 2, 1, 1])])
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
    model = graph_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
                   [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
                   [float_init("scales", [1, 1, 2, 2]), float_init("both", [1, 1, 4, 4])])
    report = layer_report(model)
    assert report.layers == []
    reasons = {s.tensor: s.reason for s in report.set_aside}
    assert reasons["scales"] == "not a parameter: its value only becomes Resize scales"
    assert reasons["both"].startswith("used both as a value and as Cast to INT64 -> Reshape shape: ")


# ------------------------------------------------------------------ (b) input normalization is preprocessing

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def _layer_key(layers):
    return [(l.index, l.name, l.op_type, l.tensors, l.num_params, round(l.sigma_w, 6)) for l in layers]


def test_normalization_inside_or_outside_the_graph_gives_the_same_layers_and_counts(tmp_path):
    outside = conv_bn_resnet(seed=3)
    inside = normalized_inside(outside)
    outside_path, inside_path = save_model(outside, tmp_path / "outside.onnx"), save_model(inside, tmp_path / "inside.onnx")
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
    inits = [float_init("mean", rng.uniform(100, 150, (1, 3, 1, 1))), float_init("var", rng.uniform(900, 4000, (1, 3, 1, 1))),
             numpy_helper.from_array(np.float32(1e-7), "eps"), float_init("w", rng.normal(size=(4, 3, 3, 3)))]
    nodes = [
        helper.make_node("Cast", ["image"], ["xf"], to=TensorProto.FLOAT, name="to_float"),
        helper.make_node("Transpose", ["xf"], ["xt"], perm=[0, 3, 1, 2], name="to_nchw"),
        helper.make_node("Sub", ["xt", "mean"], ["xc"], name="sub_mean"),
        helper.make_node("Max", ["var", "eps"], ["var_eps"], name="var_floor"),
        helper.make_node("Sqrt", ["var_eps"], ["std"], name="std"),
        helper.make_node("Div", ["xc", "std"], ["xn"], name="div_std"),
        helper.make_node("Conv", ["xn", "w"], ["logits"], name="conv"),
    ]
    model = graph_model(nodes, [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", 8, 8, 3])],
                   [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)], inits)
    report = layer_report(model)
    assert [l.name for l in report.layers] == ["conv"]
    assert {s.tensor for s in report.set_aside if s.preprocessing} == {"mean", "var"}
    assert [l.name for l in list_layers(model, include_preprocessing=True)] == ["sub_mean", "var_floor", "conv"]


def test_constant_after_the_first_weight_op_is_a_weight():
    """A per-channel Mul after the first Conv (a learned scale) stays a layer; so does a positional embedding
    added to a Gather of a token table (the Gather is a weight op, not preprocessing)."""
    rng = np.random.default_rng(0)
    inits = [float_init("w", rng.normal(size=(4, 3, 1, 1))), float_init("gamma", rng.normal(size=(1, 4, 1, 1))),
             float_init("table", rng.normal(size=(50, 8))), float_init("pos", rng.normal(size=(5, 8)))]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("Mul", ["c", "gamma"], ["y"], name="layer_scale"),
        helper.make_node("Gather", ["table", "ids"], ["e"], name="embed"),
        helper.make_node("Add", ["e", "pos"], ["z"], name="pos_embed"),
    ]
    model = graph_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4]),
                           helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 5])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                    helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], inits)
    assert [l.name for l in list_layers(model)] == ["conv", "layer_scale", "embed", "pos_embed"]


# ------------------------------------------------------------------ (c) dynamically quantized models


# ------------------------------------------------------------------ (d) weights stored where the list did not look


# ------------------------------------------------------------------ the `layers` command says what it set aside


# ------------------------------------------------------------------ real models lose no weight


@pytest.mark.parametrize("keep_batchnorm, count, params", [(False, 20, 269_034), (True, 39, 271_098)])
def test_resnet20_keeps_every_weight(cifar_resnet_onnx, keep_batchnorm, count, params):
    report = layer_report(load_model(cifar_resnet_onnx(20, keep_batchnorm=keep_batchnorm)))
    assert len(report.layers) == count and sum(l.num_params for l in report.layers) == params
    assert report.set_aside == [] and report.left_out == []
