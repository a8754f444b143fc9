"""Output folders: checked (can be created, writable) before any trial runs, so a bad ``--out`` costs nothing."""

from __future__ import annotations

import tempfile
from pathlib import Path

from onnxnoise.errors import ConfigError

__all__ = ["output_folder"]


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
