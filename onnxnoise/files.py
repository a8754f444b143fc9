"""Files written safely: whole or not at all, one writer at a time, inside their folder.

Every file the package writes (``bench.json``, trial and summary tables, ``report.md``,
figures, ``check.json``, ``junit.xml``, ``check.md``, the dataset registry) goes through
:func:`atomic_write`: the bytes go to a temporary file in the target's folder, are flushed
to disk (``fsync``) and renamed over the target (``os.replace``), so a full disk, an
exception or ``kill -9`` leaves the previous file or none, never an empty or cut one; a
failed write removes its temporary file, and the next write of a file removes one a killed
writer left. :func:`locked` serializes read-modify-write cycles of one
file across processes (the dataset registry). :func:`folder_name` turns a model file name
into a folder name that stays where it is put; :func:`check_folder_name` refuses a name
that would not; :func:`output_folder` checks an output folder before any work (the CLI's ``--out``,
the Python API's ``out=``).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from onnxnoise.errors import ConfigError

if os.name == "nt":  # pragma: no cover - Windows only
    import msvcrt
else:
    import fcntl

__all__ = ["atomic_write", "write_text", "locked", "folder_name", "check_folder_name", "output_folder", "TEMP_PREFIX"]

#: Prefix of the temporary files :func:`atomic_write` creates (hidden, beside the target).
TEMP_PREFIX = ".onnxnoise-"

_UNSAFE = re.compile(r"[^\w.-]+")


def _read_umask() -> int:
    """The process's umask, read once at import (``os.umask`` can only be read by setting it, which
    would briefly change it for every thread)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], *, text: bool = False) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path`` whole.

    The file is flushed and ``fsync``-ed before the rename, and the folder is ``fsync``-ed
    after it where the platform allows, so after a crash ``path`` holds either the previous
    content or the new one. On any exception (``OSError`` for a full disk included) the
    temporary file is removed, ``path`` is left as it was and the exception propagates.
    A temporary file of ``path`` left by a killed writer is removed by the next write.

    Args:
        path: The file to write; its folder must exist.
        text: Yield a text handle (UTF-8, ``\\n`` newlines) instead of a binary one.

    Yields:
        A writable file object (binary unless ``text``).

    Raises:
        OSError: The folder is not writable, the disk is full, or the rename failed; its
            ``filename`` is ``path`` when the system named no file.
    """
    target = Path(path)
    _remove_stale(target)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{target.name}.{os.getpid()}.", suffix=".tmp",
                               dir=target.parent)
    try:
        with (os.fdopen(fd, "w", encoding="utf-8", newline="\n") if text else os.fdopen(fd, "wb")) as fh:
            yield fh
            fh.flush()
            if hasattr(os, "fchmod"):  # POSIX (Windows has no mode bits to set)
                os.fchmod(fh.fileno(), _mode_for(target))
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename in (None, tmp):
            raise _naming(exc, target) from exc
        raise
    _sync_folder(target.parent)


def _naming(exc: OSError, target: Path) -> OSError:
    """``exc`` naming ``target`` instead of a temporary file or nothing, its message kept.

    Polars raises ``OSError("No space left on device (os error 28)")`` with no ``errno``: setting
    ``filename`` on it would print ``[Errno None] None``. The subclass follows the errno
    (``IsADirectoryError`` ...), as ``OSError(errno, ...)`` builds it.
    """
    match = re.search(r"\(os error (\d+)\)", str(exc)) if exc.errno is None else None
    code = int(match.group(1)) if match else exc.errno
    return OSError(code, exc.strerror or str(exc), str(target))


def _mode_for(target: Path) -> int:
    """Permission bits for the new ``target``: those of the file it replaces, else ``0o666`` less the umask.

    ``mkstemp`` creates its file ``0o600``; without this every output would be private to its
    writer, where a plain ``open`` gives the umask's mode (usually ``0o644``).
    """
    with contextlib.suppress(OSError):
        return stat.S_IMODE(os.stat(target).st_mode)
    return 0o666 & ~_UMASK


def _remove_stale(target: Path) -> None:
    """Remove temporary files of ``target`` left by a killed process (``kill -9`` runs no cleanup).

    A temporary file's name carries its writer's process id; one whose process no longer
    exists is removed. POSIX only (Windows' ``os.kill`` would end the process).
    """
    if os.name == "nt":  # pragma: no cover - Windows only
        return
    pattern = re.compile(re.escape(f"{TEMP_PREFIX}{target.name}.") + r"(\d+)\.[^.]*\.tmp")
    for leftover in target.parent.glob(f"{TEMP_PREFIX}*.tmp"):
        match = pattern.fullmatch(leftover.name)
        if match and not _alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                leftover.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _sync_folder(folder: Path) -> None:
    """``fsync`` a folder so a rename in it survives a crash (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text(path: str | os.PathLike[str], content: str) -> Path:
    """Write ``content`` (UTF-8) to ``path`` atomically (:func:`atomic_write`); returns ``path``.

    Raises:
        OSError: As :func:`atomic_write`; ``path`` is then unchanged.
    """
    with atomic_write(path, text=True) as fh:
        fh.write(content)
    return Path(path)


@contextlib.contextmanager
def locked(path: str | os.PathLike[str], *, timeout: float = 60.0) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` (created beside ``path``) for the block.

    Processes that read, change and write ``path`` inside this block never lose each
    other's changes. POSIX ``flock`` (released by the OS when a process dies), Windows
    ``msvcrt.locking``.

    Args:
        path: The file the lock protects (it need not exist); its folder must exist.
        timeout: Seconds to wait for another holder before giving up.

    Raises:
        TimeoutError: Another process held the lock for ``timeout`` seconds.
        OSError: The lock file cannot be created.
    """
    lock_path = Path(f"{os.fspath(path)}.lock")
    # O_NOFOLLOW: a lock path planted as a symbolic link must not create a file where it points.
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        _acquire(fd, lock_path, timeout)
        try:
            yield
        finally:
            _release(fd)
    finally:
        os.close(fd)


def _acquire(fd: int, lock_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.name == "nt":  # pragma: no cover - Windows only
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            else:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError:
            if time.monotonic() >= deadline:
                msg = f"{lock_path} stayed locked by another onnxnoise process for {timeout:g} s"
                raise TimeoutError(msg) from None
            time.sleep(0.01)


def _release(fd: int) -> None:
    if os.name == "nt":  # pragma: no cover - Windows only
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)


def folder_name(model: str | os.PathLike[str], *, fallback: str = "model") -> str:
    """A folder (or file stem) name for a model file that stays inside the folder it is put in.

    The file name's ``.onnx`` suffix is dropped; every run of characters other than letters,
    digits, ``_``, ``.`` and ``-`` becomes ``-`` (spaces included; letters of any script are
    kept); leading and trailing dots and dashes go, so ``..``, ``.`` or a hidden name never
    come out. ``...onnx``, ``.onnx`` or a name left empty gives ``fallback``.

    Examples: ``resnet 20 (v2).onnx`` -> ``resnet-20-v2``, ``...onnx`` -> ``model``,
    ``/a/b/../vgg16.onnx`` -> ``vgg16``.
    """
    name = Path(os.fspath(model)).name
    stem = name[: -len(".onnx")] if name.lower().endswith(".onnx") else name
    return _UNSAFE.sub("-", stem).strip(".-") or fallback


def check_folder_name(name: str, what: str) -> str:
    """``name`` if it names one folder inside its parent, else ``ValueError`` (one line).

    Refused: empty, ``.`` or ``..``, a path separator (``/``, ``\\``), a drive or absolute
    path, a NUL character, or a leading ``-`` or ``.``, that is, anything that would put
    a store or report outside the folder it is meant for or hide it.

    Args:
        name: The name (e.g. an experiment's model key).
        what: What it is, for the message (``[models] key``).

    Raises:
        ValueError: One line naming ``what`` and the name, and the characters allowed.
    """
    bad = (not isinstance(name, str) or not name.strip() or name in (".", "..") or "\0" in name
           or any(sep in name for sep in ("/", "\\", ":")) or name[0] in ".-"
           or Path(name).is_absolute() or Path(name).name != name)
    if bad:
        msg = (f"{what} {name!r} would not stay one folder inside the output folder; use letters, digits, "
               "`_`, `.` or `-` (no path separators, not starting with `.` or `-`)")
        raise ValueError(msg)
    return name


def output_folder(path: Path | str, *, option: str = "--out") -> Path:
    """Check that ``path`` is a folder files can be written in, or one that can be created.

    Called by every command that writes results (bench, sweep, check, report, compare)
    before it loads a model or runs a trial. Folders it had to create for the check are
    removed again (the command creates them when it writes), so a run that stops before
    writing leaves nothing behind.

    Args:
        path: The folder.
        option: The option or key that named it, for the message.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: One line: ``path`` is a file, cannot be created, or is not writable.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{option} {folder} is a file, not a folder; give a folder path (it is created if missing)")
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the output folder {folder} ({exc.strerror or exc}); "
                          f"give a writable folder with {option}") from None
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot write in the output folder {folder} ({exc.strerror or exc}); "
                          f"give a writable folder with {option}") from None
    finally:
        for created in missing:  # leaf first
            try:
                created.rmdir()
            except OSError:
                break
    return folder
