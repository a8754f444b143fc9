"""A full disk for the tests of writers: ``fsync`` of chosen files fails with ENOSPC after their bytes are written."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import onnxnoise.files as files


def fill_disk(monkeypatch: pytest.MonkeyPatch, *names: str) -> list[str]:
    """Make :func:`onnxnoise.files.atomic_write` fail with ``OSError(ENOSPC)`` for targets named ``names``.

    The failure comes after the new content was written to the temporary file (at its
    ``fsync``), as a full disk does; every other file is written normally. Returns the list
    that collects the names refused. Linux (reads ``/proc/self/fd``).
    """
    refused: list[str] = []
    real = files.os.fsync

    def fsync(fd: int) -> None:
        name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
        target = next((n for n in names if name.startswith(f"{files.TEMP_PREFIX}{n}.")), None)
        if target is not None:
            refused.append(target)
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    return refused


def leftovers(folder: Path) -> list[Path]:
    """Temporary files of :func:`onnxnoise.files.atomic_write` anywhere under ``folder``."""
    return [p for p in folder.rglob(f"{files.TEMP_PREFIX}*")]
