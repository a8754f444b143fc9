"""Strict JSON text: every non-finite number becomes ``null`` (never a bare ``NaN`` token a strict parser refuses),
and JSON / TOML read with bounded nesting.

Every JSON file or line onnxnoise writes goes through :func:`json_text` (``bench.json``,
``check.json``, ``--json`` output). Every JSON or TOML text a user gives (a model's
``onnxnoise.preprocess`` metadata, ``datasets.json``, an experiment file, ``--noise`` parameter
values) is read with :func:`parse_json` / :func:`parse_toml`: a document nested deeper than
:data:`MAX_NESTING` is a ``ValueError`` like any syntax error (Python's parsers would raise
``RecursionError`` past about 1000 levels, and code walking a parsed document recursively earlier).
"""

from __future__ import annotations

import json
import math
import tomllib
from typing import Any

__all__ = ["MAX_NESTING", "json_text", "parse_json", "parse_toml"]

#: Deepest nesting of arrays and objects (tables) a JSON or TOML document read by onnxnoise may have;
#: the tool's own files nest at most 4 levels.
MAX_NESTING = 64


def _finite(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, inf; numpy scalars too) replaced by None, recursively."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item") and hasattr(obj, "dtype") and getattr(obj, "ndim", None) == 0:
        return _finite(obj.item())
    return obj


def json_text(obj: Any, *, indent: int | None = None) -> str:
    """Strict JSON text of ``obj``: non-finite numbers become ``null`` (never a bare ``NaN`` token)."""
    return json.dumps(_finite(obj), indent=indent, allow_nan=False)


def _too_deep(what: str) -> ValueError:
    return ValueError(f"the {what} text nests arrays or objects more than {MAX_NESTING} levels deep")


def _check_nesting(value: Any, what: str) -> Any:
    """``value`` when its arrays and objects nest at most :data:`MAX_NESTING` deep, else a ValueError."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        if children and depth > MAX_NESTING:
            raise _too_deep(what)
        stack.extend((child, depth + 1) for child in children)
    return value


def parse_json(text: str | bytes) -> Any:
    """``json.loads(text)`` of bounded nesting.

    Raises:
        ValueError: Not JSON (``json.JSONDecodeError``), or nested deeper than :data:`MAX_NESTING`.
    """
    return _parse(json.loads, text, "JSON")


def parse_toml(text: str) -> dict[str, Any]:
    """``tomllib.loads(text)`` of bounded nesting.

    Raises:
        ValueError: Not TOML (``tomllib.TOMLDecodeError``), or nested deeper than :data:`MAX_NESTING`.
    """
    return _parse(tomllib.loads, text, "TOML")


def _parse(loads: Any, text: str | bytes, what: str) -> Any:
    """``loads(text)`` whose nesting is checked; a RecursionError inside the parser is the same refusal."""
    try:
        return _check_nesting(loads(text), what)
    except RecursionError:
        raise _too_deep(what) from None
