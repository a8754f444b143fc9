"""Schema v1 -> v2 migration of a trial store, in place, and re-keying of migrated trials.

:func:`migrate_v1` runs when :func:`onnxnoise.store.open_store` opens a version 1 file.
Inside one ``BEGIN IMMEDIATE`` transaction it renames the v1 tables aside, creates the
v2 tables, copies every row (same order, same ``run_id``) and drops the v1 tables; any
failure rolls the whole transaction back and leaves the file exactly as it was.

Row conversion:

* ``strength`` = ``snr``, NULL where ``snr`` is ``inf`` (the baseline);
* ``noise_model`` = the stored one, else the one in the ``noise`` JSON, else
  ``'gaussian-snr'`` (the only noise model of version 1);
* ``noise``: ``{"noise_model", "bn_variance", "keep_zeros"}`` becomes
  ``{"params": {}, "bn_variance", "keep_zeros"}`` (other entries are kept);
* ``key_version`` = 1 (the key is the v1 hash, see :func:`v1_trial_key`);
  ``layers_noised`` = length of the ``layers`` list; ``label_offset``, ``batch_size``,
  ``overflow_count``, ``clipped_count``, ``zeros_kept`` and ``context`` are NULL
  (version 1 did not record them);
* ``runs``: copied with ``noise`` converted the same way, ``context`` NULL.

``meta`` gets ``schema_version`` = 2, ``migrated_from`` = 1 and ``migrated_at``.

Migrated trials keep their v1 keys, which the current engine never plans. The engine
computes, for each trial it plans, the v1 key (:func:`v1_trial_key`, a frozen copy of
the v1 derivation) and the v2 key, and hands the pairs to
:meth:`onnxnoise.store.TrialStore.adopt_v1`, which re-keys the stored v1 rows it
accepts (:func:`adopt_v1`).
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from onnxnoise.errors import StoreError
from onnxnoise.store.schema import (
    KEY_VERSION,
    RUN_COLUMNS,
    SCHEMA_VERSION,
    TRIAL_COLUMNS,
    Column,
    canonical_json,
    create_sql,
    now,
)

__all__ = ["V1_KEY_VERSION", "migrate_v1", "add_missing_columns", "convert_v1_noise", "v1_trial_key",
           "v1_make_context", "adopt_v1"]

#: Key derivation version of the v1 engine (``onnxnoise.store.schema.KEY_VERSION`` was 1).
V1_KEY_VERSION: int = 1

#: Noise model of every version 1 trial.
_V1_NOISE_MODEL = "gaussian-snr"

_V1_TRIAL_COLUMNS = (
    "key", "run_id", "model", "model_sha256", "dataset", "dataset_fingerprint", "preprocess", "mode",
    "layer_index", "layers", "noise_model", "noise", "snr", "seed", "images", "top1_correct", "top5_correct",
    "nan_count", "bn_variance_changed", "seconds", "provider", "versions", "error", "finished_at",
)
_V1_RUN_COLUMNS = (
    "run_id", "started_at", "model", "model_sha256", "dataset", "dataset_fingerprint", "preprocess",
    "noise_model", "noise", "config", "versions",
)
_CHUNK = 500  # keys per `IN (...)` query, well below SQLite's variable limit


def migrate_v1(conn: sqlite3.Connection, path: Path) -> bool:
    """Migrate an open version 1 store to version 2 in place, in one transaction.

    Args:
        conn: Connection in autocommit mode (``isolation_level=None``), no transaction open.
        path: The file, for messages.

    Returns:
        ``True`` when this call migrated the file, ``False`` when it was no longer at
        version 1 once the write lock was held (another process migrated it).

    Raises:
        StoreError: If the migration fails; the file is then unchanged.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise _failed(path, exc) from exc
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] != 1:
            conn.execute("ROLLBACK")
            return False
        _copy_tables(conn)
        conn.execute("COMMIT")
    except BaseException as exc:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the transaction is gone already; SQLite rolls a broken one back on the next open
        if isinstance(exc, (sqlite3.Error, ValueError, TypeError, KeyError)):
            raise _failed(path, exc) from exc
        raise
    return True


def add_missing_columns(conn: sqlite3.Connection, path: Path) -> list[str]:
    """Add every declared column a version 2 file lacks (NULL in its existing rows).

    Compares each table's columns (``PRAGMA table_info``) with :data:`~onnxnoise.store.schema.TRIAL_COLUMNS`
    and :data:`~onnxnoise.store.schema.RUN_COLUMNS`; additive only (``ALTER TABLE ... ADD COLUMN``),
    in one ``BEGIN IMMEDIATE`` transaction that looks again under the write lock, so two
    processes opening one old file at once add each column once. Keys and existing values
    are unchanged; columns the file has and this onnxnoise does not declare are left alone.

    Args:
        conn: Connection in autocommit mode, no transaction open.
        path: The file, for messages.

    Returns:
        The columns added by this call as ``table.column`` (empty when the file has them all).

    Raises:
        StoreError: If a missing column cannot be NULL (``NOT NULL`` or a key: the file is
            not a trial store this onnxnoise reads), or the file cannot be written (it is
            then unchanged).
    """
    if not _missing_columns(conn):
        return []
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            missing = _missing_columns(conn)
            required = [f"{table}.{column.name}" for table, column in missing if not column.nullable]
            if required:
                msg = (f"trial store {path} lacks the required column(s) {', '.join(required)}; it was not "
                       "written by onnxnoise (the file is unchanged)")
                raise StoreError(msg)
            for table, column in missing:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column.name} {column.sql}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        names = ", ".join(f"{table}.{column.name}" for table, column in _missing_columns(conn))
        msg = f"cannot add the columns {names} to trial store {path} (the file is unchanged): {detail}"
        raise StoreError(msg) from exc
    return [f"{table}.{column.name}" for table, column in missing]


def _missing_columns(conn: sqlite3.Connection) -> list[tuple[str, Column]]:
    """``(table, column)`` of every declared column the file's tables lack."""
    missing = []
    for table, declared in (("trials", TRIAL_COLUMNS), ("runs", RUN_COLUMNS)):
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if not present:
            continue  # no such table: not ours to add (a trial store always has both)
        missing += [(table, column) for name, column in declared.items() if name not in present]
    return missing


def _failed(path: Path, exc: BaseException) -> StoreError:
    detail = " ".join(f"{type(exc).__name__}: {exc}".split())
    return StoreError(f"cannot migrate trial store {path} from schema version 1 to {SCHEMA_VERSION} "
                      f"(the file is unchanged): {detail}")


def _copy_tables(conn: sqlite3.Connection) -> None:
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.execute("ALTER TABLE trials RENAME TO trials_v1")
    if "runs" in tables:
        conn.execute("ALTER TABLE runs RENAME TO runs_v1")
    conn.execute(create_sql("trials", TRIAL_COLUMNS))
    conn.execute(create_sql("runs", RUN_COLUMNS))

    trial_names = list(TRIAL_COLUMNS)
    insert = f"INSERT INTO trials ({', '.join(trial_names)}) VALUES ({', '.join('?' * len(trial_names))})"
    rows = conn.execute(f"SELECT {', '.join(_V1_TRIAL_COLUMNS)} FROM trials_v1 ORDER BY rowid").fetchall()
    for values in rows:
        new = _convert_trial(dict(zip(_V1_TRIAL_COLUMNS, values)))
        conn.execute(insert, [new[n] for n in trial_names])
    conn.execute("DROP TABLE trials_v1")

    if "runs" in tables:
        run_names = list(RUN_COLUMNS)
        insert = f"INSERT INTO runs ({', '.join(run_names)}) VALUES ({', '.join('?' * len(run_names))})"
        rows = conn.execute(f"SELECT {', '.join(_V1_RUN_COLUMNS)} FROM runs_v1 ORDER BY run_id").fetchall()
        for values in rows:
            old = dict(zip(_V1_RUN_COLUMNS, values))
            new = {name: old.get(name) for name in run_names}
            new["noise"] = convert_v1_noise(old["noise"])
            conn.execute(insert, [new[n] for n in run_names])
        # AUTOINCREMENT never reuses an id, even one whose run row was deleted.
        seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'runs_v1'").fetchone()
        conn.execute("DROP TABLE runs_v1")
        if seq is not None:
            current = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'runs'").fetchone()
            if current is None:
                conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('runs', ?)", seq)
            elif current[0] < seq[0]:
                conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'runs'", seq)

    meta = {"schema_version": str(SCHEMA_VERSION), "migrated_from": "1", "migrated_at": now()}
    conn.executemany("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", list(meta.items()))
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _convert_trial(old: Mapping[str, Any]) -> dict[str, Any]:
    new: dict[str, Any] = {name: old.get(name) for name in TRIAL_COLUMNS}
    new["key_version"] = V1_KEY_VERSION
    snr = old["snr"]
    new["strength"] = None if snr is None or math.isinf(float(snr)) else float(snr)
    noise = json.loads(old["noise"]) if old["noise"] is not None else None
    from_json = noise.get("noise_model") if isinstance(noise, dict) else None
    new["noise_model"] = old["noise_model"] or from_json or _V1_NOISE_MODEL
    new["noise"] = convert_v1_noise(old["noise"])
    new["layers_noised"] = len(json.loads(old["layers"])) if old["layers"] is not None else None
    return new


def convert_v1_noise(noise: str | None) -> str | None:
    """Convert v1 ``noise`` JSON to v2: drop ``noise_model`` (a column of its own), add ``params``.

    Args:
        noise: v1 JSON text, e.g. ``{"bn_variance":"clamp","keep_zeros":false,"noise_model":"gaussian-snr"}``.

    Returns:
        v2 JSON text, e.g. ``{"bn_variance":"clamp","keep_zeros":false,"params":{}}``; ``None`` for ``None``.
    """
    if noise is None:
        return None
    settings = json.loads(noise)
    if not isinstance(settings, dict):
        msg = f"v1 `noise` must be a JSON object, got {noise!r}"
        raise ValueError(msg)
    settings.pop("noise_model", None)
    params = settings.pop("params", {})
    return canonical_json({"params": params, **settings})


def _v1_canonical_json(obj: Any) -> str:
    """The v1 engine's canonical JSON (``onnxnoise.engine.plan._canonical_json`` of version 1)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def v1_make_context(
    *,
    model_sha256: str,
    dataset_fingerprint: str,
    preprocess: Mapping[str, Any],
    noise: Mapping[str, Any],
    **extra: Any,
) -> dict[str, str]:
    """The experiment context as the v1 engine built it (frozen copy of v1 ``make_context``).

    The v1 sweep passed ``noise = {"noise_model": "gaussian-snr", "bn_variance": ...,
    "keep_zeros": ...}`` and ``extra`` = ``images`` (number of images), ``limit`` and
    ``output`` (the model output's name).

    Returns:
        ``name -> string``: strings as given, everything else canonical JSON.

    Raises:
        StoreError: If a value is not JSON-serializable.
    """
    items = {
        "model_sha256": model_sha256,
        "dataset_fingerprint": dataset_fingerprint,
        "preprocess": preprocess,
        "noise": noise,
        **extra,
    }
    context: dict[str, str] = {}
    for name, value in items.items():
        if isinstance(value, str):
            context[name] = value
            continue
        try:
            context[name] = _v1_canonical_json(value)
        except (TypeError, ValueError) as exc:
            msg = f"context value `{name}` = {value!r} is not JSON-serializable: {exc}"
            raise StoreError(msg) from None
    return context


def v1_trial_key(trial: Mapping[str, Any], context: Mapping[str, Any]) -> str:
    """The key the v1 engine gave a trial (frozen copy of v1 ``Trial.key``).

    sha256 of the canonical JSON of ``{"v": 1, "trial": {mode, layer_index, layers,
    snr: repr(float(snr)), seed}, "context": context}``.

    Args:
        trial: ``mode``, ``layer_index``, ``layers`` (names, or their JSON text as
            stored), ``seed`` and either ``snr`` (``inf`` for the baseline) or
            ``strength`` (``None`` for the baseline); other entries are ignored, so a
            stored row works too.
        context: The v1 context, normally from :func:`v1_make_context`; hashed as given.

    Returns:
        64 lowercase hex digits.

    Raises:
        StoreError: If a field is missing or the context is not JSON-serializable.
    """
    try:
        if "snr" in trial:
            snr = trial["snr"]
        else:
            snr = math.inf if trial["strength"] is None else trial["strength"]
        layers = trial["layers"]
        if isinstance(layers, str):
            layers = json.loads(layers)
        fields = {
            "mode": trial["mode"],
            "layer_index": trial["layer_index"],
            "layers": list(layers or ()),
            "snr": repr(float(snr)),
            "seed": trial["seed"],
        }
    except (KeyError, TypeError, ValueError) as exc:
        msg = f"v1 trial key needs mode, layer_index, layers, seed and snr or strength; got {dict(trial)!r} ({exc})"
        raise StoreError(msg) from None
    if not all(isinstance(k, str) for k in context):
        msg = f"`context` keys must be strings, got {sorted(map(repr, context))}"
        raise StoreError(msg)
    try:
        text = _v1_canonical_json({"v": V1_KEY_VERSION, "trial": fields, "context": dict(context)})
    except (TypeError, ValueError) as exc:
        msg = f"`context` must hold JSON-serializable values without NaN/inf: {exc}"
        raise StoreError(msg) from None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def adopt_v1(conn: sqlite3.Connection, planned: Mapping[str, str], ok: Callable[[dict], bool]) -> int:
    """Re-key migrated v1 trials to their v2 keys; see :meth:`onnxnoise.store.TrialStore.adopt_v1`.

    ``ok`` runs before the write transaction; the re-keying runs in one
    ``BEGIN IMMEDIATE`` transaction. A v1 row is not adopted when its v2 key already
    holds a finished row; a failed row under the v2 key gives way to a finished v1 row.
    """
    for v1_key, v2_key in planned.items():
        if not isinstance(v1_key, str) or not isinstance(v2_key, str) or not v2_key:
            msg = f"`planned` maps v1 keys to v2 keys (strings), got {v1_key!r} -> {v2_key!r}"
            raise StoreError(msg)
    names = list(TRIAL_COLUMNS)
    keys = [k for k, v in planned.items() if k != v]
    rows: dict[str, dict[str, Any]] = {}
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start:start + _CHUNK]
        sql = f"SELECT {', '.join(names)} FROM trials WHERE key_version = 1 AND key IN ({', '.join('?' * len(chunk))})"
        for values in conn.execute(sql, chunk):
            rows[values[0]] = dict(zip(names, values))
    accepted = [(key, planned[key]) for key in keys if key in rows and ok(dict(rows[key]))]
    if not accepted:
        return 0
    adopted = 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        for v1_key, v2_key in accepted:
            if conn.execute("SELECT 1 FROM trials WHERE key = ? AND key_version = 1", (v1_key,)).fetchone() is None:
                continue  # adopted meanwhile by another process
            existing = conn.execute("SELECT error FROM trials WHERE key = ?", (v2_key,)).fetchone()
            if existing is not None:
                if existing[0] is None or rows[v1_key]["error"] is not None:
                    continue
                conn.execute("DELETE FROM trials WHERE key = ?", (v2_key,))
            cursor = conn.execute(
                "UPDATE trials SET key = ?, key_version = ? WHERE key = ? AND key_version = 1",
                (v2_key, KEY_VERSION, v1_key),
            )
            adopted += cursor.rowcount
        conn.execute("COMMIT")
    except BaseException:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the transaction is gone already
        raise
    return adopted
