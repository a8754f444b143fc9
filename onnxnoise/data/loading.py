"""Decoding a dataset once into memory, and yielding normalized float32 batches.

:func:`load_images` decodes every image of a :class:`~onnxnoise.data.Dataset` once
(files on a thread pool, in-memory pixels with numpy) into one uint8 NHWC array;
:func:`iter_batches` normalizes it batch by batch into the model's float32 input.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from onnxnoise.data.config import DataConfig
from onnxnoise.data.dataset import Dataset
from onnxnoise.data.decode import decode_image, normalize, transform_array
from onnxnoise.errors import DataError

__all__ = ["LoadedImages", "SkippedImage", "load_images", "iter_batches", "usable_cpus"]

_CHUNK = 32  # images per thread-pool task
# PIL's errors for missing, corrupt, truncated, huge or non-image files.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


@dataclass(frozen=True)
class SkippedImage:
    """An image file that could not be decoded.

    Attributes:
        index: Position in the dataset.
        path: The file.
        reason: PIL's error, one line.
    """

    index: int
    path: Path
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-friendly dict."""
        return {"index": self.index, "path": str(self.path), "reason": self.reason}


@dataclass(frozen=True, eq=False)
class LoadedImages:
    """Decoded, geometry-applied pixels of a dataset, ready for :func:`iter_batches`.

    Attributes:
        images: (N, H, W, C) uint8 NHWC, C = ``config.channels``, model channel order.
        labels: (N,) int64 labels of the kept images.
        indices: (N,) int64 positions of the kept images in the dataset.
        skipped: Files that could not be decoded (empty unless the dataset has files).
        seconds: Wall-clock decode time in seconds.
    """

    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    skipped: tuple[SkippedImage, ...] = field(default=())
    seconds: float = 0.0

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-friendly summary (no arrays)."""
        return {
            "images": len(self),
            "height": int(self.images.shape[1]),
            "width": int(self.images.shape[2]),
            "channels": int(self.images.shape[3]),
            "skipped": len(self.skipped),
            "seconds": self.seconds,
        }


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _size_error(root: Path, first: tuple[str, tuple[int, ...]], other: tuple[str, tuple[int, ...]]) -> DataError:
    (a, sa), (b, sb) = first, other
    return DataError(
        f"images in `{root}` have different sizes after preprocessing (`{a}` is {sa[1]}x{sa[0]}, "
        f"`{b}` is {sb[1]}x{sb[0]} WxH) so they cannot form one batch; pass --resize and --crop "
        "(or a preset that sets them, e.g. --preset torchvision)"
    )


def _run_chunks(
    count: int,
    work: Callable[[int, int], None],
    *,
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Runs ``work(start, stop)`` over ``range(count)`` in chunks on a thread pool."""
    bounds = [(s, min(s + _CHUNK, count)) for s in range(0, count, _CHUNK)]
    done = 0
    if workers <= 1 or len(bounds) <= 1:
        for start, stop in bounds:
            work(start, stop)
            done += stop - start
            if progress is not None:
                progress(done, count)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="onnxnoise-decode") as pool:
        futures = [pool.submit(work, start, stop) for start, stop in bounds]
        try:
            for fut, (start, stop) in zip(futures, bounds):
                fut.result()
                done += stop - start
                if progress is not None:
                    progress(done, count)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return os.cpu_count() or 1


def _default_workers() -> int:
    return min(32, usable_cpus())


def _load_in_memory(dataset: Dataset, config: DataConfig, workers: int, progress) -> np.ndarray:
    images = dataset.images
    if config.resize is None:
        out = transform_array(images, config)  # vectorized, no PIL
        if progress is not None:
            progress(len(images), len(images))
        return out
    first = transform_array(images[0], config)
    if config.crop is None:  # resize only: sizes may differ, collect then check
        results: list[np.ndarray | None] = [None] * len(images)

        def work(start: int, stop: int) -> None:
            for i in range(start, stop):
                results[i] = transform_array(images[i], config)

        _run_chunks(len(images), work, workers=workers, progress=progress)
        shapes = {r.shape for r in results}  # type: ignore[union-attr]
        if len(shapes) > 1:
            a = results[0].shape  # type: ignore[union-attr]
            j = next(i for i, r in enumerate(results) if r.shape != a)  # type: ignore[union-attr]
            other = results[j].shape  # type: ignore[union-attr]
            raise _size_error(dataset.root, ("image 0", a), (f"image {j}", other))
        return np.stack(results)  # type: ignore[arg-type]
    out = np.empty((len(images), *first.shape), dtype=np.uint8)

    def work_into(start: int, stop: int) -> None:
        for i in range(start, stop):
            out[i] = transform_array(images[i], config)

    _run_chunks(len(images), work_into, workers=workers, progress=progress)
    return out


def _load_files(
    dataset: Dataset, config: DataConfig, workers: int, strict: bool, progress
) -> tuple[np.ndarray, np.ndarray, list[SkippedImage]]:
    files = dataset.files
    n = len(files)
    size = config.output_size
    out = np.empty((n, *size, config.channels), dtype=np.uint8) if size is not None else None
    results: list[np.ndarray | None] = [None] * n if out is None else []
    ok = np.zeros(n, dtype=bool)
    errors: dict[int, str] = {}

    def work(start: int, stop: int) -> None:
        for i in range(start, stop):
            try:
                arr = decode_image(files[i], config)
            except _DECODE_ERRORS as exc:
                errors[i] = _error_text(exc)
                if strict:
                    raise DataError(
                        f"cannot decode image `{files[i]}` ({errors[i]}); replace or remove the file, "
                        "or drop --strict to skip unreadable images"
                    ) from None
                continue
            if out is not None:
                out[i] = arr
            else:
                results[i] = arr
            ok[i] = True

    _run_chunks(n, work, workers=workers, progress=progress)
    keep = np.flatnonzero(ok).astype(np.int64)
    skipped = [SkippedImage(index=i, path=files[i], reason=errors[i]) for i in sorted(errors)]
    if keep.size == 0:
        first = skipped[0]
        raise DataError(
            f"none of the {n} images in `{dataset.root}` could be decoded, e.g. `{first.path}` ({first.reason}); "
            "check that the files are images"
        )
    if out is not None:
        images = out if keep.size == n else out[keep]
    else:
        kept = [results[i] for i in keep]
        shape0 = kept[0].shape  # type: ignore[union-attr]
        for i, arr in zip(keep, kept):
            if arr.shape != shape0:  # type: ignore[union-attr]
                raise _size_error(
                    dataset.root,
                    (files[int(keep[0])].name, shape0),
                    (files[int(i)].name, arr.shape),  # type: ignore[union-attr]
                )
        images = np.stack(kept)  # type: ignore[arg-type]
    return images, keep, skipped


def load_images(
    dataset: Dataset,
    config: DataConfig,
    *,
    workers: int | None = None,
    strict: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> LoadedImages:
    """Decodes every image once and applies geometry and channel order.

    File datasets are decoded on a thread pool (PIL releases the GIL while decoding).
    Unreadable (corrupt, truncated, not-an-image) files are skipped and reported in
    ``skipped``; the caller should warn. In-memory datasets need no decoding: without
    ``resize`` they are converted with numpy only (grayscale/color, crop, BGR).

    Args:
        dataset: From :func:`onnxnoise.data.open_dataset`.
        config: Preprocessing settings (only geometry, ``channels``, ``channel_order``
            are used here; normalization happens in :func:`iter_batches`).
        workers: Decoding threads; default min(32, usable CPUs).
        strict: Raise on the first unreadable file instead of skipping it.
        progress: Called as ``progress(done, total)`` from the calling thread.

    Returns:
        Decoded pixels (N, H, W, C) uint8 NHWC with the labels and dataset positions
        of the kept images, skipped files and the decode time in seconds.

    Raises:
        DataError: ``strict`` and an unreadable file, no image decodable, or images of
            different sizes when the config sets no ``crop``.
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise DataError(f"invalid `workers`={workers!r}: expected a positive number of threads, or none for auto")
    threads = workers or _default_workers()
    t0 = time.perf_counter()
    skipped: list[SkippedImage] = []
    if dataset.images is not None:
        if len(dataset) == 0:
            raise DataError(f"dataset `{dataset.root}` has no images")
        images = _load_in_memory(dataset, config, threads, progress)
        keep = np.arange(len(dataset), dtype=np.int64)
    elif dataset.files is not None:
        if len(dataset) == 0:
            raise DataError(f"dataset `{dataset.root}` has no images")
        images, keep, skipped = _load_files(dataset, config, threads, strict, progress)
    else:
        raise DataError(f"dataset `{dataset.root}` has neither images nor files; open it with open_dataset")
    labels = dataset.labels if keep.size == len(dataset) else dataset.labels[keep]
    return LoadedImages(
        images=images,
        labels=np.asarray(labels, dtype=np.int64),
        indices=keep,
        skipped=tuple(skipped),
        seconds=time.perf_counter() - t0,
    )


def iter_batches(
    images: np.ndarray,
    labels: np.ndarray,
    config: DataConfig,
    batch_size: int = 64,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yields normalized float32 batches in dataset order.

    Args:
        images: (N, H, W, C) uint8 NHWC, e.g. ``LoadedImages.images``.
        labels: (N,) int labels.
        config: Preprocessing settings (scale, mean, std, layout).
        batch_size: Images per batch; the last batch may be smaller.

    Yields:
        (x, y): x float32 (B, C, H, W) or (B, H, W, C) per ``config.layout`` (a new
        array each time), y (B,) int64.

    Raises:
        DataError: ``batch_size`` < 1 or ``images`` / ``labels`` lengths differ.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise DataError(f"invalid `batch_size`={batch_size!r}: expected a positive number of images")
    if len(images) != len(labels):
        raise DataError(f"got {len(images)} images but {len(labels)} labels; pass matching arrays")
    labels = np.asarray(labels, dtype=np.int64)
    for start in range(0, len(images), int(batch_size)):
        stop = start + int(batch_size)
        yield normalize(images[start:stop], config), labels[start:stop]
