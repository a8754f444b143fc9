"""A BatchNorm-folded colour classifier whose output channels have very different scales.

:func:`folded_colour_model` computes the colour classifier's logits (tests/_colour.py:
``logit_k = 2 t_k m - t_k^2``, ``m`` the red mean, ``t_k`` the level of class ``k``) through a 1x1
Conv ``fold`` whose output channel ``k`` is scaled by ``g_k`` (as BatchNorm folding scales a channel by
``gamma / sqrt(var + eps)``), undone by a ``Mul`` by ``1 / g_k`` and followed by an ``Add`` of
``-t_k^2``. With ``g_k = 1`` for even and ``g_k = GAIN`` (tiny) for odd classes, one sigma per tensor
(``scope=tensor``) gives the narrow channels noise millions of times their own scale, while one sigma
per output channel (``scope=channel``) gives each channel the nominal SNR: at SNR 10,000 the channel
scope keeps top-1 at 100% (the logit noise, under 1e-3, stays far below the 0.006 margin between
neighbouring levels) and the tensor scope loses most images. Noise only ``fold``
(``--layer-regex ^fold$``): the Mul and Add constants stand for the rest of a network.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from tests._builders import image_classifier
from tests._colour import CLASSES, SIZE, colour_level

#: The scale of the narrow (odd-class) channels.
GAIN = 1e-6


def gains() -> np.ndarray:
    """``g_k``: 1 for even classes, :data:`GAIN` for odd ones (float64, ``[12]``)."""
    return np.where(np.arange(CLASSES) % 2 == 0, 1.0, GAIN)


def fold_weight() -> np.ndarray:
    """The Conv weight ``[12, 3, 1, 1]`` float32: ``2 t_k g_k`` on red, 0 on green and blue."""
    t = np.array([colour_level(k) / 255.0 for k in range(CLASSES)])
    weight = np.zeros((CLASSES, 3, 1, 1), np.float32)
    weight[:, 0, 0, 0] = 2 * t * gains()
    return weight


def folded_colour_model() -> onnx.ModelProto:
    """GlobalAveragePool -> Conv ``fold`` (1x1, no bias) -> Mul ``1/g`` -> Add ``-t^2`` -> Flatten: ``logits [N, 12]``."""
    t = np.array([colour_level(k) / 255.0 for k in range(CLASSES)])
    inits = [numpy_helper.from_array(fold_weight(), "fold.weight"),
             numpy_helper.from_array((1.0 / gains()).reshape(1, CLASSES, 1, 1).astype(np.float32), "unfold.scale"),
             numpy_helper.from_array((-(t ** 2)).reshape(1, CLASSES, 1, 1).astype(np.float32), "unfold.bias")]
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["pool"], name="pool"),
             helper.make_node("Conv", ["pool", "fold.weight"], ["conv"], name="fold"),
             helper.make_node("Mul", ["conv", "unfold.scale"], ["scaled"], name="unfold"),
             helper.make_node("Add", ["scaled", "unfold.bias"], ["shifted"], name="shift"),
             helper.make_node("Flatten", ["shifted"], ["logits"], name="flatten", axis=1)]
    return image_classifier(nodes, inits, "folded-colour", size=SIZE, classes=CLASSES)
