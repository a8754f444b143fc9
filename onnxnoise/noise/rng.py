"""The per-tensor random generator: noise depends only on (seed, tensor name)."""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["tensor_rng"]


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
    digest = hashlib.sha256(tensor_name.encode("utf-8")).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *words])))
