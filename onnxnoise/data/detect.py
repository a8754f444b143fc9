"""The registry of dataset formats, and detection: which format a path is in, and where its data is.

Formats, in detection order (:data:`DATASET_FORMATS`):

=================  ==========================================================================
``npz``            a ``.npz`` file with ``images`` and ``labels`` (see ``npz.py``)
``cifar-python``   ``cifar-10-batches-py`` / ``cifar-100-python`` folder (test split)
``imagenet-val``   a flat folder of images plus a ground-truth file (see ``imagenet.py``)
``image-folder``   ``<class>/<image>`` sub-folders (ImageNet wnid folders -> 1000-class index,
                   whole-number folders -> that number)
=================  ==========================================================================

A file is asked of the ``FILE`` formats. A folder is asked of the ``FOLDER`` formats (its
own files: cifar batches, then images), then of the ``SUB_FOLDERS`` formats (sub-folders
holding images directly). A folder holding none of these directly, but a sub-folder named
``images``, ``test``, ``val`` or ``validation`` (or a single sub-folder), is searched one
level down (two at most); so is a lone ``images/`` (etc.) sub-folder of images, before the
``SUB_FOLDERS`` formats (a flat val folder whose ground truth sits next to it). Last, each
format's ``detect_nested`` is asked (class folders whose images sit further down). So
``imagenette-val500/`` (``images/<wnid>/``), ``cifar10-test-png/`` (``test/<class>/``) and
``imagenet-val1300/`` (``images/*.JPEG`` + ground truth) can be passed as they are.

Adding a format: one :class:`~onnxnoise.data.formats.DatasetFormat` subclass, and one
instance in :data:`BUILTIN_FORMATS` (its place there is its place in detection within its
``looks_at`` pass), or :func:`register_format` at run time.
"""

from __future__ import annotations

from pathlib import Path

from onnxnoise.data.cifar import CifarFormat
from onnxnoise.data.folder import ImageFolderFormat
from onnxnoise.data.formats import FILE, FOLDER, IMAGE_EXTENSIONS, SUB_FOLDERS, DatasetFormat, PathView
from onnxnoise.data.imagenet import ImagenetValFormat
from onnxnoise.data.npz import NpzFormat
from onnxnoise.errors import DataError

__all__ = [
    "BUILTIN_FORMATS",
    "DATASET_FORMATS",
    "detect_format",
    "expected_formats",
    "get_format",
    "register_format",
]

#: The formats onnxnoise ships, in detection order.
BUILTIN_FORMATS: tuple[DatasetFormat, ...] = (NpzFormat(), CifarFormat(), ImagenetValFormat(), ImageFolderFormat())
#: Every registered format by name, in detection order (within each ``looks_at`` pass).
DATASET_FORMATS: dict[str, DatasetFormat] = {}

_DESCEND_INTO = ("images", "test", "val", "validation")
_MAX_DEPTH = 2
_PASSES = (FILE, FOLDER, SUB_FOLDERS)


def register_format(fmt: DatasetFormat) -> DatasetFormat:
    """Adds ``fmt`` to :data:`DATASET_FORMATS`, after the formats registered before it.

    Returns:
        ``fmt``.

    Raises:
        ValueError: ``fmt`` has no name or ``expected`` phrase, a name already registered,
            or a ``looks_at`` other than ``FILE``, ``FOLDER`` or ``SUB_FOLDERS``.
    """
    if not fmt.name or not fmt.expected:
        raise ValueError(f"dataset format {type(fmt).__name__} needs a `name` and an `expected` phrase")
    if fmt.name in DATASET_FORMATS:
        raise ValueError(f"dataset format `{fmt.name}` is already registered")
    if fmt.looks_at not in _PASSES:
        raise ValueError(f"dataset format `{fmt.name}` looks at {fmt.looks_at!r}; expected one of {_PASSES}")
    DATASET_FORMATS[fmt.name] = fmt
    return fmt


for _fmt in BUILTIN_FORMATS:
    register_format(_fmt)


def get_format(name: str) -> DatasetFormat:
    """The registered format called ``name``.

    Raises:
        DataError: No format has that name (the message lists the registered names).
    """
    try:
        return DATASET_FORMATS[name]
    except KeyError:
        raise DataError(f"unknown dataset format `{name}`; known: {', '.join(DATASET_FORMATS)}") from None


def _asked(looks_at: str) -> list[DatasetFormat]:
    return [f for f in DATASET_FORMATS.values() if f.looks_at == looks_at]


def expected_formats() -> str:
    """``expected <every format's phrase>`` in name order, the tail of every detection error."""
    phrases = [f.expected for _, f in sorted(DATASET_FORMATS.items())]
    listed = phrases[0] if len(phrases) == 1 else f"{', '.join(phrases[:-1])}, or {phrases[-1]}"
    return f"expected {listed}"


def detect_format(root: Path) -> tuple[DatasetFormat, Path]:
    """Finds the format of the dataset at ``root`` (an existing path) and where its data is.

    Args:
        root: A dataset file or folder (see the module docstring for the search).

    Returns:
        (format, path holding the data): ``root`` itself, or a wrapper sub-folder at most
        two levels down.

    Raises:
        DataError: No format claims the file; the folder (or one searched) cannot be
            listed or is empty; its sub-folders hold no images; its files are neither
            images nor cifar batches.
    """
    expected = expected_formats()
    if root.is_file():
        view = PathView(root, 0, expected)
        for fmt in _asked(FILE):
            if fmt.detect(view):
                return fmt, root
        kinds = " or ".join(f.expected for f in _asked(FILE))
        raise DataError(f"dataset file `{root}` is not {kinds}; {expected}")
    return _detect_folder(PathView(root, 0, expected))


def _detect_folder(view: PathView) -> tuple[DatasetFormat, Path]:
    """Detection in one folder, descending into wrapper folders (see the module docstring)."""
    for fmt in _asked(FOLDER):
        if fmt.detect(view):
            return fmt, view.path
    entries = view.entries  # an unlistable or empty folder fails here, before its sub-folders
    can_descend = view.depth < _MAX_DEPTH
    holders = view.dirs_with_images
    if len(holders) == 1 and holders[0].name.lower() in _DESCEND_INTO and can_descend:
        return _detect_folder(PathView(holders[0], view.depth + 1, view.expected))  # root/images/<image>
    for fmt in _asked(SUB_FOLDERS):
        if fmt.detect(view):
            return fmt, view.path
    dirs, files = view.dirs, view.files
    preferred = [d for d in dirs if d.name.lower() in _DESCEND_INTO]
    if not preferred and len(dirs) == 1:
        preferred = dirs
    if preferred and can_descend:
        return _detect_folder(PathView(preferred[0], view.depth + 1, view.expected))
    for fmt in DATASET_FORMATS.values():
        if fmt.detect_nested(view):
            return fmt, view.path
    expected = view.expected
    if dirs:
        raise DataError(
            f"dataset folder `{view.path}` has no image files in its {len(dirs)} sub-folder(s) "
            f"(image extensions: {', '.join(IMAGE_EXTENSIONS)}); {expected}"
        )
    if not files:  # only broken links, sockets or other special entries
        raise DataError(
            f"cannot tell the dataset format of `{view.path}`: it holds no regular files or folders "
            f"(`{entries[0].name}` is a broken link or a special file); {expected}"
        )
    raise DataError(
        f"cannot tell the dataset format of `{view.path}`: its {len(files)} file(s) "
        f"(e.g. `{files[0].name}`) are neither images nor cifar batches; {expected}"
    )
