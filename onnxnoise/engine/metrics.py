"""Classification metrics: top-k correct counts, non-finite logits, normalized accuracy.

Normalized accuracy and the model-level average follow Fagbohungbe & Qian,
"Benchmarking Inference Performance of Deep Learning Models on Analog Devices"
(arXiv 2011.11840): ``A_i = a_i / a_0`` (eq. 2) and ``A_avr = mean_i A_i`` (eq. 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Counts", "count_correct", "image_results", "fixed_top5"]


@dataclass(frozen=True)
class Counts:
    """Correct-prediction counts for one batch or one trial.

    Attributes:
        images: Number of images evaluated.
        top1_correct: Images whose label has the highest logit.
        top5_correct: Images whose label is among the five highest logits
            (among all of them when the model has fewer than five classes).
        nan_count: Images whose logits contain NaN or +-Inf; these count as wrong
            for both top-1 and top-5, never as predictions. A class tied with the
            true class counts as ranked above it.
    """

    images: int = 0
    top1_correct: int = 0
    top5_correct: int = 0
    nan_count: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.images + other.images,
            self.top1_correct + other.top1_correct,
            self.top5_correct + other.top5_correct,
            self.nan_count + other.nan_count,
        )


def count_correct(logits: np.ndarray, labels: np.ndarray) -> Counts:
    """Count top-1 / top-5 hits in one batch.

    Args:
        logits: ``(N, C)`` float scores (logits or probabilities), one row per image.
        labels: ``(N,)`` integer class indices in ``[0, C)``.

    Returns:
        The batch's :class:`Counts`. A row with any non-finite value is counted in
        ``nan_count`` and as wrong for both top-1 and top-5.

    Raises:
        ValueError: If ``logits`` is not 2-D or its length differs from ``labels``.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        msg = f"expected `logits` of shape (N, C) with N = {labels.shape[0]}, got {logits.shape}"
        raise ValueError(msg)
    _, top1, top5, finite = image_results(logits, labels)
    return Counts(
        images=int(labels.shape[0]),
        top1_correct=int(top1.sum()),
        top5_correct=int(top5.sum()),
        nan_count=int((~finite).sum()),
    )


def image_results(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-image top-1 class and hits: what :func:`count_correct` sums.

    Args:
        logits: ``(N, C)`` float scores; labels: ``(N,)`` class indices in ``[0, C)``
            (shapes checked by :func:`count_correct`).

    Returns:
        ``(top1_class, top1_hit, top5_hit, finite)``: ``(N,) int32`` predicted class,
        the unique highest score, or -1 when the row is non-finite or its highest score
        is tied (no prediction); ``(N,) bool`` top-1 hit (``top1_class == label``), top-5
        hit (fewer than five other classes score at least as high as the label; a tie
        ranks above it), and all scores finite. Non-finite rows are never hits.
    """
    finite = np.isfinite(logits).all(axis=1)
    rows = np.arange(labels.shape[0])
    label_score = logits[rows, labels]
    # Rank of the true class = number of other classes scoring at least as high, so a
    # tie (e.g. a collapsed model emitting constant logits) is never counted as a hit.
    rank = (logits >= label_score[:, None]).sum(axis=1) - 1
    best = logits.argmax(axis=1) if logits.shape[1] else np.zeros(len(rows), dtype=np.int64)
    unique = (logits >= logits[rows, best][:, None]).sum(axis=1) == 1
    top1_class = np.where(finite & unique, best, -1).astype(np.int32)
    top1 = finite & (rank < 1)
    top5 = finite & (rank < min(5, logits.shape[1]))
    return top1_class, top1, top5, finite


def fixed_top5(outputs: int | None) -> str | None:
    """Why top-5 cannot change on a model with ``outputs`` class scores, or None when it can.

    With five outputs or fewer every label is among the five highest scores whatever the
    noise does (:func:`image_results`), so only a non-finite score row can miss: top-5 is
    100% clean and noisy, and a gate on it passes any noise.

    Args:
        outputs: Class scores per image (``ModelIO.num_classes``), None when unknown.

    Returns:
        One line starting ``top-5 cannot change: ...``, or None (more than five outputs, or unknown).
    """
    if outputs is None or outputs > 5:
        return None
    return (f"top-5 cannot change: the model has {outputs} outputs, so every label is always among its 5 highest "
            "scores (only non-finite scores miss); its top-5 numbers say nothing about the noise, read top-1")
