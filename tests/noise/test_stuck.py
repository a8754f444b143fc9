"""noise/stuck.py: stuck-at outcomes within binomial intervals, nested faults, and the stuck-on share in captions."""

from __future__ import annotations

import numpy as np
from scipy import stats

from onnxnoise.noise import draw_noise, make_noise_model, tensor_rng

from tests._noise_inputs import KS_P, make_layer, tensor_info


def test_stuck_at_caption_shows_the_stuck_on_share_as_a_percentage():
    model = make_noise_model("stuck-at", {"sa1_fraction": 1 / 11})
    assert model.describe().startswith("stuck-at faults per device, 9.09% of them stuck-on (the rest stuck-off), ")
    assert "50% of them stuck-on" in make_noise_model("stuck-at").describe()


def test_stuck_at_outcomes_within_binomial_intervals():
    rng = np.random.default_rng(17)
    n = 200_000
    w = rng.uniform(0.1, 0.9, n)
    w[0] = 1.0  # w_max
    p, f = 0.05, 0.3
    layer = make_layer("fc", ("w",), (w.shape,), ("weight",), op_type="Gemm")
    model = make_noise_model("stuck-at", {"sa1_fraction": f})
    out = model.perturb(w, p, tensor_rng(4, "w"), tensor_info("w", layer, w))[1:]
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
    layer = make_layer("conv", ("w",), (w.shape,), ("weight",), axes=(0,))
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
