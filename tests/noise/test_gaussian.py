"""noise/gaussian.py: the gaussian-snr model (eq. 1 statistics, exact draws), determinism, policies, validation; gaussian-global-db (NoisyNN)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from onnxnoise.config import NoiseConfig, parse_strengths
from onnxnoise.errors import ConfigError, NoiseConfigError
from onnxnoise.model import Layer
from onnxnoise.noise import GaussianSNR, NoisePolicies, draw_noise, make_noise_model, tensor_rng

from tests._builders import tiny_cnn
from tests._noise_inputs import KS_P, conv_weight, make_layer

GAUSS = make_noise_model("gaussian-snr")


def _layer(name: str, shape, op_type="Conv", roles=("weight",)) -> Layer:
    return Layer(0, name, op_type, (name,), roles, (tuple(shape),), int(np.prod(shape)), 0.0)


def _draw(initializers, layers, snr, seed=0, **policies):
    return draw_noise(GAUSS, snr, seed, layers, initializers, NoisePolicies(**policies))


def _hand(w: np.ndarray, snr: float, seed: int, name: str) -> np.ndarray:
    """Paper eq. 1 by hand: ``w + z * float32(std(w) / SNR)``, ``z`` float32 from the tensor's generator."""
    z = tensor_rng(seed, name).standard_normal(w.shape, dtype=np.float32)
    return w + z * np.float32(float(np.std(w, dtype=np.float64)) / snr)


def test_gaussian_snr_is_registered():
    assert isinstance(GAUSS, GaussianSNR) and GAUSS == GaussianSNR()
    assert GAUSS.params() == {} and GAUSS.to_dict() == {"name": "gaussian-snr", "params": {}}
    assert (GAUSS.strength_name, GAUSS.more_noise_when) == ("snr", "lower")
    assert GAUSS.format_strength(None) == "clean"
    assert GAUSS.format_strength(10.0) == "SNR 10 (10% noise)"


@pytest.mark.parametrize("snr", [100.0, 10.0, 5.0, 1.0])
def test_noise_std_matches_eq1(snr):
    w = np.random.default_rng(123).normal(0.3, 0.05, size=(256, 64, 3, 3)).astype(np.float32)
    out = _draw({"w": w}, [_layer("w", w.shape)], snr, seed=7).arrays["w"]
    assert out.dtype == np.float32 and out.shape == w.shape
    measured = float(np.std(out.astype(np.float64) - w))
    assert measured == pytest.approx(float(w.std()) / snr, rel=0.02)
    assert abs(float(np.mean(out.astype(np.float64) - w))) < 0.05 * float(w.std()) / snr


def test_draw_is_bit_identical_to_hand_computation():
    """Pins the committed results: the exact float32 arithmetic and the per-tensor generator."""
    rng = np.random.default_rng(5)
    inits = {"conv.w": rng.normal(0.1, 0.3, size=(8, 3, 3, 3)).astype(np.float32),
             "conv.b": rng.normal(0, 0.05, size=(8,)).astype(np.float32),
             "fc.w": rng.normal(0, 1.0, size=(10, 8)).astype(np.float32)}
    conv = Layer(0, "conv", "Conv", ("conv.w", "conv.b"), ("weight", "bias"), ((8, 3, 3, 3), (8,)), 224, 0.3)
    fc = _layer("fc.w", (10, 8), op_type="Gemm")
    for snr, seed in [(100.0, 0), (10.0, 3), (2.5, 41)]:
        draw = _draw(inits, [conv, fc], snr, seed=seed)
        assert set(draw.arrays) == set(inits)
        for name, w in inits.items():
            expected = _hand(w, snr, seed, name)
            assert draw.arrays[name].dtype == np.float32
            assert draw.arrays[name].tobytes() == expected.tobytes(), (name, snr, seed)
        assert draw.counters() == {"bn_variance_changed": 0, "overflow_count": 0, "clipped_count": 0,
                                   "zeros_kept": 0}


def test_float64_tensor_drawn_in_float64():
    w = np.random.default_rng(0).normal(size=(50,))
    out = _draw({"w": w}, [_layer("w", w.shape)], 10.0, seed=2).arrays["w"]
    z = tensor_rng(2, "w").standard_normal(w.shape, dtype=np.float64)
    assert out.dtype == np.float64
    assert out.tobytes() == (w + z * (float(np.std(w)) / 10.0)).tobytes()


def test_same_seed_same_noise_other_seed_other_noise():
    w = np.random.default_rng(0).normal(size=1000).astype(np.float32)
    layer = [_layer("w", w.shape)]
    a = _draw({"w": w}, layer, 10, seed=1).arrays["w"]
    b = _draw({"w": w}, layer, 10, seed=1).arrays["w"]
    c = _draw({"w": w}, layer, 10, seed=2).arrays["w"]
    assert a.tobytes() == b.tobytes()
    assert not np.allclose(a, c)
    # Common random numbers: noise at SNR 5 is twice the noise at SNR 10 for the same seed.
    d = _draw({"w": w}, layer, 5, seed=1).arrays["w"]
    np.testing.assert_allclose(d - w, 2 * (a - w), rtol=1e-4, atol=1e-6)


def test_noise_depends_on_tensor_name_not_on_other_layers():
    w = np.arange(100, dtype=np.float32)
    alone = _draw({"a": w}, [_layer("a", w.shape)], 10, seed=3).arrays["a"]
    both = _draw({"a": w, "b": w}, [_layer("b", w.shape), _layer("a", w.shape)], 10, seed=3)
    assert alone.tobytes() == both.arrays["a"].tobytes()
    assert not np.array_equal(both.arrays["a"], both.arrays["b"])


def test_zero_std_tensor_left_unchanged():
    w = np.random.default_rng(0).normal(size=50).astype(np.float32)
    z = np.zeros(50, np.float32)
    const = np.full(50, 0.25, np.float32)
    draw = _draw({"w": w, "z": z, "c": const}, [_layer("w", w.shape), _layer("z", z.shape), _layer("c", (50,))],
                 1.0, keep_zeros=True)
    assert draw.arrays["z"] is z and draw.arrays["c"] is const  # the clean arrays themselves
    assert not np.array_equal(draw.arrays["w"], w)
    assert draw.zeros_kept == 50  # the all-zero tensor's zeros are kept (and counted) too


def test_clean_input_is_not_modified():
    w = np.random.default_rng(0).normal(size=50).astype(np.float32)
    var = np.linspace(0.001, 1.0, 50).astype(np.float32)
    before = {"w": w.copy(), "v": var.copy()}
    inits = {"w": w, "v": var}
    for array in inits.values():
        array.setflags(write=False)  # a write would raise
    layers = [_layer("w", w.shape), Layer(1, "bn", "BatchNormalization", ("v",), ("var",), ((50,),), 50, 0.0)]
    draw = _draw(inits, layers, 1, keep_zeros=True, bn_variance="abs")
    assert draw.bn_variance_changed > 0
    for name, array in inits.items():
        assert array.tobytes() == before[name].tobytes()


def test_bn_variance_policies_count_and_fix_negatives():
    var = np.linspace(0.001, 1.0, 1000).astype(np.float32)
    layer = [Layer(0, "bn", "BatchNormalization", ("v",), ("var",), (var.shape,), var.size, 0.0)]
    clamped = _draw({"v": var}, layer, 1, bn_variance="clamp")
    kept = _draw({"v": var}, layer, 1, bn_variance="keep")
    reflected = _draw({"v": var}, layer, 1, bn_variance="abs")
    raw = _hand(var, 1.0, 0, "v")
    assert kept.arrays["v"].tobytes() == raw.tobytes()  # keep: the draw itself, negatives included
    negatives = int((raw < 0).sum())
    assert negatives > 50
    assert clamped.bn_variance_changed == kept.bn_variance_changed == reflected.bn_variance_changed == negatives
    np.testing.assert_array_equal(clamped.arrays["v"], np.maximum(raw, 0))
    assert clamped.arrays["v"].min() == 0.0
    np.testing.assert_array_equal(reflected.arrays["v"], np.abs(raw))
    # The policy is for BatchNormalization variances only: the same tensor as a Conv weight is left as drawn.
    other = _draw({"v": var}, [_layer("v", var.shape)], 1, bn_variance="clamp")
    assert other.bn_variance_changed == 0 and other.arrays["v"].tobytes() == raw.tobytes()


def test_keep_zeros_counts_exact_zeros():
    w = np.random.default_rng(0).normal(size=1000).astype(np.float32)
    w[::3] = 0
    w[1] = -0.0  # negative zero is an exact zero too
    zeros = w == 0
    expected_zeros = int(zeros.sum())
    assert expected_zeros == 335
    b = np.random.default_rng(1).normal(size=30).astype(np.float32)
    b[:4] = 0
    layers = [_layer("w", w.shape), _layer("b", b.shape, roles=("bias",))]
    kept = _draw({"w": w, "b": b}, layers, 2, keep_zeros=True)
    out = kept.arrays["w"]
    assert np.all(out[zeros] == 0) and np.all(out[~zeros] != w[~zeros])
    assert kept.arrays["b"][:4].tolist() == [0.0] * 4
    assert kept.zeros_kept == expected_zeros + 4
    # Everything else is the plain draw, bit for bit.
    assert out[~zeros].tobytes() == _hand(w, 2.0, 0, "w")[~zeros].tobytes()
    loose = _draw({"w": w, "b": b}, layers, 2)
    assert loose.zeros_kept == 0
    assert loose.arrays["w"].tobytes() == _hand(w, 2.0, 0, "w").tobytes()
    assert int((loose.arrays["w"] == 0).sum()) == 0


def test_float16_weights_keep_dtype_and_count_overflow():
    w = np.array([60000.0, -60000.0, 1.0, 2.0] * 10, dtype=np.float16)
    res = _draw({"w": w}, [_layer("w", w.shape)], 0.5)
    noisy = res.arrays["w"]
    assert noisy.dtype == np.float16
    # Drawn in float32, cast back to float16: values beyond float16's range become inf and are counted.
    expected = _hand(w.astype(np.float32), 0.5, 0, "w")
    with np.errstate(over="ignore"):
        assert noisy.tobytes() == expected.astype(np.float16).tobytes()
    overflow = int((~np.isfinite(noisy)).sum())
    assert overflow == int((np.abs(expected) >= 65520).sum()) > 0  # float16 rounds to inf from 65520
    assert res.overflow_count == overflow


def test_missing_tensor_and_bad_seed_are_refused():
    w = np.ones(4, np.float32)
    with pytest.raises(NoiseConfigError) as info:
        _draw({"w": w}, [_layer("q", (4,))], 10)
    assert str(info.value) == "layer 'q' names tensor(s) q that are not initializers of the model"
    for seed in (-1, 1.5, True, None):
        with pytest.raises(NoiseConfigError) as info:
            _draw({"w": w}, [_layer("w", (4,))], 10, seed=seed)
        assert str(info.value) == f"`seed` must be a non-negative integer, got {seed!r}"


# ------------------------------------------------------------------ validation: one place, one-line messages

_RANGE = "SNR must be finite and > 0 (a linear ratio sigma_w / sigma_noise; the clean baseline is added for you), got "


@pytest.mark.parametrize(("snr", "message"), [
    (0, _RANGE + "0"),
    (-1, _RANGE + "-1"),
    (0.0, _RANGE + "0.0"),
    (float("inf"), _RANGE + "inf"),
    (float("nan"), "SNR must be a positive number, got nan"),
    ("5", "SNR must be a positive number, got '5'"),
    (True, "SNR must be a positive number, got True"),
    (None, "SNR must be a positive number, got None"),
])
def test_invalid_snr(snr, message):
    with pytest.raises(NoiseConfigError) as info:
        GAUSS.check_strength(snr)
    assert str(info.value) == message
    with pytest.raises(NoiseConfigError) as info:
        NoiseConfig(strengths=(100.0, snr))
    assert str(info.value) == message
    with pytest.raises(NoiseConfigError) as info:  # draw_noise validates with the same check
        _draw({"w": np.ones(3, np.float32)}, [_layer("w", (3,))], snr)
    assert str(info.value) == message


def test_valid_snr_values():
    assert GAUSS.check_strength(10) == 10.0 and isinstance(GAUSS.check_strength(10), float)
    assert GAUSS.check_strength(1e-3) == 1e-3
    # Stored without duplicates, least noise first (higher SNR first).
    assert NoiseConfig(strengths=(10, 100, 100.0, 5)).strengths == (100.0, 10.0, 5.0)
    assert NoiseConfig().strengths == GaussianSNR.default_strengths == (100.0, 50.0, 20.0, 10.0)


def test_parse_strengths():
    assert parse_strengths(snr="100,10,5") == (100.0, 10.0, 5.0)
    assert parse_strengths(snr=[100, 10]) == (100.0, 10.0)
    assert parse_strengths(noise_pct="1,2,5,10") == (100.0, 50.0, 20.0, 10.0)
    assert parse_strengths() is None
    assert NoiseConfig.from_options(noise_pct="10,1").strengths == (100.0, 10.0)
    cases = [
        (dict(snr="10,abc"), "`--snr` value 'abc' is not a number; give comma-separated numbers, e.g. 100,10,5"),
        (dict(snr="10,"), "`--snr` value '' is not a number; give comma-separated numbers, e.g. 100,10,5"),
        (dict(snr=[]), "`--snr` is empty; give at least one value"),
        (dict(noise_pct="1,x"), "`--noise-pct` value 'x' is not a number; give comma-separated numbers, e.g. 100,10,5"),
        (dict(noise_pct="1,0"), "`--noise-pct` values must be finite and > 0, got 1, 0"),
        (dict(noise_pct="-5"), "`--noise-pct` values must be finite and > 0, got -5"),
        (dict(noise_pct="inf"), "`--noise-pct` values must be finite and > 0, got inf"),
        (dict(snr="10", noise_pct="1"), "give only one of --snr, --noise-pct or --strength, got --snr, --noise-pct"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ConfigError) as info:
            parse_strengths(**kwargs)
        assert str(info.value) == message, kwargs
    # parse_strengths only parses; the range is checked once, by the model (via NoiseConfig).
    assert parse_strengths(snr="0") == (0.0,)
    with pytest.raises(NoiseConfigError) as info:
        NoiseConfig.from_options(snr="100,0")
    assert str(info.value) == _RANGE + "0.0"


def test_noise_config_rejects_bad_settings():
    cases = [
        (dict(strengths=()), NoiseConfigError, "no SNR values given for noise model 'gaussian-snr'"),
        (dict(model="no-such-model"), NoiseConfigError, "unknown noise model 'no-such-model'; choose from "),
        (dict(params={"eta": 0.1}), NoiseConfigError,
         "noise model 'gaussian-snr' has no parameter(s) eta; its parameters: scope"),
        (dict(bn_variance="zero"), NoiseConfigError, "`bn_variance` must be one of clamp, abs, keep, got 'zero'"),
        (dict(keep_zeros=1), NoiseConfigError, "`keep_zeros` must be true or false, got 1"),
        (dict(seeds=0), ConfigError, "seeds count must be >= 1, got 0 (a count N runs seeds 0..N-1; a count of 1 runs seed 0)"),
        (dict(seeds=(1, -2)), ConfigError, "seed -2 must be a non-negative integer"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error) as info:
            NoiseConfig(**kwargs)
        assert str(info.value).startswith(message), kwargs
    config = NoiseConfig(strengths=(20.0,), seeds=(4, 2, 4), bn_variance="abs", keep_zeros=True)
    assert config.seed_list == [4, 2]
    assert config.policies == NoisePolicies("abs", True)
    assert config.noise_model == GAUSS
    assert config.settings() == {"params": {}, "bn_variance": "abs", "keep_zeros": True}


def test_model_sees_the_whole_model_for_global_statistics():
    """A model may pool over every layer of the model (e.g. one SNR for all non-BN weights) via TensorInfo."""
    from dataclasses import dataclass
    from typing import ClassVar

    from onnxnoise.model import get_initializers, list_layers
    from onnxnoise.noise import NoiseModel

    @dataclass(frozen=True)
    class GlobalRms(NoiseModel):  # not registered: draw_noise takes an instance
        name: ClassVar[str] = "test-global-rms"

        def perturb(self, w, strength, rng, tensor):
            pooled = [tensor.model_values[n] for layer in tensor.model_layers if layer.op_type != "BatchNormalization"
                      for n in layer.tensors]
            rms = float(np.sqrt(np.mean(np.concatenate([p.ravel() for p in pooled]) ** 2)))
            return np.full_like(w, rms)

    model = tiny_cnn()
    layers, inits = list_layers(model), get_initializers(model)
    conv = [layer for layer in layers if layer.op_type == "Conv"]
    draw = draw_noise(GlobalRms(), 1.0, 0, conv, inits, model_layers=layers)
    weights = [inits[n].astype(np.float64).ravel() for layer in layers if layer.op_type != "BatchNormalization"
               for n in layer.tensors]
    expected = np.sqrt(np.mean(np.concatenate(weights) ** 2))
    assert set(draw.arrays) == set(conv[0].tensors)
    for array in draw.arrays.values():
        np.testing.assert_allclose(array, expected, rtol=1e-6)


def test_global_db_accepts_negative_snr():
    assert make_noise_model("gaussian-global-db").check_strength(-3) == -3.0


def test_global_db_one_sigma_from_model_power():
    rng = np.random.default_rng(6)
    conv, inits = conv_weight(rng, shape=(64, 32, 10, 10), scale=0.2)
    bn = make_layer("bn", ("bn.s", "bn.v"), ((64,), (64,)), ("scale", "var"), op_type="BatchNormalization", index=1)
    fc = make_layer("fc", ("fc.w",), ((10, 64),), ("weight",), op_type="Gemm", axes=(0,), index=2)
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
