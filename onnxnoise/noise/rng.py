"""The per-tensor random generator: noise depends only on (seed, tensor name), and for a big tensor on its chunk.

A tensor of :data:`SPLIT_MIN_ELEMENTS` or more, drawn by a model with ``split_draw``
(:class:`~onnxnoise.noise.base.NoiseModel`), is drawn in chunks of :data:`SPLIT_CHUNK_ELEMENTS`
(:class:`SplitNormal`), each from its own generator (:func:`chunk_rng`), in parallel threads, its
N(0, 1) values given by a blocked Box-Muller transform of the generator's raw 64-bit words
(:func:`box_muller_fill`, about 3x cheaper than numpy's ziggurat ``standard_normal``): one stream of
VGG16's ``classifier.0`` (102.8M values) was the floor of a noisy trial (docs/performance.md, "Big
models at the floor", "Split draws"). The chunk and block sizes are fixed, so the values do not depend
on the number of threads; they differ from the one-stream draw, so such trials have their own key
version (:func:`onnxnoise.engine.plan.key_version`, 4 since the Box-Muller transform).
"""

from __future__ import annotations

import hashlib
import math
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["tensor_rng", "chunk_rng", "SplitNormal", "SPLIT_MIN_ELEMENTS", "SPLIT_CHUNK_ELEMENTS", "is_split",
           "box_muller_fill", "BOX_MULLER_BLOCK_PAIRS"]

#: A tensor with this many elements or more is drawn in chunks by a ``split_draw`` model (2^24 = 16,777,216:
#: VGG16's ``classifier.0``, 102.8M, and ``classifier.3``, exactly 2^24; no tensor of the ResNets,
#: EfficientNet, ShuffleNet or SqueezeNet comes near).
SPLIT_MIN_ELEMENTS = 1 << 24

#: Elements per chunk of a split draw (2^22 = 4,194,304; 16 MiB of float32), in C order; the last chunk
#: holds the rest.
SPLIT_CHUNK_ELEMENTS = 1 << 22

#: Pairs per block of :func:`box_muller_fill` (2^15 = 32,768 pairs, 65,536 values: its scratch, 256 KiB of raw
#: words and two 128 KiB float32 buffers, stays in a core's L2 cache; fewer blocks than 2^14 hold the GIL less
#: often between numpy calls, so threads scale better: docs/performance.md, "Box-Muller chunks"). Part of the values'
#: definition: a block's cosines come before its sines, so another block size gives other values (and needs
#: another key version).
BOX_MULLER_BLOCK_PAIRS = 1 << 15

_LOW, _HIGH = (0, 1) if sys.byteorder == "little" else (1, 0)  # uint32 halves of a raw 64-bit word


def _entropy(seed: int, tensor_name: str) -> list[int]:
    digest = hashlib.sha256(tensor_name.encode("utf-8")).digest()
    return [seed, *(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))]


def tensor_rng(seed: int, tensor_name: str) -> np.random.Generator:
    """Return the generator that draws the noise of one tensor.

    The same seed gives the same draw for a tensor in every mode (all layers, one
    layer, cumulative), in every process and on every machine.

    Args:
        seed: The trial's seed (non-negative).
        tensor_name: The initializer's name.

    Returns:
        A PCG64 generator seeded from ``(seed, first 16 bytes of sha256(tensor_name))``.
    """
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(_entropy(seed, tensor_name))))


def chunk_rng(seed: int, tensor_name: str, chunk: int) -> np.random.Generator:
    """The generator of chunk ``chunk`` (0, 1, ...) of a split tensor's draw.

    Returns:
        A PCG64 generator seeded from the ``chunk``-th child of :func:`tensor_rng`'s seed sequence
        (``SeedSequence(entropy, spawn_key=(chunk,))``, what ``SeedSequence(entropy).spawn(n)[chunk]``
        gives): independent streams by numpy's construction, none equal to the tensor's own.
    """
    sequence = np.random.SeedSequence(_entropy(seed, tensor_name), spawn_key=(int(chunk),))
    return np.random.Generator(np.random.PCG64(sequence))


def box_muller_fill(generator: np.random.Generator, out: np.ndarray) -> None:
    """Fill ``out`` with N(0, 1) values by the Box-Muller transform of ``generator``'s raw 64-bit words.

    Box & Muller (1958), "A Note on the Generation of Random Normal Deviates", Ann. Math. Statist.
    29(2):610-611: for independent uniforms ``x`` in (0, 1] and ``y`` in [0, 1), ``r * cos(2 pi y)`` and
    ``r * sin(2 pi y)`` with ``r = sqrt(-2 ln x)`` are independent N(0, 1) values. Here, block by block of at
    most ``2 * BOX_MULLER_BLOCK_PAIRS`` values (``n`` of them), ``k = ceil(n / 2)`` words come from
    ``generator.bit_generator.random_raw(k)``; word ``j`` gives ``u`` (its low 32 bits) and ``v`` (its high 32
    bits), and, in ``out.dtype`` arithmetic::

        r[j] = sqrt(-2 * ln((u + 0.5) * 2**-32)),   theta[j] = (2 * pi * 2**-32) * v
        block[:k] = r * cos(theta),   block[k:] = (r * sin(theta))[: n - k]

    Resolution: ``u`` and ``v`` have 32 bits, rounded to the dtype on conversion (float32 keeps 24: ``u`` exact
    below 2^24, i.e. for every ``r`` above 3.33); ``theta`` is rounded to the dtype. Tail bound:
    ``x = (u + 0.5) * 2^-32 >= 2^-33``, so ``|z| <= sqrt(66 ln 2) = 6.764`` (P(|z| > 6.764) = 1.3e-11 for a true
    normal). ``u = 2^32 - 1`` (any ``u >= 2^32 - 128``) rounds to 2^32 in float32, so ``x = 1`` and ``r = 0``
    (never NaN). The values depend only on the generator's stream, ``len(out)``, the dtype and
    :data:`BOX_MULLER_BLOCK_PAIRS`; ``ln``, ``cos`` and ``sin`` are numpy's, whose
    SIMD kernels may differ in the last bit of a value between CPU families. A ``(1 << 22)``-value float32
    chunk costs about 2 ns per value against 7.4 for ``standard_normal``; float64 about 16 against 8 (numpy's
    float64 ``log``, ``cos`` and ``sin`` are slower; only float64-stored tensors draw in float64):
    docs/performance.md, "Box-Muller chunks (key version 4)".

    Args:
        generator: A numpy Generator (its ``bit_generator.random_raw`` is used, advancing it by ``k`` words
            per block).
        out: 1-D C-contiguous float32 or float64 array, any length (0 included), overwritten.

    Raises:
        TypeError: ``out`` is not float32 or float64.
        ValueError: ``out`` is not 1-D and C-contiguous.
    """
    dtype = out.dtype
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"box_muller_fill fills float32 or float64, not {dtype}")
    if out.ndim != 1 or not out.flags.c_contiguous:
        raise ValueError("box_muller_fill fills a 1-D C-contiguous array")
    half, scale = dtype.type(0.5), dtype.type(2.0**-32)
    minus_two, angle = dtype.type(-2.0), dtype.type(2.0 * math.pi * 2.0**-32)
    block_pairs = min(BOX_MULLER_BLOCK_PAIRS, (out.size + 1) // 2)
    radius, theta = np.empty(block_pairs, dtype), np.empty(block_pairs, dtype)  # reused by every block
    random_raw = generator.bit_generator.random_raw
    for start in range(0, out.size, 2 * BOX_MULLER_BLOCK_PAIRS):
        block = out[start : start + 2 * BOX_MULLER_BLOCK_PAIRS]
        k = (block.size + 1) // 2
        words = random_raw(k).view(np.uint32)
        r, t = radius[:k], theta[:k]
        np.add(words[_LOW::2], half, out=r, dtype=dtype, casting="unsafe")
        r *= scale
        np.log(r, out=r)
        r *= minus_two
        np.sqrt(r, out=r)
        np.multiply(words[_HIGH::2], angle, out=t, dtype=dtype, casting="unsafe")
        np.cos(t, out=block[:k])
        block[:k] *= r
        rest = block.size - k
        np.sin(t[:rest], out=t[:rest])
        np.multiply(t[:rest], r[:rest], out=block[k:])


def is_split(size: int) -> bool:
    """Whether a tensor of ``size`` elements is drawn in chunks by a ``split_draw`` model."""
    return size >= SPLIT_MIN_ELEMENTS


class SplitNormal:
    """Stands for a tensor's generator in a split draw: one :meth:`standard_normal` call, drawn in chunks.

    Chunk ``i`` holds elements ``[i * SPLIT_CHUNK_ELEMENTS, (i + 1) * SPLIT_CHUNK_ELEMENTS)`` of the
    C-order result: :func:`box_muller_fill` of :func:`chunk_rng` ``(seed, tensor_name, i)`` (the Box-Muller
    transform of the chunk generator's raw words, not its ``standard_normal``); chunks run in ``threads``
    threads (numpy releases the GIL in each step). Any other generator method is an AttributeError,
    and a second call a RuntimeError: a model declares ``split_draw`` only when its ``perturb`` draws
    ``z`` in one ``standard_normal(w.shape, dtype=...)`` call.
    """

    def __init__(self, seed: int, tensor_name: str, threads: int = 1) -> None:
        self.seed, self.tensor_name, self.threads = int(seed), tensor_name, max(1, int(threads))
        self._used = False

    def standard_normal(self, size: int | tuple[int, ...], dtype: type | np.dtype = np.float64) -> np.ndarray:
        """N(0, 1) values of shape ``size`` and dtype float32 or float64, chunk by chunk (see the class).

        Raises:
            RuntimeError: On a second call.
            TypeError: ``dtype`` is not float32 or float64 (:func:`box_muller_fill`).
        """
        if self._used:
            msg = f"a split draw of {self.tensor_name!r} takes one standard_normal call"
            raise RuntimeError(msg)
        self._used = True
        out = np.empty(size, dtype=dtype)
        flat = out.reshape(-1)
        chunks = math.ceil(flat.size / SPLIT_CHUNK_ELEMENTS)

        def fill(i: int) -> None:
            part = flat[i * SPLIT_CHUNK_ELEMENTS : (i + 1) * SPLIT_CHUNK_ELEMENTS]
            box_muller_fill(chunk_rng(self.seed, self.tensor_name, i), part)

        if self.threads > 1 and chunks > 1:
            with ThreadPoolExecutor(min(self.threads, chunks), thread_name_prefix="onnxnoise-chunk") as pool:
                list(pool.map(fill, range(chunks)))
        else:
            for i in range(chunks):
                fill(i)
        return out
