"""The first N CIFAR-10 test images in ``test_batch`` order, for the parity scripts.

``../shared/data/cifar-10-batches-py/test_batch`` holds the 10,000 test images in the format of
Krizhevsky's python pickle, but NOT in the original order: this copy is grouped by class (1,000
airplanes first, file names ``aeroplane_s_000002.png``...), so "the first 1,000" are all of class 0.
"The first N" in reports/parity means the first N of that file: the same images for both tools,
one class only (say so beside every number measured on them). Needs only numpy, so it runs in the aihwkit environment as well as in
onnxnoise's. Preprocessing (:func:`normalize`) is the one the CIFAR-10 ONNX exports store in their
metadata (``scripts/export_models.py``, ``CIFAR_PREPROCESS``): RGB, ``(x / 255 - mean) / std`` with
ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), float32, NCHW.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

__all__ = ["DEFAULT_TEST_BATCH", "IMAGENET_MEAN", "IMAGENET_STD", "load_first", "normalize", "write_npz"]

DEFAULT_TEST_BATCH = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cifar-10-batches-py" / "test_batch"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def load_first(n: int, test_batch: Path = DEFAULT_TEST_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` test images ``(n, 32, 32, 3) uint8 RGB`` and labels ``(n,) int64``.

    Raises:
        FileNotFoundError: if ``test_batch`` is missing.
        ValueError: if ``n`` is not in 1..10,000.
    """
    if not 1 <= n <= 10_000:
        msg = f"the number of images must be in 1..10000, got {n}"
        raise ValueError(msg)
    with open(test_batch, "rb") as f:
        batch = pickle.load(f, encoding="bytes")  # a trusted local copy of the published file
    images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    return np.ascontiguousarray(images[:n]), labels[:n]


def normalize(images: np.ndarray) -> np.ndarray:
    """``(N, 32, 32, 3) uint8`` -> ``(N, 3, 32, 32) float32``: ``(x / 255 - mean) / std``, ImageNet mean/std."""
    x = images.astype(np.float32) / np.float32(255.0)
    x = (x - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def write_npz(n: int, path: Path, test_batch: Path = DEFAULT_TEST_BATCH) -> Path:
    """Write the first ``n`` test images as an onnxnoise ``.npz`` dataset (``images``, ``labels``)."""
    images, labels = load_first(n, test_batch)
    np.savez(path, images=images, labels=labels)
    return path
