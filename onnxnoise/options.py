"""Parsing user options: CLI text and experiment-file values into setting values.

One parser per concept (numbers, strengths with time units, seeds, names, noise-model
parameters, ``--noise MODEL:key=value``). They only parse; the dataclasses of
:mod:`onnxnoise.config` own every default and validation (``resolve_seeds`` is the
one seed validation, used by both).
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any

from onnxnoise.errors import ConfigError
from onnxnoise.noise import NOISE_MODELS, get_noise_model
from onnxnoise.noise.axis import TIME_STRENGTHS, StrengthAxis, axis_label, axis_of, strength_flag_owners
from onnxnoise.strict_json import parse_json

__all__ = [
    "TIME_UNITS", "TIME_STRENGTHS", "given", "parse_numbers", "parse_float_list", "is_time_strength", "parse_time",
    "parse_strengths",
    "strength_options", "strength_flag", "strength_flag_models", "strength_example", "AUTO_MAX_SEEDS", "MAX_SEEDS", "MAX_SEED",
    "DEFAULT_NOISE_MODEL",
    "parse_seeds", "resolve_seeds", "check_auto_seeds", "parse_names", "parse_params", "parse_noise",
]

#: Time units of a time strength (``1s``, ``1h``, ``30d``...), in seconds; ``y`` = 365 days.
TIME_UNITS: dict[str, float] = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0,
                                "y": 365 * 86400.0}

_TIME_RE = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-zA-Z]+)\s*$")

#: The noise model of a run that names none: the paper's (``NoiseConfig.model``'s default).
DEFAULT_NOISE_MODEL = "gaussian-snr"

#: ``--seeds auto``: most draws per (strength, layer) group unless ``--max-seeds`` says otherwise.
AUTO_MAX_SEEDS = 20

#: Most seeds (noise draws per strength and layer) a run may ask for: a count, a list or ``--max-seeds``.
#: Far beyond any useful interval (the t-interval's half-width shrinks as 1 / sqrt(draws)); a count of
#: 1e9 would build a list of a billion seeds and a plan of billions of trials before the first ran.
MAX_SEEDS = 10_000

#: Largest seed a run may use: the trial store's ``seed`` column is a signed 64-bit integer
#: (SQLite INTEGER, Polars Int64); the noise generator itself takes any non-negative integer.
MAX_SEED = 2**63 - 1


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


def parse_float_list(text: str) -> tuple[float, ...]:
    """``"0.5,0.5,0.5"`` -> ``(0.5, 0.5, 0.5)`` (per-channel ``--mean`` / ``--std``).

    Raises:
        ConfigError: An item is not a number.
    """
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"expected comma-separated numbers, got {text!r}") from None


def is_time_strength(model: Any) -> bool:
    """Whether a noise model's (class or instance) strength is a time in seconds (its axis's ``time``).

    A model without a declared axis is a time when its ``strength_name`` is ``t`` or ``t_inf``
    (:func:`onnxnoise.noise.axis.axis_of`).
    """
    return axis_of(model).time


def parse_time(item: Any, what: str = "--strength") -> float:
    """One time in seconds: a number (seconds) or a number with a unit, ``1s 90min 1h 1d 2w 1y`` (y = 365 d).

    Raises:
        ConfigError: If it is neither, or the time is negative (times are >= 0).
    """
    seconds = None
    if isinstance(item, str):
        match = _TIME_RE.match(item)
        if match:
            unit = match.group(2)
            if unit not in TIME_UNITS:
                msg = (f"`{what}` value {item!r} has an unknown time unit {unit!r}; "
                       f"use one of {', '.join(TIME_UNITS)} (e.g. 1s,1h,1d,30d,1y)")
                raise ConfigError(msg)
            seconds = float(match.group(1)) * TIME_UNITS[unit]
    if seconds is None:
        seconds = parse_numbers([item], what)[0]
    if seconds < 0:
        msg = f"`{what}` value {item!r} is negative; times must be >= 0 (e.g. 0s,1s,1h,1d,30d,1y)"
        raise ConfigError(msg)
    return seconds


def parse_strengths(*, strength: Any = None, noise_model: Any = None, **flags: Any) -> tuple[float, ...] | None:
    """The strength list from the one strength option given: the model's own, or ``strength``.

    Each noise model declares its own option (:class:`onnxnoise.noise.axis.StrengthAxis`):
    ``snr`` / ``noise_pct`` (gaussian-snr), ``snr_db`` (gaussian-global-db), ``eta``
    (multiplicative), ``t`` (pcm), ``rate`` (stuck-at), ``levels`` (conductance-levels),
    ``ber`` (bit-flip); ``strength`` is the generic spelling for any model. A time axis
    (pcm's ``t``) takes units (:func:`parse_time`: ``1s,1h,1d,30d,1y``; plain numbers are
    seconds); ``noise_pct`` is the noise std in percent of ``sigma_w`` (``SNR = 100 / pct``,
    paper eq. 1). Values are only parsed here; the model checks their range (via
    :class:`onnxnoise.config.NoiseConfig`).

    Args:
        strength: ``--strength`` text or a list (experiment files), or ``None``.
        noise_model: The chosen model, a class or instance; ``None`` = :data:`DEFAULT_NOISE_MODEL`.
        **flags: The models' own options by key (``-`` written ``_``), ``None`` when not given.

    Returns:
        The values as floats (seconds for a time), or ``None`` when none was given (the model's defaults apply).

    Raises:
        ConfigError: If an option of another model is given (the message names the model's own
            option), more than one is given, a value is not a number, or a value has a time unit
            but the model's strength is not a time.
    """
    model = noise_model if noise_model is not None else get_noise_model(DEFAULT_NOISE_MODEL)
    axis = axis_of(model)
    own = [f.replace("-", "_") for f in axis.flags]
    chosen = [(key, value) for key, value in flags.items() if value is not None]
    for key, _ in chosen:
        if key not in own:
            raise ConfigError(_not_its_option(key, model, axis))
    if strength is not None:
        chosen.append(("strength", strength))
    if not chosen:
        return None
    if len(chosen) > 1:
        msg = (f"give only one of {_one_of([*(f'--{f}' for f in axis.flags), '--strength'])}, "
               f"got {', '.join(_option(key) for key, _ in chosen)}")
        raise ConfigError(msg)
    key, value = chosen[0]
    what = _option(key)
    if axis.alt_flag is not None and key == axis.alt_flag.replace("-", "_") and axis.from_alt is not None:
        try:
            return tuple(axis.from_alt(parse_numbers(value, what)))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return _axis_values(value, what, model, axis)


def strength_options() -> dict[str, str]:
    """The registered models' own strength options: ``flag -> help line``, the default model's first, then by name.

    ``flag`` has no dashes (``t``, ``rate``, ``snr-db``); ``flag.replace("-", "_")`` is its
    keyword for :func:`parse_strengths` and its experiment-file key. The help line names
    the model(s), e.g. ``pcm: time after programming t_inf, units s, min, h, d, w, y ...``.
    """
    out: dict[str, str] = {}
    owners_of = strength_flag_owners(NOISE_MODELS)
    for flag, owners in sorted(owners_of.items(), key=lambda item: DEFAULT_NOISE_MODEL not in item[1]):
        lines = []
        for name in owners:
            axis = axis_of(NOISE_MODELS[name])
            lines.append(f"{name}: {axis.help if flag == axis.flag else axis.alt_help}")
        out[flag] = "; ".join(lines)
    return out


def strength_flag(model: Any) -> str:
    """The option giving ``model``'s (class or instance) strengths: its own (``--snr``, ``--t``...), else ``--strength``."""
    flag = axis_of(model).flag
    return f"--{flag}" if flag else "--strength"


def strength_flag_models(flag: str) -> list[str]:
    """The registered models whose own strength option is ``--flag`` (``snr`` -> ``["gaussian-snr"]``), by name."""
    return strength_flag_owners(NOISE_MODELS).get(flag, [])


def strength_example(model: Any, values: Sequence[float]) -> str:
    """``model``'s strength option with ``values`` as typed: ``--t 1s,1h,1d``, ``--snr 10``."""
    return f"{strength_flag(model)} {axis_of(model).example(values)}"


def _option(key: str) -> str:
    """``noise_pct`` -> ``--noise-pct``."""
    return "--" + key.replace("_", "-")


def _one_of(names: Sequence[str]) -> str:
    """``a, b or c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _not_its_option(key: str, model: Any, axis: StrengthAxis) -> str:
    """The message for another model's strength option: whose it is and the chosen model's own."""
    owners = strength_flag_models(key.replace("_", "-"))
    whose = f"the strength of {', '.join(owners)}" if owners else "no noise model's strength"
    if not axis.flags and len(model.default_strengths) == 1:  # `none`: one fixed strength, nothing to give
        return (f"`{_option(key)}` is {whose}; --noise {model.name} has no strength to set "
                f"({axis.text_of(model.default_strengths[0])}): drop `{_option(key)}`")
    example = strength_example(model, model.default_strengths) if model.default_strengths else ""
    return (f"`{_option(key)}` is {whose}, not of {model.name}; give {model.name}'s {axis_label(model)} with "
            f"{_one_of([*(f'`--{f}`' for f in axis.flags), '`--strength`'])}" + (f" (e.g. {example})" if example else ""))


def _axis_values(value: Any, what: str, model: Any, axis: StrengthAxis) -> tuple[float, ...]:
    """Parse one option's values on ``model``'s axis: times with units, else plain numbers."""
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else (
        list(value) if isinstance(value, Sequence) else [value])
    if not items or items == [""]:
        return parse_numbers(value if isinstance(value, str) else items, what)
    if axis.time:
        return tuple(parse_time(item, what) for item in items)
    for item in items:
        if isinstance(item, str) and _TIME_RE.match(item) and not re.fullmatch(r"\s*(inf|nan|infinity)\s*", item, re.I):
            msg = (f"`{what}` value {item!r} has a time unit, but the {model.name} strength "
                   f"`{model.strength_name}` ({model.strength_label}) is not a time; give plain numbers")
            raise ConfigError(msg)
    return parse_numbers(items, what)


def parse_seeds(value: Any) -> int | tuple[int, ...] | str:
    """Parse seeds: a count ``N`` (``"3"``, ``3``), explicit seeds (``"40,30"``, ``[40, 30]``) or ``"auto"``.

    Raises:
        ConfigError: Anything but a count >= 1, a non-empty list of integers >= 0 or ``auto``.
    """
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        try:
            ints = [int(p) for p in parts]
        except ValueError:
            ints = None
        if ints is None or not ints:
            msg = f"seeds must be a count N, seeds like 40,30, or auto (with --ci-halfwidth), got {value!r}"
            span = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", value)
            if span:  # a range is not taken: say what to write instead
                low, high = int(span[1]), int(span[2])
                listed = ",".join(map(str, range(low, high + 1))) if 0 < high - low < 20 else None
                hint = f"{high + 1}" if low == 0 else listed or "the seeds, comma-separated"
                msg += f"; ranges are not taken: for seeds {low} to {high} write {hint}"
            raise ConfigError(msg)
        value = ints[0] if "," not in value else tuple(ints)
    elif isinstance(value, (list, tuple)):
        value = tuple(value)
    resolve_seeds(value)
    return value


def check_auto_seeds(ci_halfwidth: Any, max_seeds: Any) -> int:
    """Check the settings of ``--seeds auto`` and return ``max_seeds`` (default :data:`AUTO_MAX_SEEDS`).

    Raises:
        ConfigError: ``ci_halfwidth`` missing, not a finite number > 0 (accuracy points), or
            ``max_seeds`` not an integer from 3 to :data:`MAX_SEEDS`.
    """
    if ci_halfwidth is None:
        msg = "`--seeds auto` needs `--ci-halfwidth X` (ci_halfwidth): the 95% interval half-width in top-1 points"
        raise ConfigError(msg)
    if isinstance(ci_halfwidth, bool) or not isinstance(ci_halfwidth, numbers.Real) or not 0 < ci_halfwidth < 1e300:
        msg = f"`--ci-halfwidth` must be a number of accuracy points > 0, e.g. 0.5, got {ci_halfwidth!r}"
        raise ConfigError(msg)
    if max_seeds is None:
        return AUTO_MAX_SEEDS
    try:
        count = int(max_seeds) if not isinstance(max_seeds, (bool, float)) else None
    except (TypeError, ValueError):
        count = None
    if count is None or count < 3:
        msg = f"`--max-seeds` must be an integer >= 3 (at least 3 draws per group), got {max_seeds!r}"
        raise ConfigError(msg)
    if count > MAX_SEEDS:
        msg = f"`--max-seeds` must be at most {MAX_SEEDS} draws per group, got {max_seeds!r}"
        raise ConfigError(msg)
    return count


def resolve_seeds(seeds: int | Sequence[int]) -> list[int]:
    """The list of seeds: ``0 .. N-1`` for a count, else the given seeds without duplicates.

    Raises:
        ConfigError: If the count is < 1 or above :data:`MAX_SEEDS`, a seed is not an integer
            from 0 to :data:`MAX_SEED`, or the list is empty or longer than :data:`MAX_SEEDS`.
    """
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        seeds = int(seeds)
        if seeds < 1:
            msg = f"seeds count must be >= 1, got {seeds!r} (a count N runs seeds 0..N-1; a count of 1 runs seed 0)"
            raise ConfigError(msg)
        if seeds > MAX_SEEDS:
            msg = f"seeds count must be at most {MAX_SEEDS} (noise draws per strength and layer), got {seeds!r}"
            raise ConfigError(msg)
        return list(range(seeds))
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence):
        msg = f"seeds must be a count or a list of seeds, got {seeds!r}"
        raise ConfigError(msg)
    if len(seeds) > MAX_SEEDS:
        msg = f"seeds list must hold at most {MAX_SEEDS} seeds (noise draws per strength and layer), got {len(seeds)}"
        raise ConfigError(msg)
    chosen: list[int] = []
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            msg = f"seed {seed!r} must be a non-negative integer"
            raise ConfigError(msg)
        if seed > MAX_SEED:
            msg = (f"`--seeds` (`seeds`): seed {seed} is above 2**63 - 1 = {MAX_SEED}, the largest seed the trial "
                   "store holds; use smaller seeds")
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
            params[name.strip()] = parse_json(text)
        except ValueError:
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
            params_out[key] = parse_json(text)
        except ValueError:
            params_out[key] = text.strip()
    return name, params_out
