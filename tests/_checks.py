"""Small helpers the tests share: rows in a trial store, a rich table as text, accuracy columns."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import polars as pl
from rich.console import Console


def stored_rows(db: Path) -> int:
    """Trials committed to the SQLite store ``db`` so far (0 before the writer made it), read-only."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    except sqlite3.Error:
        return 0  # the writer is still creating the schema


def console_text(renderable) -> str:
    """What rich prints for ``renderable`` on a 300-column console without colours."""
    console = Console(record=True, width=300, color_system=None)
    console.print(renderable)
    return console.export_text()


def with_accuracy(frame: pl.DataFrame) -> pl.DataFrame:
    """``top1_acc`` / ``top5_acc`` (percent) from the ``*_correct`` counts and ``images``."""
    return frame.with_columns((100.0 * pl.col(f"{t}_correct") / pl.col("images")).alias(f"{t}_acc")
                              for t in ("top1", "top5"))
