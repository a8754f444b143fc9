"""Adapters between a dataset's label space and a model's output space.

TensorFlow-slim ImageNet classifiers (and many models converted from them) have
1001 outputs: index 0 is a "background" class and ImageNet class ``k`` is output
``k + 1``. onnxnoise keeps the dataset's labels (``0 .. 999``) and evaluates such a
model with a *label offset* of 1: the true class of an image is output
``label + label_offset``, and the background output stays among the competitors for
top-1 / top-5, as in TF-slim's own evaluation.
"""

from __future__ import annotations

import numpy as np

from onnxnoise.data.label_space import BACKGROUND_CLASS_OUTPUTS
from onnxnoise.errors import DataError

__all__ = ["BACKGROUND_CLASS_OUTPUTS", "resolve_label_offset", "shift_labels"]


def resolve_label_offset(num_outputs: int | None, num_classes: int, label_offset: int | None = None) -> int:
    """Decide the offset between dataset labels and model output indices.

    Args:
        num_outputs: Size of the model's score output (``None`` if symbolic).
        num_classes: Number of classes of the dataset's label space (e.g. 1000).
        label_offset: Explicit offset (``--label-offset``); ``None`` detects it:
            1 for a 1001-output model on a 1000-class dataset (background class at
            index 0), else 0.

    Returns:
        The offset to add to every label (>= 0).

    Raises:
        DataError: If ``label_offset`` is negative, not an integer, or the shifted
            labels would not fit in the model's outputs.
    """
    if label_offset is None:
        return 1 if (num_outputs, num_classes) in BACKGROUND_CLASS_OUTPUTS else 0
    if isinstance(label_offset, bool) or not isinstance(label_offset, (int, np.integer)) or label_offset < 0:
        msg = f"`--label-offset` must be a non-negative integer, got {label_offset!r}"
        raise DataError(msg)
    if num_outputs is not None and num_classes + int(label_offset) > num_outputs:
        msg = (
            f"`--label-offset` {label_offset} puts the dataset's {num_classes} classes at outputs "
            f"{label_offset}..{num_classes + label_offset - 1}, beyond the model's {num_outputs} outputs"
        )
        raise DataError(msg)
    return int(label_offset)


def shift_labels(labels: np.ndarray, label_offset: int) -> np.ndarray:
    """Map dataset labels to model output indices: ``labels + label_offset``.

    Args:
        labels: ``(N,)`` integer class indices in the dataset's label space.
        label_offset: From :func:`resolve_label_offset`.

    Returns:
        ``(N,) int64`` output indices (a new array; ``labels`` is unchanged).
    """
    return np.asarray(labels, dtype=np.int64) + int(label_offset)
