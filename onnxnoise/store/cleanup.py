"""A trial store opened for one run, removed again when that run failed before recording a trial."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from onnxnoise.store.store import TrialStore, open_store

__all__ = ["run_store"]


@contextlib.contextmanager
def run_store(path: str | os.PathLike) -> Iterator[TrialStore]:
    """:func:`~onnxnoise.store.store.open_store` for a run that records trials, closed at the end of the block.

    When the block raises and this call created the file, a store holding no trial row and
    at most one run row (the failed run's own; a second means another process joined it) is
    removed with its ``-wal`` / ``-shm`` files, so a sweep that failed before its first trial
    (a Ray ``--address`` where Ray does not answer) leaves no empty ``trials.sqlite`` behind.

    Raises:
        StoreError: As :func:`~onnxnoise.store.store.open_store`; and whatever the block raises.
    """
    path = Path(path)
    created = not path.exists()
    store = open_store(path)
    try:
        yield store
    except BaseException:
        store.close()
        if created and _row_counts(path) <= (0, 1):
            for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
                with contextlib.suppress(FileNotFoundError):
                    (path.parent / name).unlink()
        raise
    finally:
        store.close()


def _row_counts(path: Path) -> tuple[int, int]:
    """``(trial rows, run rows)`` of the store at ``path``; ``(1, 1)`` (keep it) when it cannot be read."""
    try:
        with contextlib.closing(sqlite3.connect(path)) as conn:  # the last to close: sqlite removes -wal/-shm
            return tuple(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in ("trials", "runs"))
    except sqlite3.Error:
        return (1, 1)
