"""noise/multiplicative.py: relative noise ``w (1 + sigma eps)`` is normal with the configured sigma."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from onnxnoise.noise import draw_noise, make_noise_model

from tests._noise_inputs import KS_P, make_layer


def test_multiplicative_relative_noise_is_normal():
    rng = np.random.default_rng(7)
    w = rng.normal(0.0, 0.3, size=(200_000,)).astype(np.float32)
    w[:100] = 0.0
    layer = make_layer("fc", ("w",), (w.shape,), ("weight",), op_type="Gemm")
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
