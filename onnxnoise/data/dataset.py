"""Datasets: format detection, labels, decoding once into memory, float32 batches.

Formats found by :func:`open_dataset` at a path:

=================  ==========================================================================
``cifar-python``   ``cifar-10-batches-py`` / ``cifar-100-python`` folder (test split)
``image-folder``   ``<class>/<image>`` sub-folders (ImageNet wnid folders -> 1000-class index)
``imagenet-val``   a flat folder of images plus a ground-truth file (see ``imagenet.py``)
``npz``            a ``.npz`` file with ``images`` and ``labels`` (see ``npz.py``)
=================  ==========================================================================

A folder holding none of these directly, but a sub-folder named ``images``, ``test``,
``val`` or ``validation`` (or a single sub-folder), is searched one level down (two at
most); so is a lone ``images/`` (etc.) sub-folder of images (a flat val folder whose
ground truth sits next to it). So ``imagenette-val500/`` (``images/<wnid>/``),
``cifar10-test-png/`` (``test/<class>/``) and ``imagenet-val1300/`` (``images/*.JPEG`` +
ground truth) can be passed as they are. ``Dataset.root`` stays the path given.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from onnxnoise.data.cifar import detect_cifar, load_cifar
from onnxnoise.data.folder import IMAGE_EXTENSIONS, is_image_file, load_image_folder
from onnxnoise.data.imagenet import load_imagenet_val
from onnxnoise.data.npz import load_npz
from onnxnoise.data.transforms import DataConfig, decode_image, normalize, transform_array
from onnxnoise.errors import DataError

__all__ = [
    "FORMATS",
    "Dataset",
    "LoadedImages",
    "SkippedImage",
    "open_dataset",
    "stratified_indices",
    "load_images",
    "iter_batches",
]

FORMATS = ("cifar-python", "image-folder", "imagenet-val", "npz")
_DESCEND_INTO = ("images", "test", "val", "validation")
_MAX_DEPTH = 2
_CHUNK = 32  # images per thread-pool task
_EXPECTED = (
    "expected a cifar batch folder (batches.meta + test_batch), `<class>/<image>` sub-folders, "
    "a folder of images with a ground-truth file, or a .npz file"
)
# PIL's errors for missing, corrupt, truncated, huge or non-image files.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled image dataset, in memory or as files.

    Attributes:
        name: Short name (the folder or file stem), for reports.
        root: The path the dataset was opened from.
        format: One of :data:`FORMATS`.
        labels: (N,) int64 class indices in the model's label space.
        num_classes: Size of the label space (10, 100, 1000, 1001...).
        class_names: ``num_classes`` names, index order.
        images: (N, H, W, C) uint8 RGB/gray NHWC for in-memory formats, else None.
        files: N image paths for file formats, else None.
        label_source: Where the labels come from (ground-truth path, ``folder names``,
            ``imagenet wnid folders``, the pickle or npz file).
    """

    name: str
    root: Path
    format: str
    labels: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]
    images: np.ndarray | None = None
    files: tuple[Path, ...] | None = None
    label_source: str = ""

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-friendly summary (no arrays, no fingerprint)."""
        return {
            "name": self.name,
            "root": str(self.root),
            "format": self.format,
            "images": len(self),
            "num_classes": self.num_classes,
            "label_source": self.label_source,
        }

    def fingerprint(self) -> str:
        """SHA-256 hex digest identifying the dataset's content and labels.

        Covers the format, ``num_classes``, the labels, and either the pixel bytes
        (in-memory formats) or each file's path relative to ``root``, size and
        modification time (ns) (file formats; the files are not read, so a copied
        dataset with new modification times gets a new fingerprint).
        """
        h = hashlib.sha256()
        h.update(f"onnxnoise-dataset-v1\0{self.format}\0{self.num_classes}\0".encode())
        h.update(np.ascontiguousarray(self.labels, dtype="<i8").tobytes())
        if self.images is not None:
            h.update(f"{self.images.shape}\0{self.images.dtype.str}\0".encode())
            h.update(np.ascontiguousarray(self.images).data)
        for path in self.files or ():
            st = os.stat(path)
            try:
                rel = path.relative_to(self.root).as_posix()
            except ValueError:
                rel = path.as_posix()
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()

    def subset(self, indices: np.ndarray) -> Dataset:
        """Returns the dataset restricted to ``indices`` ((K,) int, positions in this dataset)."""
        idx = np.asarray(indices, dtype=np.int64)
        return Dataset(
            name=self.name,
            root=self.root,
            format=self.format,
            labels=self.labels[idx],
            num_classes=self.num_classes,
            class_names=self.class_names,
            images=None if self.images is None else np.ascontiguousarray(self.images[idx]),
            files=None if self.files is None else tuple(self.files[i] for i in idx),
            label_source=self.label_source,
        )


def stratified_indices(labels: np.ndarray, limit: int) -> np.ndarray:
    """Deterministic class-stratified subset of ``limit`` positions.

    Round-robin over the classes in sorted label order: the first image (in dataset
    order) of every class, then the second of every class, and so on, until ``limit``
    are taken; the result is sorted by original position.

    Args:
        labels: (N,) int class indices.
        limit: Number of positions wanted; at least 1 (all N when larger than N).

    Returns:
        (min(limit, N),) int64 ascending positions.
    """
    n = int(labels.shape[0])
    if limit >= n:
        return np.arange(n, dtype=np.int64)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts  # position of each image within its class
    pick = np.lexsort((np.arange(n), labels, rank))[:limit]
    return np.sort(pick).astype(np.int64)


#: Folder names too generic to name a dataset on their own.
_GENERIC_FOLDER_NAMES = frozenset({"images", "test", "val", "valid", "validation", "train", "data"})


def _has_direct_images(folder: Path) -> bool:
    try:
        with os.scandir(folder) as it:
            return any(e.is_file() and is_image_file(e.name) and not e.name.startswith(".") for e in it)
    except OSError:
        return False


def _has_any_image(folder: Path) -> bool:
    for _, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if any(is_image_file(f) and not f.startswith(".") for f in filenames):
            return True
    return False


def _detect_folder(folder: Path, depth: int = 0) -> tuple[str, Path]:
    """Returns (format, folder holding the data) for a dataset folder."""
    if detect_cifar(folder):
        return "cifar-python", folder
    try:
        with os.scandir(folder) as it:
            entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as exc:
        raise DataError(f"cannot list dataset folder `{folder}`: {exc.strerror or exc}") from None
    if not entries:
        raise DataError(f"dataset folder `{folder}` is empty; {_EXPECTED}")
    files = [Path(e.path) for e in entries if e.is_file()]
    dirs = [Path(e.path) for e in entries if e.is_dir()]
    if any(is_image_file(f) for f in files):
        return "imagenet-val", folder
    with_images = [d for d in dirs if _has_direct_images(d)]
    if len(with_images) == 1 and with_images[0].name.lower() in _DESCEND_INTO and depth < _MAX_DEPTH:
        return _detect_folder(with_images[0], depth + 1)  # root/images/<image>: a flat val folder
    if with_images:
        return "image-folder", folder
    preferred = [d for d in dirs if d.name.lower() in _DESCEND_INTO]
    if not preferred and len(dirs) == 1:
        preferred = dirs
    if preferred and depth < _MAX_DEPTH:
        return _detect_folder(preferred[0], depth + 1)
    if dirs and any(_has_any_image(d) for d in dirs):
        return "image-folder", folder
    if dirs:
        raise DataError(
            f"dataset folder `{folder}` has no image files in its {len(dirs)} sub-folder(s) "
            f"(image extensions: {', '.join(IMAGE_EXTENSIONS)}); {_EXPECTED}"
        )
    raise DataError(
        f"cannot tell the dataset format of `{folder}`: its {len(files)} file(s) "
        f"(e.g. `{files[0].name}`) are neither images nor cifar batches; {_EXPECTED}"
    )


def open_dataset(
    path: str | os.PathLike[str],
    *,
    ground_truth: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    strict: bool = False,
) -> Dataset:
    """Opens the dataset at ``path``, detecting its format.

    Files are listed and labelled here; image files are decoded later by
    :func:`load_images`.

    Args:
        path: Dataset folder or ``.npz`` file (see module docstring for the formats).
        ground_truth: Ground-truth file for ``imagenet-val`` folders (searched for when
            None); an error for other formats.
        limit: Keep only this many images, chosen by :func:`stratified_indices`
            (deterministic, class-balanced round-robin, original order kept).
        strict: Fail on non-image files and empty class folders instead of ignoring them.

    Returns:
        The dataset.

    Raises:
        DataError: Missing path, empty folder, unknown layout, no images, bad labels,
            bad ``limit``, or a ``ground_truth`` that does not apply.
    """
    root = Path(path).expanduser()
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
        raise DataError(f"invalid `limit`={limit!r}: expected a positive number of images, or none for all")
    if not root.exists():
        raise DataError(f"dataset path `{root}` does not exist; pass an existing dataset folder or .npz file")
    gt = Path(ground_truth).expanduser() if ground_truth is not None else None
    if gt is not None and not gt.is_file():
        raise DataError(f"ground-truth file `{gt}` does not exist; pass an existing file to --ground-truth")

    if root.is_file():
        if root.suffix.lower() != ".npz":
            raise DataError(f"dataset file `{root}` is not a .npz file; {_EXPECTED}")
        fmt, where = "npz", root
    else:
        fmt, where = _detect_folder(root)
    if gt is not None and fmt != "imagenet-val":
        raise DataError(
            f"--ground-truth applies to flat imagenet val folders, but `{root}` is in the `{fmt}` format; "
            "drop --ground-truth"
        )

    name = root.stem if root.is_file() else root.resolve().name
    if name.lower() in _GENERIC_FOLDER_NAMES and not root.is_file():
        name = f"{root.resolve().parent.name}/{name}"  # e.g. imagenette-val500/images
    images = files = None
    if fmt == "cifar-python":
        data = load_cifar(where)
        labels, class_names, images = data.labels, data.class_names, data.images
        source = f"{where} ({data.variant} {data.split})"
    elif fmt == "npz":
        npz = load_npz(where)
        labels, class_names, images, source = npz.labels, npz.class_names, npz.images, str(where)
    elif fmt == "image-folder":
        folder = load_image_folder(where, strict=strict)
        labels, class_names, files = folder.labels, folder.class_names, folder.files
        source = "imagenet wnid folders" if folder.scheme == "imagenet-wnid" else "folder names"
    else:
        val = load_imagenet_val(where, ground_truth=gt, strict=strict)
        labels, class_names, files, source = val.labels, val.class_names, val.files, val.ground_truth
    ds = Dataset(name=name, root=root, format=fmt, labels=labels, num_classes=len(class_names),
                 class_names=class_names, images=images, files=files, label_source=source)
    if limit is not None and limit < len(ds):
        ds = ds.subset(stratified_indices(ds.labels, int(limit)))
    return ds


# ---------------------------------------------------------------------------
# decoding


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


def _default_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        cpus = os.cpu_count() or 1
    return max(1, min(32, cpus))


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
        dataset: From :func:`open_dataset`.
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
