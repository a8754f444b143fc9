"""Value checks of run settings: each raises one :class:`~onnxnoise.errors.ConfigError` line naming the flag.

Used by :mod:`onnxnoise.config` when a :class:`~onnxnoise.config.RunConfig` or
:class:`~onnxnoise.config.SweepConfig` is built (from the command line, an experiment file or Python).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from onnxnoise.errors import ConfigError

__all__ = ["check_positive", "check_gib", "check_int", "check_percent"]


def check_positive(flag: str, value: Any, *, unit: str = "", example: str = "2 or 0.5") -> None:
    """Raise ``ConfigError`` unless ``value`` is a positive, finite number (of ``unit``, named in the message)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        msg = f"`{flag}` must be a positive number{f' of {unit}' if unit else ''} (e.g. {example}), got {value!r}"
        raise ConfigError(msg)


def check_gib(flag: str, value: Any) -> None:
    """Raise ``ConfigError`` unless ``value`` is a positive, finite number of GiB."""
    check_positive(flag, value, unit="GiB")


def check_int(name: str, value: Any, *, minimum: int, optional: bool = False, maximum: int | None = None,
               why: str = "") -> None:
    """Raise ``ConfigError`` unless ``value`` is an integer from ``minimum`` to ``maximum`` (``why`` says whence
    the maximum), or ``None`` when ``optional``."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        msg = f"`{name}` must be an integer >= {minimum}, got {value!r}"
        raise ConfigError(msg)
    if maximum is not None and value > maximum:
        msg = f"`{name}` must be at most {maximum}{why}, got {value!r}"
        raise ConfigError(msg)


def check_percent(name: str, value: Any, *, optional: bool = False) -> None:
    """Raise ``ConfigError`` unless ``value`` is a finite number from 0 to 100 (or ``None`` when ``optional``)."""
    if value is None and optional:
        return
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
            or not 0 <= value <= 100):
        msg = f"`{name}` must be a percentage from 0 to 100, got {value!r}"
        raise ConfigError(msg)
