"""noise/crosssim.py: CrossSim's state-independent and state-proportional programming errors on balanced pairs.

Built tensors whose conductance targets are known (``Gmin = 0.2225``, ``Gmax = 1``): the error's std against
``alpha * Gmax`` / ``alpha * G``, the share clipped at each bound against the normal CDF (binomial interval at
:data:`tests._noise_inputs.KS_P`), the read-back formula rebuilt from the same draws, and ``alpha = 0`` exact.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from onnxnoise.errors import NoiseConfigError
from onnxnoise.noise import draw_noise, make_noise_model, tensor_rng
from onnxnoise.noise.crosssim import ISCA2024_G_RATIO
from onnxnoise.noise.device import Devices

from tests._noise_inputs import KS_P, make_layer, tensor_info

G_MIN = 0.2225


def _tile(model, w):
    layer = make_layer("fc", ("fc.w",), (w.shape,), ("weight",), op_type="Gemm", axes=(1,))
    tile = model.tile(w, tensor_info("fc.w", layer, w, layers=(layer,)))
    return tile, Devices(tile, tile.targets)


def _binomial_ok(count, n, p):
    lo, hi = stats.binom.interval(1 - KS_P, n, p)
    return lo <= count <= hi


def test_g_ratio_default_is_the_isca_2024_resistance_ratio_and_targets_are_balanced():
    assert ISCA2024_G_RATIO == pytest.approx(4.45 / 20) and make_noise_model("crosssim").g_ratio == G_MIN
    w = np.array([[0.5], [-1.0], [0.0]])
    tile, _ = _tile(make_noise_model("crosssim"), w)
    assert tile.g_min == G_MIN and tile.g_max == 1.0
    span = 1 - G_MIN
    np.testing.assert_allclose(tile.targets[:, :, 0], [[G_MIN + 0.5 * span, G_MIN, G_MIN],
                                                       [G_MIN, G_MIN + span, G_MIN]], rtol=1e-15)
    np.testing.assert_allclose(tile.weights(tile.targets), w, rtol=1e-15, atol=1e-16)


@pytest.mark.parametrize(("error", "alpha"), [("independent", 0.02), ("proportional", 0.05)])
def test_error_std_is_alpha_gmax_or_alpha_g_away_from_the_bounds(error, alpha):
    w = np.full((100_000, 2), 0.5)
    w[0, 0] = 1.0  # w_max = 1: the active devices sit at G = Gmin + 0.5 (Gmax - Gmin) = 0.61125
    model = make_noise_model("crosssim", {"error": error})
    _, devices = _tile(model, w)
    g = model.program_stage(devices, alpha, np.random.default_rng(3))
    target = G_MIN + 0.5 * (1 - G_MIN)
    active = np.isclose(devices.target[0], target, rtol=1e-12)
    assert active.sum() == w.size - 1
    sigma = alpha * (1.0 if error == "independent" else target)
    err = g[0][active] - target  # 8 sigma or more from either bound: nothing clipped
    assert err.std() == pytest.approx(sigma, rel=0.01) and abs(err.mean()) < 5 * sigma / np.sqrt(err.size)


def test_clipping_at_gmin_and_gmax_is_counted_by_the_normal_cdf():
    w = np.concatenate([np.full(50_000, 1.0), np.full(50_000, 0.9)]).reshape(-1, 1)
    model = make_noise_model("crosssim")
    _, devices = _tile(model, w)
    alpha = 0.1
    g = model.program_stage(devices, alpha, np.random.default_rng(8))
    assert g.min() >= G_MIN and g.max() <= 1.0
    # w = 1: the positive device at Gmax, half of them clipped there; every idle device at Gmin, half clipped there
    assert _binomial_ok(int(np.sum(g[0, :50_000] == 1.0)), 50_000, 0.5)
    assert _binomial_ok(int(np.sum(g[1] == G_MIN)), 100_000, 0.5)
    # w = 0.9: G = Gmin + 0.9 (1 - Gmin), clipped at Gmax with P(z > (1 - G) / alpha)
    target = G_MIN + 0.9 * (1 - G_MIN)
    p_top = stats.norm.sf((1.0 - target) / alpha)
    assert _binomial_ok(int(np.sum(g[0, 50_000:] == 1.0)), 50_000, p_top)
    # proportional: the idle devices' sigma is alpha * Gmin, so half of them are still clipped at Gmin
    g = make_noise_model("crosssim", {"error": "proportional"}).program_stage(devices, alpha,
                                                                             np.random.default_rng(9))
    assert _binomial_ok(int(np.sum(g[1] == G_MIN)), 100_000, 0.5)
    assert _binomial_ok(int(np.sum(g[0, 50_000:] == 1.0)), 50_000, stats.norm.sf((1.0 - target) / (alpha * target)))


def test_read_back_is_the_pair_difference_over_the_range_and_alpha_zero_is_exact():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(40, 6)).astype(np.float32)
    layer = make_layer("fc", ("fc.w",), (w.shape,), ("weight",), op_type="Gemm", axes=(1,))
    model = make_noise_model("crosssim", {"mapping": "channel"})
    out = draw_noise(model, 0.05, 4, [layer], {"fc.w": w}, model_layers=[layer]).arrays["fc.w"]
    w64 = w.astype(np.float64)
    w_max = np.abs(w64).max(axis=0, keepdims=True)
    span = 1 - G_MIN
    targets = np.stack([G_MIN + np.maximum(w64, 0) / w_max * span, G_MIN + np.maximum(-w64, 0) / w_max * span])
    z = tensor_rng(4, "fc.w").standard_normal(targets.shape)
    g = np.clip(targets + 0.05 * z, G_MIN, 1.0)
    np.testing.assert_allclose(out, ((g[0] - g[1]) / span * w_max).astype(np.float32), rtol=1e-5, atol=1e-6)
    exact = draw_noise(model, 0.0, 4, [layer], {"fc.w": w}, model_layers=[layer])
    assert exact.arrays["fc.w"] is w and exact.changed_values == {"fc": 0}


def test_levels_span_gmin_to_gmax_and_bad_parameters_are_refused():
    w = np.array([[1.0], [0.4], [-0.1]])
    model = make_noise_model("crosssim", {"levels": 3})
    tile, _ = _tile(model, w)
    out = model.perturb(w, 0.0, np.random.default_rng(0), tile.tensor)  # alpha 0 with a grid: quantized only
    np.testing.assert_allclose(out, [[1.0], [0.5], [0.0]], atol=1e-12)
    with pytest.raises(NoiseConfigError, match=r"`g_ratio` must be a number in \[0, 1\)"):
        make_noise_model("crosssim", {"g_ratio": 1.0})
    with pytest.raises(NoiseConfigError, match="`error` must be one of independent, proportional"):
        make_noise_model("crosssim", {"error": "relative"})
