"""noise/pcm.py: the PCM model's stages (programming, drift, read) against their formulas, identity when
every stage is off, global drift compensation, analog weights only and conductance levels.

Sample statistics are checked on tensors of about 200k elements (KS tests where the distribution is
analytic) at the significance level :data:`tests._noise_inputs.KS_P`."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from onnxnoise.model import get_initializers, list_layers
from onnxnoise.noise import draw_noise, make_noise_model, tensor_rng
from onnxnoise.noise.pcm import PROG_COEFF, T0, T_READ, summed_response

from tests._builders import routed_classifier
from tests._noise_inputs import KS_P, conv_weight, make_layer, tensor_info


# ---------------------------------------------------------------- registry and parameters


# ---------------------------------------------------------------- gaussian-snr scopes


# ---------------------------------------------------------------- gaussian-global-db (NoisyNN)


# ---------------------------------------------------------------- multiplicative


# ---------------------------------------------------------------- PCM

PCM_FULL = make_noise_model("pcm")


def _pcm_tensor(rng, x=0.5, n=200_000):
    """A weight tensor whose magnitudes are ``x * w_max`` (random signs), and one element at ``w_max = 1``."""
    w = np.where(rng.random(n) < 0.5, -x, x).astype(np.float64)
    w[0] = 1.0
    return w.reshape(500, -1)


def _pcm(w, t, params, seed=0, name="w"):
    layer = make_layer("conv", (name,), (w.shape,), ("weight",), axes=(0,))
    return make_noise_model("pcm", params).perturb(w, t, tensor_rng(seed, name), tensor_info(name, layer, w, [layer]))


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
    layer = make_layer("fc", ("fc.w",), (fc.shape,), ("weight",), op_type="Gemm", axes=(1,))
    out = make_noise_model("pcm", {"programming": False, "compensation": "global"}).perturb(
        fc, t_inf, tensor_rng(0, "fc.w"), tensor_info("fc.w", layer, fc, [layer]))
    assert summed_response(out, 1) == pytest.approx(summed_response(fc, 1), rel=1e-9)


def test_pcm_analog_weights_only_and_levels():
    rng = np.random.default_rng(16)
    layer, inits = conv_weight(rng, shape=(16, 8, 3, 3))
    bn = make_layer("bn", ("bn.v",), ((16,),), ("var",), op_type="BatchNormalization", index=1)
    inits["bn.v"] = rng.uniform(0.5, 1.0, 16).astype(np.float32)
    draw = draw_noise(PCM_FULL, 3600.0, 0, [layer, bn], inits, model_layers=[layer, bn])
    assert draw.arrays["conv.b"] is inits["conv.b"] and draw.arrays["bn.v"] is inits["bn.v"]
    assert not np.array_equal(draw.arrays["conv.w"], inits["conv.w"])
    everything = draw_noise(make_noise_model("pcm", {"analog": "all"}), 3600.0, 0, [layer, bn], inits)
    assert all(not np.array_equal(everything.arrays[n], inits[n]) for n in inits)
    # levels alone (every stage off) is the conductance-levels model
    w = inits["conv.w"]
    quantized = _pcm(w, 0.0, {"programming": False, "drift": False, "read_noise": False, "levels": 9})
    levels = make_noise_model("conductance-levels").perturb(w, 9.0, tensor_rng(0, "w"), tensor_info("conv.w", layer, w))
    np.testing.assert_allclose(quantized, levels, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- stuck-at


# ---------------------------------------------------------------- conductance levels


# ---------------------------------------------------------------- bit flips (drawing step; the model waits on the seam)


# ---------------------------------------------------------------- determinism




@pytest.mark.parametrize("route", ["transpose", "flatten", "squeeze", "einsum"])
def test_global_compensation_sums_along_the_output_axis_of_a_weight_behind_layout_ops(route):
    model = routed_classifier(route)
    layers, inits = list_layers(model), get_initializers(model)
    axis = layers[0].channel_axes[0]
    pcm = make_noise_model("pcm", {"compensation": "global", "programming": False, "read_noise": False})
    noisy = draw_noise(pcm, 86400.0, 0, layers, inits, model_layers=layers).arrays["W"]
    # drift only: compensation restores the clean summed response over each of the 10 outputs exactly
    assert summed_response(noisy, axis) == pytest.approx(summed_response(inits["W"], axis), rel=1e-5)
    assert noisy.shape[axis] == 10 and not np.allclose(noisy, inits["W"])
