"""noise.rng: one generator per tensor, and per chunk of a split tensor (values known from numpy's own streams)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import onnxnoise.noise.rng as rng_module
from onnxnoise.model import list_layers
from onnxnoise.noise import draw_noise, make_noise_model, split_layers, tensor_rng
from onnxnoise.noise.rng import SPLIT_CHUNK_ELEMENTS, SPLIT_MIN_ELEMENTS, SplitNormal, chunk_rng, is_split
from tests._builders import conv_bn_resnet
from tests._noise_inputs import conv_weight


def _children(seed: int, name: str, n: int) -> list[np.random.Generator]:
    """The ``n`` generators numpy spawns from the tensor's own seed sequence (written out here, not read from rng)."""
    digest = hashlib.sha256(name.encode()).digest()
    entropy = [seed, *(int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4))]
    return [np.random.Generator(np.random.PCG64(s)) for s in np.random.SeedSequence(entropy).spawn(n)]


def test_the_split_sizes_are_the_documented_ones():
    assert (SPLIT_MIN_ELEMENTS, SPLIT_CHUNK_ELEMENTS) == (16_777_216, 4_194_304)
    assert is_split(25088 * 4096) and is_split(4096 * 4096)  # VGG16 classifier.0 and classifier.3
    assert not is_split(4096 * 4096 - 1) and not is_split(2048 * 1000)  # ResNet-50's fc


@pytest.mark.parametrize("threads", [1, 3])
def test_a_split_draw_is_the_chunk_generators_draws_in_order(monkeypatch, threads):
    monkeypatch.setattr(rng_module, "SPLIT_CHUNK_ELEMENTS", 1000)
    z = SplitNormal(7, "fc.w", threads).standard_normal((26, 100), dtype=np.float32)  # chunks 1000, 1000, 600
    a, b, c = _children(7, "fc.w", 3)
    expected = np.concatenate([a.standard_normal(1000, dtype=np.float32), b.standard_normal(1000, dtype=np.float32),
                               c.standard_normal(600, dtype=np.float32)]).reshape(26, 100)
    assert z.dtype == np.float32 and np.array_equal(z, expected)
    assert np.array_equal(chunk_rng(7, "fc.w", 2).standard_normal(600, dtype=np.float32), expected.ravel()[2000:])
    assert not np.array_equal(z.ravel()[:1000], tensor_rng(7, "fc.w").standard_normal(1000, dtype=np.float32))


def test_a_split_generator_refuses_a_second_call_and_other_methods():
    split = SplitNormal(0, "w")
    split.standard_normal(3)
    with pytest.raises(RuntimeError, match="one standard_normal call"):
        split.standard_normal(3)
    with pytest.raises(AttributeError):
        split.uniform(size=3)  # noqa: B018


def test_gaussian_snr_splits_a_big_tensor_and_keeps_a_small_one(monkeypatch):
    """The conv weight (51,200 values) is split at a 50,000 threshold, its bias (64) keeps today's single stream."""
    monkeypatch.setattr(rng_module, "SPLIT_MIN_ELEMENTS", 50_000)
    monkeypatch.setattr(rng_module, "SPLIT_CHUNK_ELEMENTS", 20_000)
    layer, inits = conv_weight(np.random.default_rng(5), shape=(64, 32, 5, 5))  # weight 51,200 values; bias 64
    w, bias = inits["conv.w"], inits["conv.b"]
    model = make_noise_model("gaussian-snr")
    assert split_layers(model, [layer], inits) == {"conv"}
    assert split_layers(make_noise_model("pcm"), [layer], inits) == frozenset()  # no split_draw: one stream each
    got = draw_noise(model, 10.0, 3, [layer], inits, model_layers=[layer]).arrays
    z = np.concatenate([g.standard_normal(n, dtype=np.float32)
                        for g, n in zip(_children(3, "conv.w", 3), (20_000, 20_000, 11_200))]).reshape(w.shape)
    np.testing.assert_allclose(got["conv.w"], w + z * np.float32(np.std(w.astype(np.float64)) / 10.0), rtol=0,
                               atol=1e-6)
    small = tensor_rng(3, "conv.b").standard_normal(bias.shape, dtype=np.float32)
    np.testing.assert_allclose(got["conv.b"], bias + small * np.float32(np.std(bias.astype(np.float64)) / 10.0),
                               rtol=0, atol=1e-6)


def test_no_tensor_of_a_small_model_is_split():
    proto = conv_bn_resnet(num_classes=10)
    inits = {i.name: np.zeros(tuple(i.dims)) for i in proto.graph.initializer}
    assert split_layers(make_noise_model("gaussian-snr"), list_layers(proto), inits) == frozenset()
