"""Tables: trial tables written to disk (Parquet and CSV; failed rows grouped with their seeds) and markdown tables."""

from __future__ import annotations

import io
import os
from pathlib import Path

from onnxnoise.files import atomic_write
from onnxnoise.lazy import lazy_module
from onnxnoise.report.nested import flat_text, typed_nested

pl = lazy_module("polars")

__all__ = ["write_table", "with_planned_provider", "markdown_table"]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured markdown table: header row, separator, one line per row of cells (text as given)."""
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(row) + " |" for row in rows)])


def with_planned_provider(trials: pl.DataFrame) -> pl.DataFrame:
    """``trials`` with a failed row's missing ``provider`` set to the one its trial was planned for.

    A failed trial ran nothing, so its row has no ``provider``; summaries group by
    provider, and a null one would split a partly failed (strength, seed) group into
    a "succeeded" and a "failed" row. The planned provider is ``context.provider``
    (the JSON text the trial key hashes). Rows without ``context`` stay as they are.
    """
    if "provider" not in trials.columns or "context" not in trials.columns:
        return trials
    planned = pl.col("context").cast(pl.String).str.json_path_match("$.provider")
    return trials.with_columns(pl.coalesce(pl.col("provider"), planned).alias("provider"))


def write_table(frame: pl.DataFrame, out_dir: str | os.PathLike, stem: str, *, json_text: bool = True) -> list[Path]:
    """Write ``frame`` as ``<stem>.parquet`` and ``<stem>.csv`` in ``out_dir``, atomically.

    Nested values are typed in Parquet: the store's JSON-text columns become List/Struct columns
    (:func:`onnxnoise.report.nested.typed_nested`), list columns (layer names, flags) stay
    ``List(String)``; the CSV holds them as JSON text (:func:`onnxnoise.report.nested.flat_text`). Each file is written to a temporary file beside it, flushed and renamed
    (:func:`onnxnoise.files.atomic_write`), so a full disk or a run killed mid-write
    leaves the previous complete table in place, and no temporary file. Each table is
    encoded in memory first and its bytes written by Python: Polars writing to the file
    itself reports a full disk as a ``ComputeError`` ("Invalid thrift: transport error"),
    not as the ``OSError`` every other write raises and the CLI prints as one line.

    Args:
        frame: The table, one row per trial (or per summary group).
        out_dir: Folder to write into; created if missing.
        stem: File name without extension.
        json_text: The frame's columns named as the store's JSON columns hold JSON text to type; ``False``
            for a table whose columns of those names hold plain text (the results table's ``noise``).

    Returns:
        The two paths written.

    Raises:
        OSError: A file could not be written (full disk, file size limit, permissions);
            its ``filename`` is the table's path, which holds its previous content.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    parquet = typed_nested(frame) if json_text else frame
    for suffix, writer in ((".parquet", parquet.write_parquet), (".csv", flat_text(frame).write_csv)):
        final = out / f"{stem}{suffix}"
        encoded = io.BytesIO()
        writer(encoded)
        with atomic_write(final) as fh:
            fh.write(encoded.getbuffer())
        paths.append(final)
    return paths
