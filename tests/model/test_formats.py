"""Model formats found in the wild: IR < 4 inputs, bf16, QDQ / QLinear int8, external data, large models."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxnoise.engine.runtime import SessionFactory
from onnxnoise.errors import GraphError, NoiseConfigError
from onnxnoise.model import (
    QUANT_POLICY,
    QuantParams,
    dequantize,
    describe_quantization,
    get_initializers,
    get_model_io,
    list_layers,
    load_model,
)
from onnxnoise.noise import NoiseDraw, NoisePolicies, draw_noise, make_noise_model, tensor_rng

from tests._builders import qdq_matmul as _qdq_model, tiny_cnn

CPU = ["CPUExecutionProvider"]
GAUSS = make_noise_model("gaussian-snr")


def _noise(initializers, layers, snr: float, seed: int = 0, *, keep_zeros: bool = False) -> NoiseDraw:
    """A gaussian-snr draw (paper eq. 1) of ``layers`` at linear ``snr``."""
    return draw_noise(GAUSS, snr, seed, layers, initializers, NoisePolicies(keep_zeros=keep_zeros))


def _model(nodes, inputs, outputs, inits, opset=17, ir=8):
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir
    return model


def _rewrite(model: onnx.ModelProto, arrays: dict[str, np.ndarray]) -> onnx.ModelProto:
    """Reference: the model with initializers replaced in the proto itself."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for tensor in out.graph.initializer:
        if tensor.name in arrays:
            tensor.CopyFrom(numpy_helper.from_array(np.asarray(arrays[tensor.name]), tensor.name))
    return out


def _run(model: onnx.ModelProto, feeds: dict) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=CPU).run(None, feeds)[0]


def _factory(model, layers, output="logits", input_name="input", **kwargs):
    names = [t for layer in layers for t in layer.tensors]
    return SessionFactory(model, names, input_name=input_name, output_name=output, device="cpu", **kwargs)


def _x(shape=(6, 3, 8, 8)):
    return np.random.default_rng(1).normal(size=shape).astype(np.float32)


# ------------------------------------------------------------------ IR < 4: initializers also graph inputs


def _ir3_model() -> onnx.ModelProto:
    model = tiny_cnn(opset=9)
    model.ir_version = 3
    inputs = list(model.graph.input)
    del model.graph.input[:]
    # An initializer listed *before* the image input, as some old converters wrote them.
    model.graph.input.extend(
        [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in model.graph.initializer[:1]]
        + inputs
        + [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in model.graph.initializer[1:]]
    )
    return model


def test_ir3_initializers_in_graph_inputs_are_weights():
    model = _ir3_model()
    assert model.graph.input[0].name == "conv.weight"
    io = get_model_io(model)
    assert io.input_name == "input" and io.input_shape == (None, 3, 8, 8)
    layers = list_layers(model)
    assert [(l.name, l.tensors) for l in layers] == [
        ("conv", ("conv.weight", "conv.bias")),
        ("bn", ("bn.scale", "bn.bias", "bn.mean", "bn.var")),
        ("fc", ("fc.weight", "fc.bias")),
    ]
    factory = _factory(model, layers)
    clean = factory.create()
    assert [i.name for i in clean.session.get_inputs()] == ["input"]  # weights are not required inputs
    np.testing.assert_array_equal(clean.run(_x()), _run(model, {"input": _x()}))
    noisy_arrays = _noise(get_initializers(model), layers, 5).arrays
    noisy = factory.create(noisy_arrays).run(_x())
    assert np.abs(noisy - clean.run(_x())).max() > 1e-3
    # The session really uses the noisy values (not the graph-input defaults).
    np.testing.assert_array_equal(noisy, _run(_rewrite(model, noisy_arrays), {"input": _x()}))


# ------------------------------------------------------------------ bf16 weights


def _bf16_model(w: np.ndarray) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Cast", ["W"], ["Wf"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("MatMul", ["input", "Wf"], ["logits"], name="fc"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", w.shape[0]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", w.shape[1]])],
        [numpy_helper.from_array(w, "W")],
    )


def test_bf16_weights_noised_in_float32_and_cast_back():
    w = np.random.default_rng(0).normal(0, 0.5, size=(64, 32)).astype(ml_dtypes.bfloat16)
    model = _bf16_model(w)
    assert model.graph.initializer[0].data_type == TensorProto.BFLOAT16
    layers = list_layers(model)
    assert [(l.name, l.op_type, l.tensors, l.roles) for l in layers] == [("fc", "MatMul", ("W",), ("weight",))]
    clean = get_initializers(model)
    assert clean["W"].dtype == ml_dtypes.bfloat16
    result = _noise(clean, layers, 10, seed=3)
    noisy = result.arrays["W"]
    assert noisy.dtype == ml_dtypes.bfloat16 and noisy.shape == w.shape
    assert result.overflow_count == 0
    # Noise is drawn in float32 then rounded to bf16 (8 bits of mantissa): std within 3%.
    w32 = w.astype(np.float32)
    expected = w32 + tensor_rng(3, "W").standard_normal(w.shape, dtype=np.float32) * np.float32(w32.std() / 10)
    np.testing.assert_array_equal(noisy, expected.astype(ml_dtypes.bfloat16))
    assert float(np.std(noisy.astype(np.float64) - w32)) == pytest.approx(float(w32.std()) / 10, rel=0.03)
    factory = _factory(model, layers)
    x = _x((5, 64))
    out = factory.create({"W": noisy}).run(x)
    np.testing.assert_array_equal(out, _run(_rewrite(model, {"W": noisy}), {"input": x}))
    assert np.abs(out - factory.create().run(x)).max() > 1e-3


def test_bf16_overflow_is_counted():
    big = float(ml_dtypes.finfo(ml_dtypes.bfloat16).max)
    w = np.array([big, -big] * 8, dtype=np.float32).reshape(4, 4).astype(ml_dtypes.bfloat16)
    result = _noise({"W": w}, list_layers(_bf16_model(w)), 1)
    noisy = result.arrays["W"].astype(np.float32)
    assert result.overflow_count == int((~np.isfinite(noisy)).sum()) > 0


# ------------------------------------------------------------------ QDQ and QLinear int8 weights


def _qdq_example(scale_spread=1.0):
    rng = np.random.default_rng(0)
    q = rng.integers(-100, 101, size=(128, 16)).astype(np.int8)
    scale = 0.01 * np.linspace(1.0, scale_spread, 16)
    zero = np.zeros(16, dtype=np.int8)
    bias_q = rng.integers(-5000, 5000, size=16).astype(np.int32)
    return _qdq_model(q, scale, zero, bias_q, 1e-4)


def test_qdq_int8_layer_listed_with_quant_params():
    model = _qdq_example(scale_spread=2.0)
    (layer,) = list_layers(model)
    assert (layer.name, layer.op_type, layer.tensors, layer.roles) == ("fc", "MatMul", ("Wq", "bq"), ("weight", "bias"))
    assert layer.quant == (
        QuantParams(scale=("Wq_scale",), zero_point="Wq_zp", axis=1, format="QDQ"),
        QuantParams(scale=("bq_scale",), zero_point="bq_zp", axis=None, format="QDQ"),
    )
    assert layer.quantization_policy == QUANT_POLICY == "dequantize-noise-requantize"
    init = get_initializers(model)
    w = init["Wq"].astype(np.float64) * init["Wq_scale"].astype(np.float64)[None, :]
    assert layer.sigma_w == pytest.approx(float(w.std()), rel=1e-12)
    assert layer.to_dict()["quant"][0] == {"scale": ["Wq_scale"], "zero_point": "Wq_zp", "axis": 1, "format": "QDQ"}
    assert describe_quantization([layer], 7) == "quantized QDQ weights (1 layer): dequantize-noise-requantize, 7 values clipped"
    assert describe_quantization(list_layers(tiny_cnn())) is None


@pytest.mark.parametrize("snr", [20.0, 5.0])
def test_qdq_noise_std_matches_eq1_in_dequantized_domain(snr):
    model = _qdq_example()
    (layer,) = list_layers(model)
    init = get_initializers(model)
    result = _noise(init, [layer], snr, seed=1)
    noisy = result.arrays["Wq"]
    assert noisy.dtype == np.int8 and noisy.shape == (128, 16)
    params = layer.quant[0]
    clean_w, noisy_w = dequantize(init["Wq"], params, init), dequantize(noisy, params, init)
    measured = float(np.std(noisy_w - clean_w))
    # Rounding to the grid adds about step^2 / 12 of variance; clipping removes a little.
    target = math.sqrt((clean_w.std() / snr) ** 2 + 0.01**2 / 12)
    assert measured == pytest.approx(target, rel=0.03)
    assert result.arrays["bq"].dtype == np.int32


def test_qdq_requantize_clips_and_counts_exactly():
    model = _qdq_example()
    (layer,) = list_layers(model)
    init = get_initializers(model)
    result = _noise(init, [layer], 1)
    # Reference: dequantize, add eq. 1 noise, round half to even, count outside [-128, 127].
    w = init["Wq"].astype(np.float64) * init["Wq_scale"].astype(np.float64)
    z = tensor_rng(0, "Wq").standard_normal(w.shape, dtype=np.float32).astype(np.float64) * (w.std() / 1.0)
    q = np.rint((w + z) / init["Wq_scale"].astype(np.float64))
    expected_clipped = int(((q < -128) | (q > 127)).sum())
    assert expected_clipped > 0
    np.testing.assert_array_equal(result.arrays["Wq"], np.clip(q, -128, 127).astype(np.int8))
    assert result.clipped_count == expected_clipped  # the int32 bias never clips here
    assert result.arrays["Wq"].min() == -128 and result.arrays["Wq"].max() == 127


def test_qdq_zero_std_keep_zeros_and_session_uses_noisy_ints():
    model = _qdq_example()
    layers = list_layers(model)
    init = get_initializers(model)
    # An all-zero quantized weight (std 0 in the dequantized domain) comes back as the clean array itself.
    flat = _qdq_model(np.zeros((128, 16), np.int8), 0.01 * np.ones(16), np.zeros(16, np.int8),
                      np.zeros(16, np.int32), 1e-4)
    flat_init = get_initializers(flat)
    same = _noise(flat_init, list_layers(flat), 2)
    assert same.arrays["Wq"] is flat_init["Wq"] and same.arrays["bq"] is flat_init["bq"]
    assert same.counters() == {"bn_variance_changed": 0, "overflow_count": 0, "clipped_count": 0, "zeros_kept": 0}
    # No "infinite SNR": the clean baseline is a trial of its own, and inf is refused.
    with pytest.raises(NoiseConfigError, match=r"^SNR must be finite and > 0 .*, got inf$"):
        _noise(init, layers, math.inf)
    # keep_zeros: dequantized zeros (integers at the zero point) stay there, and are counted.
    kept = _noise(init, layers, 2, keep_zeros=True)
    zeros = init["Wq"] == 0
    assert zeros.sum() > 0 and (kept.arrays["Wq"][zeros] == 0).all()
    assert (kept.arrays["Wq"][~zeros] != init["Wq"][~zeros]).any()
    assert kept.zeros_kept == int(zeros.sum()) + int((init["bq"] == 0).sum())
    assert _noise(init, layers, 2).zeros_kept == 0
    q = np.random.default_rng(3).integers(-100, 101, size=(128, 16)).astype(np.int8)
    shifted = _qdq_model(q, 0.01 * np.ones(16), np.full(16, 3, np.int8), np.ones(16, np.int32), 1e-4)
    shifted_init = get_initializers(shifted)
    at_zero_point = q == 3
    held = _noise(shifted_init, list_layers(shifted), 2, keep_zeros=True)
    assert at_zero_point.sum() > 0 and (held.arrays["Wq"][at_zero_point] == 3).all()
    assert held.zeros_kept == int(at_zero_point.sum())
    noisy = _noise(init, layers, 5).arrays
    factory = _factory(model, layers)
    x = _x((4, 128))
    out = factory.create(noisy).run(x)
    np.testing.assert_array_equal(out, _run(_rewrite(model, noisy), {"input": x}))
    reference = x.astype(np.float64) @ dequantize(noisy["Wq"], layers[0].quant[0], init) + noisy["bq"] * 1e-4
    # ONNX Runtime may fuse DQ + MatMul into a dynamically quantized MatMul (activations to
    # uint8), so the float reference agrees to about 1% only; the exact check is the rewrite above.
    assert np.abs(out - reference).max() < 0.03 * np.abs(reference).max()
    assert np.abs(out - factory.create().run(x)).max() > 1e-2


def test_quantize_dequantize_of_float_weight_belongs_to_consumer():
    w = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    inits = [
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(np.array(0.02, dtype=np.float32), "s"),
        numpy_helper.from_array(np.array(0, dtype=np.int8), "zp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["W", "s", "zp"], ["Wq"], name="q"),
        helper.make_node("DequantizeLinear", ["Wq", "s", "zp"], ["Wd"], name="dq"),
        helper.make_node("MatMul", ["input", "Wd"], ["logits"], name="fc"),
    ]
    model = _model(nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 8])],
                   [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])], inits)
    (layer,) = list_layers(model)
    assert (layer.name, layer.tensors, layer.quant, layer.quantization_policy) == ("fc", ("W",), (None,), None)


def _qlinear_conv_model():
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, size=(4, 3, 3, 3)).astype(np.int8)
    inits = [
        numpy_helper.from_array(np.array(0.02, dtype=np.float32), "x_s"),
        numpy_helper.from_array(np.array(128, dtype=np.uint8), "x_zp"),
        numpy_helper.from_array(w, "w_q"),
        numpy_helper.from_array(np.array([0.01, 0.02, 0.015, 0.005], dtype=np.float32), "w_s"),
        numpy_helper.from_array(np.zeros(4, dtype=np.int8), "w_zp"),
        numpy_helper.from_array(np.array(0.05, dtype=np.float32), "y_s"),
        numpy_helper.from_array(np.array(128, dtype=np.uint8), "y_zp"),
        numpy_helper.from_array(rng.integers(-2000, 2000, size=4).astype(np.int32), "b_q"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "x_s", "x_zp"], ["xq"], name="quant_in"),
        helper.make_node("QLinearConv", ["xq", "x_s", "x_zp", "w_q", "w_s", "w_zp", "y_s", "y_zp", "b_q"], ["yq"],
                         name="qconv", pads=[1, 1, 1, 1]),
        helper.make_node("DequantizeLinear", ["yq", "y_s", "y_zp"], ["logits"], name="dequant_out"),
    ]
    return _model(nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
                  [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4, 8, 8])], inits)


def test_qlinear_conv_weight_and_bias():
    model = _qlinear_conv_model()
    (layer,) = list_layers(model)
    assert (layer.name, layer.op_type, layer.tensors, layer.roles) == ("qconv", "QLinearConv", ("w_q", "b_q"),
                                                                      ("weight", "bias"))
    assert layer.quant == (
        QuantParams(("w_s",), "w_zp", 0, "QLinear"),
        QuantParams(("x_s", "w_s"), None, 0, "QLinear"),  # bias scale = x_scale * w_scale, zero point 0
    )
    init = get_initializers(model)
    bias = dequantize(init["b_q"], layer.quant[1], init)
    np.testing.assert_allclose(bias, init["b_q"] * 0.02 * init["w_s"].astype(np.float64), rtol=1e-6)
    result = _noise(init, [layer], 3)
    assert result.arrays["w_q"].dtype == np.int8 and result.arrays["b_q"].dtype == np.int32
    assert result.clipped_count > 0
    assert describe_quantization([layer]) == "quantized QLinear weights (1 layer): dequantize-noise-requantize"
    factory = _factory(model, [layer])
    x = np.abs(_x())
    out = factory.create(result.arrays).run(x)
    np.testing.assert_array_equal(out, _run(_rewrite(model, result.arrays), {"input": x}).reshape(6, -1))
    assert np.abs(out - factory.create().run(x)).max() > 0.1


def test_qlinear_matmul_weight():
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(np.array(0.02, dtype=np.float32), "a_s"),
        numpy_helper.from_array(np.array(128, dtype=np.uint8), "a_zp"),
        numpy_helper.from_array(rng.integers(-127, 128, size=(16, 4)).astype(np.int8), "b_q"),
        numpy_helper.from_array(np.array(0.01, dtype=np.float32), "b_s"),
        numpy_helper.from_array(np.array(0, dtype=np.int8), "b_zp"),
        numpy_helper.from_array(np.array(0.1, dtype=np.float32), "y_s"),
        numpy_helper.from_array(np.array(128, dtype=np.uint8), "y_zp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "a_s", "a_zp"], ["aq"]),
        helper.make_node("QLinearMatMul", ["aq", "a_s", "a_zp", "b_q", "b_s", "b_zp", "y_s", "y_zp"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "y_s", "y_zp"], ["logits"]),
    ]
    model = _model(nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 16])],
                   [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])], inits)
    (layer,) = list_layers(model)
    assert (layer.name, layer.tensors, layer.quant) == ("QLinearMatMul_1", ("b_q",),
                                                        (QuantParams(("b_s",), "b_zp", None, "QLinear"),))
    noisy = _noise(get_initializers(model), [layer], 2).arrays
    x = _x((3, 16))
    out = _factory(model, [layer]).create(noisy).run(x)
    np.testing.assert_array_equal(out, _run(_rewrite(model, noisy), {"input": x}))


# ------------------------------------------------------------------ tied weights, external data, large models


def test_tied_weight_noised_once_and_consistently():
    w = np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["input", "W"], ["h"], name="mm1"),
             helper.make_node("MatMul", ["h", "W"], ["logits"], name="mm2")]
    model = _model(nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])],
                   [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
                   [numpy_helper.from_array(w, "W")])
    layers = list_layers(model)
    assert [(l.name, l.tensors) for l in layers] == [("mm1", ("W",))]
    noisy = _noise(get_initializers(model), layers, 4).arrays
    x = _x((3, 4))
    out = _factory(model, layers).create(noisy).run(x)
    np.testing.assert_allclose(out, x @ noisy["W"] @ noisy["W"], rtol=1e-5, atol=1e-5)


def _external_model(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(tiny_cnn(), str(folder / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    return folder / "m.onnx"


def _set_location(path: Path, location: str, out: Path) -> Path:
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(model, str(out))
    return out


def test_external_data_absolute_location_is_refused(tmp_path):
    path = _external_model(tmp_path / "sub")
    evil = _set_location(path, str((tmp_path / "sub" / "weights.bin").resolve()), tmp_path / "sub" / "abs.onnx")
    with pytest.raises(GraphError, match=r"external data location '/.*weights\.bin' of tensor .* is absolute"):
        load_model(evil)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_external_data_symlink_out_of_folder_is_refused(tmp_path):
    path = _external_model(tmp_path / "sub")
    outside = tmp_path / "outside.bin"
    outside.write_bytes((tmp_path / "sub" / "weights.bin").read_bytes())
    (tmp_path / "sub" / "link.bin").symlink_to(outside)
    evil = _set_location(path, "link.bin", tmp_path / "sub" / "link.onnx")
    with pytest.raises(GraphError, match=r"external data location 'link\.bin' .* escapes the model's folder"):
        load_model(evil)
    # onnx itself refuses any symlinked data file; so does load_model, with its own message.
    (tmp_path / "sub" / "inside.bin").symlink_to(tmp_path / "sub" / "weights.bin")
    inside = _set_location(path, "inside.bin", tmp_path / "sub" / "inside.onnx")
    with pytest.raises(GraphError, match=r"external data file .*inside\.bin of tensor .* is a symbolic link"):
        load_model(inside)


def test_missing_external_file(tmp_path):
    path = _external_model(tmp_path / "sub")
    (tmp_path / "sub" / "weights.bin").unlink()
    with pytest.raises(GraphError, match=r"external data file .*weights\.bin of tensor .* not found next to the model"):
        load_model(path)


def _wide_model() -> onnx.ModelProto:
    """tiny_cnn plus a 1 MiB MatMul weight, so the external path's savings are visible."""
    model = tiny_cnn()
    big = np.random.default_rng(5).normal(size=(10, 26214)).astype(np.float32)
    proj = np.random.default_rng(6).normal(size=(26214, 10)).astype(np.float32) / 100
    model.graph.initializer.extend([numpy_helper.from_array(big, "big"), numpy_helper.from_array(proj, "proj")])
    model.graph.node[-1].output[0] = "fc_out"
    model.graph.node.extend([helper.make_node("MatMul", ["fc_out", "big"], ["h"], name="wide"),
                             helper.make_node("MatMul", ["h", "proj"], ["logits"], name="narrow")])
    return model


def test_external_initializer_path_equals_in_proto_path():
    model = _wide_model()
    layers = list_layers(model)
    assert [l.name for l in layers] == ["conv", "bn", "fc", "wide", "narrow"]
    inline = _factory(model, layers[:4], external_above_bytes=None)
    external = _factory(model, layers[:4], external_above_bytes=0)
    assert not inline.external and external.external
    noisy = _noise(get_initializers(model), layers[:4], 3, seed=2).arrays
    # No weight bytes in the serialized model of the external path, clean or noisy: every large
    # tensor is an external reference; the in-proto path serializes them all (over 2 MB).
    assert len(external.model_bytes()) < 8_000 and len(external.model_bytes(noisy)) < 8_000
    assert len(inline.model_bytes()) > 2_000_000
    skeleton = onnx.load_from_string(external.model_bytes(noisy))
    refs = {t.name for t in skeleton.graph.initializer if t.data_location == TensorProto.EXTERNAL}
    assert {"big", "proj", "conv.weight", "bn.var", "fc.bias"} <= refs and "flat.shape" not in refs
    x = _x()
    np.testing.assert_array_equal(external.create().run(x), inline.create().run(x))
    a, b = external.create(noisy).run(x), inline.create(noisy).run(x)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - inline.create().run(x)).max() > 1e-3
    for factory in (external, inline):
        with pytest.raises(KeyError, match="not replaceable"):
            factory.create({"proj": np.zeros((26214, 10), np.float32)})  # external there, yet not replaceable


def test_external_path_keeps_bf16_inline_and_stays_exact():
    w = np.random.default_rng(0).normal(0, 0.5, size=(64, 32)).astype(ml_dtypes.bfloat16)
    model = _bf16_model(w)
    layers = list_layers(model)
    factory = _factory(model, layers, external_above_bytes=0)
    noisy = _noise(get_initializers(model), layers, 5).arrays
    assert factory.external
    # bf16 cannot be an OrtValue from numpy: "W" stays in the serialized model, with its noisy values.
    (tensor,) = onnx.load_from_string(factory.model_bytes(noisy)).graph.initializer
    assert tensor.name == "W" and tensor.data_location == TensorProto.DEFAULT
    assert numpy_helper.to_array(tensor).tobytes() == noisy["W"].tobytes()
    x = _x((2, 64))
    np.testing.assert_array_equal(factory.create(noisy).run(x), _factory(model, layers, external_above_bytes=None).create(noisy).run(x))


def test_keep_zeros_on_pruned_squeezenet(shared_path):
    path = shared_path("models/squeezenet1.0-deepcompression/squeezenet1_0_deepcompression.onnx", kind="file")
    model = load_model(path)
    layers = list_layers(model)
    init = get_initializers(model)
    weights = [layer.tensors[0] for layer in layers]
    zeros = sum(int((init[n] == 0).sum()) for n in weights)
    total = sum(init[n].size for n in weights)
    assert zeros / total > 0.6  # two thirds pruned
    kept = _noise(init, layers, 10, keep_zeros=True)
    noisy = kept.arrays
    assert sum(int((noisy[n] == 0).sum()) for n in weights) == zeros
    every = [n for layer in layers for n in layer.tensors if np.std(init[n]) > 0]  # std 0: nothing drawn
    assert kept.zeros_kept == sum(int((init[n] == 0).sum()) for n in every) >= zeros
    loose = _noise(init, layers, 10).arrays
    assert sum(int((loose[n] == 0).sum()) for n in weights) < zeros // 100


# ------------------------------------------------------------------ real QDQ int8 EfficientNet-Lite0


@pytest.fixture(scope="session")
def effnet_qdq(shared_path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(float model, QDQ int8 model)``: onnxruntime.quantization over 20 Imagenette images, per channel."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from onnxnoise.data import load_images, normalize, open_dataset, resolve_data_config

    float_model = shared_path("models/efficientnet-lite0/efficientnet_lite0.onnx", kind="file")
    data = shared_path("data/imagenette-val500", kind="dir")
    config = resolve_data_config("tf-lite", layout="NCHW")
    loaded = load_images(open_dataset(data, limit=500), config)
    calib = normalize(loaded.images[-20:], config)  # the bench below uses a 100-image subset

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"input": calib[i : i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.items, None)

    out = tmp_path_factory.mktemp("qdq") / "efficientnet_lite0_qdq_int8.onnx"
    started = time.perf_counter()
    quantize_static(str(float_model), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    assert time.perf_counter() - started < 60
    return float_model, out


def test_qdq_efficientnet_lite0_runs_through_bench(effnet_qdq, shared_path):
    from onnxnoise.bench import run_bench
    from onnxnoise.config import NoiseConfig, RunConfig
    from onnxnoise.engine.context import prepare_context
    from onnxnoise.engine.plan import Trial
    from onnxnoise.engine.trial import run_trial

    float_model, qdq_model = effnet_qdq
    data = shared_path("data/imagenette-val500", kind="dir")
    layers = list_layers(load_model(qdq_model))
    assert len(layers) == 50 and {l.op_type for l in layers} == {"Conv", "Gemm"}
    assert all(l.quantization_policy == QUANT_POLICY and l.quant[0].format == "QDQ" for l in layers)
    assert layers[0].quant[0].axis == 0  # per-channel weights
    common = dict(data=data, device="cpu", preset="tf-lite", limit=100)
    fp_context = prepare_context(RunConfig(model=float_model, **common))
    fp = run_trial(fp_context, Trial("baseline", None, (), None, None))  # the float model's clean baseline only
    assert fp["error"] is None and fp["images"] == 100
    context = prepare_context(RunConfig(model=qdq_model, noise=NoiseConfig(strengths=(100.0, 5.0), seeds=(0,)),
                                        **common))
    result = run_bench(context.config, context=context)
    assert result.trials["mode"].to_list() == ["baseline", "all", "all"]
    assert result.trials["strength"].to_list() == [None, 100.0, 5.0]
    base, mild, heavy = (result.trials.row(i, named=True) for i in range(3))
    assert base["error"] is None and mild["error"] is None and heavy["error"] is None
    # The bench summary names the policy and counts the clipped values of every trial.
    total = int(result.trials["clipped_count"].sum())
    assert total > 0 and base["clipped_count"] == 0
    assert result.meta["clipped_count"] == total
    assert result.meta["quantization"] == (
        f"quantized QDQ weights (50 layers): dequantize-noise-requantize, {total} values clipped")
    assert base["images"] == mild["images"] == heavy["images"] == 100
    fp_acc = 100.0 * fp["top1_correct"] / fp["images"]
    assert abs(base["top1_acc"] - fp_acc) <= 5.0  # int8 within a few points of float (74 vs 74)
    assert 50.0 < mild["top1_acc"] <= base["top1_acc"] + 2.0  # SNR 100: a few points lost (71)
    assert heavy["top1_acc"] < 20.0 and heavy["nan_count"] == 0  # SNR 5: collapsed (0)
    noise = context.config.noise
    draw = draw_noise(noise.noise_model, 100.0, 0, context.selected, context.initializers, noise.policies)
    clipped = draw.clipped_count
    assert clipped > 0  # per-channel scales: channels with small weights clip under per-tensor sigma
    assert clipped == mild["clipped_count"]  # the bench trial drew exactly this noise
    text = describe_quantization(context.selected, clipped)
    assert text == f"quantized QDQ weights (50 layers): dequantize-noise-requantize, {clipped} values clipped"
