"""Trial store schema v2: column lists, versions and the SQL that creates the tables.

A trial store is one SQLite file (normally ``RUN_DIR/trials.sqlite``) marked with
``PRAGMA application_id`` = :data:`APPLICATION_ID` and ``PRAGMA user_version`` =
:data:`SCHEMA_VERSION`. It holds three tables: ``trials`` (one row per finished trial,
columns :data:`TRIAL_COLUMNS`), ``runs`` (one row per sweep invocation, columns
:data:`RUN_COLUMNS`) and ``meta`` (``name -> value`` text pairs: ``schema_version``,
``created_at``, ``created_by`` and, after a migration, ``migrated_from`` and
``migrated_at``).

Version history:

* 1: ``snr`` (``inf`` for the baseline), noise settings as
  ``{"noise_model", "bn_variance", "keep_zeros"}``.
* 2: ``strength`` (the noise model's strength, NULL for the baseline) and
  ``noise_model`` (registry name) replace ``snr``; ``noise`` is
  ``{"params": {...}, "bn_variance", "keep_zeros"}``; new columns ``key_version``,
  ``layers_noised``, ``label_offset``, ``batch_size``, ``overflow_count``,
  ``clipped_count``, ``zeros_kept``, ``context`` (trials) and ``context`` (runs).
  :mod:`onnxnoise.store.migrate` converts a version 1 file in place.
* 2, additive: nullable paired-count columns :data:`ADDED_TRIAL_COLUMNS` (``flips``,
  ``lost_top1``, ``gained_top1``, ``lost_top5``, ``gained_top5``), added to an older
  version 2 file with ``ALTER TABLE`` when it is opened (its rows keep NULL there). The
  version stays 2: keys are unchanged, and an onnxnoise without these columns still
  reads and writes the file (naming its columns, it ignores the new ones).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import polars as pl

from onnxnoise.config import SWEEP_MODES

__all__ = [
    "SCHEMA_VERSION",
    "APPLICATION_ID",
    "ENGINE_KEY_VERSION",
    "STORE_NAME",
    "MODES",
    "TRIAL_COLUMNS",
    "RUN_COLUMNS",
    "JSON_COLUMNS",
    "ADDED_TRIAL_COLUMNS",
    "create_sql",
    "create_schema",
    "canonical_json",
    "trial_frame",
    "now",
]

#: Schema version, kept in ``PRAGMA user_version`` and in the ``meta`` table.
SCHEMA_VERSION: int = 2

#: ``PRAGMA application_id`` marking a file as an onnxnoise trial store ("onnx").
APPLICATION_ID: int = 0x6F6E6E78

#: ``key_version`` of rows keyed by the current engine (the default of ``record``);
#: rows migrated from a version 1 store have ``key_version`` 1 until adopted.
ENGINE_KEY_VERSION: int = 2

#: File name of the trial store inside a run folder.
STORE_NAME: str = "trials.sqlite"

#: Trial modes the store accepts in ``mode``: the clean baseline and the sweep modes.
MODES: tuple[str, ...] = ("baseline", *SWEEP_MODES)

#: Trial columns in record order: name -> (SQLite type, Polars dtype). JSON columns
#: (:data:`JSON_COLUMNS`) hold sorted-key JSON text.
TRIAL_COLUMNS: dict[str, tuple[str, Any]] = {
    "key": ("TEXT PRIMARY KEY", pl.String),
    "key_version": ("INTEGER", pl.Int64),  # 2: keyed by the current engine; 1: migrated from a v1 store
    "run_id": ("INTEGER", pl.Int64),
    "model": ("TEXT", pl.String),
    "model_sha256": ("TEXT", pl.String),
    "dataset": ("TEXT", pl.String),
    "dataset_fingerprint": ("TEXT", pl.String),
    "preprocess": ("TEXT", pl.String),  # JSON
    "mode": ("TEXT NOT NULL", pl.String),  # one of MODES
    "layer_index": ("INTEGER", pl.Int64),
    "layers": ("TEXT", pl.String),  # JSON list of layer names
    "layers_noised": ("INTEGER", pl.Int64),
    "noise_model": ("TEXT NOT NULL", pl.String),  # registry name, e.g. 'gaussian-snr'
    "noise": ("TEXT", pl.String),  # JSON: {"params": {...}, "bn_variance": ..., "keep_zeros": ...}
    "strength": ("REAL", pl.Float64),  # NULL for the baseline; linear SNR for 'gaussian-snr'
    "seed": ("INTEGER", pl.Int64),  # NULL for the baseline
    "label_offset": ("INTEGER", pl.Int64),
    "batch_size": ("INTEGER", pl.Int64),
    "provider": ("TEXT", pl.String),
    "images": ("INTEGER", pl.Int64),
    "top1_correct": ("INTEGER", pl.Int64),
    "top5_correct": ("INTEGER", pl.Int64),
    "nan_count": ("INTEGER", pl.Int64),
    "bn_variance_changed": ("INTEGER", pl.Int64),
    "overflow_count": ("INTEGER", pl.Int64),
    "clipped_count": ("INTEGER", pl.Int64),
    "zeros_kept": ("INTEGER", pl.Int64),
    # Paired with the clean model on the same images (0 for the baseline; NULL for failed trials and rows
    # recorded before these columns existed): top-1 class changed, and top-1 / top-5 hits lost or gained.
    "flips": ("INTEGER", pl.Int64),
    "lost_top1": ("INTEGER", pl.Int64),
    "gained_top1": ("INTEGER", pl.Int64),
    "lost_top5": ("INTEGER", pl.Int64),
    "gained_top5": ("INTEGER", pl.Int64),
    "seconds": ("REAL", pl.Float64),
    "context": ("TEXT", pl.String),  # JSON: everything the key hashed
    "versions": ("TEXT", pl.String),  # JSON: package versions
    "error": ("TEXT", pl.String),  # NULL for a finished trial
    "finished_at": ("TEXT NOT NULL", pl.String),
}

#: Trial columns added to schema version 2 after its first release (see the module docstring):
#: an older version 2 file gets them on open, NULL in its existing rows.
ADDED_TRIAL_COLUMNS: tuple[str, ...] = ("flips", "lost_top1", "gained_top1", "lost_top5", "gained_top5")

#: Run columns (one row per sweep invocation): name -> (SQLite type, Polars dtype).
RUN_COLUMNS: dict[str, tuple[str, Any]] = {
    "run_id": ("INTEGER PRIMARY KEY AUTOINCREMENT", pl.Int64),
    "started_at": ("TEXT NOT NULL", pl.String),
    "model": ("TEXT", pl.String),
    "model_sha256": ("TEXT", pl.String),
    "dataset": ("TEXT", pl.String),
    "dataset_fingerprint": ("TEXT", pl.String),
    "preprocess": ("TEXT", pl.String),
    "noise_model": ("TEXT", pl.String),
    "noise": ("TEXT", pl.String),
    "config": ("TEXT", pl.String),
    "context": ("TEXT", pl.String),
    "versions": ("TEXT", pl.String),
}

#: Columns (of either table) that hold JSON text.
JSON_COLUMNS: frozenset[str] = frozenset({"preprocess", "layers", "noise", "context", "versions", "config"})


def now() -> str:
    """The current time as UTC ISO 8601 with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def canonical_json(obj: Any) -> str:
    """Sorted-key, whitespace-free JSON, as the store writes every JSON column."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def create_sql(table: str, columns: Mapping[str, tuple[str, Any]]) -> str:
    """``CREATE TABLE`` statement for ``table`` with ``columns`` in order."""
    body = ", ".join(f"{name} {sql}" for name, (sql, _) in columns.items())
    return f"CREATE TABLE IF NOT EXISTS {table} ({body})"


def create_schema(conn: Any) -> None:
    """Create the v2 tables, ``meta`` and the pragmas in an empty database.

    Run it inside the caller's transaction.
    """
    conn.execute(create_sql("trials", TRIAL_COLUMNS))
    conn.execute(create_sql("runs", RUN_COLUMNS))
    conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    from onnxnoise import __version__

    meta = {"schema_version": str(SCHEMA_VERSION), "created_at": now(), "created_by": f"onnxnoise {__version__}"}
    conn.executemany("INSERT INTO meta (name, value) VALUES (?, ?)", list(meta.items()))
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def trial_frame(records: list[dict[str, Any]] | list[tuple]) -> pl.DataFrame:
    """Trial rows as the store's table: :data:`TRIAL_COLUMNS` plus accuracies.

    Args:
        records: Rows with every column of :data:`TRIAL_COLUMNS` (JSON columns already
            text), as dicts or as tuples in column order.

    Returns:
        The columns of :data:`TRIAL_COLUMNS` in order, plus ``top1_acc`` and ``top5_acc``
        (percent, ``100 * correct / images``; null for failed trials and when
        ``images`` is 0 or null). ``TrialStore.to_frame()`` and bench's in-memory
        table both come from here, so they have one schema.
    """
    schema = {name: dtype for name, (_, dtype) in TRIAL_COLUMNS.items()}
    frame = pl.DataFrame(records, schema=schema, orient="row")
    valid = pl.col("error").is_null() & pl.col("images").is_not_null() & (pl.col("images") > 0)
    return frame.with_columns(
        pl.when(valid).then(100.0 * pl.col(f"{top}_correct") / pl.col("images")).alias(f"{top}_acc")
        for top in ("top1", "top5")
    )
