"""Aggregate trial tables: normalized accuracy, seed statistics, confidence intervals.

Metrics of Fagbohungbe & Qian, "Benchmarking Inference Performance of Deep Learning
Models on Analog Devices" (arXiv 2011.11840):

* normalized accuracy ``A_i = a_i / a_0`` (eq. 2), ``a_0`` the clean baseline;
* average normalized accuracy over the ``N`` layers of a per-layer sweep
  ``A_avr = (1/N) sum_i A_i`` (eq. 3), reported as degradation ``100 (1 - A_avr)`` %.

The paper reports means over repeated noise draws; here the spread over seeds is
given as a two-sided Student t confidence interval of the mean, and the sampling
error of one trial's accuracy (a binomial proportion over the images) as a Wilson
score or Clopper-Pearson interval.

Input frames have one row per trial with the columns of
:data:`onnxnoise.store.schema.TRIAL_COLUMNS` plus ``top1_acc``/``top5_acc`` (percent), as
returned by :meth:`onnxnoise.store.store.TrialStore.to_frame` and by the bench. The
noise level is generic: ``noise_model`` (registry name), ``noise`` (JSON settings) and
``strength`` (NULL for the clean baseline); nothing here assumes a particular noise
model (display text and order come from :mod:`onnxnoise.report.strength`).
"""

from __future__ import annotations

import numpy as np

from onnxnoise.intervals import binomial_interval, check_level, t_half_width
from onnxnoise.lazy import lazy_module
from onnxnoise.report.stages import add_clipped_fractions
from onnxnoise.store.schema import COUNTER, MODES, PAIRED, TRIAL_COLUMNS, column_names
from onnxnoise.report.paired import add_paired_columns
from onnxnoise.report.strength import add_strength_text, noise_rank

pl = lazy_module("polars")

__all__ = [
    "context_keys",
    "group_keys",
    "METRICS",
    "normalized_accuracy",
    "summarize_trials",
    "average_normalized_accuracy",
    "binomial_interval",
    "add_binomial_interval",
    "t_half_width",
    "sort_by_noise",
]

def context_keys() -> tuple[str, ...]:
    """Columns that identify one experiment's baseline ``a_0``: those the store declares ``baseline``.

    A trial is normalized by the baseline with the same model file, dataset, preprocessing,
    label offset, batch size, execution provider and keyed settings (the settings that can
    change a count besides noise), in table order.
    """
    return tuple(c.name for c in TRIAL_COLUMNS.values() if c.baseline)


def group_keys() -> tuple[str, ...]:
    """Columns :func:`summarize_trials` groups by (those present in the frame).

    Model and dataset names beside :func:`context_keys`, then the noise and the trial's place:
    seeds are aggregated over, never trials measured with other settings (e.g. batch size).
    """
    named = ("model", "model_sha256", "dataset", "dataset_fingerprint")
    return (*named, *(k for k in context_keys() if k not in named), "noise_model", "noise", "mode", "layer_index",
            "strength")


#: Per-trial metrics summarized over seeds: accuracies in percent, normalized ones as ratios.
METRICS: tuple[str, ...] = ("top1_acc", "top5_acc", "top1_norm", "top5_norm")

_MODE_ORDER = {mode: i for i, mode in enumerate(MODES)}


def add_binomial_interval(trials: pl.DataFrame, *, level: float = 0.95, method: str = "wilson") -> pl.DataFrame:
    """Add each trial's accuracy interval over images (see :func:`binomial_interval`).

    Args:
        trials: One row per trial with ``images``, ``top1_correct``, ``top5_correct``.
        level: Confidence level in (0, 1).
        method: ``"wilson"`` or ``"clopper-pearson"``.

    Returns:
        ``trials`` plus ``top1_acc_low``, ``top1_acc_high``, ``top5_acc_low``,
        ``top5_acc_high`` in percent (null for failed trials: ``error`` set or no counts).
    """
    ok = (pl.col("images") > 0) & pl.col("top1_correct").is_not_null() & pl.col("top5_correct").is_not_null()
    if "error" in trials.columns:
        ok = ok & pl.col("error").is_null()
    mask = trials.select(ok.fill_null(False)).to_series().to_numpy()
    n = trials["images"].fill_null(1).to_numpy()
    columns = []
    for top in ("top1", "top5"):
        k = trials[f"{top}_correct"].fill_null(0).to_numpy()
        k = np.where(mask, k, 0)
        n_safe = np.where(mask, n, 1)
        low, high = binomial_interval(k, n_safe, level, method=method)
        for name, values in ((f"{top}_acc_low", low), (f"{top}_acc_high", high)):
            columns.append(pl.Series(name, np.where(mask, 100.0 * values, np.nan)).fill_nan(None))
    return trials.with_columns(columns)


def normalized_accuracy(trials: pl.DataFrame) -> pl.DataFrame:
    """Add normalized accuracies ``A = a / a_0`` (paper eq. 2) to every trial.

    ``a_0`` is the accuracy of the ``baseline`` trial with the same
    :func:`context_keys` (those present in the frame); if an experiment has several
    successful baselines (e.g. one per noise setting, which share the clean model),
    their pooled accuracy is used. With count columns (``top1_correct``,
    ``top5_correct``, ``images``) ``A`` is computed from the counts,
    ``A = (k N) / (n K)`` (``k`` of ``n`` images right in the trial, ``K`` of ``N`` over
    the baselines), so the clean row is exactly 1; without them from the accuracies.
    Trials without a baseline, or whose baseline accuracy is 0, get null.

    Args:
        trials: One row per trial with ``mode``, ``top1_acc``, ``top5_acc`` (percent),
            optionally ``top1_correct``, ``top5_correct``, ``images`` (counts), and the context columns; ``error`` is honored when present (failed
            baselines are ignored).

    Returns:
        ``trials`` plus ``top1_base``, ``top5_base`` (``a_0``, percent) and
        ``top1_norm``, ``top5_norm`` (ratios; 1.0 = baseline accuracy).

    Raises:
        ValueError: If ``mode``/``top1_acc``/``top5_acc`` or all context columns are missing.
    """
    _require(trials, ("mode", "top1_acc", "top5_acc"))
    keys = [c for c in context_keys() if c in trials.columns]
    if not keys:
        msg = f"trials frame needs at least one of {', '.join(context_keys())} to match baselines"
        raise ValueError(msg)
    trials = trials.drop([c for c in ("top1_base", "top5_base", "top1_norm", "top5_norm") if c in trials.columns])
    baselines = trials.filter((pl.col("mode") == "baseline") & _valid(trials)).group_by(keys)
    if all(c in trials.columns for c in _COUNTS):
        # From counts: A = (k / n) / (K / N) = (k N) / (n K) in integers, so a trial with the
        # baseline's counts gets exactly 1.0 (no float ratio of float means).
        base = baselines.agg(*(pl.col(c).sum().cast(pl.Int64).alias(f"_base_{c}") for c in _COUNTS))
        out = trials.join(base, on=keys, how="left", nulls_equal=True, maintain_order="left")
        out = out.with_columns(
            *((100.0 * pl.col(f"_base_{top}_correct") / pl.col("_base_images")).alias(f"{top}_base")
              for top in ("top1", "top5")),
            *(pl.when((pl.col(f"_base_{top}_correct") > 0) & pl.col(f"{top}_acc").is_not_null())
              .then((pl.col(f"{top}_correct").cast(pl.Int64) * pl.col("_base_images"))
                    / (pl.col("images").cast(pl.Int64) * pl.col(f"_base_{top}_correct")))
              .alias(f"{top}_norm") for top in ("top1", "top5")))
        return out.drop([f"_base_{c}" for c in _COUNTS])
    base = baselines.agg(pl.col("top1_acc").mean().alias("top1_base"), pl.col("top5_acc").mean().alias("top5_base"))
    out = trials.join(base, on=keys, how="left", nulls_equal=True, maintain_order="left")
    return out.with_columns(
        pl.when(pl.col(f"{top}_base") > 0).then(pl.col(f"{top}_acc") / pl.col(f"{top}_base")).alias(f"{top}_norm")
        for top in ("top1", "top5")
    )


#: Count columns normalized accuracy is computed from when a frame has them.
_COUNTS: tuple[str, ...] = ("top1_correct", "top5_correct", "images")


def summarize_trials(trials: pl.DataFrame, *, level: float = 0.95, chance: float = 0.0) -> pl.DataFrame:
    """Mean, spread and confidence interval over seeds, per configuration.

    Groups by :func:`group_keys` present in the frame (model, dataset, their hashes,
    preprocessing, noise model and settings, mode, layer_index, strength) and aggregates the
    successful trials (``error`` null) over seeds. For each metric ``m`` in
    :data:`METRICS`: ``m_mean``, ``m_std`` (sample std, ``ddof = 1``) and ``m_ci_half``,
    the half-width of the two-sided Student t interval of the mean at ``level``
    (:func:`t_half_width`); std and ci_half are null with fewer than two seeds; ``ci_level`` is ``level``.

    Paired statistics (:mod:`onnxnoise.report.paired`) per configuration:
    ``collapsed`` (draws far below the group's others, :func:`~onnxnoise.report.paired.collapsed`)
    and ``collapse_rate`` (``collapsed / seeds``; null for the baseline); and, when the trials
    carry paired counts, ``flip_pct_mean`` (mean of ``100 flips / images``),
    ``lost_top1_mean`` / ``gained_top1_mean`` (images), ``paired_draws`` (draws with paired
    counts) and ``mcnemar_significant`` (of those, draws whose exact McNemar p is below
    ``1 - level``), and ``<c>_mean`` of every other paired column ``c`` (role
    :data:`~onnxnoise.store.schema.PAIRED`: ``flips_mean``, ``lost_top5_mean``, ...).

    Args:
        trials: One row per trial (see module doc); normalized accuracies are added
            with :func:`normalized_accuracy` when ``top1_norm`` is absent.
        level: Confidence level in (0, 1).
        chance: Chance top-1 in percent (``100 / classes``), for the collapse rule; 0
            when unknown (flags no more draws than the true chance would).

    Returns:
        One row per configuration, ordered by :func:`sort_by_noise` (per model and
        noise model: baseline first, then ``all``, ``per-layer``, ``cumulative``, each
        by increasing noise, then layer_index), with the group keys, ``strength_text``
        (the noise model's ``format_strength``, ``clean`` for the baseline),
        ``layers`` and ``layers_noised`` (first of the group), ``seeds`` (successful
        trials), ``errors`` (failed trials), ``images``, the counters present (columns of
        role :data:`~onnxnoise.store.schema.COUNTER`) summed over seeds, ``dac_clipped_pct`` and
        ``adc_clipped_pct`` with the tile's stages (:func:`onnxnoise.report.stages.add_clipped_fractions`),
        and the metric columns. Normalized accuracies use the
        baseline of the same model file, dataset and preprocessing (eq. 2), whatever
        its noise settings.
    """
    check_level(level)
    if "top1_norm" not in trials.columns:
        trials = normalized_accuracy(trials)
    keys = [c for c in group_keys() if c in trials.columns]
    trials = add_paired_columns(trials, keys, chance=chance, alpha=1.0 - level)
    valid = _valid(trials)
    aggs = [
        valid.sum().cast(pl.Int64).alias("seeds"),
        (~valid).sum().cast(pl.Int64).alias("errors"),
        pl.col("collapsed").filter(valid).sum().cast(pl.Int64).alias("collapsed"),
    ]
    if "flip_pct" in trials.columns:
        aggs += [pl.col("mcnemar_p").filter(valid).count().cast(pl.Int64).alias("paired_draws"),
                 pl.col("mcnemar_significant").filter(valid).sum().cast(pl.Int64).alias("mcnemar_significant"),
                 *(pl.col(c).filter(valid).mean().alias(f"{c}_mean")
                   for c in ("flip_pct", *column_names(PAIRED)) if c in trials.columns)]
    for c in ("layers", "layers_noised"):
        if c in trials.columns:
            aggs.append(pl.col(c).first())
    if "images" in trials.columns:
        aggs.append(pl.col("images").filter(valid).max().alias("images"))
    for m in METRICS:
        aggs.append(pl.col(m).filter(valid).mean().alias(f"{m}_mean"))
        aggs.append(pl.col(m).filter(valid).std(ddof=1).alias(f"{m}_std"))
    for c in column_names(COUNTER):
        if c in trials.columns:
            aggs.append(pl.col(c).sum().alias(c))
    summary = add_clipped_fractions(trials.group_by(keys, maintain_order=True).agg(aggs))
    summary = summary.with_columns(
        pl.when((pl.col("mode") != "baseline") & (pl.col("seeds") > 0))
        .then(pl.col("collapsed") / pl.col("seeds")).alias("collapse_rate"))
    summary = summary.with_columns(*(_ci_expr(f"{m}_std", "seeds", level).alias(f"{m}_ci_half") for m in METRICS),
                                   pl.lit(level).alias("ci_level"))
    summary = add_strength_text(summary)
    order = [*(f"{m}_{s}" for m in METRICS for s in ("mean", "std", "ci_half")), "ci_level"]
    rest = [c for c in summary.columns if c not in keys and c not in order and c != "strength_text"]
    summary = summary.select([*keys, "strength_text", *rest, *order])
    return sort_by_noise(summary)


def average_normalized_accuracy(trials: pl.DataFrame, *, level: float = 0.95) -> pl.DataFrame:
    """Model-level average normalized accuracy ``A_avr`` of a per-layer sweep (paper eq. 3).

    Only ``per-layer`` trials count. With ``A_{i,s}`` the normalized accuracy with
    noise in layer ``i`` and seed ``s``:

    * ``A_i = mean_s A_{i,s}`` (the paper's mean over repeated draws);
    * ``A_avr = (1/N) sum_i A_i`` over the ``N`` layers with at least one
      successful trial (eq. 3); ``degradation_pct = 100 (1 - A_avr)``;
    * CI: for each seed that has all ``N`` layers, ``A_avr,s = (1/N) sum_i A_{i,s}``;
      ``*_a_avr_ci_half`` is the Student t half-width over these per-seed values
      (:func:`t_half_width`). It covers noise-draw variation only, not the
      sampling of images. The CI of the degradation is ``100 * *_a_avr_ci_half``.

    Args:
        trials: One row per trial (see module doc); normalized accuracies are added
            with :func:`normalized_accuracy` when ``top1_norm`` is absent.
        level: Confidence level in (0, 1).

    Returns:
        One row per (model, dataset, their hashes, preprocessing, noise model and
        settings, strength) - those present - ordered by :func:`sort_by_noise`
        (model, noise model, increasing noise), with ``strength_text``, ``layers``
        (N), ``seeds`` (complete seeds used for the CI),
        and for ``top1`` and ``top5``: ``*_a_avr`` (ratio), ``*_a_avr_ci_half`` (ratio,
        null with fewer than two complete seeds), ``*_degradation_pct`` (percent), ``*_base`` (the clean
        accuracy ``a_0`` in percent, so ``100 / *_base`` is the largest possible ``A_avr``).
    """
    check_level(level)
    if "top1_norm" not in trials.columns:
        trials = normalized_accuracy(trials)
    keys = [c for c in group_keys() if c in trials.columns and c not in ("mode", "layer_index")]
    noisy = trials.filter((pl.col("mode") == "per-layer") & _valid(trials))
    norms = ("top1_norm", "top5_norm")
    bases = [c for c in ("top1_base", "top5_base") if c in noisy.columns]
    per_layer = noisy.group_by([*keys, "layer_index"]).agg(*(pl.col(c).mean() for c in norms),
                                                           *(pl.col(c).first() for c in bases))
    model = per_layer.group_by(keys).agg(
        pl.len().cast(pl.Int64).alias("layers"),
        *(pl.col(c).mean().alias(c.replace("_norm", "_a_avr")) for c in norms),
        *(pl.col(c).first() for c in bases),
    )
    per_seed = (
        noisy.group_by([*keys, "seed"])
        .agg(pl.col("layer_index").n_unique().alias("_n"), *(pl.col(c).mean() for c in norms))
        .join(model.select([*keys, "layers"]), on=keys, how="inner", nulls_equal=True)
        .filter(pl.col("_n") == pl.col("layers"))
        .group_by(keys)
        .agg(
            pl.len().cast(pl.Int64).alias("seeds"),
            *(pl.col(c).std(ddof=1).alias(f"_{c}_std") for c in norms),
        )
    )
    out = model.join(per_seed, on=keys, how="left", nulls_equal=True).with_columns(pl.col("seeds").fill_null(0))
    out = out.with_columns(
        *(_ci_expr(f"_{c}_std", "seeds", level).alias(c.replace("_norm", "_a_avr_ci_half")) for c in norms),
        *((100.0 * (1.0 - pl.col(f"{t}_a_avr"))).alias(f"{t}_degradation_pct") for t in ("top1", "top5")),
        pl.lit(level).alias("ci_level"),
    )
    metrics = [f"{t}_{s}" for t in ("top1", "top5") for s in ("a_avr", "a_avr_ci_half", "degradation_pct")]
    out = add_strength_text(out)
    return sort_by_noise(out.select([*keys, "strength_text", "layers", "seeds", *metrics, "ci_level", *bases]))


def _ci_expr(std_col: str, n_col: str, level: float) -> pl.Expr:
    return (
        pl.struct(std_col, n_col)
        .map_batches(
            lambda s: pl.Series(
                t_half_width(
                    s.struct.field(std_col).cast(pl.Float64).fill_null(np.nan).to_numpy(),
                    s.struct.field(n_col).cast(pl.Float64).fill_null(0).to_numpy(),
                    level,
                )
            ).fill_nan(None),
            return_dtype=pl.Float64,
        )
    )


def _valid(trials: pl.DataFrame) -> pl.Expr:
    ok = pl.col("top1_acc").is_not_null()
    if "error" in trials.columns:
        ok = ok & pl.col("error").is_null()
    return ok


def sort_by_noise(frame: pl.DataFrame) -> pl.DataFrame:
    """Order summary rows: model, dataset, noise model, noise settings, mode, noise, layer.

    Modes go baseline, all, per-layer, cumulative; within a mode, rows go by
    increasing noise: strength descending for noise models with
    ``more_noise_when == "lower"`` (SNR), ascending otherwise (a time, a rate), the
    baseline (NULL strength) first. Columns absent from ``frame`` are skipped; ties
    keep their order.
    """
    by = []
    for col in ("model", "dataset", "noise_model", "noise", "mode", "strength", "layer_index"):
        if col not in frame.columns:
            continue
        if col == "mode":
            by.append(pl.col(col).replace_strict(_MODE_ORDER, default=99, return_dtype=pl.Int64))
        elif col == "strength":
            by.append(noise_rank(frame))
        else:
            by.append(pl.col(col))
    if not by:
        return frame
    return frame.sort(by, nulls_last=False, maintain_order=True)


def _require(frame: pl.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        msg = f"trials frame lacks column(s) {', '.join(missing)}; expected the trial store schema"
        raise ValueError(msg)
