"""Run settings: one definition, one default and one validation per concept.

Each field declares its user settings once (:mod:`onnxnoise.settings`: flag, help,
experiment-file key, unit, whether it enters the trial key, the commands that take
it); the command line, experiment files, ``check``'s re-check command and
``docs/options.md`` are derived from those declarations. Text is parsed with the
``parse_*`` functions of :mod:`onnxnoise.options` (re-exported here) and ``None`` passed
for anything not given; the dataclasses below own every default and validate in
``__post_init__``. Nothing else defaults or validates these settings.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from onnxnoise.data import INTERPOLATIONS, list_presets
from onnxnoise.data.loading import usable_cpus
from onnxnoise.config_checks import check_gib, check_int, check_percent
from onnxnoise.errors import ConfigError
from onnxnoise.noise.presets import PRESETS
from onnxnoise.noise_config import NoiseConfig, apply_analog_preset, check_tile_rows
from onnxnoise.provider_config import ProviderConfig
from onnxnoise.tile_config import TileConfig, check_given_tile_options
from onnxnoise.options import (
    TIME_UNITS, given, is_time_strength, parse_float_list, parse_names, parse_noise, parse_numbers, parse_params,
    parse_seeds, parse_strengths, parse_time, resolve_seeds,
)
from onnxnoise.settings import (
    BASELINE, DATA, EXECUTOR, NOISE, PREPROCESSING, RUNTIME, Setting, declared, extra_settings, nested, option,
    option_map, registered_settings,
)

__all__ = [
    "MAX_BATCH_SIZE", "MAX_THREADS_PER_CPU", "max_threads",
    "DEVICES", "SWEEP_MODES", "EXECUTORS", "DEFAULT_PREFIX_MEMORY_GIB", "DEFAULT_LOCKSTEP_MEMORY_GIB", "NoiseConfig",
    "TileConfig",
    "RunConfig", "SweepConfig", "PREPROCESS_SETTINGS",
    "parse_numbers", "parse_strengths", "parse_seeds", "resolve_seeds", "parse_names", "parse_params", "given",
    "parse_noise", "parse_time", "is_time_strength", "TIME_UNITS",
]

#: Execution providers a run may ask for: ``auto`` (CUDA when usable, else CPU), ``cpu``, ``cuda``.
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")

#: Most images per ONNX Runtime call (``--batch-size``, and a model's fixed batch dimension): far above where
#: larger batches stop paying, far below what exhausts a machine's memory on ImageNet-size inputs (2.4 GB at
#: 224 x 224 x 3 float32).
MAX_BATCH_SIZE = 4096

#: ``--threads`` may be at most this many per CPU this process may use (:func:`max_threads`): more only
#: oversubscribes (10,000 threads once held a 2-core machine at a load average of 1,000 for minutes).
MAX_THREADS_PER_CPU = 4


def max_threads() -> int:
    """The most ``--threads`` a run may ask for: :data:`MAX_THREADS_PER_CPU` x the CPUs this process may use."""
    return MAX_THREADS_PER_CPU * usable_cpus()


#: Modes a sweep can ask for (the clean baseline is always run first).
SWEEP_MODES: tuple[str, ...] = ("all", "per-layer", "cumulative")

#: Where a sweep's trials run: this process, or Ray workers (the ``ray`` extra).
EXECUTORS: tuple[str, ...] = ("local", "ray")

#: Default of ``RunConfig.prefix_memory`` (``--prefix-memory``), in GiB: the bound on one kept cut's
#: activations (:class:`onnxnoise.engine.prefix.PrefixRunner` ``memory_limit_bytes``).
DEFAULT_PREFIX_MEMORY_GIB = 4.0

#: Default of ``RunConfig.lockstep_memory`` (``--lockstep-memory``), in GiB: the memory the suffix sessions
#: of one lockstep group may take together (:func:`onnxnoise.engine.prefix.lockstep_group_limit`).
DEFAULT_LOCKSTEP_MEMORY_GIB = 4.0


def _listed(value: Any) -> Any:
    """A file's list as a tuple (``mean = [0.5, 0.5, 0.5]``); anything else as given."""
    return tuple(value) if isinstance(value, list) else value


def _names(value: Any) -> Any:
    """Comma-separated text as names (``--mode all,per-layer``); a file's list as given."""
    return parse_names(value) if isinstance(value, str) else value


def _preprocess(key: str, **setting: Any) -> Setting:
    return Setting(key=key, flag="--" + key.replace("_", "-"), group=PREPROCESSING, files=("data",), parse=_listed,
                   trial_key="preprocess", **setting)


#: The single preprocessing overrides (``RunConfig.preprocess``), one per key of
#: :data:`onnxnoise.data.PREPROCESS_KEYS`.
PREPROCESS_SETTINGS: tuple[Setting, ...] = (
    _preprocess("resize", type=int, metavar="PX", unit="pixels", help="resize the short side to PX pixels"),
    _preprocess("crop", type=int, metavar="PX", unit="pixels", help="center crop PX x PX"),
    _preprocess("crop_pct", type=float, metavar="F", help="resize = crop / F (timm convention)"),
    _preprocess("interpolation", choices=INTERPOLATIONS),
    _preprocess("scale", type=float, help="multiply uint8 pixels by this before mean/std (e.g. 0.00392)"),
    _preprocess("mean", type=parse_float_list, metavar="M[,M,M]", help="per-channel mean, model channel order"),
    _preprocess("std", type=parse_float_list, metavar="S[,S,S]", help="per-channel std, model channel order"),
    _preprocess("channel_order", choices=("RGB", "BGR")),
    _preprocess("layout", choices=("NCHW", "NHWC"), help="input layout (default: from the model's input)"),
)


@dataclass(frozen=True)
class RunConfig:
    """What to run: one model on one dataset, its layers, noise, preprocessing and runtime.

    Attributes:
        model: ONNX classifier file.
        data: Dataset (CIFAR batch folder, class folders, ImageNet flat val, ``.npz``).
        analog_preset: The ``--analog-preset`` the settings were expanded from
            (:data:`onnxnoise.noise.presets.PRESETS`), or ``None``; the expansion itself is in the other
            fields (:meth:`expand_options`), so the name enters no trial key.
        noise: Noise settings.
        tile: The analog tile's input/output stages every noisy trial applies to the layers it
            noises (:class:`onnxnoise.tile_config.TileConfig`; all off by default).
        layer_regex: Regular expression over layer names / op types selecting the
            noised layers; ``None`` = all layers.
        op_types: Keep only layers of these op types.
        include_preprocessing: Also list (and noise) input-normalization constants
            applied before the first weight op, which are preprocessing by default
            (:func:`onnxnoise.model.list_layers`).
        limit: Evaluate a class-stratified subset of this many images.
        device: ``auto``, ``cpu`` or ``cuda``.
        provider: An execution provider asked for by name, its options and plugin library
            (:class:`onnxnoise.provider_config.ProviderConfig`; not given by default: ``device`` decides).
        batch_size: Images per ONNX Runtime call (a fixed-batch model overrides it), 1 to
            :data:`MAX_BATCH_SIZE`.
        threads: CPU EP intra-op threads (``0``: ONNX Runtime's default), at most
            :func:`max_threads`. Per-layer trials with prefix reuse run this many
            single-threaded suffix sessions side by side instead (``0``: one per usable CPU), and
            whole-model trials as many single-threaded sessions as ``lockstep_memory`` and the
            CPU's last-level cache hold (:func:`onnxnoise.engine.layout.whole_model_layout`).
        preset: Preprocessing preset, or ``None`` for the model's own / torchvision.
        preprocess: Single preprocessing overrides (names from
            :data:`onnxnoise.data.PREPROCESS_KEYS`); validated with the preset by
            :func:`onnxnoise.data.resolve_data_config` once the model's input is known.
        ground_truth: ImageNet flat-val ground-truth file, if not found automatically.
        score_output: Name of the score output (default: the first float graph output).
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
        lockstep_memory: Most memory, in GiB, that the suffix sessions of one lockstep group
            of prefix reuse may take together (twice the model's weights plus 16 MiB per
            session, :func:`onnxnoise.engine.prefix.lockstep_group_limit`); it bounds how many
            per-layer trials run batch by batch together (default
            :data:`DEFAULT_LOCKSTEP_MEMORY_GIB`). Counts do not depend on it.
        extra: Values of registered settings (:func:`onnxnoise.settings.register_setting`),
            ``key -> value``; each missing one gets its default.

    Raises:
        ConfigError: On an invalid value (one line).
    """

    model: Path
    data: Path = option(
        flag="--data", type=Path, trial_key="dataset_fingerprint",
        help="dataset: CIFAR batch folder, class folders, ImageNet flat val "
        "folder, .npz, or a name from `onnxnoise data list` (default: the registered dataset whose class count "
        "matches the model's outputs)")
    analog_preset: str | None = option(
        None, flag="--analog-preset", metavar="NAME", choices=tuple(PRESETS), group=NOISE, files=("sweeps",),
        help=f"an anchor's analog setting ({', '.join(PRESETS)}): expands to --noise, its strengths and tile-stage "
        "settings; flags given explicitly override it (`onnxnoise noise-models --presets` shows each expansion)")
    noise: NoiseConfig = nested(NoiseConfig, default_factory=NoiseConfig)
    tile: TileConfig = nested(TileConfig, default_factory=TileConfig)
    layer_regex: str | None = option(None, flag="--layer-regex", metavar="REGEX", group=NOISE, files=("sweeps",),
                                     trial_key="layers", help="noise only layers whose name or op type matches")
    op_types: tuple[str, ...] | None = option(None, flag="--op-types", parse=parse_names, group=NOISE,
                                              files=("sweeps",), trial_key="layers",
                                              help="comma-separated op types to noise, e.g. Conv,Gemm")
    include_preprocessing: bool = option(
        False, flag="--include-preprocessing", action="store_true", group=NOISE, files=("sweeps",), trial_key="layers",
        help="also noise input-normalization constants inside the graph (preprocessing by default)")
    limit: int | None = option(None, flag="--limit", type=int, group=DATA, files=("data", "sweeps"), unit="images",
                               trial_key="limit", help="evaluate a class-stratified subset of N images")
    ground_truth: Path | None = option(None, flag="--ground-truth", type=Path, group=DATA, files=("data",),
                                       trial_key="dataset_fingerprint",
                                       help="ImageNet val ground-truth file (flat val folders)")
    strict: bool = option(False, flag="--strict", action="store_true", group=DATA, files=("data",),
                          help="fail on unreadable images instead of skipping")
    preset: str | None = option(
        None, key="preprocess", flag="--preprocess", metavar="PRESET", choices=tuple(list_presets()),
        group=PREPROCESSING, files=("data",), trial_key="preprocess",
        help=f"preset: {', '.join(list_presets())} (default: the model's own, else torchvision)")
    preprocess: Mapping[str, Any] = option_map(*PREPROCESS_SETTINGS)
    force_preprocess: bool = option(
        False, flag="--force-preprocess", action="store_true", group=PREPROCESSING,
        help="run mean/std whose units disagree with --scale (0..255 values with x/255, or 0..1 values with --scale 1) "
        "instead of refusing them")
    device: str = option("auto", flag="--device", choices=DEVICES, group=RUNTIME, files=("sweeps",),
                         trial_key="provider",
                         help="execution provider (default {default}); --provider names any other")
    provider: ProviderConfig = nested(ProviderConfig, default_factory=ProviderConfig)
    batch_size: int = option(128, flag="--batch-size", type=int, group=RUNTIME, files=("sweeps",), unit="images",
                             trial_key="batch_size",
                             help=f"images per ONNX Runtime call, at most {MAX_BATCH_SIZE} (default {{default}})")
    threads: int = option(
        0, flag="--threads", type=int, group=RUNTIME, files=("sweeps",),
        help="CPU threads: intra-op threads of the clean session (default: onnxruntime's choice); noisy trials run "
        "this many single-threaded sessions side by side (default: one per usable CPU; whole-model trials as many "
        f"as --lockstep-memory and the CPU cache hold); at most {MAX_THREADS_PER_CPU} per usable CPU")
    tf32: bool = option(
        False, flag="--tf32", action="store_true", group=RUNTIME, files=("sweeps",), trial_key="provider_options",
        help="CUDA: let float32 convolutions and matrix products run in TF32 (faster on Ampere and newer GPUs, not "
        "float32; recorded in every trial row and key); default exact float32")
    cache: bool = option(True, flag="--no-cache", action="store_false", group=RUNTIME,
                         help="do not keep decoded images in the on-disk cache ($ONNXNOISE_CACHE_DIR or "
                         "~/.cache/onnxnoise)")
    score_output: str | None = option(None, flag="--score-output", metavar="NAME", group=RUNTIME, files=("sweeps",),
                                      trial_key="score_output",
                                      help="name of the model's score output (default: the first float output; "
                                      "integer outputs such as class ids are skipped)")
    label_offset: int | None = option(
        None, flag="--label-offset", type=int, group=RUNTIME, files=("sweeps",), trial_key="label_offset",
        help="add to every label to index the model's outputs (default: 1 for 1001-output models with a background "
        "class on 1000-class data, else 0)")
    expect_top1: float | None = option(
        None, flag="--expect-top1", type=float, metavar="PCT", group=BASELINE, files=("models", "sweeps"), unit="%",
        help="expected clean top-1 in percent: a baseline outside PCT +- --tolerance exits 1 before any noisy trial "
        "runs")
    tolerance: float = option(
        0.5, flag="--tolerance", type=float, metavar="POINTS", group=BASELINE, files=("models", "sweeps"),
        unit="percentage points", help="allowed distance from --expect-top1 in percentage points (default {default})")
    prefix_memory: float = option(
        DEFAULT_PREFIX_MEMORY_GIB, flag="--prefix-memory", type=float, metavar="GIB", commands=("sweep",),
        files=("sweeps",), unit="GiB",
        help="most memory a kept cut of prefix reuse holds clean activations in, whatever the dataset size (GPU "
        "memory on CUDA); the rest goes to disk in the cache folder or is recomputed, whichever is cheaper; same "
        "counts (default {default})")
    lockstep_memory: float = option(
        DEFAULT_LOCKSTEP_MEMORY_GIB, flag="--lockstep-memory", type=float, metavar="GIB", commands=("sweep", "check"),
        files=("sweeps",), unit="GiB",
        help="most memory the suffix sessions of one lockstep group of per-layer trials take together; bounds how "
        "many run batch by batch together, and how many whole-model trials run side by side; same counts (default "
        "{default})")
    scope_check: int = option(
        0, flag="--scope-check", type=int, metavar="N", group=NOISE, commands=("bench",),
        help="after the run, re-run the N strengths that lost the most top-1 with sigma per output channel (scope="
        "channel, same seeds) and say whether the answer depends on the scope, e.g. gaussian-snr (default 0: off)")
    extra: Mapping[str, Any] = extra_settings()

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", Path(self.model))
        object.__setattr__(self, "data", Path(self.data))
        if self.ground_truth is not None:
            object.__setattr__(self, "ground_truth", Path(self.ground_truth))
        if self.op_types is not None:
            object.__setattr__(self, "op_types", parse_names(self.op_types))
        check_int("--limit", self.limit, minimum=1, optional=True)
        check_int("--batch-size", self.batch_size, minimum=1, maximum=MAX_BATCH_SIZE)
        check_int("--threads", self.threads, minimum=0, maximum=max_threads(),
                   why=f" ({MAX_THREADS_PER_CPU} per CPU this process may use: {usable_cpus()})")
        check_int("--label-offset", self.label_offset, minimum=0, optional=True)
        check_int("--scope-check", self.scope_check, minimum=0)
        if self.scope_check:
            _check_scope_check(self.noise)
        if self.device not in DEVICES:
            msg = f"`device` must be one of {', '.join(DEVICES)}, got {self.device!r}"
            raise ConfigError(msg)
        if self.provider.name is not None and self.device != "auto":
            raise ConfigError(f"pass `--provider {self.provider.name}` or `--device {self.device}`, not both")
        check_percent("expect_top1", self.expect_top1, optional=True)
        check_percent("tolerance", self.tolerance)
        check_gib("--prefix-memory", self.prefix_memory)
        check_gib("--lockstep-memory", self.lockstep_memory)
        if not isinstance(self.tf32, bool):
            msg = f"`tf32` must be true or false, got {self.tf32!r}"
            raise ConfigError(msg)
        for name, cls in (("noise", NoiseConfig), ("tile", TileConfig), ("provider", ProviderConfig)):
            if not isinstance(getattr(self, name), cls):
                msg = f"`{name}` must be a {cls.__name__}, got {type(getattr(self, name)).__name__}"
                raise ConfigError(msg)
        object.__setattr__(self, "extra", _extra_values(self.extra))
        check_tile_rows(self.noise, self.tile.tile_rows)

    @classmethod
    def expand_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` with ``--analog-preset``'s settings where the user gave none (:func:`apply_analog_preset`);
        :func:`onnxnoise.settings.config_values` calls it first, the one place a preset expands.

        Raises:
            ConfigError: A bad preset or tile value, or a tile setting the user gave that acts on nothing
                in this run (:func:`onnxnoise.tile_config.check_given_tile_options`).
        """
        expanded = apply_analog_preset(options, [s.key for s in declared(cls)])[0]
        check_given_tile_options(options, TileConfig.from_options(**{s.key: expanded.get(s.key)
                                                                     for s in declared(TileConfig)}))
        return expanded

    def to_dict(self) -> dict[str, Any]:
        """All settings, JSON-ready."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, (NoiseConfig, TileConfig, ProviderConfig)):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
            if f.name == "extra":
                out.update(value)  # registered settings sit next to the declared ones
            else:
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

    run: RunConfig = nested(RunConfig)
    modes: tuple[str, ...] = option(
        ("all",), flag="--mode", metavar="MODE", parse=_names, commands=("sweep",), files=("sweeps",), trial_key="mode",
        help="comma-separated: all (noise in every layer), per-layer (one layer at a time), cumulative (layers 1..L); "
        "default {default}")
    prefix_reuse: bool = option(
        True, flag="--no-prefix-reuse", action="store_false", commands=("sweep",), files=("sweeps",),
        help="evaluate per-layer trials on the full model instead of reusing clean activations before the noised layer "
        "(same predictions, slower)")
    executor: str = option(
        "local", flag="--executor", choices=EXECUTORS, group=EXECUTOR, commands=("sweep",),
        help="local: this process; ray: Ray workers on this machine or a cluster, same counts (pip install "
        "'onnxnoise[ray]'); default {default}")
    address: str | None = option(
        None, flag="--address", metavar="ADDR", group=EXECUTOR, commands=("sweep",),
        help="Ray cluster to join: host:port printed by `ray start --head`, or auto (default: start a local Ray "
        "instance)")
    workers: int | None = option(
        None, flag="--workers", type=int, metavar="N", group=EXECUTOR, commands=("sweep",),
        help="Ray workers, each single-threaded unless --threads (default: as many as the cluster's CPUs, or GPUs "
        "with --gpus-per-trial, hold)")
    gpus_per_trial: float = option(
        0.0, flag="--gpus-per-trial", type=float, metavar="F", group=EXECUTOR, commands=("sweep",),
        help="GPUs each Ray worker requests, e.g. 1 or 0.5 (runs the CUDA execution provider)")

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
        check_int("--workers", self.workers, minimum=1, optional=True)
        gpus = self.gpus_per_trial
        if isinstance(gpus, bool) or not isinstance(gpus, numbers.Real) or not math.isfinite(gpus) or gpus < 0:
            msg = f"`--gpus-per-trial` must be a number >= 0 (e.g. 1 or 0.5), got {gpus!r}"
            raise ConfigError(msg)
        if self.executor != "ray" and (self.address is not None or self.workers is not None or gpus > 0):
            msg = "`--address`, `--workers` and `--gpus-per-trial` are Ray settings; add `--executor ray`"
            raise ConfigError(msg)

    def to_dict(self) -> dict[str, Any]:
        """All settings, JSON-ready: the run's, then the sweep's own."""
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "run"}
        return {**self.run.to_dict(), **{k: list(v) if isinstance(v, tuple) else v for k, v in own.items()}}


def _extra_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Registered settings' values: each given one ``parse``d (validated), the others their default.

    Raises:
        ConfigError: A key no registered setting has.
    """
    registered = registered_settings()
    unknown = sorted(set(values) - set(registered))
    if unknown:
        msg = f"unknown setting(s) {', '.join(unknown)}; registered: {', '.join(registered) or 'none'}"
        raise ConfigError(msg)
    return {key: s.value(values[key]) if values.get(key) is not None else s.default for key, s in registered.items()}


def _check_scope_check(noise: NoiseConfig) -> None:
    """Raise ``ConfigError`` unless ``noise`` has a ``scope`` (gaussian-snr, gaussian-max) not yet per channel."""
    scope = getattr(noise.noise_model, "scope", None)
    if scope is None or scope in ("channel", "row"):
        why = (f"needs a noise model with a `scope` parameter (e.g. gaussian-snr), {noise.model} has none" if scope is None
               else f"compares with scope=channel, which this run already uses ({noise.model}:scope={scope})")
        raise ConfigError(f"--scope-check {why}; drop --scope-check or change --noise")
