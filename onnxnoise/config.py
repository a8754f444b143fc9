"""Run settings: one definition, one default and one validation per concept.

The command line and experiment files parse text with the ``parse_*`` functions
here and pass ``None`` for anything not given; the dataclasses below own every
default and validate in ``__post_init__``. Nothing else defaults or validates
these settings.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from onnxnoise.engine.runtime import DEVICES
from onnxnoise.errors import ConfigError, NoiseConfigError
from onnxnoise.noise import NoiseModel, NoisePolicies, get_noise_model, make_noise_model

__all__ = [
    "SWEEP_MODES", "NoiseConfig", "RunConfig", "SweepConfig",
    "parse_numbers", "parse_strengths", "parse_seeds", "resolve_seeds", "parse_names", "parse_params", "given",
    "parse_noise", "parse_time", "is_time_strength", "TIME_UNITS",
]

#: Time units of a time strength (``1s``, ``1h``, ``30d``...), in seconds; ``y`` = 365 days.
TIME_UNITS: dict[str, float] = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0,
                                "y": 365 * 86400.0}

#: Strength names that are a time in seconds (the pcm model's ``t_inf``).
TIME_STRENGTHS: tuple[str, ...] = ("t", "t_inf")

_TIME_RE = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-zA-Z]+)\s*$")

#: Modes a sweep can ask for (the clean baseline is always run first).
SWEEP_MODES: tuple[str, ...] = ("all", "per-layer", "cumulative")


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


@dataclass(frozen=True)
class NoiseConfig:
    """Which noise, how strong, how many draws, and the policies around each draw.

    Attributes:
        model: Registered noise model name (:data:`onnxnoise.noise.NOISE_MODELS`).
        params: The model's parameters (name -> value); defaults from the model.
        strengths: Values of the model's strength axis (for ``gaussian-snr`` the
            linear SNR ``sigma_w / sigma_noise``); ``None`` = the model's
            ``default_strengths``. Stored without duplicates, least noise first.
        seeds: A count ``N`` (seeds ``0 .. N-1``) or explicit seeds; default 3.
        bn_variance: Negative BatchNormalization variance policy.
        keep_zeros: Keep exactly-zero weights at zero.

    Raises:
        NoiseConfigError / ConfigError: On any invalid value (one line).
    """

    model: str = "gaussian-snr"
    params: Mapping[str, Any] = field(default_factory=dict)
    strengths: tuple[float, ...] | None = None
    seeds: int | tuple[int, ...] = 3
    bn_variance: str = "clamp"
    keep_zeros: bool = False

    def __post_init__(self) -> None:
        noise_model = make_noise_model(self.model, self.params)
        object.__setattr__(self, "params", dict(noise_model.params()))
        object.__setattr__(self, "_noise_model", noise_model)
        values = noise_model.default_strengths if self.strengths is None else self.strengths
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            msg = f"`strengths` must be a list of numbers (parse text with parse_strengths), got {values!r}"
            raise ConfigError(msg)
        checked: list[float] = []
        for value in values:
            value = float(noise_model.check_strength(value))
            if value not in checked:
                checked.append(value)
        if not checked:
            msg = f"no {noise_model.strength_label} values given for noise model {self.model!r}"
            raise NoiseConfigError(msg)
        checked.sort(reverse=noise_model.more_noise_when == "lower")
        object.__setattr__(self, "strengths", tuple(checked))
        resolve_seeds(self.seeds)
        NoisePolicies(self.bn_variance, self.keep_zeros)

    @property
    def noise_model(self) -> NoiseModel:
        """The validated noise model instance."""
        return self._noise_model  # type: ignore[attr-defined]

    @property
    def policies(self) -> NoisePolicies:
        """The policies around each draw."""
        return NoisePolicies(self.bn_variance, self.keep_zeros)

    @property
    def seed_list(self) -> list[int]:
        """The seeds, in order."""
        return resolve_seeds(self.seeds)

    def settings(self) -> dict[str, Any]:
        """``{"params", "bn_variance", "keep_zeros"}``: the trial row's ``noise`` JSON."""
        return {"params": dict(self.params), "bn_variance": self.bn_variance, "keep_zeros": self.keep_zeros}

    def to_dict(self) -> dict[str, Any]:
        """All settings, JSON-ready."""
        return {"model": self.model, **self.settings(), "strengths": list(self.strengths),
                "seeds": self.seed_list}

    @classmethod
    def from_options(cls, *, noise: Any = None, model: str | None = None, params: Any = None, snr: Any = None,
                     noise_pct: Any = None, strength: Any = None, seeds: Any = None,
                     bn_variance: str | None = None, keep_zeros: bool | None = None) -> NoiseConfig:
        """Build from user options (CLI flags or experiment keys); ``None`` = not given.

        ``noise`` is ``MODEL[:key=value,...]`` (:func:`parse_noise`); ``model`` and
        ``params`` are the older spelling of the same. ``snr`` and ``noise_pct`` are the
        ``gaussian-snr`` model's strengths (:func:`parse_strengths`); ``strength`` is any
        model's, with time units for a time strength (``1s,1h,1d``).

        Raises:
            ConfigError / NoiseConfigError: On any invalid option.
        """
        model, params = parse_noise(noise, model=model, params=params)
        name = model or cls.model
        model_cls = get_noise_model(name)  # an unknown name is the first thing to say
        if name != "gaussian-snr" and (snr is not None or noise_pct is not None):
            msg = f"snr / noise-pct set the gaussian-snr model's strength; for {name!r} give `strength`"
            raise ConfigError(msg)
        return cls(**given(model=model, params=params,
                           strengths=parse_strengths(snr=snr, noise_pct=noise_pct, strength=strength,
                                                     noise_model=model_cls),
                           seeds=None if seeds is None else parse_seeds(seeds), bn_variance=bn_variance,
                           keep_zeros=keep_zeros))


@dataclass(frozen=True)
class RunConfig:
    """What to run: one model on one dataset, its layers, noise, preprocessing and runtime.

    Attributes:
        model: ONNX classifier file.
        data: Dataset (CIFAR batch folder, class folders, ImageNet flat val, ``.npz``).
        noise: Noise settings.
        layer_regex: Regular expression over layer names / op types selecting the
            noised layers; ``None`` = all layers.
        op_types: Keep only layers of these op types.
        include_preprocessing: Also list (and noise) input-normalization constants
            applied before the first weight op, which are preprocessing by default
            (:func:`onnxnoise.model.list_layers`).
        limit: Evaluate a class-stratified subset of this many images.
        device: ``auto``, ``cpu`` or ``cuda``.
        batch_size: Images per ONNX Runtime call (a fixed-batch model overrides it).
        threads: CPU EP intra-op threads (``0``: ONNX Runtime's default).
        preset: Preprocessing preset, or ``None`` for the model's own / torchvision.
        preprocess: Single preprocessing overrides (names from
            :data:`onnxnoise.data.PREPROCESS_KEYS`); validated with the preset by
            :func:`onnxnoise.data.resolve_data_config` once the model's input is known.
        ground_truth: ImageNet flat-val ground-truth file, if not found automatically.
        score_output: Name of the score output (default: the first graph output).
        label_offset: Output index of label 0; ``None`` detects it (1 for a
            1001-output model on 1000-class data, else 0).
        strict: Fail on unreadable images instead of skipping them.
        cache: Keep decoded images of image-file datasets in the on-disk cache.
        force_preprocess: Run mean/std whose units disagree with ``scale`` (0..255
            values with ``scale`` 1/255, or 0..1 values with ``scale`` 1) instead of
            refusing them.
        expect_top1: Expected clean top-1 accuracy in percent (``bench``): a baseline
            outside ``expect_top1 +- tolerance`` stops the run before any noisy trial.
        tolerance: Allowed distance of the baseline from ``expect_top1``, in
            percentage points (default 0.5).

    Raises:
        ConfigError: On an invalid value (one line).
    """

    model: Path
    data: Path
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    layer_regex: str | None = None
    op_types: tuple[str, ...] | None = None
    include_preprocessing: bool = False
    limit: int | None = None
    device: str = "auto"
    batch_size: int = 128
    threads: int = 0
    preset: str | None = None
    preprocess: Mapping[str, Any] = field(default_factory=dict)
    ground_truth: Path | None = None
    score_output: str | None = None
    label_offset: int | None = None
    strict: bool = False
    cache: bool = True
    force_preprocess: bool = False
    expect_top1: float | None = None
    tolerance: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", Path(self.model))
        object.__setattr__(self, "data", Path(self.data))
        if self.ground_truth is not None:
            object.__setattr__(self, "ground_truth", Path(self.ground_truth))
        if self.op_types is not None:
            object.__setattr__(self, "op_types", parse_names(self.op_types))
        _check_int("--limit", self.limit, minimum=1, optional=True)
        _check_int("--batch-size", self.batch_size, minimum=1)
        _check_int("--threads", self.threads, minimum=0)
        _check_int("--label-offset", self.label_offset, minimum=0, optional=True)
        if self.device not in DEVICES:
            msg = f"`device` must be one of {', '.join(DEVICES)}, got {self.device!r}"
            raise ConfigError(msg)
        _check_percent("expect_top1", self.expect_top1, optional=True)
        _check_percent("tolerance", self.tolerance)
        if not isinstance(self.noise, NoiseConfig):
            msg = f"`noise` must be a NoiseConfig, got {type(self.noise).__name__}"
            raise ConfigError(msg)

    def to_dict(self) -> dict[str, Any]:
        """All settings, JSON-ready."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, NoiseConfig):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
            out[f.name] = value
        return out


@dataclass(frozen=True)
class SweepConfig:
    """A sweep: a :class:`RunConfig` and the experiments to run on it.

    Attributes:
        run: The model, data, noise and runtime settings.
        modes: Any of :data:`SWEEP_MODES`: ``all`` (noise in every selected layer),
            ``per-layer`` (one layer at a time), ``cumulative`` (layers 1..L).
        prefix_reuse: Run per-layer trials on clean activations computed once up to
            the noised layer (same counts, faster); off = full-model evaluation.

    Raises:
        ConfigError: On an unknown or empty mode list.
    """

    run: RunConfig
    modes: tuple[str, ...] = ("all",)
    prefix_reuse: bool = True

    def __post_init__(self) -> None:
        given_modes = self.modes if isinstance(self.modes, str) else ",".join(map(str, self.modes or ()))
        modes = tuple(m.strip() for m in given_modes.split(",") if m.strip())
        if not modes:
            msg = f"modes is empty; choose from {', '.join(SWEEP_MODES)}"
            raise ConfigError(msg)
        unknown = [m for m in modes if m not in SWEEP_MODES]
        if unknown:
            msg = f"mode(s) {', '.join(unknown)} unknown; choose from {', '.join(SWEEP_MODES)}"
            raise ConfigError(msg)
        object.__setattr__(self, "modes", tuple(dict.fromkeys(modes)))

    def to_dict(self) -> dict[str, Any]:
        """All settings, JSON-ready."""
        return {**self.run.to_dict(), "modes": list(self.modes), "prefix_reuse": self.prefix_reuse}


def _check_int(name: str, value: Any, *, minimum: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        msg = f"`{name}` must be an integer >= {minimum}, got {value!r}"
        raise ConfigError(msg)


def _check_percent(name: str, value: Any, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
            or not 0 <= value <= 100):
        msg = f"`{name}` must be a percentage from 0 to 100, got {value!r}"
        raise ConfigError(msg)
