"""metrics.count_correct: top-1/top-5, NaN rows, ties."""

from __future__ import annotations

import numpy as np

from onnxnoise.engine.metrics import Counts, count_correct, fixed_top5


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


def test_fixed_top5_when_five_outputs_or_fewer():
    assert fixed_top5(4) == ("top-5 cannot change: the model has 4 outputs, so every label is always among its 5 "
                             "highest scores (only non-finite scores miss); its top-5 numbers say nothing about the "
                             "noise, read top-1")
    assert fixed_top5(5) is not None and fixed_top5(6) is None and fixed_top5(None) is None
    scrambled = np.array([[9.0, 1.0, 2.0, 3.0, 4.0]] * 5, np.float32)  # label 0 wins; any other label is still top-5
    assert count_correct(scrambled, np.arange(5)) == Counts(5, 1, 5, 0)
