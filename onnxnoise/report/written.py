"""Tables written earlier, read back: the one place that knows the older column and file names.

Before the change listed under Unreleased in CHANGELOG.md ("Outputs"), the interval columns were named ``<metric>_ci``
(``top1_acc_ci``, ``top1_a_avr_ci``, ``drop_ci``; ``ci`` in the comparison tables) although they hold
the half-width of a Student t (or paired) interval at 95%; they are now ``<metric>_ci_half`` beside a
``ci_level`` column (0.95 unless a caller asked for another level). ``report`` wrote its one-row-per-trial
table as ``results.parquet``; that table is now ``trials.parquet`` (as bench and check name it) and
``results.parquet`` is the one-row-per-model-and-strength table (:mod:`onnxnoise.report.results`). Nested
values were JSON text in Parquet and are typed now (:mod:`onnxnoise.report.nested`).

:func:`read_table` gives any of these tables, old or new, under today's names, nested values as the JSON
text the library's functions take; :func:`trial_table` finds a report folder's trial table under either
name. Committed reports (``reports/``) and scripts that re-read them go through here.
"""

from __future__ import annotations

import os
from pathlib import Path

from onnxnoise.errors import StoreError
from onnxnoise.lazy import lazy_module
from onnxnoise.report.nested import flat_text

pl = lazy_module("polars")

__all__ = ["RENAMED", "OLD_LEVEL", "current_names", "read_table", "trial_table"]

#: Interval columns of tables written before the rename: old name -> today's name.
RENAMED: dict[str, str] = {
    **{f"{m}_ci": f"{m}_ci_half" for m in ("top1_acc", "top5_acc", "top1_norm", "top5_norm", "top1_a_avr",
                                           "top5_a_avr", "drop")},
    "ci": "ci_half",
}

#: Confidence level of every interval written before the ``ci_level`` column existed.
OLD_LEVEL: float = 0.95


def current_names(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with the old interval names of :data:`RENAMED` renamed and ``ci_level`` (0.95) added to such a table.

    A table with today's names is returned as it is.
    """
    old = {a: b for a, b in RENAMED.items() if a in frame.columns and b not in frame.columns}
    if not old:
        return frame
    frame = frame.rename(old)
    return frame if "ci_level" in frame.columns else frame.with_columns(pl.lit(OLD_LEVEL).alias("ci_level"))


def read_table(path: str | os.PathLike) -> pl.DataFrame:
    """A table ``bench``, ``report``, ``compare`` or ``check`` wrote (Parquet), under today's column names.

    Nested columns (typed now, JSON text before) come back as JSON text
    (:func:`onnxnoise.report.nested.flat_text`), so both read alike: ``json.loads(row["noise"])``.

    Raises:
        FileNotFoundError: No file at ``path``.
    """
    return current_names(flat_text(pl.read_parquet(path)))


def trial_table(folder: str | os.PathLike) -> Path:
    """The one-row-per-trial table of a report, bench or check folder: ``trials.parquet``, or ``results.parquet``
    of a report written before the rename (a table with a ``key`` column: one row per trial).

    Raises:
        StoreError: The folder holds neither.
    """
    root = Path(folder)
    if (root / "trials.parquet").is_file():
        return root / "trials.parquet"
    old = root / "results.parquet"
    if old.is_file() and "key" in pl.read_parquet_schema(old):
        return old
    msg = f"no trial table in {root}: expected trials.parquet (or results.parquet of an older report)"
    raise StoreError(msg)
