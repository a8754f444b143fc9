"""Datasets stored as one ``.npz`` file (e.g. the shipped Fashion-MNIST demo subset).

Keys:

* ``images``: uint8, (N, H, W) grayscale or (N, H, W, C) with C = 1 (gray) or 3 (RGB);
* ``labels``: integer (N,) class indices;
* ``class_names`` (optional): str array, one per class; sets ``num_classes``;
* ``num_classes`` (optional): integer scalar, when there are no class names.

Without either, ``num_classes = max(labels) + 1``. The file is read with
``allow_pickle=False``: object arrays are refused.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import IO, ClassVar

import numpy as np

from onnxnoise.data.formats import FILE, DatasetContents, DatasetFormat, PathView, open_regular
from onnxnoise.errors import DataError
from onnxnoise.model.sizes import available_memory

__all__ = ["NpzFormat", "load_npz", "npz_image_shape"]


class NpzFormat(DatasetFormat):
    """The ``npz`` format: a ``.npz`` file with ``images`` and ``labels`` (see the module docstring)."""

    name: ClassVar[str] = "npz"
    looks_at: ClassVar[str] = FILE
    expected: ClassVar[str] = "a .npz file"

    def detect(self, view: PathView) -> bool:
        """True for a file named ``*.npz`` (any case); its contents are checked by :meth:`open`."""
        return view.path.suffix.lower() == ".npz"

    def open(self, where: Path, *, ground_truth: Path | None, strict: bool) -> DatasetContents:
        """Reads the file with :func:`load_npz` (``ground_truth`` and ``strict`` do not apply)."""
        return load_npz(where)


def _declared_bytes(member: IO[bytes]) -> tuple[tuple[int, ...], int] | None:
    """The shape an ``.npy`` member's header declares and the bytes it needs; None when the header
    cannot be read here (``np.load`` then says what is wrong)."""
    try:
        version = np.lib.format.read_magic(member)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(member)
    except (ValueError, OSError, EOFError, TypeError):
        return None
    if dtype.hasobject:
        return None  # refused by allow_pickle=False with its own message
    return shape, math.prod(shape) * dtype.itemsize


def npz_image_shape(path: str | Path) -> tuple[int, ...] | None:
    """The shape the ``images`` array of a dataset ``.npz`` declares, read from its header only (no pixels).

    Returns:
        ``(N, H, W)`` or ``(N, H, W, C)`` as stored, or None when the file or the array header cannot be read
        here (loading it reports why).
    """
    try:
        with zipfile.ZipFile(path) as archive, archive.open("images.npy") as member:
            declared = _declared_bytes(member)
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, NotImplementedError, RuntimeError):
        return None
    return None if declared is None else tuple(int(d) for d in declared[0])


def _check_sizes(path: Path, fh: IO[bytes], *, memory: int | None = None) -> None:
    """Refuse an array whose header declares more bytes than the archive member holds (a 50-byte member
    declaring 2.6 PiB made ``np.load`` raise MemoryError), or arrays that together need more than the
    available memory (a compressed member expands to its declared size), before anything is allocated.

    Args:
        path: The file, for messages.
        fh: The open file, at any position.
        memory: Bytes available (default: :func:`onnxnoise.model.sizes.available_memory`).

    Raises:
        DataError: One line naming the array, its declared shape and the bytes it holds or needs.
    """
    memory = available_memory() if memory is None else memory
    total = 0
    try:
        archive = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, OSError, EOFError):
        return  # np.load reports it
    with archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            try:
                with archive.open(info) as member:
                    declared = _declared_bytes(member)
                    header = member.tell()
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError):
                continue  # np.load reports it
            if declared is not None and declared[1] > info.file_size - header:
                raise DataError(
                    f"`{info.filename[:-4]}` in `{path}` declares shape {declared[0]} ({declared[1]:,} bytes) but the "
                    f"file holds {max(info.file_size - header, 0):,} bytes of it; the file is damaged or forged, "
                    "save it again with np.savez(path, images=..., labels=...)"
                )
            total += declared[1] if declared is not None else 0
            if memory is not None and total > memory:
                raise DataError(
                    f"`{info.filename[:-4]}` in `{path}` declares shape {declared[0]}: the arrays need "
                    f"{total / 2**30:,.1f} GiB, more than the {memory / 2**30:,.1f} GiB of memory available; "
                    "use a smaller subset of the dataset"
                )


def _read_arrays(path: Path, fh: IO[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``images``, ``labels``, ``class_names`` and ``num_classes`` (the last two None when absent) of an open file."""
    if not zipfile.is_zipfile(fh):
        raise DataError(
            f"cannot read dataset file `{path}` as .npz: it is not a zip archive; save it with "
            "np.savez(path, images=..., labels=...)"
        )
    fh.seek(0)
    _check_sizes(path, fh)
    fh.seek(0)
    try:
        with np.load(fh, allow_pickle=False) as npz:
            keys = set(npz.files)
            missing = [k for k in ("images", "labels") if k not in keys]
            if missing:
                raise DataError(
                    f"dataset file `{path}` has no `{missing[0]}` array (has: {', '.join(sorted(keys)) or 'nothing'}); "
                    "save it with np.savez(path, images=..., labels=...)"
                )
            images = npz["images"]
            labels = npz["labels"]
            names = npz["class_names"] if "class_names" in keys else None
            num_classes = npz["num_classes"] if "num_classes" in keys else None
    except DataError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):  # object arrays with allow_pickle=False
            raise DataError(
                f"dataset file `{path}` holds object (pickled) arrays, which are not loaded for safety; "
                "store `class_names` as a str array, e.g. np.array(names, dtype=str)"
            ) from None
        raise DataError(f"cannot read dataset file `{path}` as .npz: {exc}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"cannot read dataset file `{path}` as .npz: {exc}") from None
    return images, labels, names, num_classes


def load_npz(path: Path) -> DatasetContents:
    """Loads a dataset ``.npz`` file.

    Args:
        path: The ``.npz`` file.

    Returns:
        Images (N, H, W, C) uint8 NHWC (C = 1 or 3), labels (N,) int64, class names
        (``class_0`` ... when the file has none); the label source is the file's path.

    Raises:
        DataError: Unreadable file, missing key, wrong dtype/shape, non-utf-8 class
            names, a ``num_classes`` that is not an integer, labels out of range.
    """
    path = Path(path)
    try:
        fh = open_regular(path)
    except OSError as exc:
        raise DataError(f"cannot read dataset file `{path}`: {exc.strerror or exc}") from None
    with fh:
        images, labels, names, num_classes = _read_arrays(path, fh)
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3)):
        raise DataError(
            f"`images` in `{path}` is {images.dtype} {images.shape}; expected uint8 (N, H, W) or (N, H, W, C) "
            "with C = 1 or 3"
        )
    if images.ndim == 3:
        images = images[..., None]
    if labels.ndim != 1 or labels.shape[0] != images.shape[0] or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"`labels` in `{path}` is {labels.dtype} {labels.shape}; expected integers of shape ({images.shape[0]},)"
        )
    labels = labels.astype(np.int64)
    if names is not None:
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise DataError(f"`class_names` in `{path}` is {names.dtype} {names.shape}; expected a 1-d str array")
        try:
            class_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist())
        except UnicodeDecodeError as exc:
            raise DataError(
                f"`class_names` in `{path}` is not valid utf-8 ({exc.reason} at byte {exc.start}); "
                "store them as a unicode str array, e.g. np.array(names, dtype=str)"
            ) from None
    else:
        if num_classes is not None:
            try:
                count = int(num_classes)
            except (TypeError, ValueError, OverflowError):
                raise DataError(
                    f"`num_classes` in `{path}` is {num_classes.dtype} {num_classes.shape}; "
                    "expected an integer scalar, e.g. np.int64(10)"
                ) from None
        else:
            count = int(labels.max()) + 1 if labels.size else 0
        class_names = tuple(f"class_{i}" for i in range(count))
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
        bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
        raise DataError(
            f"`labels` in `{path}` contains {bad}, outside 0..{len(class_names) - 1} "
            f"({len(class_names)} classes); fix the labels or `class_names`"
        )
    return DatasetContents(labels=labels, class_names=class_names, label_source=str(path),
                           images=np.ascontiguousarray(images))
