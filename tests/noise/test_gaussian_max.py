"""noise/gaussian_max.py: ``w' = w + z * gamma * max|W|`` per tensor, output row and tile row (AFM, aihwkit-lightning).

The noise is rebuilt exactly from the tensor's generator (the same ``z``), so each scope's sigma is checked
against maxima computed by hand on built tensors.
"""

from __future__ import annotations

import numpy as np
import pytest

from onnxnoise.errors import NoiseConfigError
from onnxnoise.noise import draw_noise, make_noise_model, tensor_rng

from tests._noise_inputs import make_layer


def _fc(w, axes=(1,), op_type="Gemm"):
    b = np.arange(w.shape[axes[0]], dtype=np.float32)
    layer = make_layer("fc", ("fc.w", "fc.b"), (w.shape, b.shape), ("weight", "bias"), op_type=op_type,
                       axes=(*axes, None))
    return layer, {"fc.w": w, "fc.b": b}


def _expected(w, sigma, seed=0, name="fc.w"):
    z = tensor_rng(seed, name).standard_normal(w.shape, dtype=np.float32)
    return w + z * np.asarray(sigma).astype(np.float32)


W = np.array([[1.0, -8.0], [-2.0, 0.5], [4.0, 1.0], [0.25, -0.5], [3.0, 2.0]], dtype=np.float32)  # [K=5, N=2]


@pytest.mark.parametrize(("scope", "sigma"), [
    ("tensor", 8.0),                                          # max|W| = 8
    ("row", [[4.0, 8.0]]),                                    # per output column of [K, N]
    ("channel", [[4.0, 8.0]]),                                # the same, spelled as aihwkit-lightning does
    ("tile", [[2.0, 8.0], [2.0, 8.0], [4.0, 1.0], [4.0, 1.0], [3.0, 2.0]]),  # tiles of 2 rows of K
])
def test_sigma_is_gamma_times_max_over_the_scope(scope, sigma):
    layer, inits = _fc(W)
    model = make_noise_model("gaussian-max", {"scope": scope})
    draw = draw_noise(model, 0.05, 0, [layer], inits, model_layers=[layer], tile_rows=2)
    np.testing.assert_array_equal(draw.arrays["fc.w"], _expected(W, 0.05 * np.asarray(sigma)))
    assert draw.arrays["fc.b"] is inits["fc.b"]  # the bias is digital (analog=weights)
    assert model.params() == {"analog": "weights", "scope": "row" if scope == "channel" else scope}


def test_empirical_std_is_five_percent_of_the_row_max_on_a_large_tensor():
    rng = np.random.default_rng(4)
    w = rng.uniform(-1, 1, size=(3, 100_000)).astype(np.float32) * np.array([[1.0], [0.1], [0.01]], np.float32)
    layer, inits = _fc(w, axes=(0,))
    out = draw_noise(make_noise_model("gaussian-max", {"scope": "row"}), 0.05, 1, [layer], inits,
                     model_layers=[layer]).arrays["fc.w"]
    std = (out.astype(np.float64) - w).std(axis=1)
    np.testing.assert_allclose(std, 0.05 * np.abs(w).max(axis=1), rtol=0.01)  # 100k draws: std error 0.2 %


def test_gamma_zero_all_analog_and_refusals():
    layer, inits = _fc(W)
    assert draw_noise(make_noise_model("gaussian-max"), 0.0, 0, [layer], inits).arrays["fc.w"] is inits["fc.w"]
    everything = draw_noise(make_noise_model("gaussian-max", {"analog": "all"}), 0.1, 0, [layer], inits,
                            model_layers=[layer])
    np.testing.assert_array_equal(everything.arrays["fc.b"], _expected(inits["fc.b"], 0.1, name="fc.b"))
    with pytest.raises(NoiseConfigError, match="scope=tile needs the tile size: set --tile-rows"):
        draw_noise(make_noise_model("gaussian-max", {"scope": "tile"}), 0.05, 0, [layer], inits,
                   model_layers=[layer])
    with pytest.raises(NoiseConfigError, match=r"^gaussian-max: scope=row needs the output-channel axis of "
                                               r"tensor 'fc.b'.*use scope=tensor"):
        make_noise_model("gaussian-max", {"scope": "row", "analog": "all"}).check_layers([layer])
    with pytest.raises(NoiseConfigError, match="`scope` must be one of tensor, row, tile"):
        make_noise_model("gaussian-max", {"scope": "layer"})
    with pytest.raises(NoiseConfigError, match="must be a finite number >= 0"):
        make_noise_model("gaussian-max").check_strength(-0.1)
