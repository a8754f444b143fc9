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

Resume and concurrent writers: a trial's ``key`` is the primary key, so a trial is
stored at most once. Several processes may write one store; SQLite serializes the
writes. :meth:`TrialStore.record` returns ``False`` (and stores nothing) when another
writer already recorded a finished row under the key; a failed row (``error`` set) may
be replaced by its retry. :meth:`TrialStore.has` lets an executor skip a trial that
another process finished meanwhile.

Schema: :mod:`onnxnoise.store.schema` (version 2); a version 1 file is migrated in
place on open, and a version 2 file lacking declared columns (e.g. the paired counts)
gets them (:mod:`onnxnoise.store.migrate`).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from onnxnoise.errors import StoreError
from onnxnoise.lazy import lazy_module
from onnxnoise.store import migrate
from onnxnoise.store.schema import (
    APPLICATION_ID, KEY_VERSION, MODES, RUN_COLUMNS, SCHEMA_VERSION, STORE_NAME, TRIAL_COLUMNS, Column, canonical_json,
    create_schema, now, trial_frame,
)

pl = lazy_module("polars")

__all__ = ["TrialStore", "open_store"]

_BUSY_TIMEOUT_MS = 30_000
_READABLE_PRAGMAS = ("application_id", "journal_mode", "synchronous", "user_version")  # by TrialStore.pragma


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

    def row(self, key: str) -> dict[str, Any] | None:
        """The stored trial under ``key`` as ``column -> value`` (JSON columns as text), or None."""
        values = self._execute(f"SELECT {', '.join(TRIAL_COLUMNS)} FROM trials WHERE key = ?", (key,)).fetchone()
        return None if values is None else dict(zip(TRIAL_COLUMNS, values))

    def has(self, key: str) -> bool:
        """Whether a finished trial (``error`` NULL) is stored under ``key``.

        An executor calls it just before running a trial, to skip one that another
        process finished meanwhile. A failed row does not count.
        """
        return self._execute("SELECT 1 FROM trials WHERE key = ? AND error IS NULL", (key,)).fetchone() is not None

    def record(self, row: Mapping[str, Any]) -> bool:
        """Insert one trial and commit it before returning.

        Args:
            row: Column name -> value, names from :data:`TRIAL_COLUMNS`. Required:
                ``key``, ``mode`` (one of ``baseline``, ``all``, ``per-layer``,
                ``cumulative``) and ``noise_model``. ``strength`` must be a finite
                number, except for the baseline, which has none (NULL). Missing
                columns are stored as NULL, except ``key_version`` (default 2) and
                ``finished_at`` (default: now, UTC ISO 8601). JSON columns
                (``preprocess``, ``layers``, ``noise``, ``context``, ``versions``)
                take a JSON string or a JSON-ready object, stored as sorted-key JSON.

        Returns:
            ``True`` when the row was stored; ``False`` when a finished row (``error``
            NULL) is already stored under its key, e.g. written by another process
            running the same trial; the stored row is then kept unchanged. A failed
            row is replaced by the next row recorded under its key.

        Raises:
            StoreError: On an unknown column, a missing or invalid required value, or
                a value of the wrong type.
        """
        values: dict[str, Any] = {name: None for name in TRIAL_COLUMNS}
        values.update(self._prepare(row, TRIAL_COLUMNS, table="trials"))
        if values["key_version"] is None:
            values["key_version"] = KEY_VERSION
        if values["finished_at"] is None:
            values["finished_at"] = now()
        _check_trial(values)
        names = list(values)
        updates = ", ".join(f"{n} = excluded.{n}" for n in names if n != "key")
        sql = (
            f"INSERT INTO trials ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "
            f"ON CONFLICT(key) DO UPDATE SET {updates} WHERE trials.error IS NOT NULL"
        )
        return self._execute(sql, [values[n] for n in names]).rowcount > 0

    def record_run(self, info: Mapping[str, Any]) -> int:
        """Record one sweep invocation (its experiment context) and return its ``run_id``.

        Args:
            info: Column name -> value, names from :data:`RUN_COLUMNS` (all optional;
                ``started_at`` defaults to now). JSON columns (``preprocess``,
                ``noise``, ``config``, ``context``, ``versions``) take a string or an
                object.

        Returns:
            The new run's id, to put in each trial row's ``run_id``.

        Raises:
            StoreError: On an unknown column or a value of the wrong type.
        """
        values = self._prepare(info, RUN_COLUMNS, table="runs")
        values.pop("run_id", None)
        values.setdefault("started_at", now())
        names = list(values)
        sql = f"INSERT INTO runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        return int(self._execute(sql, [values[n] for n in names]).lastrowid)

    def adopt_v1(self, planned: Mapping[str, str], ok: Callable[[dict], bool]) -> int:
        """Re-key trials migrated from a version 1 store so that the current engine finds them.

        Args:
            planned: v1 key -> v2 key of the same trial, for the trials the engine
                plans (it computes the v1 key with
                :func:`onnxnoise.store.migrate.v1_trial_key`).
            ok: Called with each stored v1 row (``key_version`` 1, key in ``planned``)
                as a dict ``column -> value`` (JSON columns as text, failed rows
                included); returns whether that row may count as the v2 trial (same
                label offset and other facts the v1 key did not cover).

        Returns:
            How many rows were adopted: their ``key`` is now the v2 key and
            ``key_version`` 2. A row is not adopted when ``ok`` refuses it or when a
            finished row is already stored under its v2 key (a failed one there gives
            way to a finished v1 row).

        Raises:
            StoreError: If ``planned`` holds a non-string key, or the store cannot be
                written (nothing is re-keyed then).
        """
        try:
            return migrate.adopt_v1(self._conn, planned, ok)
        except sqlite3.Error as exc:
            msg = f"trial store {self.path}: {type(exc).__name__}: {exc}"
            raise StoreError(msg) from exc

    def to_frame(self) -> pl.DataFrame:
        """All trials, in the order they were recorded.

        Returns:
            One row per trial with the columns of :data:`TRIAL_COLUMNS` in order (JSON
            columns as strings, ``strength`` null for the baseline), plus
            ``top1_acc`` and ``top5_acc`` (percent, ``100 * correct / images``; null
            for failed trials and when ``images`` is 0 or null).
        """
        rows = self._execute(f"SELECT {', '.join(TRIAL_COLUMNS)} FROM trials ORDER BY rowid").fetchall()
        return trial_frame(rows)

    def runs(self) -> pl.DataFrame:
        """All recorded runs (columns of :data:`RUN_COLUMNS`), oldest first."""
        return self._frame("runs", RUN_COLUMNS, order="run_id")

    def pragma(self, name: str) -> Any:
        """Read one setting of this store's own SQLite connection, changing nothing: ``application_id``,
        ``journal_mode``, ``synchronous`` (2 is FULL) or ``user_version``; another name raises StoreError.
        """
        if name not in _READABLE_PRAGMAS:
            msg = f"unknown store setting {name!r}; readable: {', '.join(_READABLE_PRAGMAS)}"
            raise StoreError(msg)
        return self._execute(f"PRAGMA {name}").fetchone()[0]

    def _frame(self, table: str, columns: Mapping[str, Column], *, order: str) -> pl.DataFrame:
        rows = self._execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}").fetchall()
        schema = {name: column.polars_dtype for name, column in columns.items()}
        return pl.DataFrame(rows, schema=schema, orient="row")

    def _execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            msg = f"trial store {self.path}: {type(exc).__name__}: {exc}"
            raise StoreError(msg) from exc

    @staticmethod
    def _prepare(row: Mapping[str, Any], columns: Mapping[str, Column], *, table: str) -> dict[str, Any]:
        unknown = sorted(set(row) - set(columns))
        if unknown:
            msg = f"unknown {table} column(s) {', '.join(map(repr, unknown))}; known: {', '.join(columns)}"
            raise StoreError(msg)
        values: dict[str, Any] = {}
        for name, value in row.items():
            if value is not None:
                value = _convert(columns[name], value)
            values[name] = value
        return values


def _check_trial(values: Mapping[str, Any]) -> None:
    """Refuse a trial row whose required values are missing or inconsistent (one-line StoreError)."""
    for name in ("key", "mode", "noise_model"):
        if not values.get(name):
            msg = f"trial row needs `{name}`, got {values.get(name)!r}"
            raise StoreError(msg)
    mode, strength = values["mode"], values["strength"]
    if mode not in MODES:
        msg = f"column `mode` must be one of {', '.join(MODES)}, got {mode!r}"
        raise StoreError(msg)
    if mode == "baseline" and strength is not None:
        msg = f"a 'baseline' trial has no `strength` (store None), got {strength!r}"
        raise StoreError(msg)
    if mode != "baseline" and strength is None:
        msg = f"a {mode!r} trial needs `strength` (a finite number); only the baseline has none"
        raise StoreError(msg)


def _convert(column: Column, value: Any) -> Any:
    """Check and convert one value to what SQLite stores; raise StoreError when it does not fit."""
    name, dtype = column.name, column.polars_dtype
    try:
        if column.json:
            if isinstance(value, str):
                json.loads(value)
                return value
            return canonical_json(value)
        if dtype == pl.Int64:
            if isinstance(value, bool) or int(value) != value:
                raise TypeError
            return int(value)
        if dtype == pl.Float64:
            if isinstance(value, bool):
                raise TypeError
            value = float(value)
            if name == "strength" and not math.isfinite(value):
                raise ValueError
            return value
        if not isinstance(value, str):
            raise TypeError
        return value
    except (TypeError, ValueError, OverflowError):
        if column.json:
            kind = "JSON (a string or a JSON-ready object)"
        elif name == "strength":
            kind = "a finite number (None for the baseline)"
        else:
            kind = {pl.Int64: "an integer", pl.Float64: "a number"}.get(dtype, "a string")
        msg = f"column `{name}` must be {kind}, got {value!r}"
        raise StoreError(msg) from None


def open_store(path: str | os.PathLike, *, create: bool = True) -> TrialStore:
    """Open (and if needed create) a trial store; migrate a version 1 store in place.

    Args:
        path: SQLite file, e.g. ``runs/resnet20/trials.sqlite``; missing parent folders
            are created when ``create`` is true.
        create: Create the file when it does not exist; with ``False`` a missing file
            raises (for readers such as reports).

    Returns:
        The open :class:`TrialStore` (WAL journal, ``synchronous=FULL``).

    Raises:
        StoreError: If the path is missing (``create=False``) or a folder, the file is
            not a SQLite database, is another program's database, has a schema version
            other than 1 (migrated) or 2, or its migration fails (the file is then
            unchanged).
    """
    path = Path(path)
    if path.is_dir():
        msg = f"trial store path {path} is a folder; give a file such as {path / STORE_NAME}"
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
        version = _check_schema(conn, path, tables) if tables else None
        conn.execute("PRAGMA journal_mode = WAL").fetchone()
        conn.execute("PRAGMA synchronous = FULL")
        if not tables:
            conn.execute("BEGIN IMMEDIATE")
            try:
                tables = _tables(conn)  # another process may have created it meanwhile
                if tables:
                    version = _check_schema(conn, path, tables)
                else:
                    create_schema(conn)
                    version = SCHEMA_VERSION
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        if version == 1:
            migrate.migrate_v1(conn, path)
        migrate.add_missing_columns(conn, path)
    except sqlite3.DatabaseError as exc:
        msg = f"{path} is not a trial store: SQLite cannot read it ({exc})"
        raise StoreError(msg) from exc


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _check_schema(conn: sqlite3.Connection, path: Path, tables: set[str]) -> int:
    """Return the store's schema version (1 or 2); refuse anything else."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    if app_id != APPLICATION_ID or "trials" not in tables:
        msg = f"{path} is a SQLite database of another program (tables: {', '.join(sorted(tables))}), not a trial store"
        raise StoreError(msg)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        msg = (
            f"trial store {path} has schema version {version}, newer than version {SCHEMA_VERSION} that this "
            "onnxnoise reads; use the newer onnxnoise that wrote it or start a new store"
        )
        raise StoreError(msg)
    if version not in (1, SCHEMA_VERSION):
        msg = (
            f"trial store {path} has schema version {version}; this onnxnoise reads version {SCHEMA_VERSION} "
            "and migrates version 1; start a new store"
        )
        raise StoreError(msg)
    return version
