"""The dataset-format protocol: what one format class declares, and what its ``open`` returns.

A format is one subclass of :class:`DatasetFormat` (``name``, ``looks_at``, ``expected``,
``detect``, ``open``), registered once in :mod:`onnxnoise.data.detect`; the readers
(:mod:`~onnxnoise.data.cifar`, :mod:`~onnxnoise.data.npz`, :mod:`~onnxnoise.data.folder`,
:mod:`~onnxnoise.data.imagenet`) each define theirs next to their loader. Every format's
``open`` returns one :class:`DatasetContents` (labels, class names, and either the images
in memory or the image files), which :func:`onnxnoise.data.open_dataset` turns into a
:class:`~onnxnoise.data.Dataset`.

Detection (:func:`onnxnoise.data.detect.detect_format`) asks the formats in registry order,
one pass per ``looks_at`` value: a file path asks the ``FILE`` formats; a folder asks the
``FOLDER`` formats (its own files), then the ``SUB_FOLDERS`` formats (sub-folders holding
images directly), then, after looking one wrapper folder down, every format's
``detect_nested`` (images deeper down). A :class:`PathView` lists a folder once, lazily,
for all of them.

Adding a format: write a :class:`DatasetFormat` subclass whose ``open`` returns
:class:`DatasetContents`, and add an instance to ``BUILTIN_FORMATS`` in
:mod:`onnxnoise.data.detect` (or call :func:`onnxnoise.data.detect.register_format`).
"""

from __future__ import annotations

import abc
import functools
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator
from typing import IO, Any, ClassVar

import numpy as np

from onnxnoise.errors import DataError, NotRegularFileError

__all__ = [
    "FILE",
    "FOLDER",
    "IMAGE_EXTENSIONS",
    "SUB_FOLDERS",
    "DatasetContents",
    "DatasetFormat",
    "PathView",
    "has_any_image",
    "walk_files",
    "has_direct_images",
    "is_image_file",
    "NotRegularFileError",
    "open_regular",
    "special_file",
]

#: ``looks_at`` values, in the order detection asks them.
FILE = "file"
FOLDER = "folder"
SUB_FOLDERS = "sub-folders"

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".jfif")


_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def _kind(mode: int) -> str:
    """What a non-regular file is, in words (``a FIFO``, ``a character device``...)."""
    for test, words in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return words
    return "a special file"


def special_file(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` is when it exists but is neither a regular file nor a folder (links followed).

    Returns:
        ``a FIFO (named pipe)``, ``a character device``, ``a block device``, ``a socket`` or
        ``a special file``; None for a regular file, a folder, or a path that cannot be stat'ed.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else _kind(mode)


def open_regular(path: str | os.PathLike[str], mode: str = "rb", *, encoding: str | None = None,
                 errors: str | None = None) -> IO[Any]:
    """Opens a regular file for reading without ever blocking on a FIFO or a device.

    Opening a FIFO for reading waits for a writer, forever when there is none, and opening a
    device may act on it; so the path is checked with ``stat`` (links followed) first, then
    opened with ``O_NONBLOCK`` (a FIFO that appears meanwhile opens at once) and checked again
    on the open descriptor, which then goes back to blocking reads.

    Args:
        path: The file.
        mode: ``"rb"`` or ``"r"`` (text, with ``encoding`` and ``errors``).

    Returns:
        A file object, for use in ``with``.

    Raises:
        NotRegularFileError: The path is a FIFO, device, socket or folder: ``not a regular file but
            a FIFO (named pipe)`` (or ``a character device``...).
        OSError: The path cannot be opened (missing, no permission...).
    """
    st_mode = os.stat(path).st_mode
    if stat.S_ISREG(st_mode):
        fd = os.open(path, os.O_RDONLY | _NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
                     | getattr(os, "O_BINARY", 0))
        try:
            st_mode = os.fstat(fd).st_mode
            if stat.S_ISREG(st_mode):
                if _NONBLOCK:
                    os.set_blocking(fd, True)
                return os.fdopen(fd, mode, encoding=encoding, errors=errors)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise NotRegularFileError(f"not a regular file but {_kind(st_mode)}")


def is_image_file(name: str | Path) -> bool:
    """True when the file name has an image extension (case-insensitive, :data:`IMAGE_EXTENSIONS`)."""
    return str(name).lower().endswith(IMAGE_EXTENSIONS)


def has_direct_images(folder: Path) -> bool:
    """True when ``folder`` itself holds a visible image file (an unlistable folder holds none)."""
    try:
        with os.scandir(folder) as it:
            return any(e.is_file() and is_image_file(e.name) and not e.name.startswith(".") for e in it)
    except OSError:
        return False


def has_any_image(folder: Path) -> bool:
    """True when a visible image file lies anywhere under ``folder`` (links followed, :func:`walk_files`)."""
    return any(is_image_file(entry.name) for entry in walk_files(folder))


def walk_files(folder: Path, *, above: Path | None = None) -> Iterator[os.DirEntry]:
    """Every visible entry under ``folder`` that is not a folder, depth first in name order.

    Symbolic links to folders are followed, each folder once: a link back to a folder already
    walked (a loop) or into ``above`` (the dataset root, whose other classes would be listed
    again under this one) is not entered. An explicit stack, not ``os.walk``: Python 3.11's
    ``os.walk`` recurses once per level and raised RecursionError on a tree 1,000 folders deep.
    Hidden entries (``.name``) and folders that cannot be listed are skipped, as ``os.walk`` does.
    """
    seen = {_identity(os.fspath(above))} - {None} if above is not None else set()
    stack = [os.fspath(folder)]
    while stack:
        dirpath = stack.pop()
        here = _identity(dirpath)
        if here in seen:
            continue
        if here is not None:
            seen.add(here)
        try:
            with os.scandir(dirpath) as it:
                entries = sorted((entry for entry in it if not entry.name.startswith(".")), key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for entry in entries:
            if _is_dir(entry):
                subdirs.append(entry.path)
            else:
                yield entry
        stack.extend(reversed(subdirs))


def _identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the folder ``path`` (links followed), or None when it cannot be looked at."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _is_dir(entry: os.DirEntry) -> bool:
    """Whether ``entry`` is a folder, links followed (False when it cannot be looked at, as in os.walk)."""
    try:
        return entry.is_dir()
    except OSError:
        return False


class PathView:
    """A dataset path as detection sees it: a folder is listed once, and only when a format asks.

    Attributes:
        path: The file or folder.
        depth: How many wrapper folders detection descended to get here (0 at the path given).
        expected: ``expected ...`` (every format's phrase), the tail of detection errors.

    The listing (:attr:`entries` and what derives from it) raises
    :class:`~onnxnoise.errors.DataError` when the folder cannot be listed or is empty.
    """

    def __init__(self, path: Path, depth: int, expected: str) -> None:
        self.path = path
        self.depth = depth
        self.expected = expected

    @functools.cached_property
    def entries(self) -> list[os.DirEntry[str]]:
        """Visible entries (names not starting with ``.``), sorted by name.

        Raises:
            DataError: The folder cannot be listed, or has no visible entry.
        """
        try:
            with os.scandir(self.path) as it:
                entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
        except OSError as exc:
            raise DataError(f"cannot list dataset folder `{self.path}`: {exc.strerror or exc}") from None
        if not entries:
            raise DataError(f"dataset folder `{self.path}` is empty; {self.expected}")
        return entries

    @functools.cached_property
    def files(self) -> list[Path]:
        """Regular files (links followed), sorted by name."""
        return [Path(e.path) for e in self.entries if e.is_file()]

    @functools.cached_property
    def dirs(self) -> list[Path]:
        """Sub-folders (links followed), sorted by name."""
        return [Path(e.path) for e in self.entries if e.is_dir()]

    @functools.cached_property
    def dirs_with_images(self) -> list[Path]:
        """Sub-folders holding an image file directly, sorted by name."""
        return [d for d in self.dirs if has_direct_images(d)]


@dataclass(frozen=True, eq=False)
class DatasetContents:
    """What a format's ``open`` found: labels and class names, and images or image files.

    Attributes:
        labels: (N,) int64 class indices in the dataset's label space.
        class_names: One name per class, index order; ``len`` is the class count.
        label_source: Where the labels come from, for reports (a ground-truth path,
            ``folder names``, ``imagenet wnid folders``, the pickle folder or npz file).
        images: (N, H, W, C) uint8 NHWC (C = 1 or 3, RGB) for in-memory formats, else None.
        files: N image paths for file formats (decoded later), else None.
        names: Per-image names a format stores apart from files (a CIFAR batch's
            ``filenames``), else empty.
        ignored: Files the reader skipped (non-image files), for diagnostics.
    """

    labels: np.ndarray
    class_names: tuple[str, ...]
    label_source: str
    images: np.ndarray | None = None
    files: tuple[Path, ...] | None = None
    names: tuple[str, ...] = ()
    ignored: tuple[Path, ...] = ()


class DatasetFormat(abc.ABC):
    """One dataset format: how to recognise it at a path, and how to open it.

    Subclasses set the class attributes and implement :meth:`detect` and :meth:`open`,
    then are registered once with :func:`onnxnoise.data.detect.register_format`.

    Attributes:
        name: The format's name in ``Dataset.format``, the dataset registry and reports
            (e.g. ``npz``); never change it: it enters dataset fingerprints.
        looks_at: :data:`FILE` (the path is a file), :data:`FOLDER` (the folder's own
            files) or :data:`SUB_FOLDERS` (its sub-folders): which detection pass asks it.
        expected: A phrase for "expected ..." in detection errors (e.g. ``a .npz file``).
        takes_ground_truth: Whether ``--ground-truth`` applies to this format.
    """

    name: ClassVar[str] = ""
    looks_at: ClassVar[str] = FOLDER
    expected: ClassVar[str] = ""
    takes_ground_truth: ClassVar[bool] = False

    @abc.abstractmethod
    def detect(self, view: PathView) -> bool:
        """True when ``view.path`` is in this format (a file for ``FILE`` formats)."""

    def detect_nested(self, view: PathView) -> bool:
        """True when images deeper below ``view.path`` make it this format (asked last; default no)."""
        return False

    @abc.abstractmethod
    def open(self, where: Path, *, ground_truth: Path | None, strict: bool) -> DatasetContents:
        """Reads the dataset at ``where`` (the path :meth:`detect` accepted).

        Args:
            where: The file or folder holding the data.
            ground_truth: A ground-truth file (only when :attr:`takes_ground_truth`), or None.
            strict: Fail on stray files and empty classes instead of skipping them.

        Raises:
            DataError: The data is malformed (the message names the file and the fix).
        """
