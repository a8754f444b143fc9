"""Parameter checks shared by the noise models: one clear line per bad value.

Each check raises :class:`ValueError` (which :func:`onnxnoise.noise.make_noise_model`
turns into a one-line :class:`~onnxnoise.errors.NoiseConfigError` naming the model)
and returns nothing; the message names the parameter, what it accepts and the value.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

__all__ = ["check_bool", "check_choice", "check_fraction", "check_levels", "check_positive"]


def check_choice(name: str, value: Any, choices: Sequence[str], hint: str = "") -> None:
    """``value`` must be one of ``choices`` (text)."""
    if not isinstance(value, str) or value not in choices:
        msg = f"`{name}` must be one of {', '.join(choices)}, got {value!r}{hint}"
        raise ValueError(msg)


def check_bool(name: str, value: Any) -> None:
    """``value`` must be ``true`` or ``false`` (a bool, not 0/1 or text)."""
    if not isinstance(value, bool):
        msg = f"`{name}` must be true or false, got {value!r}"
        raise ValueError(msg)


def check_positive(name: str, value: Any, unit: str = "") -> None:
    """``value`` must be a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        msg = f"`{name}` must be a finite number > 0{unit}, got {value!r}"
        raise ValueError(msg)


def check_fraction(name: str, value: Any) -> None:
    """``value`` must be a number in ``[0, 1]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        msg = f"`{name}` must be a number in [0, 1], got {value!r}"
        raise ValueError(msg)


def check_levels(name: str, value: Any, *, allow_off: bool = True) -> None:
    """``value`` must be an integer >= 2 (or 0 = off when ``allow_off``)."""
    ok = not isinstance(value, bool) and isinstance(value, numbers.Integral) and (value >= 2 or
                                                                              (allow_off and value == 0))
    if not ok:
        off = " (0 = continuous, no quantization)" if allow_off else ""
        msg = f"`{name}` must be an integer >= 2{off}, got {value!r}"
        raise ValueError(msg)
