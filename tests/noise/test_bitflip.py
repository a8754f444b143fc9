"""Bit flips in integer-quantized weights (NOISE-MODELS.md sec. 7) through the real draw path."""

from __future__ import annotations

import numpy as np
import pytest
from tests._builders import qdq_matmul, tiny_cnn
from scipy import stats

from onnxnoise.errors import NoiseConfigError
from onnxnoise.model import get_initializers, list_layers
from onnxnoise.noise import draw_noise, make_noise_model

BITFLIP = make_noise_model("bit-flip")


def _model():
    rng = np.random.default_rng(0)
    q = rng.integers(-128, 128, size=(256, 64)).astype(np.int8)
    return qdq_matmul(q, 0.01 * np.ones(64), np.zeros(64, np.int8), rng.integers(-5000, 5000, 64).astype(np.int32),
                      1e-4)


def test_flipped_bit_fraction_within_binomial_interval_and_dtype_kept():
    model = _model()
    layers, inits = list_layers(model), get_initializers(model)
    ber = 1e-2
    draw = draw_noise(BITFLIP, ber, 3, layers, inits)
    q, q2 = inits["Wq"], draw.arrays["Wq"]
    assert q2.dtype == np.int8 and draw.clipped_count == 0  # flipped integers come back exactly
    flipped = int(np.unpackbits((q.view(np.uint8) ^ q2.view(np.uint8)).ravel()).sum())
    bits = q.size * 8
    interval = stats.binomtest(flipped, bits, ber).proportion_ci(0.999)
    assert interval.low <= ber <= interval.high
    b2 = draw.arrays["bq"]  # int32 bias: 32 bits per value
    flipped_b = int(np.unpackbits((inits["bq"].view(np.uint8) ^ b2.view(np.uint8)).ravel()).sum())
    assert stats.binomtest(flipped_b, inits["bq"].size * 32, ber).proportion_ci(0.999).low <= ber


def test_ber_zero_is_bit_identical_and_same_seed_same_flips():
    model = _model()
    layers, inits = list_layers(model), get_initializers(model)
    zero = draw_noise(BITFLIP, 0.0, 0, layers, inits)
    assert all(zero.arrays[n] is inits[n] for n in ("Wq", "bq"))
    a, b = (draw_noise(BITFLIP, 1e-3, 7, layers, inits).arrays["Wq"] for _ in range(2))
    c = draw_noise(BITFLIP, 1e-3, 8, layers, inits).arrays["Wq"]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_float_weights_are_left_exact_and_a_float_selection_is_refused_with_one_line():
    model = tiny_cnn()
    layers, inits = list_layers(model), get_initializers(model)
    draw = draw_noise(BITFLIP, 1e-1, 0, layers, inits)  # float tensors are not integer memory
    assert all(draw.arrays[n] is inits[n] for layer in layers for n in layer.tensors)
    with pytest.raises(NoiseConfigError, match=r"^bit-flip noise needs integer-quantized weights, but the 1 selected "
                       r"layer\(s\) hold only float tensors; quantize the model first"):
        BITFLIP.check_layers(layers[:1])  # called by prepare_context before any trial
    with pytest.raises(NoiseConfigError, match=r"^bit error rate must be a number in \[0, 1\], got 2"):
        BITFLIP.check_strength(2)
