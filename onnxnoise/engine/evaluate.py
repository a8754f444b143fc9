"""Evaluate a session on decoded images: batching, padding for fixed-batch models, counts.

Images are decoded once (``uint8``) and normalized per batch; when the normalized
set is small enough (``cache_limit_bytes``) the float batches are kept and reused
by every trial, so a trial's time is spent in ONNX Runtime. Larger sets are
normalized on a worker thread ahead of inference. On the CUDA execution provider
the batches are uploaded once and bound with ``IOBinding``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from onnxnoise.config import MAX_BATCH_SIZE
from onnxnoise.engine.labels import shift_labels
from onnxnoise.data import DataConfig, normalize
from onnxnoise.errors import DataError
from onnxnoise.engine.metrics import Counts, image_results
from onnxnoise.engine.runtime import Session
from onnxnoise.lazy import lazy_module

ort = lazy_module("onnxruntime")

__all__ = ["EvalSet", "Outcomes", "paired_counts", "evaluate"]


def _empty(dtype) -> np.ndarray:
    return np.empty(0, dtype=dtype)


@dataclass(frozen=True, eq=False)
class Outcomes(Counts):
    """:class:`~onnxnoise.engine.metrics.Counts` plus what each image got, in dataset order.

    Equality compares the counts only (as :class:`Counts`). Memory: 6 bytes per image.

    Attributes:
        top1_class: ``(N,) int32`` predicted class (the model's output index), -1 where
            the scores are non-finite or their maximum is tied (no prediction).
        top1_hit: ``(N,) bool`` top-1 correct (label offset applied).
        top5_hit: ``(N,) bool`` top-5 correct.
    """

    top1_class: np.ndarray = field(default_factory=lambda: _empty(np.int32))
    top1_hit: np.ndarray = field(default_factory=lambda: _empty(bool))
    top5_hit: np.ndarray = field(default_factory=lambda: _empty(bool))

    def counts(self) -> Counts:
        """The plain counts."""
        return Counts(self.images, self.top1_correct, self.top5_correct, self.nan_count)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Counts):
            return NotImplemented
        return self.counts() == (other.counts() if isinstance(other, Outcomes) else other)

    def __hash__(self) -> int:
        return hash(self.counts())


def paired_counts(clean: Outcomes, noisy: Outcomes) -> dict[str, int]:
    """Per-image comparison of a noisy trial with the clean model on the same images.

    The discordant pairs of McNemar's test (McNemar, Psychometrika 12, 1947):
    ``lost`` = clean correct and noisy wrong (``b``), ``gained`` = clean wrong and
    noisy correct (``c``); ``correct_noisy - correct_clean = gained - lost``.

    Args:
        clean: Outcomes of the clean model (the baseline trial).
        noisy: Outcomes of the noisy trial, same images in the same order.

    Returns:
        ``{"flips": images whose top-1 class differs from the clean one (a non-finite or
        tied row has class -1, so becoming one is a flip), "lost_top1", "gained_top1",
        "lost_top5", "gained_top5"}``, Python ints: the trial row's columns of role
        :data:`onnxnoise.store.schema.PAIRED` (source ``paired``) read them by name.

    Raises:
        ValueError: If the two cover different numbers of images.
    """
    if len(clean.top1_class) != len(noisy.top1_class) or len(clean.top1_class) != clean.images:
        msg = (f"paired counts need per-image outcomes of the same images: clean has {len(clean.top1_class)}, "
               f"noisy {len(noisy.top1_class)}")
        raise ValueError(msg)
    out = {"flips": int(np.count_nonzero(clean.top1_class != noisy.top1_class))}
    for top in ("top1", "top5"):
        was, now = getattr(clean, f"{top}_hit"), getattr(noisy, f"{top}_hit")
        out[f"lost_{top}"] = int(np.count_nonzero(was & ~now))
        out[f"gained_{top}"] = int(np.count_nonzero(~was & now))
    return out


@dataclass
class EvalSet:
    """Decoded images and labels, batched for one model.

    Args:
        images: ``(N, H, W, C) uint8`` decoded images (channel order already applied).
        labels: ``(N,) int64`` class indices in the model's output space.
        config: Preprocessing used by :func:`onnxnoise.data.normalize`.
        batch_size: Images per ``session.run`` call.
        fixed_batch: The model's fixed batch dimension, or ``None`` when dynamic; a
            short last batch is then zero-padded and the padding's outputs dropped.
        input_dtype: dtype the model's input expects; ``uint8`` skips normalization.
        cache_limit_bytes: Keep normalized batches in memory up to this size.
        device_limit_bytes: On the CUDA execution provider, keep the input batches on
            the GPU (uploaded once, reused by every trial) up to this size; larger
            sets are bound from host memory batch by batch.
        label_offset: Output index of label 0 (1 for models with a background class
            at output 0, see :func:`onnxnoise.engine.labels.resolve_label_offset`).

    Raises:
        DataError: Images and labels differ in number or are none, a bad ``label_offset`` or
            ``batch_size``, or a ``fixed_batch`` above :data:`onnxnoise.config.MAX_BATCH_SIZE`.
    """

    images: np.ndarray
    labels: np.ndarray
    config: DataConfig
    batch_size: int = 128
    fixed_batch: int | None = None
    input_dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float32))
    cache_limit_bytes: int = 2 << 30
    label_offset: int = 0
    device_limit_bytes: int = 16 << 30
    _cache: list[tuple[np.ndarray, np.ndarray]] | None = field(default=None, init=False, repr=False)
    _device: list | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels):
            msg = f"{len(self.images)} images but {len(self.labels)} labels"
            raise DataError(msg)
        if len(self.images) == 0:
            msg = "no images to evaluate (the dataset is empty after decoding and `--limit`)"
            raise DataError(msg)
        if self.fixed_batch is not None:
            if self.fixed_batch > MAX_BATCH_SIZE:
                msg = (f"the model's input has a fixed batch of {self.fixed_batch} images, more than the "
                       f"{MAX_BATCH_SIZE} allowed; export it with a dynamic (or smaller) batch dimension")
                raise DataError(msg)
            self.batch_size = self.fixed_batch
        if isinstance(self.label_offset, bool) or not isinstance(self.label_offset, int) or self.label_offset < 0:
            msg = f"`label_offset` must be a non-negative integer, got {self.label_offset!r}"
            raise DataError(msg)
        if self.batch_size <= 0:
            msg = f"`--batch-size` must be > 0, got {self.batch_size}"
            raise DataError(msg)
        per_image = int(np.prod(self.images.shape[1:])) * np.dtype(self._dtype).itemsize
        if per_image * len(self.images) <= self.cache_limit_bytes:
            self._cache = list(self._make_batches())

    @property
    def _dtype(self) -> np.dtype:
        return np.dtype(np.uint8) if self.input_dtype == np.uint8 else np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.labels)

    def _make_batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(self.labels), self.batch_size):
            raw = self.images[start : start + self.batch_size]
            labels = self.labels[start : start + self.batch_size]
            if self._dtype == np.uint8:
                x = np.ascontiguousarray(raw if self.config.layout == "NHWC" else raw.transpose(0, 3, 1, 2))
            else:
                x = normalize(raw, self.config)
            if self.input_dtype not in (np.uint8, np.float32):
                x = x.astype(self.input_dtype)
            if self.fixed_batch is not None and len(labels) < self.fixed_batch:
                pad = np.zeros((self.fixed_batch - len(labels), *x.shape[1:]), dtype=x.dtype)
                x = np.concatenate([x, pad])
            yield x, labels

    def device_batches(self, device_id: int = 0) -> Iterator[tuple[ort.OrtValue, np.ndarray]]:
        """Yield ``(input OrtValue on cuda:device_id, labels)``, uploading each batch once.

        Used with :meth:`onnxnoise.engine.runtime.Session.run_bound`; while the whole set fits
        in ``device_limit_bytes`` the uploaded batches are kept for later trials.
        """
        if self._device is not None:
            yield from self._device
            return
        keep = self.nbytes <= self.device_limit_bytes
        uploaded = []
        for x, labels in self.batches():
            value = ort.OrtValue.ortvalue_from_numpy(x, "cuda", device_id)
            if keep:
                uploaded.append((value, labels))
            yield value, labels
        if keep:
            self._device = uploaded

    @property
    def nbytes(self) -> int:
        """Size of the whole normalized input set in bytes."""
        return int(np.prod(self.images.shape[1:])) * np.dtype(self._dtype).itemsize * len(self.images)

    def count(self, scores: np.ndarray, labels: np.ndarray) -> Outcomes:
        """Top-1 / top-5 / NaN counts of one batch: the one place labels meet scores.

        Args:
            scores: ``(n_padded, C)`` model scores (logits or probabilities); rows
                beyond ``len(labels)`` (fixed-batch padding) are dropped.
            labels: ``(n,)`` dataset labels; ``label_offset`` is added here.

        Returns:
            The batch's :class:`Outcomes` (counts as
            :func:`~onnxnoise.engine.metrics.count_correct`, plus each image's top-1 class
            and hits); non-finite rows count as wrong.

        Raises:
            DataError: If a shifted label is beyond the model's outputs, or the scores have
                fewer rows than the batch has images (the output's first axis is not the batch).
        """
        if scores.ndim == 0 or scores.shape[0] < len(labels):
            msg = (f"the score output gave {scores.shape[0] if scores.ndim else 0} score row(s) for a batch of "
                   f"{len(labels)} images: its first axis is not the batch (e.g. [1, N, C] or [C, N]); choose an "
                   "output shaped [N, C] with --score-output NAME, or export the model with the batch first")
            raise DataError(msg)
        scores = scores.reshape(scores.shape[0], -1)[: len(labels)]
        targets = shift_labels(labels, self.label_offset) if self.label_offset else labels
        if len(targets) and int(targets.max()) >= scores.shape[1]:
            msg = (
                f"label {int(targets.max())} (label offset {self.label_offset}) is beyond the model's "
                f"{scores.shape[1]} outputs; if the model has another float output of class scores, choose it "
                "with --score-output NAME"
            )
            raise DataError(msg)
        if scores.ndim != 2 or scores.shape[0] != len(targets):
            msg = f"expected scores of shape (N, C) with N = {len(targets)}, got {scores.shape}"
            raise ValueError(msg)
        top1_class, top1, top5, finite = image_results(scores, targets)
        return Outcomes(images=len(targets), top1_correct=int(top1.sum()), top5_correct=int(top5.sum()),
                        nan_count=int((~finite).sum()), top1_class=top1_class, top1_hit=top1, top5_hit=top5)

    def count_all(self, pairs: Iterable[tuple[np.ndarray, np.ndarray]], *,
                  on_batch: Callable[[int], None] | None = None) -> Outcomes:
        """Sum :meth:`count` over ``(scores, labels)`` batches, calling ``on_batch(n)`` after each.

        Returns:
            The summed :class:`Outcomes`, per-image arrays concatenated in batch order.

        Raises:
            DataError: If the batches cover every image but not in dataset order (the
                per-image outcomes could then not be paired with another trial's).
        """
        parts: list[Outcomes] = []
        seen: list[np.ndarray] = []
        for scores, labels in pairs:
            parts.append(self.count(scores, labels))
            seen.append(labels)
            if on_batch is not None:
                on_batch(len(labels))
        return self.merge(parts, seen)

    def merge(self, parts: Sequence[Outcomes], seen: Sequence[np.ndarray]) -> Outcomes:
        """One :class:`Outcomes` from per-batch ones (:meth:`count`), in batch order.

        Args:
            parts: Each batch's outcomes.
            seen: Each batch's ``(n,)`` labels, as passed to :meth:`count`.

        Raises:
            DataError: If the batches cover every image but not in dataset order (the
                per-image outcomes could then not be paired with another trial's).
        """
        total = sum((part.counts() for part in parts), Counts())
        arrays = {name: np.concatenate([getattr(p, name) for p in parts]) if parts else _empty(dtype)
                  for name, dtype in (("top1_class", np.int32), ("top1_hit", bool), ("top5_hit", bool))}
        if total.images == len(self.labels) and not np.array_equal(np.concatenate(seen), self.labels):
            msg = "scores came in another order than the dataset's images; per-image outcomes cannot be paired"
            raise DataError(msg)
        return Outcomes(total.images, total.top1_correct, total.top5_correct, total.nan_count, **arrays)

    def batch_labels(self) -> Iterator[np.ndarray]:
        """Yield each batch's ``(n,)`` labels, dataset order (the labels :meth:`batches` yields, without inputs)."""
        for start in range(0, len(self.labels), self.batch_size):
            yield self.labels[start : start + self.batch_size]

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(input batch, labels)``; the input may hold padding rows beyond ``len(labels)``."""
        if self._cache is not None:
            yield from self._cache
        else:
            # Too big to keep: normalize the next batches on a worker thread while
            # ONNX Runtime runs the current one (numpy releases the GIL).
            yield from _prefetch(self._make_batches(), depth=2)


def _prefetch(iterator: Iterator, depth: int) -> Iterator:
    """Yield from ``iterator`` while a worker thread computes up to ``depth`` items ahead."""
    done = object()
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = deque(pool.submit(next, iterator, done) for _ in range(depth))
        while pending:
            item = pending.popleft().result()
            if item is done:
                break
            pending.append(pool.submit(next, iterator, done))
            yield item


def evaluate(
    session: Session,
    data: EvalSet,
    *,
    on_batch: Callable[[int], None] | None = None,
) -> Outcomes:
    """Run ``session`` over every batch of ``data`` and count top-1 / top-5 hits.

    Args:
        session: A clean or perturbed session.
        data: The evaluation set.
        on_batch: Called with the number of images after each batch (progress bars).

    Returns:
        Summed :class:`Outcomes` (see :meth:`EvalSet.count`), per image in dataset order.

    Raises:
        DataError: If a label (plus ``data.label_offset``) is beyond the model's outputs.
    """
    if session.on_cuda:
        # Inputs uploaded once and bound on the device; weights are already there.
        pairs = ((session.run_bound(x), labels) for x, labels in data.device_batches())
    else:
        pairs = ((session.run(x), labels) for x, labels in data.batches())
    return data.count_all(pairs, on_batch=on_batch)
