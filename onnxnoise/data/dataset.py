"""Datasets: format detection, labels, and class-stratified subsets.

Formats found by :func:`open_dataset` at a path:

=================  ==========================================================================
``cifar-python``   ``cifar-10-batches-py`` / ``cifar-100-python`` folder (test split)
``image-folder``   ``<class>/<image>`` sub-folders (ImageNet wnid folders -> 1000-class index,
                   whole-number folders -> that number)
``imagenet-val``   a flat folder of images plus a ground-truth file (see ``imagenet.py``)
``npz``            a ``.npz`` file with ``images`` and ``labels`` (see ``npz.py``)
=================  ==========================================================================

A folder holding none of these directly, but a sub-folder named ``images``, ``test``,
``val`` or ``validation`` (or a single sub-folder), is searched one level down (two at
most); so is a lone ``images/`` (etc.) sub-folder of images (a flat val folder whose
ground truth sits next to it). So ``imagenette-val500/`` (``images/<wnid>/``),
``cifar10-test-png/`` (``test/<class>/``) and ``imagenet-val1300/`` (``images/*.JPEG`` +
ground truth) can be passed as they are. ``Dataset.root`` stays the path given.

Image files are decoded later, by :func:`onnxnoise.data.load_images`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnxnoise.data.cifar import detect_cifar, load_cifar
from onnxnoise.data.folder import IMAGE_EXTENSIONS, is_image_file, load_image_folder
from onnxnoise.data.imagenet import load_imagenet_val
from onnxnoise.data.npz import load_npz
from onnxnoise.errors import DataError

__all__ = ["FORMATS", "Dataset", "open_dataset", "stratified_indices"]

FORMATS = ("cifar-python", "image-folder", "imagenet-val", "npz")
_DESCEND_INTO = ("images", "test", "val", "validation")
_MAX_DEPTH = 2
_EXPECTED = (
    "expected a cifar batch folder (batches.meta + test_batch), `<class>/<image>` sub-folders, "
    "a folder of images with a ground-truth file, or a .npz file"
)


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
    if not files:  # only broken links, sockets or other special entries
        raise DataError(
            f"cannot tell the dataset format of `{folder}`: it holds no regular files or folders "
            f"(`{entries[0].name}` is a broken link or a special file); {_EXPECTED}"
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
    :func:`onnxnoise.data.load_images`.

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
        source = {"imagenet-wnid": "imagenet wnid folders",
                  "class-numbers": "class-number folders (folder `7` = class 7)"}.get(folder.scheme, "folder names")
    else:
        val = load_imagenet_val(where, ground_truth=gt, strict=strict)
        labels, class_names, files, source = val.labels, val.class_names, val.files, val.ground_truth
    ds = Dataset(name=name, root=root, format=fmt, labels=labels, num_classes=len(class_names),
                 class_names=class_names, images=images, files=files, label_source=source)
    if limit is not None and limit < len(ds):
        ds = ds.subset(stratified_indices(ds.labels, int(limit)))
    return ds
