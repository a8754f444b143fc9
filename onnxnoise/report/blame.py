"""The blame table of a per-layer sweep: layers ranked by the top-1 they lose, with intervals and flags.

A per-layer sweep noises one layer at a time (paper eq. 3's ``A_i``; Fagbohungbe & Qian,
arXiv 2011.11840). For layer ``i`` at one strength, each draw ``s`` loses
``d_s = a_0 - a_{i,s}`` top-1 points against the clean model on the same images. The table
ranks layers by the mean drop ``mean_s d_s`` (largest first) and gives its 95% interval:

* two or more draws: the Student t interval over draws, ``t_{.975, S-1} sd(d) / sqrt(S)``
  (:func:`onnxnoise.intervals.t_half_width`), the spread of the noise draws;
* one draw with paired counts: the paired interval over images, from the draw's ``b`` top-1
  hits lost and ``c`` gained on ``N`` images (:func:`paired_image_half_width`).

Flags name what makes a layer's numbers special: BatchNorm variances the noise made negative
(fixed by the ``bn_variance`` policy, or kept), images with NaN logits, collapsed draws
(:func:`onnxnoise.report.paired.collapsed`), named *BatchNorm-variance collapse* when the
layer's variances were pushed below zero or the layer is a BatchNormalization, and a narrowest
output channel far below the nominal SNR (:mod:`onnxnoise.report.layer_facts`).
"""

from __future__ import annotations

import json

import numpy as np

from onnxnoise.intervals import check_level, t_half_width
from onnxnoise.lazy import lazy_module
from onnxnoise.report.layer_facts import FACT_SCHEMA, narrow_note
from onnxnoise.report.stats import group_keys, normalized_accuracy
from onnxnoise.report.strength import noise_rank

pl = lazy_module("polars")
_sps = lazy_module("scipy.stats")

__all__ = ["paired_image_half_width", "layer_drops", "blame_table", "worst_strength", "layer_flags",
           "BN_COLLAPSE"]

#: The flag of collapsed draws in a layer whose BatchNorm variances the noise pushed to or below zero.
BN_COLLAPSE = "BatchNorm-variance collapse"


def paired_image_half_width(lost, gained, images, level: float = 0.95):
    """Half-width (points) of the paired t interval of one draw's top-1 drop over its images.

    Per image ``x_i = +1`` when the clean model's hit is lost, ``-1`` when a miss is gained,
    else ``0``; the drop is ``100 mean(x) = 100 (b - c) / N``. Its interval is the one-sample
    t interval of the mean of the ``x_i`` (the Wald interval for matched pairs, e.g. Agresti,
    *Categorical Data Analysis*, 3rd ed., 2013, sec. 11.1.1, with a t quantile):
    ``100 t_{(1+level)/2, N-1} sqrt(s^2 / N)``, ``s^2 = ((b + c) - (b - c)^2 / N) / (N - 1)``.

    Args:
        lost: Top-1 hits lost ``b`` (scalar or array, >= 0).
        gained: Top-1 misses gained ``c`` (>= 0).
        images: Images ``N`` (>= 2).
        level: Confidence level in (0, 1).

    Returns:
        The half-width in top-1 points (float or float64 array); NaN where ``N < 2``.
    """
    check_level(level)
    b, c, n = (np.asarray(v, dtype=np.float64) for v in (lost, gained, images))
    with np.errstate(invalid="ignore", divide="ignore"):
        var = ((b + c) - (b - c) ** 2 / n) / (n - 1)
        half = 100.0 * _sps.t.ppf((1 + level) / 2, n - 1) * np.sqrt(np.maximum(var, 0.0) / n)
    half = np.where(n >= 2, half, np.nan)
    return float(half) if half.ndim == 0 else half


def _name(layers) -> str | None:
    """The first name of a ``layers`` cell: JSON text or a list."""
    if layers is None:
        return None
    names = json.loads(layers) if isinstance(layers, str) else list(layers)
    return names[0] if names else None


def layer_drops(trials: pl.DataFrame, *, level: float = 0.95) -> pl.DataFrame:
    """Per layer and strength of the per-layer trials: the top-1 drop against the clean model, with its interval.

    Args:
        trials: One row per trial with ``top1_acc`` (percent) and ``top1_base`` (added by
            :func:`onnxnoise.report.stats.normalized_accuracy` when absent), ``mode``, ``layer_index``, ``layers``,
            ``seed``, and optionally ``lost_top1``, ``gained_top1``, ``images``, ``error``.
        level: Confidence level in (0, 1).

    Returns:
        One row per (:func:`~onnxnoise.report.stats.group_keys` but ``mode``) of the successful
        per-layer trials: the keys, ``layer_name``, ``top1_base`` (``a_0``, percent), ``draws`` (successful trials), ``drop_mean``
        (points, ``a_0 - a`` averaged over draws; positive = top-1 lost), ``drop_ci_half`` (points, at ``ci_level``,
        half-width: t over draws with two or more, else :func:`paired_image_half_width`; null
        when neither is defined) and ``interval`` (``"draws"``, ``"images"`` or null).
    """
    if "top1_base" not in trials.columns:
        trials = normalized_accuracy(trials)
    keys = [c for c in group_keys() if c in trials.columns and c != "mode"]
    ok = (pl.col("mode") == "per-layer") & pl.col("top1_acc").is_not_null() & pl.col("top1_base").is_not_null()
    if "error" in trials.columns:
        ok = ok & pl.col("error").is_null()
    rows = trials.filter(ok).with_columns((pl.col("top1_base") - pl.col("top1_acc")).alias("_drop"))
    paired = all(c in rows.columns for c in ("lost_top1", "gained_top1", "images"))
    agg = [pl.len().cast(pl.Int64).alias("draws"), pl.col("_drop").mean().alias("drop_mean"),
           pl.col("_drop").std(ddof=1).alias("_sd"), pl.col("layers").first().alias("_layers"),
           pl.col("top1_base").first()]
    if paired:
        agg += [pl.col("lost_top1").first().alias("_b"), pl.col("gained_top1").first().alias("_c"),
                pl.col("images").first().alias("_n")]
    out = rows.group_by(keys, maintain_order=True).agg(agg)
    draws = out["draws"].to_numpy()
    by_draws = np.where(draws >= 2, t_half_width(out["_sd"].fill_null(np.nan).to_numpy(), draws, level), np.nan)
    by_images = (paired_image_half_width(out["_b"].fill_null(np.nan).to_numpy(), out["_c"].fill_null(np.nan).to_numpy(),
                                         out["_n"].fill_null(np.nan).to_numpy(), level)
                 if paired else np.full(out.height, np.nan))
    ci = np.where(draws >= 2, by_draws, by_images)
    source = np.where(draws >= 2, "draws", np.where(np.isfinite(by_images), "images", None))
    out = out.with_columns(pl.Series("drop_ci_half", ci).fill_nan(None), pl.lit(level).alias("ci_level"),
                           pl.Series("interval", source, dtype=pl.String),
                           pl.Series("layer_name", [_name(v) for v in out["_layers"].to_list()], dtype=pl.String))
    return out.drop([c for c in ("_sd", "_layers", "_b", "_c", "_n") if c in out.columns])


def worst_strength(frame: pl.DataFrame) -> pl.DataFrame:
    """The rows of ``frame`` at the strength with the most noise, per model and noise setting.

    ``frame`` needs ``noise_model``, ``strength`` and the ranking keys of a blame table; the most
    noise is the lowest strength where the noise model's ``more_noise_when`` is ``"lower"`` (SNR),
    the highest otherwise (:func:`onnxnoise.report.strength.noise_rank`).
    """
    if frame.is_empty():
        return frame
    keys = [c for c in ("model_sha256", "dataset_fingerprint", "noise_model", "noise") if c in frame.columns]
    ranked = frame.with_columns(noise_rank(frame).alias("_rank"))
    return ranked.filter(pl.col("_rank") == pl.col("_rank").max().over(keys)).drop("_rank")


def _counted(count: int | None, noun: str) -> str:
    """``1 draw``, ``2 draws``: ``noun`` in the singular for one."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def layer_flags(row: dict, unit: str | None = None) -> list[str]:
    """The flags of one blame-table row (module docstring), in a fixed order.

    ``row`` keys read: ``collapsed``, ``draws``, ``bn_variance_changed``, ``nan_count``, ``op_type``,
    ``noise`` (JSON with ``bn_variance``), ``narrow_snr_fraction``, ``strength``.
    """
    flags = []
    changed = row.get("bn_variance_changed") or 0
    if changed:
        policy = json.loads(row.get("noise") or "{}").get("bn_variance", "clamp")
        flags.append(f"BN variances {'left negative' if policy == 'keep' else 'fixed'}: {changed} in "
                     f"{_counted(row.get('draws'), 'draw')}")
    if row.get("nan_count"):
        flags.append(f"NaN logits: {_counted(row['nan_count'], 'image')} in {_counted(row.get('draws'), 'draw')}")
    if row.get("collapsed"):
        bn = changed or row.get("op_type") == "BatchNormalization"
        flags.append(f"{BN_COLLAPSE if bn else 'collapsed'} {row['collapsed']}/{row['draws']}")
    narrow = narrow_note(row.get("narrow_snr_fraction"), row.get("narrow_channels"), row.get("channels"),
                         row.get("strength"), unit)
    if narrow:
        flags.append(narrow)
    return flags


def blame_table(trials: pl.DataFrame, summary: pl.DataFrame, facts: pl.DataFrame | None = None,
                *, level: float = 0.95) -> pl.DataFrame:
    """Layers ranked by their top-1 drop, per model, noise setting and strength.

    Args:
        trials: Output of :func:`onnxnoise.report.study.collect_trials`.
        summary: :func:`onnxnoise.report.stats.summarize_trials` of ``trials`` (its ``collapsed``,
            ``nan_count`` and ``bn_variance_changed`` per layer and strength, summed over draws).
        facts: :func:`onnxnoise.report.layer_facts.facts_of_runs` (op type, parameters, channels);
            ``None`` or empty: names only.
        level: Confidence level of the intervals.

    Returns:
        One row per (model, noise setting, strength, layer) of the per-layer trials, ordered by
        model, noise, strength (:func:`~onnxnoise.report.stats.sort_by_noise`) then ``rank`` (1 =
        largest drop; ties by layer index): the keys, ``strength_text``, ``rank``, ``layer_index``,
        ``layer_name``, ``layers`` (``List(String)``), ``op_type``, ``parameters``, ``params_share``
        (0..1), ``top1_base``, ``draws``, ``drop_mean``, ``drop_ci_half``, ``interval``, ``collapsed``, ``nan_count``,
        ``bn_variance_changed``, ``channel_std_ratio``, ``narrow_snr_fraction``, ``narrow_channels``,
        ``channels`` (:mod:`onnxnoise.report.layer_facts`) and ``flags``
        (``List(String)``, :func:`layer_flags`). Empty when there is no per-layer trial.
    """
    drops = layer_drops(trials, level=level)
    if drops.is_empty():
        return drops
    keys = [c for c in group_keys() if c in drops.columns and c in summary.columns and c != "mode"]
    extra = [c for c in ("strength_text", "strength_unit", "collapsed", "nan_count", "bn_variance_changed")
             if c in summary.columns]
    per_layer = summary.filter(pl.col("mode") == "per-layer").select([*keys, *extra])
    table = drops.join(per_layer, on=keys, how="left", nulls_equal=True, maintain_order="left")
    facts = facts if facts is not None and not facts.is_empty() else pl.DataFrame(
        schema={**FACT_SCHEMA, "model_sha256": pl.String})
    table = table.join(facts.rename({"layer_name": "_fact_name"}), on=["model_sha256", "layer_index"], how="left",
                       maintain_order="left")
    table = table.with_columns(pl.coalesce("layer_name", "_fact_name").alias("layer_name")).drop("_fact_name")
    flags = [layer_flags(r, r.get("strength_unit")) for r in table.iter_rows(named=True)]
    table = table.with_columns(pl.concat_list(pl.col("layer_name")).alias("layers"),
                               pl.Series("flags", flags, dtype=pl.List(pl.String)))
    lead = [c for c in keys if c not in ("layer_index", "strength")]
    table = table.with_columns(pl.col("drop_mean").rank("ordinal", descending=True).over([*lead, "strength"])
                               .cast(pl.Int64).alias("rank"))
    table = table.sort(["layer_index"]).sort([*lead, noise_rank(table), "rank"], maintain_order=True)
    cols = ["strength", "strength_text", "rank", "layer_index", "layer_name", "layers", "op_type", "parameters",
            "params_share", "top1_base", "draws", "drop_mean", "drop_ci_half", "ci_level", "interval", "collapsed",
            "nan_count",
            "bn_variance_changed", "channel_std_ratio", "narrow_snr_fraction", "narrow_channels", "channels", "flags"]
    return table.select([*lead, *[c for c in cols if c in table.columns]])

