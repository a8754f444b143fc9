"""noise models of issue 10: scopes, NoisyNN global SNR, multiplicative, PCM, stuck-at, conductance levels, bit flips.

Each model's sample statistics are checked against its formula on tensors of about
200k elements (KS tests where the distribution is analytic, binomial tests for fault
counts); plus exact properties (identity when every stage is off, compensation,
nested faults, same seed same draw) and one-line parameter errors.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from scipy import stats

from onnxnoise.errors import NoiseConfigError
from onnxnoise.model import Layer, list_layers
from onnxnoise.noise import NOISE_MODELS, TensorInfo, draw_noise, get_noise_model, make_noise_model, tensor_rng
from onnxnoise.noise.bitflip import flip_bits
from onnxnoise.noise.pcm import PROG_COEFF, T0, T_READ, format_seconds, summed_response

KS_P = 1e-3  # a correct model fails a KS / binomial test this rarely; seeds are fixed, so it is deterministic


def _layer(name, tensors, shapes, roles, op_type="Conv", axes=(), index=0) -> Layer:
    return Layer(index, name, op_type, tuple(tensors), tuple(roles), tuple(tuple(s) for s in shapes),
                 int(sum(np.prod(s) for s in shapes)), 0.0, channel_axes=tuple(axes))


def _info(name, layer: Layer, w, layers=(), values=None) -> TensorInfo:
    i = layer.tensors.index(name)
    return TensorInfo(name=name, role=layer.roles[i], op_type=layer.op_type, layer=layer.name,
                      stored_dtype=w.dtype, layer_values=values, model_layers=tuple(layers))


def _conv(rng, shape=(64, 32, 10, 10), scale=0.2):
    w = rng.normal(0.0, scale, size=shape).astype(np.float32)
    b = rng.normal(0.0, 1.0, size=(shape[0],)).astype(np.float32)
    layer = _layer("conv", ("conv.w", "conv.b"), (w.shape, b.shape), ("weight", "bias"), axes=(0, None))
    return layer, {"conv.w": w, "conv.b": b}


# ---------------------------------------------------------------- registry and parameters


def test_models_registered_and_round_trip():
    for name in ("gaussian-snr", "gaussian-global-db", "multiplicative", "pcm", "stuck-at", "conductance-levels"):
        cls = get_noise_model(name)
        model = make_noise_model(name)
        assert make_noise_model(name, model.params()) == model
        assert cls.__doc__ and model.default_strengths and model.describe()
        for value in model.default_strengths:
            model.check_strength(value)
    assert NOISE_MODELS["bit-flip"].__name__ == "BitFlip"  # needs TensorInfo.stored and .dequantize
    pcm = make_noise_model("pcm", {"compensation": "global", "g_max": 25})
    assert pcm.params()["g_max"] == 25.0 and isinstance(pcm.params()["g_max"], float)
    assert pcm.format_strength(86400.0) == "t = 1 d" and pcm.format_strength(None) == "clean"
    assert [format_seconds(s) for s in (1, 3600, 2592000, 31536000, 0, 0.5)] == \
        ["1 s", "1 h", "30 d", "1 y", "0 s", "0.5 s"]


@pytest.mark.parametrize(("name", "params", "message"), [
    ("gaussian-snr", {"scope": "global"}, "`scope` must be one of tensor, layer, channel, got 'global'; "
                                          "whole-model noise (NoisyNN, SNR in dB over mean squares) is the model "
                                          "gaussian-global-db"),
    ("gaussian-snr", {"scope": "row"}, "`scope` must be one of tensor, layer, channel, got 'row'"),
    ("pcm", {"g_max": 0}, "`g_max` must be a finite number > 0 (uS), got 0"),
    ("pcm", {"compensation": "local"}, "`compensation` must be one of none, global, got 'local'"),
    ("pcm", {"programming": "false"}, "`programming` must be true or false, got 'false'"),
    ("pcm", {"read_noise": 1}, "`read_noise` must be true or false, got 1"),
    ("pcm", {"levels": 1}, "`levels` must be an integer >= 2 (0 = continuous, no quantization), got 1"),
    ("pcm", {"analog": "bias"}, "`analog` must be one of weights, all, got 'bias'"),
    ("stuck-at", {"sa1_fraction": 1.5}, "`sa1_fraction` must be a number in [0, 1], got 1.5"),
    ("stuck-at", {"levels": 3.5}, "`levels` must be an integer >= 2 (0 = continuous, no quantization), got 3.5"),
    ("conductance-levels", {"analog": 3}, "`analog` must be one of weights, all, got 3"),
])
def test_bad_parameter_is_one_clear_line(name, params, message):
    with pytest.raises(NoiseConfigError) as info:
        make_noise_model(name, params)
    assert str(info.value) == f"noise model {name!r}: {message}"
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("pcm", -1.0, "pcm `t_inf` must be a finite number >= 0, got -1.0"),
    ("stuck-at", 1.5, "stuck-at fault rate `p` must be in [0, 1] (a fraction of devices), got 1.5"),
    ("conductance-levels", 2.5, "conductance `levels` must be an integer >= 2, got 2.5"),
    ("gaussian-global-db", math.inf, "SNR in dB must be a finite number, got inf"),
    ("multiplicative", -0.1, "multiplicative `eta` must be a finite number >= 0, got -0.1"),
])
def test_bad_strength_is_one_clear_line(name, value, message):
    with pytest.raises(NoiseConfigError) as info:
        make_noise_model(name).check_strength(value)
    assert str(info.value) == message


def test_global_db_accepts_negative_snr():
    assert make_noise_model("gaussian-global-db").check_strength(-3) == -3.0


# ---------------------------------------------------------------- gaussian-snr scopes


def test_scope_tensor_is_bit_identical_to_before():
    """Default and explicit ``scope="tensor"``: ``w + z * float32(std(w)/SNR)``, the tensor's generator, as before."""
    default, explicit = make_noise_model("gaussian-snr"), make_noise_model("gaussian-snr", {"scope": "tensor"})
    assert default == explicit and explicit.params() == {} and explicit.to_dict() == {"name": "gaussian-snr",
                                                                                       "params": {}}
    assert make_noise_model("gaussian-snr", {"scope": "layer"}).params() == {"scope": "layer"}
    layer, inits = _conv(np.random.default_rng(1), shape=(8, 3, 3, 3))
    for snr, seed in [(100.0, 0), (3.0, 17)]:
        draw = draw_noise(explicit, snr, seed, [layer], inits)
        for name, w in inits.items():
            z = tensor_rng(seed, name).standard_normal(w.shape, dtype=np.float32)
            expected = w + z * np.float32(float(np.std(w, dtype=np.float64)) / snr)
            assert draw.arrays[name].dtype == np.float32
            np.testing.assert_array_equal(draw.arrays[name], expected)


def test_scope_layer_pools_weight_and_bias():
    rng = np.random.default_rng(2)
    layer, inits = _conv(rng, shape=(200, 100, 3, 3), scale=0.1)
    inits["conv.b"] = rng.normal(0.0, 1.0, size=(200_000,)).astype(np.float32)  # a large bias: its own std 10x
    layer = _layer("conv", ("conv.w", "conv.b"), ((200, 100, 3, 3), (200_000,)), ("weight", "bias"), axes=(0, None))
    pooled = float(np.std(np.concatenate([inits["conv.w"].ravel(), inits["conv.b"].ravel()]).astype(np.float64)))
    snr = 10.0
    by_layer = draw_noise(make_noise_model("gaussian-snr", {"scope": "layer"}), snr, 5, [layer], inits)
    by_tensor = draw_noise(make_noise_model("gaussian-snr"), snr, 5, [layer], inits)
    for name, w in inits.items():
        noise = by_layer.arrays[name].astype(np.float64) - w
        assert float(np.std(noise)) == pytest.approx(pooled / snr, rel=0.01)
        assert stats.kstest(noise.ravel() / (pooled / snr), "norm").pvalue > KS_P
        # common random numbers: the same z, scaled by the pooled instead of the tensor's own std
        own = by_tensor.arrays[name].astype(np.float64) - w
        ratio = pooled / float(np.std(w, dtype=np.float64))
        np.testing.assert_allclose(noise, own * ratio, rtol=1e-3, atol=1e-6 * pooled)


def test_scope_channel_gives_each_output_channel_its_own_sigma():
    rng = np.random.default_rng(3)
    scales = np.geomspace(0.01, 1.0, 64)
    w = (rng.normal(0.0, 1.0, size=(64, 32, 10, 10)) * scales[:, None, None, None]).astype(np.float32)  # 204800
    b = rng.normal(0.0, 1.0, size=(64,)).astype(np.float32)
    layer = _layer("conv", ("conv.w", "conv.b"), (w.shape, b.shape), ("weight", "bias"), axes=(0, None))
    snr = 20.0
    model = make_noise_model("gaussian-snr", {"scope": "channel"})
    draw = draw_noise(model, snr, 9, [layer], {"conv.w": w, "conv.b": b}, model_layers=[layer])
    noise = draw.arrays["conv.w"].astype(np.float64) - w
    sigma_c = np.std(w.astype(np.float64), axis=(1, 2, 3))
    measured = np.std(noise, axis=(1, 2, 3))
    np.testing.assert_allclose(measured, sigma_c / snr, rtol=0.06)  # 3200 elements a channel: 1.25% se
    standardized = noise / (sigma_c / snr)[:, None, None, None]
    assert stats.kstest(standardized.ravel(), "norm").pvalue > KS_P
    # a 1-D bias has no channel axis: tensor scope
    bias_noise = draw.arrays["conv.b"].astype(np.float64) - b
    z = tensor_rng(9, "conv.b").standard_normal(b.shape, dtype=np.float32)
    np.testing.assert_allclose(bias_noise, z * float(np.std(b, dtype=np.float64)) / snr, rtol=1e-5, atol=1e-7)


def test_scope_channel_follows_gemm_trans_b():
    """Gemm with ``transB=0`` keeps ``B`` as ``[K, N]``: the output channel is axis 1 (columns)."""
    rng = np.random.default_rng(4)
    scales = np.geomspace(0.05, 5.0, 40)
    w = (rng.normal(0.0, 1.0, size=(5000, 40)) * scales[None, :]).astype(np.float32)
    layer = _layer("fc", ("fc.w",), (w.shape,), ("weight",), op_type="Gemm", axes=(1,))
    model = make_noise_model("gaussian-snr", {"scope": "channel"})
    noise = draw_noise(model, 4.0, 0, [layer], {"fc.w": w}, model_layers=[layer]).arrays["fc.w"] - w
    np.testing.assert_allclose(np.std(noise, axis=0), np.std(w.astype(np.float64), axis=0) / 4.0, rtol=0.08)
    # without the layer's axes a Gemm's channel axis cannot be known: one clear error
    bare = _layer("fc", ("fc.w",), (w.shape,), ("weight",), op_type="Gemm")
    with pytest.raises(NoiseConfigError, match="channel scope needs the output-channel axis of 'fc.w' \\(Gemm\\)"):
        draw_noise(model, 4.0, 0, [bare], {"fc.w": w})


def test_scope_channel_zero_channel_gets_no_noise():
    w = np.ones((4, 10), dtype=np.float32)
    w[1] = np.arange(10)
    layer = _layer("conv", ("w",), (w.shape,), ("weight",), axes=(0,))
    out = draw_noise(make_noise_model("gaussian-snr", {"scope": "channel"}), 10.0, 0, [layer], {"w": w}).arrays["w"]
    np.testing.assert_array_equal(out[[0, 2, 3]], w[[0, 2, 3]])
    assert not np.array_equal(out[1], w[1])


def _graph_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    arrays = {"conv.w": (6, 3, 3, 3), "convt.w": (6, 4, 3, 3), "gemm0.w": (4, 5), "gemm1.w": (7, 5),
              "gemm1.b": (7,), "mm.b": (7, 3), "mm.add": (3,)}
    inits = [numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n) for n, s in arrays.items()]
    nodes = [
        helper.make_node("Conv", ["x", "conv.w"], ["c"], name="conv"),
        helper.make_node("ConvTranspose", ["c", "convt.w"], ["ct"], name="convt"),
        helper.make_node("GlobalAveragePool", ["ct"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "gemm0.w"], ["g0"], name="gemm0"),
        helper.make_node("Gemm", ["g0", "gemm1.w", "gemm1.b"], ["g1"], name="gemm1", transB=1),
        helper.make_node("MatMul", ["g1", "mm.b"], ["m"], name="mm"),
        helper.make_node("Add", ["m", "mm.add"], ["y"], name="add"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_list_layers_gives_channel_axes_per_op():
    axes = {layer.name: layer.channel_axes for layer in list_layers(_graph_model())}
    assert axes == {"conv": (0,), "convt": (1,), "gemm0": (1,), "gemm1": (0, None), "mm": (1, None)}
    assert list_layers(_graph_model())[0].to_dict()["channel_axes"] == [0]


# ---------------------------------------------------------------- gaussian-global-db (NoisyNN)


def test_global_db_one_sigma_from_model_power():
    rng = np.random.default_rng(6)
    conv, inits = _conv(rng, shape=(64, 32, 10, 10), scale=0.2)
    bn = _layer("bn", ("bn.s", "bn.v"), ((64,), (64,)), ("scale", "var"), op_type="BatchNormalization", index=1)
    fc = _layer("fc", ("fc.w",), ((10, 64),), ("weight",), op_type="Gemm", axes=(0,), index=2)
    inits |= {"bn.s": np.full(64, 30.0, np.float32), "bn.v": np.full(64, 50.0, np.float32),
              "fc.w": rng.normal(0.0, 3.0, size=(10, 64)).astype(np.float32)}
    layers = [conv, bn, fc]
    signal = np.concatenate([inits[n].astype(np.float64).ravel() for n in ("conv.w", "conv.b", "fc.w")])
    snr_db = 12.0
    sigma = math.sqrt(float(np.mean(signal**2)) / 10 ** (snr_db / 10))
    model = make_noise_model("gaussian-global-db")
    draw = draw_noise(model, snr_db, 3, [conv, bn], inits, model_layers=layers)  # fc not noised, still in the power
    noise = draw.arrays["conv.w"].astype(np.float64) - inits["conv.w"]
    assert float(np.std(noise)) == pytest.approx(sigma, rel=0.01)
    assert stats.kstest(noise.ravel() / sigma, "norm").pvalue > KS_P
    z = tensor_rng(3, "conv.b").standard_normal(64, dtype=np.float32)
    np.testing.assert_allclose(draw.arrays["conv.b"] - inits["conv.b"], z * np.float32(sigma), rtol=1e-5, atol=1e-6)
    assert draw.arrays["bn.s"] is inits["bn.s"] and draw.arrays["bn.v"] is inits["bn.v"]  # outside NoisyNN's signal
    with pytest.raises(NoiseConfigError, match="gaussian-global-db needs every layer of the model"):
        draw_noise(model, snr_db, 3, [conv], inits)


# ---------------------------------------------------------------- multiplicative


def test_multiplicative_relative_noise_is_normal():
    rng = np.random.default_rng(7)
    w = rng.normal(0.0, 0.3, size=(200_000,)).astype(np.float32)
    w[:100] = 0.0
    layer = _layer("fc", ("w",), (w.shape,), ("weight",), op_type="Gemm")
    eta = 0.05
    model = make_noise_model("multiplicative")
    out = draw_noise(model, eta, 11, [layer], {"w": w}).arrays["w"]
    assert out.dtype == np.float32 and np.all(out[:100] == 0.0)
    rel = (out[100:].astype(np.float64) / w[100:] - 1.0) / eta
    assert abs(float(rel.mean())) < 0.01 and float(rel.std()) == pytest.approx(1.0, rel=0.01)
    np.testing.assert_allclose(np.quantile(rel, [0.025, 0.5, 0.975]), stats.norm.ppf([0.025, 0.5, 0.975]), atol=0.03)
    assert stats.kstest(rel, "norm").pvalue > KS_P
    double = draw_noise(model, 2 * eta, 11, [layer], {"w": w}).arrays["w"]  # common random numbers
    np.testing.assert_allclose(double - w, 2 * (out - w), rtol=1e-4, atol=4e-7)  # float32 rounding of w
    assert draw_noise(model, 0.0, 11, [layer], {"w": w}).arrays["w"] is w


# ---------------------------------------------------------------- PCM

PCM_FULL = make_noise_model("pcm")


def _pcm_tensor(rng, x=0.5, n=200_000):
    """A weight tensor whose magnitudes are ``x * w_max`` (random signs), and one element at ``w_max = 1``."""
    w = np.where(rng.random(n) < 0.5, -x, x).astype(np.float64)
    w[0] = 1.0
    return w.reshape(500, -1)


def _pcm(w, t, params, seed=0, name="w"):
    layer = _layer("conv", (name,), (w.shape,), ("weight",), axes=(0,))
    return make_noise_model("pcm", params).perturb(w, t, tensor_rng(seed, name), _info(name, layer, w, [layer]))


def test_pcm_programming_stage_matches_formula():
    rng = np.random.default_rng(8)
    g_t = np.full(200_000, 20.0)
    prog = PCM_FULL.program(g_t, rng.standard_normal(g_t.shape))
    x = 20.0 / 25.0
    sigma = PROG_COEFF[0] + PROG_COEFF[1] * x + PROG_COEFF[2] * x * x
    assert stats.kstest((prog - 20.0) / sigma, "norm").pvalue > KS_P
    doubled = make_noise_model("pcm", {"g_max": 50.0}).program(2 * g_t, rng.standard_normal(g_t.shape))
    assert float(np.std(doubled)) == pytest.approx(2 * sigma, rel=0.01)  # sigma_prog scales with g_max / 25
    zero = PCM_FULL.program(np.zeros(200_000), rng.standard_normal(200_000))
    assert np.all(zero >= 0) and float(np.mean(zero > 0)) == pytest.approx(0.5, abs=0.01)  # clipped at 0


def test_pcm_drift_exponents_are_folded_normal():
    rng = np.random.default_rng(9)
    for x, mu, sigma in [(0.5, 0.049, 0.008), (1e-9, 0.1, 0.045)]:  # both clipped; 1e-9 -> x = 1e-7
        nu = PCM_FULL.drift_exponents(np.full(200_000, 25.0 * x), rng.standard_normal(200_000))
        assert stats.kstest(nu, stats.foldnorm(mu / sigma, scale=sigma).cdf).pvalue > KS_P
    x = 0.05  # inside both clips: mu 0.0708, sigma 0.0316, folded at 0
    nu = PCM_FULL.drift_exponents(np.full(200_000, 25.0 * x), rng.standard_normal(200_000))
    mu, sigma = -0.0155 * math.log(x) + 0.0244, -0.0125 * math.log(x) - 0.0059
    assert 0.049 < mu < 0.1 and 0.008 < sigma < 0.045
    assert stats.kstest(nu, stats.foldnorm(mu / sigma, scale=sigma).cdf).pvalue > KS_P


def test_pcm_read_stage_relative_noise():
    rng = np.random.default_rng(10)
    g = np.full(200_000, 12.5)
    t = 3600.0 + T0
    read = PCM_FULL.read(g, g, t, rng.standard_normal(g.shape))
    q_s = 0.0088 / 0.5**0.65
    sigma = q_s * math.sqrt(math.log((t + T_READ) / (2 * T_READ)))
    assert stats.kstest((read - g) / (g * sigma), "norm").pvalue > KS_P


def test_pcm_everything_off_is_bit_identical():
    w = np.random.default_rng(11).normal(0.0, 0.1, size=(64, 27)).astype(np.float32)
    for t in (0.0, 86400.0):
        out = _pcm(w, t, {"programming": False, "drift": False, "read_noise": False})
        assert out.dtype == np.float32 and np.array_equal(out, w)
    out = _pcm(w, 0.0, {"programming": False, "read_noise": False})  # drift on, but t_inf = 0: no drift
    assert np.array_equal(out, w)


def test_pcm_t0_without_programming_is_w_within_read_noise():
    w = _pcm_tensor(np.random.default_rng(12))
    out = _pcm(w, 0.0, {"programming": False})
    sigma = 0.0088 / 0.5**0.65 * math.sqrt(math.log((T0 + T_READ) / (2 * T_READ)))  # x = 0.5, t = t0
    rel = (out / w - 1.0).ravel()[1:]
    assert float(np.std(rel)) == pytest.approx(sigma, rel=0.01) and sigma < 0.06
    assert stats.kstest(rel / sigma, "norm").pvalue > KS_P
    assert np.all(np.sign(out) == np.sign(w))  # the idle device stays at 0: no read noise there


def test_pcm_drift_only_follows_power_law():
    w = _pcm_tensor(np.random.default_rng(13))
    t_inf = 86400.0
    out = _pcm(w, t_inf, {"programming": False, "read_noise": False})
    nu = (-np.log(out / w) / math.log((t_inf + T0) / T0)).ravel()[1:]
    assert stats.kstest(nu, stats.foldnorm(0.049 / 0.008, scale=0.008).cdf).pvalue > KS_P
    assert np.all(np.abs(out) <= np.abs(w))


def test_pcm_programming_noise_end_to_end():
    """Only programming noise: ``w' - w = (sigma_prog(x) z1 - max(c0 z2, 0)) * w_max / g_max`` (the idle device too)."""
    w = _pcm_tensor(np.random.default_rng(14), x=0.8)
    diff = (_pcm(w, 0.0, {"drift": False, "read_noise": False}) - w).ravel()[1:] * 25.0  # in uS
    c0 = PROG_COEFF[0]
    sigma = c0 + PROG_COEFF[1] * 0.8 + PROG_COEFF[2] * 0.64
    sign = np.sign(w.ravel()[1:])
    mean = -c0 / math.sqrt(2 * math.pi)  # the idle device's clipped noise pulls toward the other sign
    var = sigma**2 + c0**2 * (0.5 - 1 / (2 * math.pi))
    assert float(np.mean(diff * sign)) == pytest.approx(mean, abs=0.01)
    assert float(np.std(diff * sign)) == pytest.approx(math.sqrt(var), rel=0.01)
    same = _pcm(w, 0.0, {"drift": False, "read_noise": False, "g_max": 100.0})
    np.testing.assert_allclose(same.ravel()[1:], w.ravel()[1:] + diff / 25.0, atol=1e-12)  # g_max cancels out


def test_pcm_global_compensation_keeps_summed_response():
    rng = np.random.default_rng(15)
    w = rng.normal(0.05, 0.1, size=(64, 32, 10, 10))  # 204800, channel axis 0
    t_inf = 86400.0
    response = summed_response(w, 0)
    comp = _pcm(w, t_inf, {"programming": False, "compensation": "global"})
    assert summed_response(comp, 0) == pytest.approx(response, rel=1e-9)
    # the response (NOISE-MODELS.md's alpha) is kept exactly; the plain sum|w| only nearly, because small
    # weights drift faster (nu grows as g_T falls) and the response weighs them differently
    assert float(np.abs(comp).sum()) == pytest.approx(float(np.abs(w).sum()), rel=0.03)
    plain = _pcm(w, t_inf, {"programming": False})
    shrink = summed_response(plain, 0) / response
    assert 0.55 < shrink < 0.75  # (4321)^(-nu), nu ~ 0.05..0.1
    np.testing.assert_allclose(comp, plain * (response / summed_response(plain, 0)), rtol=1e-12)
    # with programming noise the reference is the programmed tensor, close to the clean one
    full = _pcm(w, t_inf, {"compensation": "global"})
    assert summed_response(full, 0) == pytest.approx(response, rel=0.02)
    # a Gemm with transB=0 sums its columns
    fc = rng.normal(0.02, 0.1, size=(3000, 60))
    layer = _layer("fc", ("fc.w",), (fc.shape,), ("weight",), op_type="Gemm", axes=(1,))
    out = make_noise_model("pcm", {"programming": False, "compensation": "global"}).perturb(
        fc, t_inf, tensor_rng(0, "fc.w"), _info("fc.w", layer, fc, [layer]))
    assert summed_response(out, 1) == pytest.approx(summed_response(fc, 1), rel=1e-9)


def test_pcm_analog_weights_only_and_levels():
    rng = np.random.default_rng(16)
    layer, inits = _conv(rng, shape=(16, 8, 3, 3))
    bn = _layer("bn", ("bn.v",), ((16,),), ("var",), op_type="BatchNormalization", index=1)
    inits["bn.v"] = rng.uniform(0.5, 1.0, 16).astype(np.float32)
    draw = draw_noise(PCM_FULL, 3600.0, 0, [layer, bn], inits, model_layers=[layer, bn])
    assert draw.arrays["conv.b"] is inits["conv.b"] and draw.arrays["bn.v"] is inits["bn.v"]
    assert not np.array_equal(draw.arrays["conv.w"], inits["conv.w"])
    everything = draw_noise(make_noise_model("pcm", {"analog": "all"}), 3600.0, 0, [layer, bn], inits)
    assert all(not np.array_equal(everything.arrays[n], inits[n]) for n in inits)
    # levels alone (every stage off) is the conductance-levels model
    w = inits["conv.w"]
    quantized = _pcm(w, 0.0, {"programming": False, "drift": False, "read_noise": False, "levels": 9})
    levels = make_noise_model("conductance-levels").perturb(w, 9.0, tensor_rng(0, "w"), _info("conv.w", layer, w))
    np.testing.assert_allclose(quantized, levels, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- stuck-at


def test_stuck_at_outcomes_within_binomial_intervals():
    rng = np.random.default_rng(17)
    n = 200_000
    w = rng.uniform(0.1, 0.9, n)
    w[0] = 1.0  # w_max
    p, f = 0.05, 0.3
    layer = _layer("fc", ("w",), (w.shape,), ("weight",), op_type="Gemm")
    model = make_noise_model("stuck-at", {"sa1_fraction": f})
    out = model.perturb(w, p, tensor_rng(4, "w"), _info("w", layer, w))[1:]
    clean = w[1:]
    p1, p0 = p * f, p * (1 - f)
    outcomes = {  # pos device state x neg device state -> w' (w_max = 1)
        "unchanged": (out == clean, (1 - p) * (1 - p1)),
        "zero": (out == 0.0, p0 * (1 - p1) + p1 * p1),
        "plus_max": (out == 1.0, p1 * (1 - p1)),
        "minus_max": (out == -1.0, p0 * p1),
        "shifted": (out == clean - 1.0, (1 - p) * p1),
    }
    total = 0
    for name, (mask, prob) in outcomes.items():
        k = int(mask.sum())
        total += k
        assert stats.binomtest(k, n - 1, prob).pvalue > KS_P, (name, k, prob * (n - 1))
    assert total == n - 1  # every element is one of the five outcomes


def test_stuck_at_faults_are_nested_and_exact():
    rng = np.random.default_rng(18)
    w = rng.normal(0.0, 0.2, size=(400, 500)).astype(np.float32)
    layer = _layer("conv", ("w",), (w.shape,), ("weight",), axes=(0,))
    model = make_noise_model("stuck-at")
    low = draw_noise(model, 0.01, 2, [layer], {"w": w}).arrays["w"]
    high = draw_noise(model, 0.05, 2, [layer], {"w": w}).arrays["w"]
    changed_low, changed_high = low != w, high != w
    assert np.all(changed_high[changed_low]) and changed_high.sum() > 4 * changed_low.sum()
    w_max = np.abs(w).max()
    got, was = low[changed_low], w[changed_low]
    shifted = np.isclose(got, was - np.sign(was) * w_max, rtol=0, atol=1e-6)  # idle device stuck-on
    assert np.all((got == 0) | (np.abs(got) == w_max) | shifted)
    assert draw_noise(model, 0.0, 2, [layer], {"w": w}).arrays["w"] is w
    everything = make_noise_model("stuck-at", {"sa1_fraction": 0.0})
    off = draw_noise(everything, 1.0, 2, [layer], {"w": w}).arrays["w"]
    assert np.all(off == 0.0)  # every device stuck-off
    on = draw_noise(make_noise_model("stuck-at", {"sa1_fraction": 1.0}), 1.0, 2, [layer], {"w": w}).arrays["w"]
    assert np.all(on == 0.0)  # both devices stuck-on: g+ - g- = 0


# ---------------------------------------------------------------- conductance levels


def test_conductance_levels_error_is_uniform_within_half_step():
    rng = np.random.default_rng(19)
    w = rng.normal(0.0, 0.3, size=(200_000,))
    layer = _layer("fc", ("w",), (w.shape,), ("weight",), op_type="Gemm")
    n = 16
    out = make_noise_model("conductance-levels").perturb(w, float(n), tensor_rng(0, "w"), _info("w", layer, w))
    w_max = float(np.abs(w).max())
    step = w_max / (n - 1)
    k = np.abs(out) / step
    np.testing.assert_allclose(k, np.rint(k), atol=1e-9)  # on the grid
    err = (out - w) / step
    assert float(np.abs(err).max()) <= 0.5 + 1e-9 and np.sign(out[out != 0]).tolist() == np.sign(w[out != 0]).tolist()
    assert stats.kstest(err, "uniform", args=(-0.5, 1.0)).pvalue > KS_P
    assert float(np.abs(out).max()) == w_max


# ---------------------------------------------------------------- bit flips (drawing step; the model waits on the seam)


def test_flip_bits_rate_and_identity():
    rng = np.random.default_rng(20)
    q = rng.integers(-128, 128, size=200_000).astype(np.int8)
    assert np.array_equal(flip_bits(q, 0.0, rng), q)
    ber = 1e-2
    out = flip_bits(q, ber, np.random.default_rng(1))
    flipped = np.unpackbits((q.view(np.uint8) ^ out.view(np.uint8))[:, None], axis=1)
    assert stats.binomtest(int(flipped.sum()), flipped.size, ber).pvalue > KS_P
    for bit in range(8):
        assert stats.binomtest(int(flipped[:, bit].sum()), q.size, ber).pvalue > KS_P / 8
    assert flip_bits(np.array([0, 127], np.int8), 1.0, rng).tolist() == [-1, -128]  # two's complement
    with pytest.raises(ValueError, match="bit flips need an integer tensor, got dtype float32"):
        flip_bits(q.astype(np.float32), ber, rng)


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize(("name", "params", "strength"), [
    ("gaussian-snr", {"scope": "channel"}, 10.0), ("gaussian-snr", {"scope": "layer"}, 10.0),
    ("gaussian-global-db", {}, 10.0), ("multiplicative", {}, 0.1), ("pcm", {"compensation": "global"}, 3600.0),
    ("stuck-at", {}, 0.05), ("conductance-levels", {}, 8.0),
])
def test_same_seed_same_draw(name, params, strength):
    layer, inits = _conv(np.random.default_rng(21), shape=(16, 8, 3, 3))
    model = make_noise_model(name, params)
    first = draw_noise(model, strength, 5, [layer], inits, model_layers=[layer]).arrays
    again = draw_noise(model, strength, 5, [layer], inits, model_layers=[layer]).arrays
    other = draw_noise(model, strength, 6, [layer], inits, model_layers=[layer]).arrays
    for tensor in inits:
        np.testing.assert_array_equal(first[tensor], again[tensor])
    if name != "conductance-levels":  # deterministic: the seed does not matter
        assert not np.array_equal(first["conv.w"], other["conv.w"])
