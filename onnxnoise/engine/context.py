"""The run context: everything a trial needs, loaded and resolved once per run.

:func:`prepare_context` loads the model file once, lists and selects its layers,
resolves preprocessing and the label offset, decodes the dataset, and builds the
session factory. Every trial of the run (bench, sweep, recheck, benchmarks) is then
executed by :func:`onnxnoise.engine.trial.run_trial` against this one object, and
its key is derived from :meth:`RunContext.key_fields`, so a setting that can change
a count is in the key by construction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxnoise import __version__
from onnxnoise.config import RunConfig
from onnxnoise.data import DataConfig, Dataset, load_images, open_dataset
from onnxnoise.data.assumed import static_size
from onnxnoise.data.cache import load_images_cached
from onnxnoise.data.loading import usable_cpus
from onnxnoise.data.registry import resolve_data
from onnxnoise.engine.evaluate import EvalSet, Outcomes
from onnxnoise.engine.labels import resolve_label_offset
from onnxnoise.engine.metrics import fixed_top5
from onnxnoise.engine.prefix import PrefixRunner
from onnxnoise.engine.preprocessing import resolve_preprocessing
from onnxnoise.engine.providers import (NodeShare, check_node_share, choose_providers, node_share, plugin_version,
                                        unreported_options)
from onnxnoise.engine.runtime import SessionFactory
from onnxnoise.engine.stages import RunStages, prepare_stages
from onnxnoise.errors import DataError, GraphError
from onnxnoise.lazy import lazy_module
from onnxnoise.noise import split_layers
from onnxnoise.noise.clean import CleanStats
from onnxnoise.noise.presets import expand_preset
from onnxnoise.settings import own_key_values
from onnxnoise.model import (
    Layer, ModelIO, get_initializers, get_model_io, layer_report, load_model, score_width, select_layers,
)

ort = lazy_module("onnxruntime")

__all__ = ["RunContext", "prepare_context", "package_versions"]

#: Execution-provider options that can change numbers (precision, kernel choice).
_PRECISION_OPTIONS = ("use_tf32", "cudnn_conv_algo_search", "cudnn_conv_use_max_workspace", "prefer_nhwc",
                      "enable_skip_layer_norm_strict_mode", "use_ep_level_unified_stream")


def package_versions() -> dict[str, str]:
    """Versions of the packages that determine a trial's numbers."""
    versions = {"onnxnoise": __version__, "onnxruntime": ort.__version__}
    for name in ("onnx", "numpy", "pillow"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@dataclass
class RunContext:
    """One model on one prepared evaluation set, ready to run trials.

    Attributes:
        config: The settings it was prepared from.
        model: The loaded ``ModelProto`` (Constant nodes lifted, external data loaded).
        model_sha256: sha256 of the ONNX file.
        io: The image input and score output.
        layers: Every parameter layer, graph order.
        selected: The layers trials may noise.
        initializers: Clean ``name -> array`` (read-only by convention).
        factory: Builds sessions with any selected tensor replaced.
        data: The decoded, batched evaluation set (with the label offset).
        dataset: The dataset description (name, format, classes).
        dataset_fingerprint: ``dataset.fingerprint()``, computed once.
        data_config: The resolved preprocessing.
        preprocess_source: Where it came from (``--preprocess``, model metadata, default).
        skipped_images: Unreadable images skipped while decoding.
        label_offset: Output index of label 0.
        provider: Execution provider a session of this model actually runs on.
        provider_options: That provider's options that can change numbers, and every option
            given with ``--provider-option``.
        versions: Package versions (onnxruntime, onnx, numpy, ...).
        warnings: Things the user should know about the run's numbers (e.g. a preset
            that overrides the model's own preprocessing), shown in summaries.
        score_width: Class scores per image (:func:`onnxnoise.model.score_width`: the
            score output's class count, inferred where the graph leaves it symbolic; where
            inference cannot tell, the width of the clean model's scores on the first batch),
            or None when even that run fails.
        clean_outcomes: The clean model's per-image outcomes, set by the baseline trial
            (or :func:`onnxnoise.engine.trial.clean_outcomes`): the reference of every
            trial's paired counts.
        stages: The analog tile's input/output stages every noisy trial applies to the layers
            it noises, with their calibration (:class:`onnxnoise.engine.stages.RunStages`);
            ``None`` when every stage is off.
        outcome_sink: Called as ``outcome_sink(row, outcomes)`` with every noisy trial's
            row and its per-image :class:`~onnxnoise.engine.evaluate.Outcomes` when the
            trial finishes without error (``check`` keeps them for its per-image
            variance decomposition, :mod:`onnxnoise.check.bounds`); ``None``: not kept.
        provider_nodes: Where the clean model's nodes run: the share of the provider asked for
            (``--provider``, ``--device cuda``), else of the provider the session runs on
            (:class:`onnxnoise.engine.providers.NodeShare`).
    """

    config: RunConfig
    model: onnx.ModelProto
    model_sha256: str
    io: ModelIO
    layers: list[Layer]
    selected: list[Layer]
    initializers: dict[str, np.ndarray]
    factory: SessionFactory
    data: EvalSet
    dataset: Dataset
    dataset_fingerprint: str
    data_config: DataConfig
    preprocess_source: str
    skipped_images: int
    label_offset: int
    provider: str
    provider_options: dict[str, str]
    versions: dict[str, str]
    warnings: list[str] = field(default_factory=list)
    score_width: int | None = None
    clean_outcomes: Outcomes | None = field(default=None, repr=False)
    stages: RunStages | None = field(default=None, repr=False)
    outcome_sink: Callable[[dict[str, Any], Outcomes], None] | None = field(default=None, repr=False)
    provider_nodes: NodeShare | None = None
    _prefix: PrefixRunner | None = field(default=None, repr=False)
    _noise_stats: CleanStats | None = field(default=None, repr=False)

    @property
    def noise_stats(self) -> CleanStats:
        """The run's clean values and their statistics (``sigma_w``...), shared by every trial's draw
        (:class:`onnxnoise.noise.clean.CleanStats`, built on first use)."""
        if self._noise_stats is None or self._noise_stats.initializers is not self.initializers:
            self._noise_stats = CleanStats(self.initializers, self.layers)
        return self._noise_stats

    @property
    def split_layers(self) -> frozenset[str]:
        """Selected layers whose draw is split into chunks (:func:`onnxnoise.noise.split_layers`; empty for
        most models): their trials are keyed under :data:`onnxnoise.store.schema.SPLIT_KEY_VERSION`."""
        return split_layers(self.config.noise.noise_model, self.selected, self.initializers)

    @property
    def layers_by_name(self) -> dict[str, Layer]:
        """Selected layers by name."""
        return {layer.name: layer for layer in self.selected}

    def key_fields(self) -> dict[str, Any]:
        """Everything besides the trial itself that can change a trial's counts.

        Model file, dataset and image subset, preprocessing, score output, label
        offset, batch size, execution provider and its precision options,
        onnxruntime version, noise model, its parameters and policies, and under
        ``settings`` every setting declared with ``trial_key=True`` whose value is not its
        default (:func:`onnxnoise.settings.own_key_values`; absent when there is none, so
        keys made before such a setting existed stay valid; the tile settings only while a
        stage is on, :meth:`onnxnoise.tile_config.TileConfig.key_values`), and with stages on
        ``calibration``, the fingerprint of their calibration. The trial key hashes this
        dict (see :func:`onnxnoise.engine.plan.trial_key`).
        """
        noise = self.config.noise
        own = self.own_settings()
        return {
            "model_sha256": self.model_sha256,
            "dataset_fingerprint": self.dataset_fingerprint,
            "images": len(self.data),
            "limit": self.config.limit,
            "preprocess": self.data_config.to_dict(),
            "score_output": self.io.output_name,
            "label_offset": self.label_offset,
            "batch_size": self.data.batch_size,
            "provider": self.provider,
            "provider_options": self.provider_options,
            **({"provider_version": self.versions[self.provider]} if self.provider in self.versions else {}),
            "onnxruntime": self.versions.get("onnxruntime"),
            "noise_model": noise.model,
            "noise": noise.settings(),
            **({"settings": own} if own else {}),
            **({"calibration": self.stages.fingerprint} if self.stages and self.stages.fingerprint else {}),
        }

    def own_settings(self) -> dict[str, Any]:
        """Settings keyed as themselves that differ from their defaults (the ``settings`` column):
        :func:`onnxnoise.settings.own_key_values` of the run, then its tile settings while a stage is on."""
        return {**own_key_values(self.config), **self.config.tile.key_values()}

    def row_fields(self) -> dict[str, Any]:
        """The columns every trial row of this run shares (identity and settings)."""
        return {
            "model": self.config.model.name,
            "model_sha256": self.model_sha256,
            "dataset": self.dataset.name,
            "dataset_fingerprint": self.dataset_fingerprint,
            "preprocess": self.data_config.to_dict(),
            "noise_model": self.config.noise.model,
            "noise": self.config.noise.settings(),
            "label_offset": self.label_offset,
            "batch_size": self.data.batch_size,
            "settings": self.own_settings() or None,
            "context": self.key_fields(),
            "versions": self.versions,
        }

    def prefix_runner(self) -> PrefixRunner:
        """The prefix-reuse runner of this run (built once, from the loaded model: no reload)."""
        if self._prefix is None:
            names = [n for layer in self.selected for n in layer.tensors]
            self._prefix = PrefixRunner(self.model, self.data, self.io.input_name, self.io.output_name,
                                        replaceable=names, device=self.config.device, threads=self.config.threads,
                                        parallel=self.config.threads or usable_cpus(),
                                        memory_limit_bytes=int(self.config.prefix_memory * 2**30),
                                        tf32=self.config.tf32, choice=self.factory.choice)
        return self._prefix

    def facts(self) -> dict[str, Any]:
        """Run facts for captions and JSON summaries."""
        noise = self.config.noise
        return {
            "model": self.config.model.name,
            "model_path": str(self.config.model),
            "model_sha256": self.model_sha256,
            "dataset": self.dataset.name,
            "dataset_path": str(self.config.data),
            "dataset_format": self.dataset.format,
            "dataset_fingerprint": self.dataset_fingerprint,
            "images": len(self.data),
            "skipped_images": self.skipped_images,
            "model_outputs": self.score_width,
            "dataset_classes": self.dataset.num_classes,
            "input_layout": self.data_config.layout,
            "input_size": _input_size(self.io.input_shape, self.data_config.layout),
            "fixed_batch": self.io.batch_size,
            "batch_size": self.data.batch_size,
            "layers_total": len(self.layers),
            "layers_noised": len(self.selected),
            "params_total": int(sum(layer.num_params for layer in self.layers)),
            "params_noised": int(sum(layer.num_params for layer in self.selected)),
            "preprocess": self.data_config.to_dict(),
            "preprocess_source": self.preprocess_source,
            "preprocess_overrides": sorted(dict(self.config.preprocess)),
            "label_offset": self.label_offset,
            "quantization": noise.noise_model.describe_quantization(self.selected),
            "noise_model": noise.model,
            "noise": noise.settings(),
            "noise_description": noise.noise_model.describe(),
            "strength_name": noise.noise_model.strength_name,
            "strengths": list(noise.strengths),
            "seeds": "auto" if noise.seeds == "auto" else noise.seed_list,
            "ci_halfwidth": noise.ci_halfwidth,
            "max_seeds": noise.max_seeds,
            "bn_variance": noise.bn_variance,
            "keep_zeros": noise.keep_zeros,
            "provider": self.provider,
            "provider_nodes": None if self.provider_nodes is None else self.provider_nodes.to_dict(),
            "versions": self.versions,
            "stages": None if self.stages is None else self.stages.facts(),
            "analog_preset": self.config.analog_preset and expand_preset(self.config.analog_preset).to_dict(),
        }


def _input_size(shape, layout: str | None) -> list[int] | None:
    """``[height, width]`` of the model's image input when both are static, else None (timm's ``img_size``)."""
    size = static_size(shape, layout)
    return None if size is None else [int(v) for v in size]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _select(config: RunConfig, layers: list[Layer]) -> list[Layer]:
    if not layers:
        msg = f"{config.model} has no float initializers to perturb (no weights found)"
        raise GraphError(msg)
    selected = select_layers(layers, config.layer_regex)
    if config.op_types:
        selected = [layer for layer in selected if layer.op_type in config.op_types]
        if not selected:
            present = sorted({layer.op_type for layer in layers})
            msg = f"`op_types` {','.join(config.op_types)} matches no selected layer; the model has {', '.join(present)}"
            raise GraphError(msg)
    return selected


def _check_labels(dataset: Dataset, io: ModelIO, offset: int) -> None:
    if io.num_classes is None:
        return
    top = int(dataset.labels.max()) if len(dataset.labels) else -1
    if top + offset >= io.num_classes or dataset.num_classes + offset > io.num_classes:
        msg = (
            f"the dataset has labels up to {max(top, dataset.num_classes - 1)} ({dataset.num_classes} classes"
            + (f", label offset {offset}" if offset else "")
            + f") but the model's score output `{io.output_name}` has {io.num_classes} outputs; use a dataset of "
            "the model's classes" + io.other_outputs()
        )
        raise DataError(msg)


def _check_size(images: np.ndarray, data_config: DataConfig, shape: tuple) -> None:
    if len(shape) != 4:
        return
    h, w = (shape[2], shape[3]) if data_config.layout == "NCHW" else (shape[1], shape[2])
    got = images.shape[1:3]
    if h is not None and w is not None and (h, w) != tuple(got):
        fix = (f"pass `--crop {h}` (and `--resize`) or choose the model's `--preprocess` preset" if h == w else
               f"--crop gives square images only, so give images of {h}x{w} pixels (height x width) and pass "
               "`--resize 0 --crop 0`")
        msg = f"preprocessing gives {got[0]}x{got[1]} images but the model expects {h}x{w}; {fix}"
        raise DataError(msg)


def _precision_options(probe, factory: SessionFactory) -> dict[str, str]:
    """The options of the provider ``probe`` really runs on that can change numbers.

    On CUDA ``use_tf32`` is always there: the value the session reports, else the one
    the factory passed (an onnxruntime that does not report it), so the trial key and
    every row record whether float32 ran as float32.
    """
    options = probe.session.get_provider_options().get(probe.provider, {})
    precision = {k: str(options[k]) for k in _PRECISION_OPTIONS if k in options}
    if probe.on_cuda and "use_tf32" not in precision:
        index = factory.providers.index(probe.provider)
        precision["use_tf32"] = factory.provider_options[index]["use_tf32"]
    return precision


def _observed_width(probe, data: EvalSet) -> int | None:
    """Class scores per image in the clean model's output on the first batch, or None when that run fails
    (the baseline trial then reports the failure in its own words)."""
    batches = data.batches()
    try:
        x, _ = next(batches)
        return int(probe.run(x).shape[1])
    except Exception:  # noqa: BLE001 - the baseline trial runs the same batch and reports any error
        return None
    finally:
        batches.close()


def prepare_context(config: RunConfig, *, calibration_dir: Path | None = None) -> RunContext:
    """Load, resolve and decode everything a run needs, once.

    Args:
        config: The run settings; ``config.data`` may be a registered dataset name (``onnxnoise data list``),
            resolved here as the CLI resolves ``--data`` (:func:`onnxnoise.data.registry.resolve_data`), so
            ``run_bench(RunConfig(model, "cifar10"))`` runs what ``onnxnoise bench MODEL --data cifar10`` does.
        calibration_dir: With a tile stage on: the run folder whose
            :data:`~onnxnoise.engine.stages.CALIBRATION_FILE` keeps the calibration (reused on
            resume); ``None``: calibrated in memory.

    Returns:
        The :class:`RunContext`.

    Raises:
        GraphError: Bad model file or nothing to perturb.
        NoiseConfigError: The noise model cannot noise the selected layers
            (:meth:`onnxnoise.noise.NoiseModel.check_layers`: bit-flip on float weights).
        DataError: Bad dataset, preprocessing, or labels beyond the model's outputs.
        SessionError: Device or provider not available, the provider asked for runs none of the
            model's nodes, or ONNX Runtime rejects the model.
    """
    config = replace(config, data=resolve_data(config.data, config.model).path)  # a name: its registered path
    choice = choose_providers(config.device, config.provider, tf32=config.tf32)  # fail before decoding anything
    model = load_model(config.model)
    report = layer_report(model, include_preprocessing=config.include_preprocessing)
    layers = report.layers
    selected = _select(config, layers)
    config.noise.noise_model.check_layers(selected)  # e.g. bit-flip on a float model: refused before any trial
    io = get_model_io(model, output=config.score_output)
    data_config, source, warnings = resolve_preprocessing(config, model, io)
    warnings = [f"weight left out (not listed, not noised): {line}" for line in report.left_out] + warnings
    width = score_width(model, io)
    warnings += [line for line in [fixed_top5(width)] if line]
    known_width = width is not None
    dataset = open_dataset(config.data, ground_truth=config.ground_truth, limit=config.limit, strict=config.strict)
    offset = resolve_label_offset(io.num_classes, dataset.num_classes, config.label_offset)
    _check_labels(dataset, io, offset)
    if dataset.files is not None and config.cache:
        decoded = load_images_cached(dataset, data_config, strict=config.strict)
    else:
        decoded = load_images(dataset, data_config, strict=config.strict)
    _check_size(decoded.images, data_config, io.input_shape)
    if decoded.skipped:
        first = decoded.skipped[0]
        warnings.append(f"{len(decoded.skipped)} image file(s) could not be read and are left out of every count, "
                        f"e.g. `{first.path}` ({first.reason}); remove or replace them, or pass --strict to stop "
                        "at the first one")
    data = EvalSet(decoded.images, decoded.labels, data_config, batch_size=config.batch_size,
                   fixed_batch=io.batch_size, input_dtype=io.input_dtype, label_offset=offset)
    replaceable = [name for layer in selected for name in layer.tensors]
    factory = SessionFactory(model, replaceable, input_name=io.input_name, output_name=io.output_name,
                             device=config.device, threads=config.threads, tf32=config.tf32, choice=choice)
    probe = factory.create(record=True)  # the provider a session really gets (CUDA may fall back) and its options
    nodes = node_share(probe.session, choice.requested or probe.provider)
    check_node_share(nodes, choice.requested)  # no silent fallback: the provider asked for runs some node
    if choice.requested is not None and nodes.nodes < nodes.total:
        warnings.append(f"not every node runs on the provider asked for: {nodes.describe()}")
    if not choice.plugin:  # a plugin provider's options are not read back through the session
        warnings += [line for line in [unreported_options(probe.session, probe.provider, choice.given)] if line]
    precision = {**_precision_options(probe, factory), **choice.given}
    versions = {**package_versions(), **plugin_version(choice)}
    if not known_width:  # a width the graph never states: the clean model's first batch shows it
        width = _observed_width(probe, data)
        warnings += [line for line in [fixed_top5(width)] if line]
    sha, fingerprint, initializers = _sha256(config.model), dataset.fingerprint(), get_initializers(model)
    stages = prepare_stages(config.tile.settings(), model=model, selected=selected, data=data, weights=initializers,
                            input_name=io.input_name, folder=calibration_dir, identity={
                                "model_sha256": sha, "dataset_fingerprint": fingerprint, "limit": config.limit,
                                "preprocess": data_config.to_dict(), "layers": [layer.name for layer in selected],
                                "provider": probe.provider, "onnxruntime": ort.__version__})
    return RunContext(
        config=config, model=model, model_sha256=sha, io=io, layers=layers, selected=selected,
        initializers=initializers, factory=factory, data=data, dataset=dataset,
        dataset_fingerprint=fingerprint, data_config=data_config,
        preprocess_source=source, skipped_images=len(decoded.skipped), label_offset=offset,
        provider=probe.provider, provider_options=precision, versions=versions, warnings=warnings,
        score_width=width, stages=stages, provider_nodes=nodes,
    )
