"""metrics.count_correct: top-1/top-5, NaN rows, ties."""

from __future__ import annotations

import numpy as np

from onnxnoise.engine.metrics import Counts, count_correct


def test_counts_known_values():
    logits = np.array([
        [9, 1, 2, 3, 4, 5, 6],   # label 0: top-1
        [1, 9, 2, 3, 4, 5, 6],   # label 6: rank 1 -> top-5 only
        [0, 1, 2, 3, 4, 5, 6],   # label 0: rank 6 -> miss
        [np.nan, 1, 2, 3, 4, 5, 6],  # NaN row: miss, counted
        [3, 3, 3, 3, 3, 3, 3],   # all tied: never a hit
    ], dtype=np.float32)
    labels = np.array([0, 6, 0, 6, 2])
    assert count_correct(logits, labels) == Counts(images=5, top1_correct=1, top5_correct=2, nan_count=1)


def test_fewer_than_five_classes():
    logits = np.array([[0.1, 0.9], [0.9, 0.1]], dtype=np.float32)
    assert count_correct(logits, np.array([0, 0])) == Counts(2, 1, 2, 0)


def test_counts_add():
    assert Counts(1, 1, 1, 0) + Counts(2, 0, 1, 1) == Counts(3, 1, 2, 1)
