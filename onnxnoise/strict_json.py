"""Strict JSON text: every non-finite number becomes ``null`` (never a bare ``NaN`` token a strict parser refuses).

Every JSON file or line onnxnoise writes goes through :func:`json_text` (``bench.json``,
``check.json``, ``--json`` output).
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["json_text"]


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
