"""noise.rng: one generator per tensor, and per chunk of a split tensor (values known from numpy's own streams, the
Box-Muller formula written out here)."""

from __future__ import annotations

import hashlib
import math
import types

import numpy as np
import pytest
from scipy import stats

import onnxnoise.noise.rng as rng_module
from onnxnoise.model import list_layers
from onnxnoise.noise import draw_noise, make_noise_model, split_layers, tensor_rng
from onnxnoise.noise.rng import (
    BOX_MULLER_BLOCK_PAIRS,
    SPLIT_CHUNK_ELEMENTS,
    SPLIT_MIN_ELEMENTS,
    SplitNormal,
    box_muller_fill,
    chunk_rng,
    is_split,
)
from tests._builders import conv_bn_resnet
from tests._noise_inputs import conv_weight


def _children(seed: int, name: str, n: int) -> list[np.random.Generator]:
    """The ``n`` generators numpy spawns from the tensor's own seed sequence (written out here, not read from rng)."""
    digest = hashlib.sha256(name.encode()).digest()
    entropy = [seed, *(int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4))]
    return [np.random.Generator(np.random.PCG64(s)) for s in np.random.SeedSequence(entropy).spawn(n)]


def _box_muller(generator: np.random.Generator, n: int, dtype: type) -> np.ndarray:
    """Box & Muller (1958) as box_muller_fill documents it, written out on whole blocks of 2 * 2^15 values: word j of a
    block's ceil(len / 2) raw words gives u (low 32 bits) and v (high 32 bits); cosines first, then sines."""
    t, parts = np.dtype(dtype).type, [np.empty(0, dtype)]
    for start in range(0, n, 2 << 15):
        m = min(2 << 15, n - start)
        k = (m + 1) // 2
        raw = generator.bit_generator.random_raw(k)
        u, v = (raw & 0xFFFFFFFF).astype(dtype), (raw >> 32).astype(dtype)
        r = np.sqrt(t(-2) * np.log((u + t(0.5)) * t(2.0**-32)))
        theta = v * t(2 * math.pi * 2.0**-32)
        parts += [r * np.cos(theta), (r * np.sin(theta))[: m - k]]
    return np.concatenate(parts)


def _raw_words(*pairs: tuple[int, int]) -> types.SimpleNamespace:
    """A stand-in generator whose bit generator's raw words are ``u | v << 32`` for the given ``(u, v)``."""
    words = np.array([u | v << 32 for u, v in pairs], dtype=np.uint64)
    return types.SimpleNamespace(bit_generator=types.SimpleNamespace(random_raw=lambda k: words[:k].copy()))


def test_the_split_sizes_are_the_documented_ones():
    assert (SPLIT_MIN_ELEMENTS, SPLIT_CHUNK_ELEMENTS, BOX_MULLER_BLOCK_PAIRS) == (16_777_216, 4_194_304, 32_768)
    assert is_split(25088 * 4096) and is_split(4096 * 4096)  # VGG16 classifier.0 and classifier.3
    assert not is_split(4096 * 4096 - 1) and not is_split(2048 * 1000)  # ResNet-50's fc


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 7, 2 * 32_768, 2 * 32_768 + 3, 200_001])
def test_box_muller_fill_is_the_formula_block_by_block(dtype, n):
    """Exactly the values of the formula computed here in the same dtype: odd lengths, one block, a 3-value block."""
    out = np.full(n, np.nan, dtype)
    box_muller_fill(np.random.Generator(np.random.PCG64(11)), out)
    assert np.array_equal(out, _box_muller(np.random.Generator(np.random.PCG64(11)), n, dtype))


def test_float32_box_muller_is_the_float64_formula_rounded():
    """float32 against float64 arithmetic on the same words: |difference| <= 5e-6 where r >= 0.05 (theta rounded to
    24 bits: 2^-24 * 2 pi * r <= 2.5e-6, and a few float32 ulps), <= 3e-4 everywhere (near u = 2^32, float32 rounds
    u + 0.5 to a multiple of 2^8: r = 0 where float64 has up to sqrt(2 * 128 * 2^-32) = 2.4e-4)."""
    z32, z64 = np.empty(100_000, np.float32), np.empty(100_000, np.float64)
    box_muller_fill(np.random.Generator(np.random.PCG64(2)), z32)
    box_muller_fill(np.random.Generator(np.random.PCG64(2)), z64)
    u = np.random.Generator(np.random.PCG64(2)).bit_generator.random_raw(50_000) & 0xFFFFFFFF  # a block + 17,232 pairs
    r = np.sqrt(-2 * np.log((u + 0.5) * 2.0**-32))
    far = np.concatenate([np.tile(r[i:i + 32_768], 2) for i in range(0, 50_000, 32_768)]) >= 0.05  # r of each value
    diff = np.abs(z32.astype(np.float64) - z64)
    assert diff[far].max() <= 5e-6 and diff.max() <= 3e-4 and far.mean() > 0.99


def test_box_muller_statistics_of_4m_values():
    """2^22 float32 values of one seed: mean within 5 sigma of 0, std within 1e-3 of 1, kurtosis within 0.01 of 3,
    |z| <= the tail bound sqrt(66 ln 2) = 6.7637, and Kolmogorov-Smirnov against N(0, 1) not rejected (p > 1e-3)."""
    z = np.empty(1 << 22, np.float32)
    box_muller_fill(np.random.Generator(np.random.PCG64(20261205)), z)
    x = z.astype(np.float64)
    assert abs(x.mean()) < 5 / math.sqrt(x.size)
    assert abs(x.std() - 1) < 1e-3 and abs(np.mean(x**4) / x.var() ** 2 - 3) < 0.01
    assert np.abs(x).max() <= 6.77 and np.isfinite(x).all()
    assert stats.kstest(x, "norm").pvalue > 1e-3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_box_muller_edge_words(dtype):
    """u = 2^32 - 1 and u = 0 (v = 2^30: theta = pi / 2; v = 0: theta = 0): float32 rounds u + 0.5 to 2^32, so r = 0
    (no NaN), float64 keeps r = sqrt(-2 ln(1 - 2^-33)) = 2^-16; u = 0 gives the largest r, sqrt(-2 ln 2^-33)."""
    z = np.empty(4, dtype)
    box_muller_fill(_raw_words((0, 0), (2**32 - 1, 2**30)), z)  # r0 cos 0, r1 cos(pi/2), r0 sin 0, r1 sin(pi/2)
    top, small = math.sqrt(66 * math.log(2)), (0.0 if dtype is np.float32 else 2.0**-16)
    assert np.isfinite(z).all()
    np.testing.assert_allclose(z, [top, 0.0, 0.0, small], rtol=1e-6, atol=1e-12)
    assert z[3] == 0.0 if dtype is np.float32 else z[3] > 0
    near = np.empty(2, dtype)  # u = 2^32 - 128 is a tie between float32 2^32 - 256 and 2^32: rounds to the even 2^32
    box_muller_fill(_raw_words((2**32 - 128, 0)), near)
    assert near[0] == 0.0 if dtype is np.float32 else near[0] == pytest.approx(math.sqrt(255 * 2.0**-32), rel=1e-6)


def test_box_muller_refuses_other_arrays():
    gen = np.random.Generator(np.random.PCG64(0))
    with pytest.raises(TypeError, match="float32 or float64, not int32"):
        box_muller_fill(gen, np.empty(4, np.int32))
    with pytest.raises(ValueError, match="1-D C-contiguous"):
        box_muller_fill(gen, np.empty(8, np.float32)[::2])
    with pytest.raises(ValueError, match="1-D C-contiguous"):
        box_muller_fill(gen, np.empty((2, 2), np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 3])
def test_a_split_draw_is_the_chunk_generators_box_muller_in_order(monkeypatch, threads, dtype):
    """Chunks of 70,001 values (each over a block boundary), 70,001 + 70,001 + 19,998: the chunk generators' values in
    order, whatever the thread count, and not numpy's standard_normal of them."""
    monkeypatch.setattr(rng_module, "SPLIT_CHUNK_ELEMENTS", 70_001)
    z = SplitNormal(7, "fc.w", threads).standard_normal((160, 1000), dtype=dtype)
    sizes = (70_001, 70_001, 19_998)
    expected = np.concatenate([_box_muller(g, n, dtype) for g, n in zip(_children(7, "fc.w", 3), sizes)])
    assert z.dtype == dtype and z.shape == (160, 1000) and np.array_equal(z.ravel(), expected)
    assert np.array_equal(SplitNormal(7, "fc.w", 4 - threads).standard_normal((160, 1000), dtype=dtype), z)
    part = np.empty(19_998, dtype)
    box_muller_fill(chunk_rng(7, "fc.w", 2), part)
    assert np.array_equal(part, expected[140_002:])
    assert not np.array_equal(z.ravel()[:1000], chunk_rng(7, "fc.w", 0).standard_normal(1000, dtype=dtype))
    assert not np.array_equal(z.ravel()[:1000], tensor_rng(7, "fc.w").standard_normal(1000, dtype=dtype))


def test_a_split_generator_refuses_a_second_call_and_other_methods():
    split = SplitNormal(0, "w")
    assert split.standard_normal(3).shape == (3,)
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
    z = np.concatenate([_box_muller(g, n, np.float32)
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
