"""noise/bitflip.py: bit flips in integer-quantized weights (NOISE-MODELS.md sec. 7) through the real draw path;
refused on a float model before any trial; on docs/usage.md's int8 model floats stay exact and bench says so."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from onnxnoise.errors import NoiseConfigError
from onnxnoise.model import get_initializers, list_layers, load_model
from onnxnoise.noise import draw_noise, make_noise_model
from onnxnoise.noise.bitflip import flip_bits

from tests._builders import qdq_matmul, tiny_cnn
from tests._checks import one_line, run_cli
from tests._noise_inputs import KS_P

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


def test_bitflip_on_a_float_model_is_refused_before_any_trial(tiny_float_int8, tmp_path, capsys):
    float_path, _, data = tiny_float_int8
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "bench", float_path, "--data", data, "--preprocess", "raw", "--noise", "bit-flip",
                        "--ber", "1e-3", "--seeds", "2", "--device", "cpu", "--out", out)
    assert code == 2
    assert one_line(err) == (
        "onnxnoise: error: bit-flip noise needs integer-quantized weights, but the 3 selected layer(s) hold only "
        "float tensors; quantize the model first (onnxruntime.quantization.quantize_dynamic or quantize_static, "
        "see docs/usage.md 'Integer weights for bit-flip') or choose another --noise")
    assert not out.exists()  # not even the baseline ran


def test_bitflip_on_a_dynamically_quantized_model_flips_integers_and_leaves_floats_exact(tiny_float_int8):
    _, int8_path, _ = tiny_float_int8
    model = load_model(int8_path)
    layers, inits = list_layers(model), get_initializers(model)
    assert [layer.op_type for layer in layers] == ["ConvInteger", "BatchNormalization", "MatMulInteger"]
    BITFLIP.check_layers(layers)  # some integer tensors: accepted
    ber = 0.05
    draw = draw_noise(BITFLIP, ber, 0, layers, inits)
    integer = [n for layer in layers for n, q in zip(layer.tensors, layer.quant or (None,) * len(layer.tensors))
               if q is not None]
    floats = [n for layer in layers for n in layer.tensors if n not in integer]
    assert len(integer) == 2 and len(floats) == 6  # conv/fc int8 weights; conv.bias, bn x4, fc.bias
    for name in floats:
        assert draw.arrays[name] is inits[name]  # not integer memory: exact, the same array
    flipped = sum(int(np.unpackbits((inits[n].view(np.uint8) ^ draw.arrays[n].view(np.uint8)).ravel()).sum())
                  for n in integer)
    bits = sum(inits[n].size * 8 for n in integer)
    assert bits == (108 + 40) * 8 and all(draw.arrays[n].dtype == np.int8 for n in integer)
    interval = stats.binomtest(flipped, bits, ber).proportion_ci(0.999)
    assert interval.low <= ber <= interval.high, (flipped, bits)
    assert draw.clipped_count == 0


def test_bitflip_bench_on_the_readme_model_runs_and_says_what_stayed_exact(tiny_float_int8, tmp_path, capsys):
    _, int8_path, data = tiny_float_int8
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "bench", int8_path, "--data", data, "--preprocess", "raw", "--noise",
                             "bit-flip", "--ber", "1e-2", "--seeds", "2", "--device", "cpu", "--out", out, "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["failed"] == 0
    assert summary["quantization"] == (
        "quantized dynamic weights (2 layers): bits flipped in the stored integers of 2 tensors (148 values); "
        "6 float tensors (30 values: bias, mean, scale, var) left exact, not integer memory")
    assert [r["seeds"] for r in summary["results"]] == [1, 2]


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
