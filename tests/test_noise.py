"""noise.py: eq. 1 statistics, determinism, policies, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from onnxnoise.errors import NoiseConfigError
from onnxnoise.model.graph import Layer
from onnxnoise.noise.legacy import NoiseSpec, apply_noise, parse_snr_list


def _layer(name: str, shape, op_type="Conv", roles=("weight",)) -> Layer:
    return Layer(0, name, op_type, (name,), roles, (tuple(shape),), int(np.prod(shape)), 0.0)


@pytest.mark.parametrize("snr", [100.0, 10.0, 5.0, 1.0])
def test_noise_std_matches_eq1(snr):
    w = np.random.default_rng(123).normal(0.3, 0.05, size=(256, 64, 3, 3)).astype(np.float32)
    out = apply_noise({"w": w}, [_layer("w", w.shape)], NoiseSpec(snr=snr, seed=7)).arrays["w"]
    measured = float(np.std(out.astype(np.float64) - w))
    assert measured == pytest.approx(float(w.std()) / snr, rel=0.02)
    assert abs(float(np.mean(out.astype(np.float64) - w))) < 0.05 * float(w.std()) / snr


def test_same_seed_same_noise_other_seed_other_noise():
    w = np.random.default_rng(0).normal(size=1000).astype(np.float32)
    layer = [_layer("w", w.shape)]
    a = apply_noise({"w": w}, layer, NoiseSpec(snr=10, seed=1)).arrays["w"]
    b = apply_noise({"w": w}, layer, NoiseSpec(snr=10, seed=1)).arrays["w"]
    c = apply_noise({"w": w}, layer, NoiseSpec(snr=10, seed=2)).arrays["w"]
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    # Same draw scaled: noise at SNR 5 is twice the noise at SNR 10 for the same seed.
    d = apply_noise({"w": w}, layer, NoiseSpec(snr=5, seed=1)).arrays["w"]
    np.testing.assert_allclose(d - w, 2 * (a - w), rtol=1e-4, atol=1e-6)


def test_noise_depends_on_tensor_name_not_on_other_layers():
    w = np.ones(100, np.float32) * np.arange(100, dtype=np.float32)
    alone = apply_noise({"a": w}, [_layer("a", w.shape)], NoiseSpec(snr=10, seed=3)).arrays["a"]
    both = apply_noise({"a": w, "b": w}, [_layer("b", w.shape), _layer("a", w.shape)], NoiseSpec(snr=10, seed=3))
    assert np.array_equal(alone, both.arrays["a"])
    assert not np.array_equal(both.arrays["a"], both.arrays["b"])


def test_infinite_snr_and_zero_std_leave_tensor_unchanged():
    w = np.random.default_rng(0).normal(size=50).astype(np.float32)
    z = np.zeros(50, np.float32)
    out = apply_noise({"w": w, "z": z}, [_layer("w", w.shape), _layer("z", z.shape)],
                      NoiseSpec(snr=math.inf, seed=0)).arrays
    assert np.array_equal(out["w"], w)
    out = apply_noise({"z": z}, [_layer("z", z.shape)], NoiseSpec(snr=1, seed=0)).arrays
    assert np.array_equal(out["z"], z)


def test_clean_input_is_not_modified():
    w = np.random.default_rng(0).normal(size=50).astype(np.float32)
    before = w.copy()
    apply_noise({"w": w}, [_layer("w", w.shape)], NoiseSpec(snr=1, seed=0))
    assert np.array_equal(w, before)


def test_bn_variance_policies_count_and_fix_negatives():
    var = np.linspace(0.001, 1.0, 1000).astype(np.float32)
    layer = [Layer(0, "bn", "BatchNormalization", ("v",), ("var",), (var.shape,), var.size, 0.0)]
    clamped = apply_noise({"v": var}, layer, NoiseSpec(snr=1, seed=0, bn_variance="clamp"))
    kept = apply_noise({"v": var}, layer, NoiseSpec(snr=1, seed=0, bn_variance="keep"))
    reflected = apply_noise({"v": var}, layer, NoiseSpec(snr=1, seed=0, bn_variance="abs"))
    negatives = int((kept.arrays["v"] < 0).sum())
    assert negatives > 50
    assert clamped.bn_variance_changed == kept.bn_variance_changed == negatives
    assert clamped.arrays["v"].min() == 0.0
    np.testing.assert_array_equal(reflected.arrays["v"], np.abs(kept.arrays["v"]))


def test_keep_zeros():
    w = np.random.default_rng(0).normal(size=1000).astype(np.float32)
    w[::3] = 0
    out = apply_noise({"w": w}, [_layer("w", w.shape)], NoiseSpec(snr=2, seed=0, keep_zeros=True)).arrays["w"]
    assert np.all(out[::3] == 0)
    assert np.all(out[1::3] != w[1::3])


def test_float16_weights_keep_dtype_and_count_overflow():
    w = np.array([60000.0, -60000.0, 1.0, 2.0] * 10, dtype=np.float16)
    res = apply_noise({"w": w}, [_layer("w", w.shape)], NoiseSpec(snr=0.5, seed=0))
    assert res.arrays["w"].dtype == np.float16
    assert res.overflow_count == int((~np.isfinite(res.arrays["w"])).sum())
    assert res.overflow_count > 0


@pytest.mark.parametrize("snr, text", [(0, "must be > 0"), (-1, "must be > 0"), (float("nan"), "positive number"),
                                       ("5", "positive number")])
def test_invalid_snr(snr, text):
    with pytest.raises(NoiseConfigError, match=text):
        NoiseSpec(snr=snr)


def test_parse_snr_list():
    assert parse_snr_list("100,10,5") == [100.0, 10.0, 5.0]
    assert parse_snr_list(noise_pct="1,2,5,10") == [100.0, 50.0, 20.0, 10.0]
    with pytest.raises(NoiseConfigError, match=r"`--snr` value 'abc' is not a number"):
        parse_snr_list("10,abc")
    with pytest.raises(NoiseConfigError, match=r"`--snr` value '0' must be > 0"):
        parse_snr_list("0")
    with pytest.raises(NoiseConfigError, match="exactly one of"):
        parse_snr_list("10", "1")
