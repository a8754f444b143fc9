"""The per-tensor random generator: noise depends only on (seed, tensor name), and for a big tensor on its chunk.

A tensor of :data:`SPLIT_MIN_ELEMENTS` or more, drawn by a model with ``split_draw``
(:class:`~onnxnoise.noise.base.NoiseModel`), is drawn in chunks of :data:`SPLIT_CHUNK_ELEMENTS`
(:class:`SplitNormal`), each from its own generator (:func:`chunk_rng`), in parallel threads: one
stream of VGG16's ``classifier.0`` (102.8M values) was the floor of a noisy trial on a many-core
machine (docs/performance.md, "Big models at the floor"). The chunk size is fixed, so the values do
not depend on the number of threads; they differ from the one-stream draw, so such trials have their
own key version (:func:`onnxnoise.engine.plan.key_version`).
"""

from __future__ import annotations

import hashlib
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["tensor_rng", "chunk_rng", "SplitNormal", "SPLIT_MIN_ELEMENTS", "SPLIT_CHUNK_ELEMENTS", "is_split"]

#: A tensor with this many elements or more is drawn in chunks by a ``split_draw`` model (2^24 = 16,777,216:
#: VGG16's ``classifier.0``, 102.8M, and ``classifier.3``, exactly 2^24; no tensor of the ResNets,
#: EfficientNet, ShuffleNet or SqueezeNet comes near).
SPLIT_MIN_ELEMENTS = 1 << 24

#: Elements per chunk of a split draw (2^22 = 4,194,304; 16 MiB of float32), in C order; the last chunk
#: holds the rest.
SPLIT_CHUNK_ELEMENTS = 1 << 22


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


def is_split(size: int) -> bool:
    """Whether a tensor of ``size`` elements is drawn in chunks by a ``split_draw`` model."""
    return size >= SPLIT_MIN_ELEMENTS


class SplitNormal:
    """Stands for a tensor's generator in a split draw: one :meth:`standard_normal` call, drawn in chunks.

    Chunk ``i`` holds elements ``[i * SPLIT_CHUNK_ELEMENTS, (i + 1) * SPLIT_CHUNK_ELEMENTS)`` of the
    C-order result, drawn by :func:`chunk_rng` ``(seed, tensor_name, i)``; chunks run in ``threads``
    threads (numpy releases the GIL while it draws). Any other generator method is an AttributeError,
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
            chunk_rng(self.seed, self.tensor_name, i).standard_normal(dtype=out.dtype, out=part)

        if self.threads > 1 and chunks > 1:
            with ThreadPoolExecutor(min(self.threads, chunks), thread_name_prefix="onnxnoise-chunk") as pool:
                list(pool.map(fill, range(chunks)))
        else:
            for i in range(chunks):
                fill(i)
        return out
