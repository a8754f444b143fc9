"""Label spaces that differ from a model's output space by a background class.

TensorFlow-slim ImageNet classifiers have 1001 outputs: output 0 is "background" and
ImageNet class ``k`` is output ``k + 1``. Both the dataset registry (which registered
dataset fits a model, :func:`onnxnoise.data.registry.matches_outputs`) and the engine's
label offset (:func:`onnxnoise.engine.labels.resolve_label_offset`) read this table; it
lives here, below both.
"""

from __future__ import annotations

__all__ = ["BACKGROUND_CLASS_OUTPUTS"]

#: ``(model outputs, dataset classes)`` pairs where a label offset of 1 is detected.
BACKGROUND_CLASS_OUTPUTS: frozenset[tuple[int, int]] = frozenset({(1001, 1000)})
