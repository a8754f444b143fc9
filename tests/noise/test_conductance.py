"""noise/conductance.py: the conductance-levels error is uniform within half a level step."""

from __future__ import annotations

import numpy as np
from scipy import stats

from onnxnoise.noise import make_noise_model, tensor_rng

from tests._noise_inputs import KS_P, make_layer, tensor_info


def test_conductance_levels_error_is_uniform_within_half_step():
    rng = np.random.default_rng(19)
    w = rng.normal(0.0, 0.3, size=(200_000,))
    layer = make_layer("fc", ("w",), (w.shape,), ("weight",), op_type="Gemm")
    n = 16
    out = make_noise_model("conductance-levels").perturb(w, float(n), tensor_rng(0, "w"), tensor_info("w", layer, w))
    w_max = float(np.abs(w).max())
    step = w_max / (n - 1)
    k = np.abs(out) / step
    np.testing.assert_allclose(k, np.rint(k), atol=1e-9)  # on the grid
    err = (out - w) / step
    assert float(np.abs(err).max()) <= 0.5 + 1e-9 and np.sign(out[out != 0]).tolist() == np.sign(w[out != 0]).tolist()
    assert stats.kstest(err, "uniform", args=(-0.5, 1.0)).pvalue > KS_P
    assert float(np.abs(out).max()) == w_max
