"""Parsing user options: CLI text and experiment-file values into setting values.

One parser per concept (numbers, strengths with time units, seeds, names, noise-model
parameters, ``--noise MODEL:key=value``). They only parse; the dataclasses of
:mod:`onnxnoise.config` own every default and validation (``resolve_seeds`` is the
one seed validation, used by both).
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any

from onnxnoise.errors import ConfigError

__all__ = [
    "TIME_UNITS", "TIME_STRENGTHS", "given", "parse_numbers", "is_time_strength", "parse_time", "parse_strengths",
    "parse_seeds", "resolve_seeds", "parse_names", "parse_params", "parse_noise",
]

#: Time units of a time strength (``1s``, ``1h``, ``30d``...), in seconds; ``y`` = 365 days.
TIME_UNITS: dict[str, float] = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0,
                                "y": 365 * 86400.0}

#: Strength names that are a time in seconds (the pcm model's ``t_inf``).
TIME_STRENGTHS: tuple[str, ...] = ("t", "t_inf")

_TIME_RE = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-zA-Z]+)\s*$")



def given(**options: Any) -> dict[str, Any]:
    """The options that were given: drops ``None`` values so dataclass defaults apply."""
    return {k: v for k, v in options.items() if v is not None}


def parse_numbers(text: str | Sequence[float], what: str) -> tuple[float, ...]:
    """Parse ``"100,10,5"`` (or a list of numbers) into floats.

    Args:
        text: Comma-separated numbers, or a sequence of numbers (TOML lists).
        what: The option's name for messages, e.g. ``--snr``.

    Raises:
        ConfigError: If an item is not a number or nothing is given.
    """
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    values = []
    for item in items:
        if isinstance(item, bool):
            item = repr(item)
        try:
            values.append(float(item))
        except (TypeError, ValueError):
            msg = f"`{what}` value {item!r} is not a number; give comma-separated numbers, e.g. 100,10,5"
            raise ConfigError(msg) from None
    if not values:
        msg = f"`{what}` is empty; give at least one value"
        raise ConfigError(msg)
    return tuple(values)


def is_time_strength(model: Any) -> bool:
    """Whether a noise model's (class or instance) strength is a time in seconds: ``strength_name`` ``t_inf`` or ``t``."""
    return getattr(model, "strength_name", None) in TIME_STRENGTHS


def parse_time(item: Any, what: str = "--strength") -> float:
    """One time in seconds: a number (seconds) or a number with a unit, ``1s 90min 1h 1d 2w 1y`` (y = 365 d).

    Raises:
        ConfigError: If it is neither.
    """
    if isinstance(item, str):
        match = _TIME_RE.match(item)
        if match:
            unit = match.group(2)
            if unit not in TIME_UNITS:
                msg = (f"`{what}` value {item!r} has an unknown time unit {unit!r}; "
                       f"use one of {', '.join(TIME_UNITS)} (e.g. 1s,1h,1d,30d,1y)")
                raise ConfigError(msg)
            return float(match.group(1)) * TIME_UNITS[unit]
    return parse_numbers([item], what)[0]


def parse_strengths(*, snr: Any = None, noise_pct: Any = None, strength: Any = None,
                    noise_model: Any = None) -> tuple[float, ...] | None:
    """The strength list from whichever one of ``snr``, ``noise_pct`` or ``strength`` was given.

    ``noise_pct`` is the noise standard deviation in percent of ``sigma_w``
    (``SNR = 100 / pct``, paper eq. 1); ``snr`` and ``noise_pct`` only make sense for
    the ``gaussian-snr`` model, which :class:`NoiseConfig` checks. When the strength of
    ``noise_model`` (a class or instance) is a time (:func:`is_time_strength`),
    ``strength`` items may carry a unit (:func:`parse_time`: ``1s,1h,1d,30d,1y``);
    plain numbers are seconds.

    Returns:
        The values, or ``None`` when none was given (the model's defaults apply).

    Raises:
        ConfigError: If more than one is given, a value is not a number, or a value
            has a time unit but the model's strength is not a time.
    """
    chosen = [(name, value) for name, value in (("snr", snr), ("noise_pct", noise_pct), ("strength", strength))
              if value is not None]
    if not chosen:
        return None
    if len(chosen) > 1:
        msg = f"give only one of --snr, --noise-pct or --strength, got {', '.join('--' + n.replace('_', '-') for n, _ in chosen)}"
        raise ConfigError(msg)
    name, value = chosen[0]
    what = f"--{name.replace('_', '-')}"
    if name == "strength":
        items = [v.strip() for v in value.split(",")] if isinstance(value, str) else (
            list(value) if isinstance(value, Sequence) else [value])
        if not items or items == [""]:
            return parse_numbers(value if isinstance(value, str) else items, what)
        if noise_model is not None and is_time_strength(noise_model):
            return tuple(parse_time(item, what) for item in items)
        for item in items:
            if isinstance(item, str) and _TIME_RE.match(item) and not re.fullmatch(r"\s*(inf|nan|infinity)\s*", item, re.I):
                msg = (f"`{what}` value {item!r} has a time unit, but the {noise_model.name} strength "
                       f"`{noise_model.strength_name}` ({noise_model.strength_label}) is not a time; give plain numbers"
                       if noise_model is not None else f"`{what}` value {item!r} has a time unit; give plain numbers")
                raise ConfigError(msg)
        return parse_numbers(items, what)
    values = parse_numbers(value, what)
    if name == "noise_pct":
        if any(not v > 0 or math.isinf(v) for v in values):
            msg = f"`--noise-pct` values must be finite and > 0, got {', '.join(f'{v:g}' for v in values)}"
            raise ConfigError(msg)
        return tuple(100.0 / v for v in values)
    return values


def parse_seeds(value: Any) -> int | tuple[int, ...]:
    """Parse seeds: a count ``N`` (``"3"``, ``3``) or explicit seeds (``"40,30"``, ``[40, 30]``).

    Raises:
        ConfigError: Anything but a count >= 1 or a non-empty list of integers >= 0.
    """
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        try:
            ints = [int(p) for p in parts]
        except ValueError:
            ints = None
        if ints is None or not ints:
            msg = f"seeds must be a count N or seeds like 40,30, got {value!r}"
            raise ConfigError(msg)
        value = ints[0] if "," not in value else tuple(ints)
    elif isinstance(value, (list, tuple)):
        value = tuple(value)
    resolve_seeds(value)
    return value


def resolve_seeds(seeds: int | Sequence[int]) -> list[int]:
    """The list of seeds: ``0 .. N-1`` for a count, else the given seeds without duplicates.

    Raises:
        ConfigError: If the count is < 1, a seed is negative or not an integer, or the list is empty.
    """
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        seeds = int(seeds)
        if seeds < 1:
            msg = f"seeds count must be >= 1, got {seeds!r} (a count N runs seeds 0..N-1; a count of 1 runs seed 0)"
            raise ConfigError(msg)
        return list(range(seeds))
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence):
        msg = f"seeds must be a count or a list of seeds, got {seeds!r}"
        raise ConfigError(msg)
    chosen: list[int] = []
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            msg = f"seed {seed!r} must be a non-negative integer"
            raise ConfigError(msg)
        seed = int(seed)
        if seed not in chosen:
            chosen.append(seed)
    if not chosen:
        msg = "seeds list is empty; give a count (e.g. 3) or seeds (e.g. 40,30)"
        raise ConfigError(msg)
    return chosen


def parse_names(value: Any) -> tuple[str, ...] | None:
    """``"Conv,Gemm"`` or ``["Conv", "Gemm"]`` -> ``("Conv", "Gemm")``; ``None`` stays ``None``."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(str(s).strip() for s in items if str(s).strip())
    if not names:
        msg = f"expected comma-separated names, got {value!r}"
        raise ConfigError(msg)
    return names


def parse_params(items: Sequence[str] | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Noise-model parameters from ``["eta=0.05", "scope=channel"]`` (CLI) or a mapping (TOML).

    A value is read as JSON when it parses (numbers, true/false, lists), else as text.

    Raises:
        ConfigError: On an item without ``=``.
    """
    if items is None or isinstance(items, Mapping):
        return None if items is None else dict(items)
    params: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            msg = f"noise parameter {item!r} must look like NAME=VALUE, e.g. eta=0.05"
            raise ConfigError(msg)
        try:
            params[name.strip()] = json.loads(text)
        except json.JSONDecodeError:
            params[name.strip()] = text.strip()
    return params


def parse_noise(spec: Any = None, *, model: str | None = None,
                params: Sequence[str] | Mapping[str, Any] | None = None) -> tuple[str | None, dict[str, Any] | None]:
    """The noise model and its parameters: ``"pcm:compensation=global,g_max=25"`` -> ``("pcm", {...})``.

    The one parser of the noise choice, for the CLI (``--noise``, or the older
    ``--noise-model`` / ``--noise-param`` pair) and experiment files (``noise``, or
    ``noise_model`` / ``noise_params``). ``spec`` is ``MODEL[:key=value,...]``; each
    value is read as JSON when it parses (numbers, true/false, lists), else as text.
    A comma inside a JSON list (``levels=[1,2]``) stays with its value.

    Args:
        spec: ``MODEL[:key=value,...]`` or ``None``.
        model: The model name given the older way (``--noise-model``).
        params: Parameters given the older way (``--noise-param`` items or a mapping).

    Returns:
        ``(model name or None, params or None)``; ``None`` = not given.

    Raises:
        ConfigError: On an empty model name, an item without ``=``, a parameter given
            twice, or ``spec`` together with ``model`` / ``params``.
    """
    if spec is None:
        return model, parse_params(params)
    if model is not None or params is not None:
        msg = "give the noise model either as --noise MODEL[:key=value,...] or with --noise-model/--noise-param, not both"
        raise ConfigError(msg)
    if not isinstance(spec, str):
        msg = f"`--noise` must be text like pcm:compensation=global, got {spec!r}"
        raise ConfigError(msg)
    name, sep, rest = spec.partition(":")
    name = name.strip()
    if not name:
        msg = f"`--noise` {spec!r} names no model; give MODEL[:key=value,...], e.g. pcm:compensation=global"
        raise ConfigError(msg)
    if not sep:
        return name, None
    items: list[str] = []
    for part in rest.split(","):
        if items and "=" not in part:
            items[-1] += "," + part  # a comma inside a value (a JSON list)
        else:
            items.append(part)
    params_out: dict[str, Any] = {}
    for item in items:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key:
            msg = f"`--noise` parameter {item.strip()!r} must look like key=value, as in pcm:compensation=global"
            raise ConfigError(msg)
        if key in params_out:
            msg = f"`--noise` parameter {key!r} is given twice in {spec!r}"
            raise ConfigError(msg)
        try:
            params_out[key] = json.loads(text)
        except json.JSONDecodeError:
            params_out[key] = text.strip()
    return name, params_out
