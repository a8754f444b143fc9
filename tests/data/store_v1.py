# FROZEN COPY of onnxnoise/store/store.py at commit 20c2449 (trial store schema v1).
# Used only by tests/test_store_migration.py to write real v1 files; do not edit or import from onnxnoise.
"""Durable SQLite store of finished trials, so an interrupted sweep resumes where it stopped.

Durability: the database runs in WAL mode with ``synchronous=FULL`` and every
:meth:`TrialStore.record` is its own transaction, committed (and the WAL fsynced)
before it returns. A process killed at any moment (``kill -9``, out of memory) loses
at most the trial it was evaluating or writing; the next :func:`open_store` rolls an
interrupted write back automatically. ``FULL`` also keeps committed trials across a
power cut or OS crash (``NORMAL`` would keep them across process crashes only). WAL
lets a report read the store while a sweep writes to it. Where the file system cannot
do WAL (some network file systems), SQLite keeps its rollback journal, which with
``synchronous=FULL`` gives the same guarantee.

Resume: a trial's ``key`` (see :meth:`onnxnoise.engine.plan.Trial.key`) is the primary key,
so a trial is stored at most once. :meth:`TrialStore.record` refuses a key that
already has a finished row; a row that failed (``error`` set) may be replaced by a
retry.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from onnxnoise.errors import StoreError

__all__ = ["SCHEMA_VERSION", "APPLICATION_ID", "TRIAL_COLUMNS", "RUN_COLUMNS", "TrialStore", "open_store"]

#: Schema version, kept in ``PRAGMA user_version`` and in the ``meta`` table.
SCHEMA_VERSION: int = 1

#: ``PRAGMA application_id`` marking a file as an onnxnoise trial store ("onnx").
APPLICATION_ID: int = 0x6F6E6E78

#: Trial columns: name -> (SQLite type, Polars dtype). ``*_json`` semantics are noted
#: in :meth:`TrialStore.record`.
TRIAL_COLUMNS: dict[str, tuple[str, Any]] = {
    "key": ("TEXT PRIMARY KEY", pl.String),
    "run_id": ("INTEGER", pl.Int64),
    "model": ("TEXT", pl.String),
    "model_sha256": ("TEXT", pl.String),
    "dataset": ("TEXT", pl.String),
    "dataset_fingerprint": ("TEXT", pl.String),
    "preprocess": ("TEXT", pl.String),
    "mode": ("TEXT NOT NULL", pl.String),
    "layer_index": ("INTEGER", pl.Int64),
    "layers": ("TEXT", pl.String),
    "noise_model": ("TEXT", pl.String),
    "noise": ("TEXT", pl.String),
    "snr": ("REAL NOT NULL", pl.Float64),
    "seed": ("INTEGER", pl.Int64),
    "images": ("INTEGER", pl.Int64),
    "top1_correct": ("INTEGER", pl.Int64),
    "top5_correct": ("INTEGER", pl.Int64),
    "nan_count": ("INTEGER", pl.Int64),
    "bn_variance_changed": ("INTEGER", pl.Int64),
    "seconds": ("REAL", pl.Float64),
    "provider": ("TEXT", pl.String),
    "versions": ("TEXT", pl.String),
    "error": ("TEXT", pl.String),
    "finished_at": ("TEXT NOT NULL", pl.String),
}

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
    "versions": ("TEXT", pl.String),
}

_JSON_COLUMNS = frozenset({"preprocess", "layers", "noise", "versions", "config"})
_REQUIRED = ("key", "mode", "snr")
_BUSY_TIMEOUT_MS = 30_000


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _create_sql(table: str, columns: Mapping[str, tuple[str, Any]]) -> str:
    body = ", ".join(f"{name} {sql}" for name, (sql, _) in columns.items())
    return f"CREATE TABLE IF NOT EXISTS {table} ({body})"


class TrialStore:
    """An open trial store; create it with :func:`open_store`.

    Use it as a context manager, or call :meth:`close`. One store may be written by
    several processes at once (SQLite serializes the writes).

    Attributes:
        path: The database file.
    """

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = connection

    def __enter__(self) -> TrialStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._db is not None else "closed"
        return f"TrialStore({str(self.path)!r}, {state})"

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            msg = f"trial store {self.path} is closed"
            raise StoreError(msg)
        return self._db

    def close(self) -> None:
        """Close the connection (idempotent). Every recorded trial is already committed."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def done_keys(self, *, include_errors: bool = True) -> set[str]:
        """Keys of the stored trials.

        Args:
            include_errors: Also return trials that failed (``error`` set); pass
                ``False`` to retry them on resume.

        Returns:
            The set of trial keys.
        """
        sql = "SELECT key FROM trials" + ("" if include_errors else " WHERE error IS NULL")
        return {key for (key,) in self._execute(sql)}

    def record(self, row: Mapping[str, Any]) -> None:
        """Insert one finished trial and commit it before returning.

        Args:
            row: Column name -> value, names from :data:`TRIAL_COLUMNS`. ``key``,
                ``mode`` and ``snr`` are required (``snr`` may be ``math.inf``, never
                NaN); missing columns are stored as NULL, except ``finished_at``
                (default: now, UTC ISO 8601). ``preprocess``, ``layers``, ``noise``
                and ``versions`` take a JSON string or a JSON-ready object, which is
                stored as sorted-key JSON.

        Raises:
            StoreError: On an unknown column, a missing required value, a value of
                the wrong type, or a key already stored without an error (a trial is
                never recorded twice; a failed one may be replaced by its retry).
        """
        values = {name: None for name in TRIAL_COLUMNS}
        values.update(self._prepare(row, TRIAL_COLUMNS, table="trials"))
        if values["finished_at"] is None:
            values["finished_at"] = _now()
        for name in _REQUIRED:
            if values.get(name) is None:
                msg = f"trial row needs `{name}`, got {row.get(name)!r}"
                raise StoreError(msg)
        names = list(values)
        updates = ", ".join(f"{n} = excluded.{n}" for n in names if n != "key")
        sql = (
            f"INSERT INTO trials ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "
            f"ON CONFLICT(key) DO UPDATE SET {updates} WHERE trials.error IS NOT NULL"
        )
        cursor = self._execute(sql, [values[n] for n in names])
        if cursor.rowcount == 0:
            msg = f"trial key {values['key']!r} is already recorded; skip keys in `done_keys()` when resuming"
            raise StoreError(msg)

    def record_run(self, info: Mapping[str, Any]) -> int:
        """Record one sweep invocation (its experiment context) and return its ``run_id``.

        Args:
            info: Column name -> value, names from :data:`RUN_COLUMNS` (all optional;
                ``started_at`` defaults to now). JSON columns (``preprocess``,
                ``noise``, ``config``, ``versions``) take a string or an object.

        Returns:
            The new run's id, to put in each trial row's ``run_id``.

        Raises:
            StoreError: On an unknown column or a value of the wrong type.
        """
        values = self._prepare(info, RUN_COLUMNS, table="runs")
        values.pop("run_id", None)
        values.setdefault("started_at", _now())
        names = list(values)
        sql = f"INSERT INTO runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        return int(self._execute(sql, [values[n] for n in names]).lastrowid)

    def to_frame(self) -> pl.DataFrame:
        """All trials, in the order they were recorded.

        Returns:
            One row per trial with the columns of :data:`TRIAL_COLUMNS` (JSON columns
            as strings, ``snr`` ``inf`` for the baseline), plus ``noise_pct``
            (``100 / snr``, 0 for the baseline) and ``top1_acc``, ``top5_acc``
            (percent, ``100 * correct / images``; null for failed trials).
        """
        frame = self._frame("trials", TRIAL_COLUMNS, order="rowid")
        has_images = pl.col("images").is_not_null() & (pl.col("images") > 0)
        return frame.with_columns(
            (100.0 / pl.col("snr")).alias("noise_pct"),
            pl.when(has_images).then(100.0 * pl.col("top1_correct") / pl.col("images")).alias("top1_acc"),
            pl.when(has_images).then(100.0 * pl.col("top5_correct") / pl.col("images")).alias("top5_acc"),
        )

    def runs(self) -> pl.DataFrame:
        """All recorded runs (columns of :data:`RUN_COLUMNS`), oldest first."""
        return self._frame("runs", RUN_COLUMNS, order="run_id")

    def _frame(self, table: str, columns: Mapping[str, tuple[str, Any]], *, order: str) -> pl.DataFrame:
        rows = self._execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}").fetchall()
        schema = {name: dtype for name, (_, dtype) in columns.items()}
        return pl.DataFrame(rows, schema=schema, orient="row")

    def _execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            msg = f"trial store {self.path}: {type(exc).__name__}: {exc}"
            raise StoreError(msg) from exc

    @staticmethod
    def _prepare(row: Mapping[str, Any], columns: Mapping[str, tuple[str, Any]], *, table: str) -> dict[str, Any]:
        unknown = sorted(set(row) - set(columns))
        if unknown:
            msg = f"unknown {table} column(s) {', '.join(map(repr, unknown))}; known: {', '.join(columns)}"
            raise StoreError(msg)
        values: dict[str, Any] = {}
        for name, value in row.items():
            if value is not None:
                value = _convert(name, value, columns[name][1])
            values[name] = value
        return values


def _convert(name: str, value: Any, dtype: Any) -> Any:
    """Check and convert one value to what SQLite stores; raise StoreError when it does not fit."""
    try:
        if name in _JSON_COLUMNS:
            if isinstance(value, str):
                json.loads(value)
                return value
            return json.dumps(value, sort_keys=True, separators=(",", ":"))
        if dtype == pl.Int64:
            if isinstance(value, bool) or int(value) != value:
                raise TypeError
            return int(value)
        if dtype == pl.Float64:
            if isinstance(value, bool):
                raise TypeError
            value = float(value)
            if math.isnan(value) and name == "snr":
                raise ValueError
            return value
        if not isinstance(value, str):
            raise TypeError
        return value
    except (TypeError, ValueError, OverflowError):
        kind = "JSON (a string or a JSON-ready object)" if name in _JSON_COLUMNS else {
            pl.Int64: "an integer", pl.Float64: "a number (not NaN)"
        }.get(dtype, "a string")
        msg = f"column `{name}` must be {kind}, got {value!r}"
        raise StoreError(msg) from None


def open_store(path: str | os.PathLike, *, create: bool = True) -> TrialStore:
    """Open (and if needed create) a trial store.

    Args:
        path: SQLite file, e.g. ``runs/resnet20.sqlite``; missing parent folders are
            created when ``create`` is true.
        create: Create the file when it does not exist; with ``False`` a missing file
            raises (for readers such as reports).

    Returns:
        The open :class:`TrialStore` (WAL journal, ``synchronous=FULL``).

    Raises:
        StoreError: If the path is missing (``create=False``) or a folder, the file is
            not a SQLite database, is another program's database, or has a different
            schema version.
    """
    path = Path(path)
    if path.is_dir():
        msg = f"trial store path {path} is a folder; give a file such as {path / 'trials.sqlite'}"
        raise StoreError(msg)
    if not path.exists():
        if not create:
            msg = f"trial store not found: {path}"
            raise StoreError(msg)
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error as exc:
        msg = f"cannot open trial store {path}: {exc}"
        raise StoreError(msg) from exc
    try:
        _initialize(conn, path)
    except BaseException:
        conn.close()
        raise
    return TrialStore(path, conn)


def _initialize(conn: sqlite3.Connection, path: Path) -> None:
    try:
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        # The first read fails ("file is not a database") for a non-SQLite file; another
        # program's database is refused before anything (even the journal mode) changes.
        tables = _tables(conn)
        if tables:
            _check_schema(conn, path, tables)
        conn.execute("PRAGMA journal_mode = WAL").fetchone()
        conn.execute("PRAGMA synchronous = FULL")
        if not tables:
            conn.execute("BEGIN IMMEDIATE")
            try:
                tables = _tables(conn)  # another process may have created it meanwhile
                if tables:
                    _check_schema(conn, path, tables)
                else:
                    _create_schema(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
    except sqlite3.DatabaseError as exc:
        msg = f"{path} is not a trial store: SQLite cannot read it ({exc})"
        raise StoreError(msg) from exc


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _create_schema(conn: sqlite3.Connection) -> None:
    conn.execute(_create_sql("trials", TRIAL_COLUMNS))
    conn.execute(_create_sql("runs", RUN_COLUMNS))
    conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    from onnxnoise import __version__

    meta = {"schema_version": str(SCHEMA_VERSION), "created_at": _now(), "created_by": f"onnxnoise {__version__}"}
    conn.executemany("INSERT INTO meta (name, value) VALUES (?, ?)", list(meta.items()))
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _check_schema(conn: sqlite3.Connection, path: Path, tables: set[str]) -> None:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    if app_id != APPLICATION_ID or "trials" not in tables:
        msg = f"{path} is a SQLite database of another program (tables: {', '.join(sorted(tables))}), not a trial store"
        raise StoreError(msg)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version != SCHEMA_VERSION:
        msg = (
            f"trial store {path} has schema version {version}, this onnxnoise reads version {SCHEMA_VERSION}; "
            "use the onnxnoise that wrote it or start a new store"
        )
        raise StoreError(msg)
