"""Write Polars trial tables to disk (Parquet and CSV)."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

__all__ = ["write_table"]


def write_table(frame: pl.DataFrame, out_dir: str | os.PathLike, stem: str) -> list[Path]:
    """Write ``frame`` as ``<stem>.parquet`` and ``<stem>.csv`` in ``out_dir``, atomically.

    Each file is written to a temporary name and renamed, so a run killed mid-write
    leaves the previous complete table in place.

    Args:
        frame: The table, one row per trial (or per summary group).
        out_dir: Folder to write into; created if missing.
        stem: File name without extension.

    Returns:
        The two paths written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix, writer in ((".parquet", frame.write_parquet), (".csv", frame.write_csv)):
        final = out / f"{stem}{suffix}"
        tmp = out / f".{stem}{suffix}.tmp"
        writer(tmp)
        os.replace(tmp, final)
        paths.append(final)
    return paths
