"""Bench one model on one dataset: the clean baseline, then noisy trials per SNR and seed.

Normalized accuracy is ``A = a / a_0`` (Fagbohungbe & Qian, arXiv 2011.11840, eq. 2)
with ``a_0`` the clean baseline accuracy measured in the same run on the same images.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from onnxnoise import __version__
from onnxnoise.engine.labels import resolve_label_offset
from onnxnoise.data import Dataset, load_images, open_dataset, resolve_data_config
from onnxnoise.data.cache import load_images_cached
from onnxnoise.errors import DataError, GraphError
from onnxnoise.engine.evaluate import EvalSet, evaluate
from onnxnoise.model.graph import Layer, get_initializers, get_metadata, get_model_io, list_layers, load_model, select_layers
from onnxnoise.noise.legacy import NoiseSpec, apply_noise
from onnxnoise.engine.plan import resolve_seeds
from onnxnoise.model.quant import describe_quantization
from onnxnoise.engine.runtime import SessionFactory, resolve_providers

__all__ = ["BenchConfig", "BenchResult", "BenchProgress", "prepare_bench", "run_bench", "summarize"]


@dataclass(frozen=True)
class BenchConfig:
    """Settings of one ``onnxnoise bench`` run.

    Attributes:
        model: Path to the ONNX classifier.
        data: Path to the dataset (folder, CIFAR batch folder, or ``.npz``).
        snrs: Linear SNR values (``sigma_w / sigma_noise``) to test.
        seeds: Number of noise draws per SNR (seeds ``0 .. seeds-1``), or the
            explicit seeds (e.g. ``(40, 30)``, the paper's Figs. 3-4).
        layers: ``None``/``"all"`` or a regular expression selecting the noised layers.
        op_types: Keep only layers of these op types (e.g. ``("Conv", "Gemm")``).
        limit: Evaluate a class-stratified subset of this many images.
        device: ``auto``, ``cpu`` or ``cuda``.
        batch_size: Images per ONNX Runtime call (a fixed-batch model overrides it).
        threads: CPU EP intra-op threads (``0``: ONNX Runtime's default).
        preset: Preprocessing preset name, or ``None`` for the model's default.
        preprocess: Explicit preprocessing overrides (``DataConfig`` field names).
        ground_truth: ImageNet flat-val ground-truth file, when not found automatically.
        output: Name of the score output (default the first graph output).
        label_offset: Added to every dataset label to index the model's outputs;
            ``None`` detects it (1 for a 1001-output model with a background class
            on a 1000-class dataset, else 0).
        bn_variance: Policy for negative BatchNormalization variances.
        keep_zeros: Keep exactly-zero weights at zero.
        strict: Fail on corrupt images instead of skipping them.
        cache: Keep decoded images of image-file datasets in the on-disk cache
            (``$ONNXNOISE_CACHE_DIR`` or ``~/.cache/onnxnoise``).
    """

    model: Path
    data: Path
    snrs: tuple[float, ...]
    seeds: int | tuple[int, ...] = 1
    layers: str | None = None
    op_types: tuple[str, ...] | None = None
    limit: int | None = None
    device: str = "auto"
    batch_size: int = 128
    threads: int = 0
    preset: str | None = None
    preprocess: dict = field(default_factory=dict)
    ground_truth: Path | None = None
    output: str | None = None
    label_offset: int | None = None
    bn_variance: str = "clamp"
    keep_zeros: bool = False
    strict: bool = False
    cache: bool = True

    def to_dict(self) -> dict:
        """Return the settings as a JSON-ready dict."""
        d = asdict(self)
        for key in ("model", "data", "ground_truth"):
            d[key] = None if d[key] is None else str(d[key])
        d["snrs"] = list(self.snrs)
        d["seeds"] = self.seeds if isinstance(self.seeds, int) else list(self.seeds)
        d["op_types"] = None if self.op_types is None else list(self.op_types)
        return d


class BenchProgress:
    """Receives progress events; the CLI subclasses it with a rich progress bar."""

    def start(self, trials: int, images_per_trial: int) -> None:
        """Called once before the first trial."""

    def advance(self, images: int) -> None:
        """Called after each batch with its number of images."""

    def trial_done(self, row: dict) -> None:
        """Called with each finished trial's row."""


@dataclass
class Prepared:
    """Everything a bench run needs, loaded once: model, layers, data, session factory."""

    config: BenchConfig
    model_sha256: str
    layers: list[Layer]
    selected: list[Layer]
    initializers: dict[str, np.ndarray]
    factory: SessionFactory
    data: EvalSet
    dataset: Dataset
    data_config: dict
    skipped_images: int
    meta: dict


@dataclass
class BenchResult:
    """Outcome of :func:`run_bench`.

    Attributes:
        trials: One row per trial (baseline first), columns described in
            :func:`onnxnoise.report.tables.TRIAL_COLUMNS`.
        summary: One row per SNR (baseline first): mean/std over seeds.
        meta: Run facts: model, dataset, images, preprocessing, EP, versions.
    """

    trials: pl.DataFrame
    summary: pl.DataFrame
    meta: dict


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def prepare_bench(config: BenchConfig) -> Prepared:
    """Load the model, list and select layers, decode the dataset, check they fit.

    Raises:
        GraphError: Bad model file or nothing to perturb.
        DataError: Bad dataset, preprocessing, or labels beyond the model's outputs.
        SessionError: Device not available.
    """
    resolve_providers(config.device)  # fail before decoding anything
    model = load_model(config.model)
    layers = list_layers(model)
    if not layers:
        msg = f"{config.model} has no float initializers to perturb (no weights found)"
        raise GraphError(msg)
    selected = select_layers(layers, config.layers)
    if config.op_types:
        selected = [layer for layer in selected if layer.op_type in config.op_types]
        if not selected:
            present = sorted({layer.op_type for layer in layers})
            msg = f"`--op-types` {','.join(config.op_types)} matches no selected layer; the model has {', '.join(present)}"
            raise GraphError(msg)
    io = get_model_io(model, output=config.output)
    metadata = get_metadata(model)
    # Precedence: single flags > an explicitly named preset > the model's metadata > torchvision.
    defaults = {}
    source = "default"
    if "onnxnoise.preprocess" in metadata and config.preset is None:
        try:
            defaults = json.loads(metadata["onnxnoise.preprocess"])
            source = "model metadata"
        except json.JSONDecodeError:
            defaults = {}
    if config.preset is not None:
        source = "--preprocess"
    shape = io.input_shape
    if len(shape) == 4 and "channels" not in defaults:
        nchw = shape[1] in (1, 3)
        channels = shape[1] if nchw else shape[3]
        if channels in (1, 3):
            # The model's input shape decides channels and layout over any preset.
            defaults = {**defaults, "channels": channels}
            defaults.setdefault("layout", "NCHW" if nchw else "NHWC")
    data_config = resolve_data_config(config.preset, model_defaults=defaults, **config.preprocess)
    dataset = open_dataset(config.data, ground_truth=config.ground_truth, limit=config.limit, strict=config.strict)
    offset = resolve_label_offset(io.num_classes, dataset.num_classes, config.label_offset)
    if io.num_classes is not None:
        top = int(dataset.labels.max()) if len(dataset.labels) else -1
        if top + offset >= io.num_classes or dataset.num_classes + offset > io.num_classes:
            msg = (
                f"the dataset has labels up to {max(top, dataset.num_classes - 1)} ({dataset.num_classes} classes"
                + (f", label offset {offset}" if offset else "")
                + f") but the model has {io.num_classes} outputs; use a dataset of the model's classes"
            )
            raise DataError(msg)
    if dataset.files is not None and config.cache:
        # Image files: decode and resize once per (file list, geometry), then memory-map.
        decoded = load_images_cached(dataset, data_config, strict=config.strict)
    else:
        decoded = load_images(dataset, data_config, strict=config.strict)
    images, labels, skipped = decoded.images, decoded.labels, len(decoded.skipped)
    _check_size(images, data_config, shape)
    data = EvalSet(
        images,
        labels,
        data_config,
        batch_size=config.batch_size,
        fixed_batch=io.batch_size,
        input_dtype=io.input_dtype,
        label_offset=offset,
    )
    initializers = get_initializers(model)
    replaceable = [name for layer in selected for name in layer.tensors]
    factory = SessionFactory(
        model,
        replaceable,
        input_name=io.input_name,
        output_name=io.output_name,
        device=config.device,
        threads=config.threads,
    )
    model_sha = _sha256(Path(config.model))
    meta = {
        "model": Path(config.model).name,
        "model_path": str(config.model),
        "model_sha256": model_sha,
        "dataset": dataset.name,
        "dataset_path": str(config.data),
        "dataset_format": dataset.format,
        "dataset_fingerprint": dataset.fingerprint(),
        "images": int(len(labels)),
        "skipped_images": int(skipped),
        "model_outputs": io.num_classes,
        "dataset_classes": dataset.num_classes,
        "input_layout": data_config.layout,
        "fixed_batch": io.batch_size,
        "layers_total": len(layers),
        "layers_noised": len(selected),
        "params_noised": int(sum(layer.num_params for layer in selected)),
        "preprocess": data_config.to_dict(),
        "preprocess_source": source,
        "label_offset": offset,
        "quantization": describe_quantization(selected),
        "noise_model": "gaussian-snr",
        "bn_variance": config.bn_variance,
        "keep_zeros": config.keep_zeros,
        "onnxnoise_version": __version__,
    }
    return Prepared(
        config, model_sha, layers, selected, initializers, factory, data, dataset,
        data_config.to_dict(), int(skipped), meta,
    )


def _check_size(images: np.ndarray, config, shape: tuple) -> None:
    if len(shape) != 4:
        return
    h, w = (shape[2], shape[3]) if config.layout == "NCHW" else (shape[1], shape[2])
    got = images.shape[1:3]
    if h is not None and w is not None and (h, w) != tuple(got):
        msg = (
            f"preprocessing gives {got[0]}x{got[1]} images but the model expects {h}x{w}; "
            f"pass `--crop {h}` (and `--resize`) or choose the model's `--preprocess` preset"
        )
        raise DataError(msg)


def run_bench(
    config: BenchConfig,
    *,
    progress: BenchProgress | None = None,
    on_trial: Callable[[pl.DataFrame], None] | None = None,
    prepared: Prepared | None = None,
) -> BenchResult:
    """Run the baseline and every (SNR, seed) trial of ``config``.

    Args:
        config: Run settings.
        progress: Progress receiver (default: silent).
        on_trial: Called with the trial table so far after every trial, so the caller
            can persist it (a half-finished run loses nothing).
        prepared: Output of :func:`prepare_bench`, to reuse already decoded data.

    Returns:
        The :class:`BenchResult`.

    Raises:
        OnnxNoiseError: Any input problem, see :func:`prepare_bench`.
    """
    prep = prepared or prepare_bench(config)
    progress = progress or BenchProgress()
    specs = [None] + [
        NoiseSpec(snr=snr, seed=seed, bn_variance=config.bn_variance, keep_zeros=config.keep_zeros)
        for snr in config.snrs
        for seed in resolve_seeds(config.seeds)
    ]
    progress.start(len(specs), len(prep.data))
    rows: list[dict] = []
    provider = None
    for trial, spec in enumerate(specs):
        started = time.perf_counter()
        if spec is None:
            replacements, changed, overflow, clipped = None, 0, 0, 0
        else:
            result = apply_noise(prep.initializers, prep.selected, spec)
            replacements, changed, overflow = result.arrays, result.bn_variance_changed, result.overflow_count
            clipped = result.clipped_count
        session = prep.factory.create(replacements)
        provider = session.provider
        counts = evaluate(session, prep.data, on_batch=progress.advance)
        seconds = time.perf_counter() - started
        row = {
            "trial": trial,
            "kind": "baseline" if spec is None else "noisy",
            "snr": math.inf if spec is None else float(spec.snr),
            "noise_pct": 0.0 if spec is None else spec.noise_pct,
            "seed": None if spec is None else spec.seed,
            "layers_noised": 0 if spec is None else len(prep.selected),
            "images": counts.images,
            "top1_correct": counts.top1_correct,
            "top5_correct": counts.top5_correct,
            "nan_count": counts.nan_count,
            "top1_acc": 100.0 * counts.top1_correct / counts.images,
            "top5_acc": 100.0 * counts.top5_correct / counts.images,
            "bn_variance_changed": changed,
            "overflow_count": overflow,
            "clipped_count": clipped,
            "seconds": seconds,
            "provider": provider,
        }
        rows.append(row)
        progress.trial_done(row)
        if on_trial is not None:
            on_trial(_trial_frame(rows, prep.meta))
    trials = _trial_frame(rows, prep.meta)
    meta = {**prep.meta, "provider": provider, "seeds": len(resolve_seeds(config.seeds)),
            "seed_values": resolve_seeds(config.seeds), "snrs": list(config.snrs),
            "bn_variance_changed": int(trials["bn_variance_changed"].sum()),
            "clipped_count": int(trials["clipped_count"].sum())}
    if meta["quantization"]:
        meta["quantization"] = describe_quantization(prep.selected, meta["clipped_count"])
    return BenchResult(trials=trials, summary=summarize(trials), meta=meta)


def _trial_frame(rows: list[dict], meta: dict) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema_overrides={"seed": pl.Int64})
    base = frame.filter(pl.col("kind") == "baseline")
    a0_top1 = base["top1_acc"][0] if base.height else math.nan
    a0_top5 = base["top5_acc"][0] if base.height else math.nan
    return frame.with_columns(
        pl.lit(meta["model"]).alias("model"),
        pl.lit(meta["model_sha256"]).alias("model_sha256"),
        pl.lit(meta["dataset"]).alias("dataset"),
        pl.lit(meta["dataset_fingerprint"]).alias("dataset_fingerprint"),
        (pl.col("top1_acc") / a0_top1 if a0_top1 else pl.lit(math.nan)).alias("top1_norm"),
        (pl.col("top5_acc") / a0_top5 if a0_top5 else pl.lit(math.nan)).alias("top5_norm"),
    )


def summarize(trials: pl.DataFrame) -> pl.DataFrame:
    """Aggregate trials per SNR: mean and sample std over seeds.

    Args:
        trials: Output of :func:`run_bench` (``trials``).

    Returns:
        One row per SNR, baseline (``snr = inf``) first, then decreasing SNR, with
        ``seeds``, ``images``, ``top1_mean``, ``top1_std``, ``top5_mean``, ``top5_std``
        (percent), ``top1_norm_mean``, ``top5_norm_mean`` (``a / a_0``, eq. 2),
        ``nan_count`` (summed over seeds), ``bn_variance_changed`` and
        ``clipped_count`` (quantized weights clipped to their integer range; summed).
    """
    return (
        trials.group_by("snr", maintain_order=True)
        .agg(
            pl.col("noise_pct").first(),
            pl.len().alias("seeds"),
            pl.col("images").first(),
            pl.col("top1_acc").mean().alias("top1_mean"),
            pl.col("top1_acc").std().fill_null(0.0).alias("top1_std"),
            pl.col("top5_acc").mean().alias("top5_mean"),
            pl.col("top5_acc").std().fill_null(0.0).alias("top5_std"),
            pl.col("top1_norm").mean().alias("top1_norm_mean"),
            pl.col("top5_norm").mean().alias("top5_norm_mean"),
            pl.col("nan_count").sum(),
            pl.col("bn_variance_changed").sum(),
            pl.col("clipped_count").sum(),
        )
        .sort("snr", descending=True)
    )
