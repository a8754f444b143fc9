"""Datasets: a labelled image dataset, opening one at a path, and class-stratified subsets.

:func:`open_dataset` asks :func:`onnxnoise.data.detect.detect_format` which registered format
(:data:`onnxnoise.data.detect.DATASET_FORMATS`: ``npz``, ``cifar-python``, ``imagenet-val``,
``image-folder``) the path is in, opens it with that format's ``open`` and wraps the result
in a :class:`Dataset`. ``Dataset.root`` stays the path given, even when the data sits in a
wrapper sub-folder (``imagenette-val500/`` for ``imagenette-val500/images/<wnid>/``).

Image files are decoded later, by :func:`onnxnoise.data.load_images`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnxnoise.data.detect import detect_format
from onnxnoise.data.formats import special_file
from onnxnoise.errors import DataError

__all__ = ["Dataset", "open_dataset", "stratified_indices"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled image dataset, in memory or as files.

    Attributes:
        name: Short name (the folder or file stem), for reports.
        root: The path the dataset was opened from.
        format: The name of its format, a key of :data:`onnxnoise.data.detect.DATASET_FORMATS`.
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
        dataset with new modification times gets a new fingerprint); a file that cannot be
        looked at (a symbolic-link loop) counts by its path and error number.
        """
        h = hashlib.sha256()
        h.update(f"onnxnoise-dataset-v1\0{self.format}\0{self.num_classes}\0".encode())
        h.update(np.ascontiguousarray(self.labels, dtype="<i8").tobytes())
        if self.images is not None:
            h.update(f"{self.images.shape}\0{self.images.dtype.str}\0".encode())
            h.update(np.ascontiguousarray(self.images).data)
        for path in self.files or ():
            try:
                rel = path.relative_to(self.root).as_posix()
            except ValueError:
                rel = path.as_posix()
            try:
                st = os.stat(path)
            except OSError as exc:  # a symbolic-link loop, a dangling link: skipped when decoded
                h.update(f"{rel}\0unreadable {exc.errno}\n".encode())
                continue
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


def open_dataset(
    path: str | os.PathLike[str],
    *,
    ground_truth: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    strict: bool = False,
) -> Dataset:
    """Opens the dataset at ``path``, detecting its format.

    Files are listed and labelled here; image files are decoded later by
    :func:`onnxnoise.data.load_images`.

    Args:
        path: Dataset folder or ``.npz`` file (the formats and the folder search:
            :mod:`onnxnoise.data.detect`).
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
    if (kind := special_file(root)) is not None:
        raise DataError(f"dataset path `{root}` is not a regular file but {kind}; pass a dataset folder or .npz file")
    gt = Path(ground_truth).expanduser() if ground_truth is not None else None
    if gt is not None and (kind := special_file(gt)) is not None:
        raise DataError(f"ground-truth file `{gt}` is not a regular file but {kind}; pass a regular file to "
                        "--ground-truth")
    if gt is not None and not gt.is_file():
        raise DataError(f"ground-truth file `{gt}` does not exist; pass an existing file to --ground-truth")

    fmt, where = detect_format(root)
    if gt is not None and not fmt.takes_ground_truth:
        raise DataError(
            f"--ground-truth applies to flat imagenet val folders, but `{root}` is in the `{fmt.name}` format; "
            "drop --ground-truth"
        )

    name = root.stem if root.is_file() else root.resolve().name
    if name.lower() in _GENERIC_FOLDER_NAMES and not root.is_file():
        name = f"{root.resolve().parent.name}/{name}"  # e.g. imagenette-val500/images
    found = fmt.open(where, ground_truth=gt, strict=strict)
    ds = Dataset(name=name, root=root, format=fmt.name, labels=found.labels, num_classes=len(found.class_names),
                 class_names=found.class_names, images=found.images, files=found.files,
                 label_source=found.label_source)
    if limit is not None and limit < len(ds):
        ds = ds.subset(stratified_indices(ds.labels, int(limit)))
    return ds
