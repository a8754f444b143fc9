"""Run settings: one definition, one default and one validation per concept.

The command line and experiment files parse text with the ``parse_*`` functions of
:mod:`onnxnoise.options` (re-exported here) and pass ``None`` for anything not given;
the dataclasses below own every default and validate in ``__post_init__``. Nothing
else defaults or validates these settings.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from onnxnoise.engine.runtime import DEVICES
from onnxnoise.errors import ConfigError, NoiseConfigError
from onnxnoise.noise import NoiseModel, NoisePolicies, get_noise_model, make_noise_model
from onnxnoise.options import (
    TIME_UNITS, check_auto_seeds, given, is_time_strength, parse_names, parse_noise, parse_numbers, parse_params,
    parse_seeds, parse_strengths, parse_time, resolve_seeds,
)

__all__ = [
    "SWEEP_MODES", "EXECUTORS", "DEFAULT_PREFIX_MEMORY_GIB", "DEFAULT_LOCKSTEP_MEMORY_GIB", "NoiseConfig", "RunConfig", "SweepConfig",
    "parse_numbers", "parse_strengths", "parse_seeds", "resolve_seeds", "parse_names", "parse_params", "given",
    "parse_noise", "parse_time", "is_time_strength", "TIME_UNITS",
]

#: Modes a sweep can ask for (the clean baseline is always run first).
SWEEP_MODES: tuple[str, ...] = ("all", "per-layer", "cumulative")

#: Where a sweep's trials run: this process, or Ray workers (the ``ray`` extra).
EXECUTORS: tuple[str, ...] = ("local", "ray")

#: Default of ``RunConfig.prefix_memory`` (``--prefix-memory``), in GiB: the bound on one kept cut's
#: activations (:class:`onnxnoise.engine.prefix.PrefixRunner` ``memory_limit_bytes``).
DEFAULT_PREFIX_MEMORY_GIB = 4.0

#: Default memory, in GiB, the suffix sessions of one lockstep group may take together
#: (:func:`onnxnoise.engine.prefix.lockstep_group_limit`; ``LocalExecutor(lockstep_memory_bytes=...)``).
#: Not a setting yet: every run uses this default.
DEFAULT_LOCKSTEP_MEMORY_GIB = 4.0


@dataclass(frozen=True)
class NoiseConfig:
    """Which noise, how strong, how many draws, and the policies around each draw.

    Attributes:
        model: Registered noise model name (:data:`onnxnoise.noise.NOISE_MODELS`).
        params: The model's parameters (name -> value); defaults from the model.
        strengths: Values of the model's strength axis (for ``gaussian-snr`` the
            linear SNR ``sigma_w / sigma_noise``); ``None`` = the model's
            ``default_strengths``. Stored without duplicates, least noise first.
        seeds: A count ``N`` (seeds ``0 .. N-1``) or explicit seeds; default 3. ``"auto"``:
            seeds ``0, 1, ...`` per (strength, layer) group until the 95% t-interval of the
            mean top-1 is narrower than ``ci_halfwidth`` (at least 3, at most ``max_seeds``;
            :func:`onnxnoise.engine.plan.enough_draws`).
        bn_variance: Negative BatchNormalization variance policy.
        keep_zeros: Keep exactly-zero weights at zero.
        ci_halfwidth: With ``seeds="auto"``: target half-width in top-1 accuracy points (> 0).
        max_seeds: With ``seeds="auto"``: most draws per group, >= 3 (default 20).

    Raises:
        NoiseConfigError / ConfigError: On any invalid value (one line).
    """

    model: str = "gaussian-snr"
    params: Mapping[str, Any] = field(default_factory=dict)
    strengths: tuple[float, ...] | None = None
    seeds: int | tuple[int, ...] = 3
    bn_variance: str = "clamp"
    keep_zeros: bool = False
    ci_halfwidth: float | None = None
    max_seeds: int | None = None

    def __post_init__(self) -> None:
        noise_model = make_noise_model(self.model, self.params)
        object.__setattr__(self, "model", noise_model.name)  # an alias names the registered model
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
        if self.seeds == "auto":
            object.__setattr__(self, "max_seeds", check_auto_seeds(self.ci_halfwidth, self.max_seeds))
        elif self.ci_halfwidth is not None or self.max_seeds is not None:
            msg = "`--ci-halfwidth` / `--max-seeds` (ci_halfwidth / max_seeds) only apply with `--seeds auto`"
            raise ConfigError(msg)
        else:
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
        """The seeds, in order (``0 .. max_seeds-1`` with ``seeds="auto"``: the most that may run)."""
        return list(range(self.max_seeds)) if self.seeds == "auto" else resolve_seeds(self.seeds)

    def settings(self) -> dict[str, Any]:
        """``{"params", "bn_variance", "keep_zeros"}``: the trial row's ``noise`` JSON."""
        return {"params": dict(self.params), "bn_variance": self.bn_variance, "keep_zeros": self.keep_zeros}

    def to_dict(self) -> dict[str, Any]:
        """All settings, JSON-ready."""
        auto = {"seeds": "auto", "ci_halfwidth": self.ci_halfwidth, "max_seeds": self.max_seeds}
        return {"model": self.model, **self.settings(), "strengths": list(self.strengths),
                **(auto if self.seeds == "auto" else {"seeds": self.seed_list})}

    @classmethod
    def from_options(cls, *, noise: Any = None, model: str | None = None, params: Any = None, snr: Any = None,
                     noise_pct: Any = None, strength: Any = None, seeds: Any = None,
                     bn_variance: str | None = None, keep_zeros: bool | None = None,
                     flags: Mapping[str, Any] | None = None, ci_halfwidth: Any = None,
                     max_seeds: Any = None) -> NoiseConfig:
        """Build from user options (CLI flags or experiment keys); ``None`` = not given.

        ``noise`` is ``MODEL[:key=value,...]`` (:func:`parse_noise`); ``model`` and
        ``params`` are the older spelling of the same. The strengths come from the one
        strength option given (:func:`parse_strengths`): the model's own (``flags``, by
        key: ``t`` for pcm, ``rate`` for stuck-at, ``ber`` for bit-flip...; ``snr`` and
        ``noise_pct`` for gaussian-snr, also as keywords) or ``strength``, any model's,
        with time units for a time strength (``1s,1h,1d``). Another model's option is an error.
        ``seeds`` may be ``auto`` with ``ci_halfwidth`` (points) and ``max_seeds``.

        Raises:
            ConfigError / NoiseConfigError: On any invalid option.
        """
        model, params = parse_noise(noise, model=model, params=params)
        name = model or cls.model
        model_cls = get_noise_model(name)  # an unknown name is the first thing to say
        model = None if model is None else model_cls.name  # an alias (`stuck`) keys as its model
        own = {"snr": snr, "noise_pct": noise_pct}
        own.update((key, value) for key, value in (flags or {}).items() if value is not None)
        if params:
            params, inline = model_cls.split_params(params)  # `pcm:t=1d`: one strength inside --noise
            if inline is not None:
                key, value = inline
                if strength is not None or any(v is not None for v in own.values()):
                    msg = (f"give the {model_cls.name} strength either inside --noise ({key}=...) or as an "
                           "option (--strength or the model's own), not both")
                    raise ConfigError(msg)
                value = value if isinstance(value, (list, tuple)) else [value]
                if key == "strength":
                    strength = value
                else:
                    own[key] = value
        return cls(**given(model=model, params=params,
                           strengths=parse_strengths(strength=strength, noise_model=model_cls, **own),
                           seeds=None if seeds is None else parse_seeds(seeds), bn_variance=bn_variance,
                           keep_zeros=keep_zeros,
                           ci_halfwidth=None if ci_halfwidth is None else parse_numbers([ci_halfwidth],
                                                                                       "--ci-halfwidth")[0],
                           max_seeds=max_seeds))


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
        threads: CPU EP intra-op threads (``0``: ONNX Runtime's default). Per-layer trials
            with prefix reuse run this many single-threaded suffix sessions side by side
            instead (``0``: one per usable CPU).
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
        expect_top1: Expected clean top-1 accuracy in percent (``bench`` and ``sweep``):
            a baseline outside ``expect_top1 +- tolerance`` stops the run before any
            noisy trial.
        tolerance: Allowed distance of the baseline from ``expect_top1``, in
            percentage points (default 0.5).
        tf32: Let the CUDA execution provider run float32 convolutions and matrix
            products in TF32 (faster on Ampere and newer GPUs, not float32); default
            off: exact float32. No effect on the CPU.
        prefix_memory: Most memory, in GiB (2**30 bytes), that a kept cut of prefix reuse
            may hold clean activations in (device memory on the CUDA provider), whatever the
            dataset size (default :data:`DEFAULT_PREFIX_MEMORY_GIB`); the rest goes to disk in the
            cache folder or is recomputed in each trial, whichever is cheaper. Counts do not
            depend on it. It does not bound lockstep groups (they keep no cut).

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
    tf32: bool = False
    prefix_memory: float = DEFAULT_PREFIX_MEMORY_GIB

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
        if (isinstance(self.prefix_memory, bool) or not isinstance(self.prefix_memory, numbers.Real)
                or not math.isfinite(self.prefix_memory) or self.prefix_memory <= 0):
            msg = f"`--prefix-memory` must be a positive number of GiB (e.g. 2 or 0.5), got {self.prefix_memory!r}"
            raise ConfigError(msg)
        if not isinstance(self.tf32, bool):
            msg = f"`tf32` must be true or false, got {self.tf32!r}"
            raise ConfigError(msg)
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
        executor: Where trials run, one of :data:`EXECUTORS`: ``local`` (this process)
            or ``ray`` (Ray workers, :class:`onnxnoise.engine.ray_executor.RayExecutor`);
            the same counts either way.
        address: ``ray``: the cluster to join (``host:port`` or ``auto``); ``None``
            starts a local Ray instance.
        workers: ``ray``: number of workers (``None``: as many as the cluster holds).
        gpus_per_trial: ``ray``: GPUs each worker requests (fractions share a GPU).

    Raises:
        ConfigError: On an unknown or empty mode list, an unknown executor, or Ray
            settings without ``executor="ray"``.
    """

    run: RunConfig
    modes: tuple[str, ...] = ("all",)
    prefix_reuse: bool = True
    executor: str = "local"
    address: str | None = None
    workers: int | None = None
    gpus_per_trial: float = 0.0

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
        if self.executor not in EXECUTORS:
            msg = f"`--executor` must be one of {', '.join(EXECUTORS)}, got {self.executor!r}"
            raise ConfigError(msg)
        _check_int("--workers", self.workers, minimum=1, optional=True)
        gpus = self.gpus_per_trial
        if isinstance(gpus, bool) or not isinstance(gpus, numbers.Real) or not math.isfinite(gpus) or gpus < 0:
            msg = f"`--gpus-per-trial` must be a number >= 0 (e.g. 1 or 0.5), got {gpus!r}"
            raise ConfigError(msg)
        if self.executor != "ray" and (self.address is not None or self.workers is not None or gpus > 0):
            msg = "`--address`, `--workers` and `--gpus-per-trial` are Ray settings; add `--executor ray`"
            raise ConfigError(msg)

    def to_dict(self) -> dict[str, Any]:
        """All settings, JSON-ready."""
        return {**self.run.to_dict(), "modes": list(self.modes), "prefix_reuse": self.prefix_reuse,
                "executor": self.executor, "address": self.address, "workers": self.workers,
                "gpus_per_trial": self.gpus_per_trial}


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
