"""Nested values of the written tables: the store's JSON text as typed Parquet columns, and flat text for CSV.

The trial store keeps lists and settings as sorted-key JSON text (columns declared with ``json=True`` in
:mod:`onnxnoise.store.schema`; the store is the storage and stays as it is). The tables ``bench``,
``report``, ``compare`` and ``check`` write are derived from it, and in their Parquet files each such
column is typed (:func:`typed_nested`):

* a JSON list of names (``layers``) is ``List(String)``;
* a JSON object keyed by data, not by field (``changed_values``: ``{layer: count}``) is a list of
  key/value structs, as Parquet's MAP is: ``List(Struct({"layer": String, "count": Int64}))``;
* every other JSON object (``preprocess``, ``noise``, ``settings``, ``context``, ``versions``,
  ``config``) is a ``Struct`` whose fields are the keys of all rows (a row without a key has null
  there), types inferred over all rows; an object that is empty in every row has no field to type
  (Parquet has no empty struct) and is left out of its parent struct, and a column whose every object
  is empty stays text.

CSV holds no nested values. The one flattening rule (:func:`flat_text`): a nested cell is its JSON text,
sorted keys and no whitespace (:func:`onnxnoise.store.schema.canonical_json`: as the store writes it),
a key/value list back as the object it came from, a struct's null fields left out; a cell that is text
already stays as it is. The same rule gives a typed table read back its JSON text
(:func:`onnxnoise.report.written.read_table`).
"""

from __future__ import annotations

import json
from typing import Any

from onnxnoise.lazy import lazy_module
from onnxnoise.store.schema import canonical_json, json_columns

pl = lazy_module("polars")

__all__ = ["MAP_COLUMNS", "typed_nested", "flat_text", "json_rows"]

#: JSON columns whose objects are keyed by data (a layer name): column -> (key field, value field, value dtype
#: by its Polars name: a name, so that importing this module does not import Polars).
MAP_COLUMNS: dict[str, tuple[str, str, str]] = {"changed_values": ("layer", "count", "Int64")}

#: JSON columns that hold a list of names.
_NAME_LISTS: frozenset[str] = frozenset({"layers"})


def typed_nested(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with every JSON-text column of the store's schema as its typed List/Struct column.

    Columns that are not JSON columns of :mod:`onnxnoise.store.schema`, or are typed already, stay as
    they are; the module docstring gives each column's type.

    Args:
        frame: A table with JSON-text columns (``pl.String``), as the store and ``trial_frame`` give them.

    Returns:
        The same rows and columns, the JSON columns typed.

    Raises:
        ValueError: A cell is not JSON (a store never holds one).
    """
    text = [c for c, dtype in frame.schema.items() if c in json_columns() and dtype == pl.String]
    return frame.with_columns(_typed(frame[c]) for c in text) if text else frame


def _typed(column: pl.Series) -> pl.Series:
    if column.name in _NAME_LISTS:
        return column.str.json_decode(pl.List(pl.String))
    if column.name in MAP_COLUMNS:
        key, value, dtype = MAP_COLUMNS[column.name]
        entries = [None if v is None else [{key: k, value: n} for k, n in json.loads(v).items()] for v in column]
        return pl.Series(column.name, entries, dtype=pl.List(pl.Struct({key: pl.String, value: getattr(pl, dtype)})))
    try:
        typed = column.str.json_decode(infer_schema_length=None)
    except pl.exceptions.ComputeError:  # Infinity / NaN (Python's JSON) or types Polars cannot unify
        typed = _from_python(column, None)
    dtype = _without_empty(typed.dtype)
    if dtype is None:
        return column
    if dtype == typed.dtype:
        return typed
    try:
        return column.str.json_decode(dtype)
    except pl.exceptions.ComputeError:
        return _from_python(column, dtype)


def _from_python(column: pl.Series, dtype: Any) -> pl.Series:
    """``column``'s JSON decoded by Python (which reads ``Infinity`` and ``NaN``), typed over every row."""
    values = [{"v": None if v is None else json.loads(v)} for v in column]
    frame = pl.from_dicts(values, infer_schema_length=None) if dtype is None else pl.from_dicts(
        values, schema={"v": dtype})
    return frame["v"].alias(column.name)


def _without_empty(dtype: Any) -> Any:
    """``dtype`` without its struct fields that are empty structs; ``None`` when nothing is left."""
    if isinstance(dtype, pl.Struct):
        fields = {f.name: _without_empty(f.dtype) for f in dtype.fields}
        kept = {name: d for name, d in fields.items() if d is not None}
        return pl.Struct(kept) if kept else None
    if isinstance(dtype, pl.List):
        inner = _without_empty(dtype.inner)
        return None if inner is None else pl.List(inner)
    return dtype


def flat_text(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with each List/Struct column as JSON text (the rule in the module docstring), for CSV.

    Args:
        frame: Any table; columns that are not nested stay as they are.

    Returns:
        The same rows and columns, nested ones as ``pl.String`` (null stays null).
    """
    nested = [c for c, dtype in frame.schema.items() if isinstance(dtype, (pl.List, pl.Struct))]
    return frame.with_columns(pl.Series(c, [_text(c, v) for v in frame[c].to_list()], dtype=pl.String)
                              for c in nested) if nested else frame


def _text(column: str, value: Any) -> str | None:
    if value is None:
        return None
    if column in MAP_COLUMNS and isinstance(value, list):
        key, count, _ = MAP_COLUMNS[column]
        return canonical_json({entry[key]: entry[count] for entry in value})
    return canonical_json(_no_nulls(value))


def _no_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _no_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_no_nulls(v) for v in value]
    return value


def json_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """``frame``'s rows as JSON-ready dicts, the store's JSON-text cells as the values they hold (``--json``)."""
    return [{k: json.loads(v) if k in json_columns() and isinstance(v, str) else v for k, v in row.items()}
            for row in frame.iter_rows(named=True)]
