"""The colour classifier: a model and data whose clean top-1 is known exactly, built in a test.

:func:`colour_model` classifies an image by the brightness of its red channel: class ``k`` is the
nearest of :data:`CLASSES` levels ``(10 + 20 k) / 255`` (:func:`colour_level`) after the ``raw``
preprocessing (``x / 255``), so on solid-colour images of those levels (:func:`colour_images`) its
clean top-1 is 100% by construction, and any relabeling, unit mistake or shifted label shows as an
exact, known number. :func:`colour_folder` and :func:`colour_npz` write such images as a class-folder
tree or a labeled ``.npz``; the fixture ``colour_onnx`` (tests/conftest.py) saves the model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from PIL import Image

from tests._builders import image_classifier

#: Classes of the colour classifier (output width, and the labels of :func:`colour_npz`).
CLASSES = 12
#: Height and width of its input images.
SIZE = 8


def colour_level(k: int) -> int:
    """Red value (0-255) of class ``k``'s images: ``10 + 20 k``."""
    return 10 + 20 * k


def colour_model(*, metadata: dict | None = None) -> onnx.ModelProto:
    """GlobalAveragePool -> Flatten -> Gemm: logit_k = 2 t_k m - t_k^2, the nearest level t_k to the red mean m.

    Input ``[N, 3, 8, 8]`` float (NCHW), output ``logits [N, 12]``; ``metadata`` becomes the model's
    metadata properties (values JSON-encoded).
    """
    t = np.array([colour_level(k) / 255.0 for k in range(CLASSES)], dtype=np.float64)
    weight = np.zeros((CLASSES, 3), np.float32)
    weight[:, 0] = 2 * t
    inits = [numpy_helper.from_array(weight, "fc.weight"),
             numpy_helper.from_array((-(t ** 2)).astype(np.float32), "fc.bias")]
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
    ]
    return image_classifier(nodes, inits, "colour", size=SIZE, classes=CLASSES,
                            metadata={k: json.dumps(v) for k, v in (metadata or {}).items()})


def colour_images(k: int, n: int) -> np.ndarray:
    """``n`` solid images of class ``k`` (uint8 ``[n, 8, 8, 3]``): red at its level, green and blue varying."""
    out = np.zeros((n, SIZE, SIZE, 3), np.uint8)
    out[..., 0] = colour_level(k)
    out[..., 1] = (np.arange(n) * 37 % 256)[:, None, None]
    out[..., 2] = 255 - out[..., 1]
    return out


def colour_folder(root: Path, names: dict[str, int], per_class: int = 2) -> Path:
    """``root/<name>/<i>.png`` with images of the class each name stands for."""
    for name, k in names.items():
        (root / name).mkdir(parents=True)
        for i, image in enumerate(colour_images(k, per_class)):
            Image.fromarray(image).save(root / name / f"{i}.png")
    return root


def colour_npz(path: Path, *, shift: int = 0, per_class: int = 5) -> Path:
    """All 12 classes; labels shifted by ``shift`` (mod 12), so ``shift != 0`` makes top-1 exactly 0%."""
    images = np.concatenate([colour_images(k, per_class) for k in range(CLASSES)])
    labels = np.repeat(np.arange(CLASSES), per_class)
    np.savez(path, images=images, labels=(labels + shift) % CLASSES, num_classes=np.int64(CLASSES))
    return path
