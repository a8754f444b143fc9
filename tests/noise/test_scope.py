"""noise/scope.py: the sigma scope of gaussian-snr (tensor, layer, channel), channel axes and zero channels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from onnxnoise.errors import NoiseConfigError
from onnxnoise.noise import draw_noise, make_noise_model, tensor_rng

from tests._noise_inputs import KS_P, conv_weight, make_layer


def test_scope_tensor_is_bit_identical_to_before():
    """Default and explicit ``scope="tensor"``: ``w + z * float32(std(w)/SNR)``, the tensor's generator, as before."""
    default, explicit = make_noise_model("gaussian-snr"), make_noise_model("gaussian-snr", {"scope": "tensor"})
    assert default == explicit and explicit.params() == {} and explicit.to_dict() == {"name": "gaussian-snr",
                                                                                       "params": {}}
    assert make_noise_model("gaussian-snr", {"scope": "layer"}).params() == {"scope": "layer"}
    layer, inits = conv_weight(np.random.default_rng(1), shape=(8, 3, 3, 3))
    for snr, seed in [(100.0, 0), (3.0, 17)]:
        draw = draw_noise(explicit, snr, seed, [layer], inits)
        for name, w in inits.items():
            z = tensor_rng(seed, name).standard_normal(w.shape, dtype=np.float32)
            expected = w + z * np.float32(float(np.std(w, dtype=np.float64)) / snr)
            assert draw.arrays[name].dtype == np.float32
            np.testing.assert_array_equal(draw.arrays[name], expected)


def test_scope_layer_pools_weight_and_bias():
    rng = np.random.default_rng(2)
    layer, inits = conv_weight(rng, shape=(200, 100, 3, 3), scale=0.1)
    inits["conv.b"] = rng.normal(0.0, 1.0, size=(200_000,)).astype(np.float32)  # a large bias: its own std 10x
    layer = make_layer("conv", ("conv.w", "conv.b"), ((200, 100, 3, 3), (200_000,)), ("weight", "bias"), axes=(0, None))
    pooled = float(np.std(np.concatenate([inits["conv.w"].ravel(), inits["conv.b"].ravel()]).astype(np.float64)))
    snr = 10.0
    by_layer = draw_noise(make_noise_model("gaussian-snr", {"scope": "layer"}), snr, 5, [layer], inits)
    by_tensor = draw_noise(make_noise_model("gaussian-snr"), snr, 5, [layer], inits)
    for name, w in inits.items():
        noise = by_layer.arrays[name].astype(np.float64) - w
        assert float(np.std(noise)) == pytest.approx(pooled / snr, rel=0.01)
        assert stats.kstest(noise.ravel() / (pooled / snr), "norm").pvalue > KS_P
        # common random numbers: the same z, scaled by the pooled instead of the tensor's own std
        own = by_tensor.arrays[name].astype(np.float64) - w
        ratio = pooled / float(np.std(w, dtype=np.float64))
        np.testing.assert_allclose(noise, own * ratio, rtol=1e-3, atol=1e-6 * pooled)


def test_scope_channel_gives_each_output_channel_its_own_sigma():
    rng = np.random.default_rng(3)
    scales = np.geomspace(0.01, 1.0, 64)
    w = (rng.normal(0.0, 1.0, size=(64, 32, 10, 10)) * scales[:, None, None, None]).astype(np.float32)  # 204800
    b = rng.normal(0.0, 1.0, size=(64,)).astype(np.float32)
    layer = make_layer("conv", ("conv.w", "conv.b"), (w.shape, b.shape), ("weight", "bias"), axes=(0, None))
    snr = 20.0
    model = make_noise_model("gaussian-snr", {"scope": "channel"})
    draw = draw_noise(model, snr, 9, [layer], {"conv.w": w, "conv.b": b}, model_layers=[layer])
    noise = draw.arrays["conv.w"].astype(np.float64) - w
    sigma_c = np.std(w.astype(np.float64), axis=(1, 2, 3))
    measured = np.std(noise, axis=(1, 2, 3))
    np.testing.assert_allclose(measured, sigma_c / snr, rtol=0.06)  # 3200 elements a channel: 1.25% se
    standardized = noise / (sigma_c / snr)[:, None, None, None]
    assert stats.kstest(standardized.ravel(), "norm").pvalue > KS_P
    # a 1-D bias has no channel axis: tensor scope
    bias_noise = draw.arrays["conv.b"].astype(np.float64) - b
    z = tensor_rng(9, "conv.b").standard_normal(b.shape, dtype=np.float32)
    np.testing.assert_allclose(bias_noise, z * float(np.std(b, dtype=np.float64)) / snr, rtol=1e-5, atol=1e-7)


def test_scope_channel_follows_gemm_trans_b():
    """Gemm with ``transB=0`` keeps ``B`` as ``[K, N]``: the output channel is axis 1 (columns)."""
    rng = np.random.default_rng(4)
    scales = np.geomspace(0.05, 5.0, 40)
    w = (rng.normal(0.0, 1.0, size=(5000, 40)) * scales[None, :]).astype(np.float32)
    layer = make_layer("fc", ("fc.w",), (w.shape,), ("weight",), op_type="Gemm", axes=(1,))
    model = make_noise_model("gaussian-snr", {"scope": "channel"})
    noise = draw_noise(model, 4.0, 0, [layer], {"fc.w": w}, model_layers=[layer]).arrays["fc.w"] - w
    np.testing.assert_allclose(np.std(noise, axis=0), np.std(w.astype(np.float64), axis=0) / 4.0, rtol=0.08)
    # without the layer's axes a Gemm's channel axis cannot be known: one clear error
    bare = make_layer("fc", ("fc.w",), (w.shape,), ("weight",), op_type="Gemm")
    with pytest.raises(NoiseConfigError, match="channel scope needs the output-channel axis of 'fc.w' \\(Gemm\\)"):
        draw_noise(model, 4.0, 0, [bare], {"fc.w": w})


def test_scope_channel_zero_channel_gets_no_noise():
    w = np.ones((4, 10), dtype=np.float32)
    w[1] = np.arange(10)
    layer = make_layer("conv", ("w",), (w.shape,), ("weight",), axes=(0,))
    out = draw_noise(make_noise_model("gaussian-snr", {"scope": "channel"}), 10.0, 0, [layer], {"w": w}).arrays["w"]
    np.testing.assert_array_equal(out[[0, 2, 3]], w[[0, 2, 3]])
    assert not np.array_equal(out[1], w[1])
