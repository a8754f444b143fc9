"""Two models under the same noise: the difference per strength with a paired interval, and a verdict.

``onnxnoise compare`` sets each model beside the first one given (the reference), per noise
setting and strength, for noise in all layers (mode ``all``: top-1 kept, percent) and noise in
one layer at a time (mode ``per-layer``: ``A_avr`` of paper eq. 3, Fagbohungbe & Qian, arXiv
2011.11840, as the top-1 degradation ``100 (1 - A_avr)``, percent).

The pairing: a sweep's draw ``s`` of every model runs on the same images (same dataset
fingerprint and image count) with the same seed. For the seeds both models have,
``d_s = m_B,s - m_A,s`` and the interval is the paired Student t interval of the mean of the
``d_s`` (``t_{(1+level)/2, S-1} sd(d) / sqrt(S)``; e.g. ``scipy.stats.ttest_rel(...)
.confidence_interval()``). It covers the noise draws. For noise in all layers (top-1 % of the
shared images) the images' term of :func:`paired_difference` is added: the smallest per-image
variance the counts allow (per-image outcomes are not stored), so a gap that a few images make
is not called certain because every draw repeats it. Per-layer A_avr comparisons keep the
draws-only interval. Without two shared seeds, or on different images,
the interval is Welch's for two independent means (B. L. Welch, Biometrika 34, 1947).
"""

from __future__ import annotations

import math

import numpy as np

from onnxnoise.intervals import check_level
from onnxnoise.lazy import lazy_module
from onnxnoise.report.strength import add_strength_text
from onnxnoise.report.stats import normalized_accuracy, sort_by_noise

pl = lazy_module("polars")
_sps = lazy_module("scipy.stats")

__all__ = ["VERDICT_COLUMNS", "verdict_schema", "paired_difference", "welch_difference", "model_draws",
           "compare_models", "verdict_sentence"]

#: Columns of :func:`compare_models` in order, then ``sentence`` (added by
#: :func:`onnxnoise.report.comparison.write_comparison`), with their Polars dtypes by name (names, so that importing
#: this module does not import Polars; :func:`verdict_schema` gives the dtypes).
VERDICT_COLUMNS: dict[str, str] = {
    "model_a": "String", "model_b": "String", "mode": "String", "noise_model": "String", "noise": "String",
    "strength": "Float64", "metric": "String", "value_a": "Float64", "value_b": "Float64", "clean_a": "Float64",
    "clean_b": "Float64", "difference": "Float64", "ci_half": "Float64", "ci_level": "Float64", "paired": "Boolean",
    "seeds": "Int64", "images": "Int64", "strength_text": "String", "strength_unit": "String", "sentence": "String",
}


def verdict_schema(*, sentence: bool = True) -> pl.Schema:
    """The Polars schema of the verdict table (:data:`VERDICT_COLUMNS`); without ``sentence``, that of
    :func:`compare_models`."""
    return pl.Schema({name: getattr(pl, dtype) for name, dtype in VERDICT_COLUMNS.items()
                      if sentence or name != "sentence"})


def paired_difference(a, b, level: float = 0.95, *, images: int | None = None) -> tuple[float, float]:
    """``(mean, half-width)`` of ``b - a`` paired element by element, Student t over the pairs.

    With ``images`` (the ``n`` images both ran on; ``a`` and ``b`` accuracies in percent), the images'
    term is added as the gate adds it (:mod:`onnxnoise.check.bounds`, counts only): pair ``s`` differs
    by ``|d_s|`` points, so at least ``k_s = |d_s| / 100`` of the images give different answers, and
    with exactly those, all one way, the per-image variance is ``v_s = 1e4 (k_s - k_s^2) n / (n - 1)``
    (points^2). The variance of the mean is ``A + B`` with ``A = mean_s(v_s) / n`` and
    ``B = var_s(d_s) / S``, the quantile Student t with Welch-Satterthwaite degrees of freedom
    ``(A + B)^2 / (A^2 / (n - 1) + B^2 / (S - 1))``. ``A`` is the smallest image term the counts
    allow (per-image outcomes would give its real size), so the interval no longer shrinks to ±0
    when every pair differs by the same image or two: 50 images, two pairs both -2 points gives
    ``-2 ± t_{.975, 49} 2 = ±4.02`` instead of ``±0``. The half-width is never below the draws' own
    ``t_{S-1}`` one (the larger degrees of freedom of a small added ``A`` could otherwise narrow it).

    Args:
        a: ``(S,)`` values of the reference model, one per shared seed.
        b: ``(S,)`` values of the other model, same seeds in the same order.
        level: Confidence level in (0, 1).
        images: ``n >= 2`` images both were evaluated on (values in percent), or ``None`` (draws only).

    Returns:
        The mean difference and the half-width of its interval; the half-width is NaN with fewer than two pairs.

    Raises:
        ValueError: If ``a`` and ``b`` differ in length or are empty, or ``images`` is below 2.
    """
    check_level(level)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        msg = f"paired difference needs two equal, non-empty lists, got {a.size} and {b.size} values"
        raise ValueError(msg)
    if images is not None and images < 2:
        raise ValueError(f"the images' term needs at least 2 images, got {images}")
    d = b - a
    if d.size < 2:
        return float(d.mean()), float("nan")
    draws = d.var(ddof=1) / d.size
    by_draws = float(_sps.t.ppf((1 + level) / 2, d.size - 1) * math.sqrt(draws))
    if images is None:
        return float(d.mean()), by_draws
    n = float(images)
    k = np.minimum(np.abs(d) / 100.0, 1.0)
    image = float((1e4 * (k - k * k) * n / (n - 1.0)).mean() / n)
    total = image + draws
    denom = image * image / (n - 1.0) + draws * draws / (d.size - 1.0)
    nu = total * total / denom if denom > 0 else math.inf
    return float(d.mean()), max(by_draws, float(_sps.t.ppf((1 + level) / 2, nu) * math.sqrt(total)))


def welch_difference(a, b, level: float = 0.95) -> tuple[float, float]:
    """``(mean(b) - mean(a), half-width)``: Welch's interval for two independent means.

    ``se^2 = s_a^2/n_a + s_b^2/n_b``, degrees of freedom by Welch-Satterthwaite; NaN half-width when
    either side has fewer than two values (or both have no spread).
    """
    check_level(level)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = float(b.mean() - a.mean())
    if a.size < 2 or b.size < 2:
        return diff, float("nan")
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se2 = va + vb
    if se2 == 0:
        return diff, 0.0
    dof = se2 ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    return diff, float(_sps.t.ppf((1 + level) / 2, dof) * math.sqrt(se2))


#: Columns that must be equal for two models' trials to be compared at all (the same noise, strength).
_NOISE_KEYS = ("noise_model", "noise", "strength")


def model_draws(trials: pl.DataFrame) -> pl.DataFrame:
    """One value per (model, mode, noise setting, strength, seed) that ``compare`` sets side by side.

    Mode ``all``: ``value`` is the draw's top-1 (percent) and ``clean`` the model's clean top-1.
    Mode ``per-layer``: ``value`` is the draw's top-1 degradation ``100 (1 - mean_i A_{i,s})`` over
    the layers (eq. 3 for one seed; seeds that miss a layer are left out) and ``clean`` is 0.

    Args:
        trials: Output of :func:`onnxnoise.report.study.collect_trials` (``top1_norm``, ``top1_base``; added by
            :func:`onnxnoise.report.stats.normalized_accuracy` when absent).

    Returns:
        Columns ``model``, ``model_sha256``, ``dataset_fingerprint``, ``images``, ``mode``, the noise
        keys, ``seed``, ``value``, ``clean``.
    """
    if "top1_norm" not in trials.columns:
        trials = normalized_accuracy(trials)
    ok = pl.col("top1_acc").is_not_null() & pl.col("top1_base").is_not_null()
    if "error" in trials.columns:
        ok = ok & pl.col("error").is_null()
    ident = ["model", "model_sha256", "dataset_fingerprint", *_NOISE_KEYS]
    whole = trials.filter(ok & (pl.col("mode") == "all")).select(
        *ident, "images", "mode", "seed", pl.col("top1_acc").alias("value"), pl.col("top1_base").alias("clean"))
    layers = trials.filter(ok & (pl.col("mode") == "per-layer"))
    counts = layers.group_by(ident).agg(pl.col("layer_index").n_unique().alias("_all"))
    per_seed = (layers.group_by([*ident, "seed"]).agg(
        pl.col("images").max(), pl.col("layer_index").n_unique().alias("_n"),
        (100.0 * (1.0 - pl.col("top1_norm").mean())).alias("value"))
        .join(counts, on=ident, nulls_equal=True).filter(pl.col("_n") == pl.col("_all"))
        .select(*ident, "images", pl.lit("per-layer").alias("mode"), "seed", "value", pl.lit(0.0).alias("clean")))
    return pl.concat([whole, per_seed.cast(whole.schema)], how="vertical")


def compare_models(trials: pl.DataFrame, *, level: float = 0.95) -> pl.DataFrame:
    """Every model beside the first one in ``trials``, per mode, noise setting and strength.

    Args:
        trials: Output of :func:`onnxnoise.report.study.collect_trials`; the model whose rows come
            first is the reference ``A``.
        level: Confidence level of the intervals.

    Returns:
        One row per (other model ``B``, mode, noise setting, strength) that both have: ``model_a``,
        ``model_b``, ``mode``, ``noise_model``, ``noise``, ``strength``, ``strength_text``,
        ``metric`` (``top-1 %`` or ``top-1 degradation % (A_avr)``), ``value_a``, ``value_b``
        (means over draws), ``clean_a``, ``clean_b``, ``difference`` (``B - A``), ``ci_half`` (half-width at ``ci_level``,
        null with too few draws), ``paired`` (bool), ``seeds`` (pairs, or draws of the smaller side),
        ``images``, ``strength_unit`` (:func:`verdict_schema`; ``sentence``, :func:`verdict_sentence`, is added by
        :func:`onnxnoise.report.comparison.write_comparison`). Empty, with those columns, when there is one model
        or no setting two models share.
    """
    draws = model_draws(trials)
    order = trials.select("model", "model_sha256").unique(maintain_order=True).rows()
    if len(order) < 2 or draws.is_empty():
        return pl.DataFrame(schema=verdict_schema(sentence=False))
    ref = order[0]
    rows = []
    keys = ["mode", *_NOISE_KEYS]
    for other in order[1:]:
        a_all = draws.filter((pl.col("model") == ref[0]) & (pl.col("model_sha256") == ref[1]))
        b_all = draws.filter((pl.col("model") == other[0]) & (pl.col("model_sha256") == other[1]))
        for key, a in a_all.group_by(keys, maintain_order=True):
            b = b_all.filter(pl.all_horizontal(pl.col(k).eq_missing(v) for k, v in zip(keys, key)))
            if b.is_empty():
                continue
            rows.append(_row(ref[0], other[0], dict(zip(keys, key)), a, b, level))
    if not rows:
        return pl.DataFrame(schema=verdict_schema(sentence=False))
    return sort_by_noise(add_strength_text(pl.DataFrame(rows)))


def _row(name_a: str, name_b: str, key: dict, a: pl.DataFrame, b: pl.DataFrame, level: float) -> dict:
    same_images = (a["dataset_fingerprint"].unique().to_list() == b["dataset_fingerprint"].unique().to_list()
                   and a["images"].max() == b["images"].max())
    shared = sorted(set(a["seed"].to_list()) & set(b["seed"].to_list()))
    paired = same_images and len(shared) >= 2
    if paired:
        av = a.filter(pl.col("seed").is_in(shared)).sort("seed")["value"].to_numpy()
        bv = b.filter(pl.col("seed").is_in(shared)).sort("seed")["value"].to_numpy()
        # whole-model values are top-1 % of the shared images: the images' term applies (per-layer
        # A_avr degradations are averages over layers, whose image term this count cannot bound)
        diff, ci = paired_difference(av, bv, level, images=int(a["images"].max()) if key["mode"] == "all" else None)
    else:
        av, bv = a["value"].to_numpy(), b["value"].to_numpy()
        diff, ci = welch_difference(av, bv, level)
    metric = "top-1 %" if key["mode"] == "all" else "top-1 degradation % (A_avr)"
    row = {"model_a": name_a, "model_b": name_b, **key, "metric": metric, "value_a": float(av.mean()),
           "value_b": float(bv.mean()), "clean_a": float(a["clean"][0]), "clean_b": float(b["clean"][0]),
           "difference": diff, "ci_half": None if math.isnan(ci) else ci, "ci_level": level, "paired": paired,
           "seeds": len(shared) if paired else int(min(av.size, bv.size)),
           "images": int(a["images"].max()) if same_images else None}
    return row


def verdict_sentence(row: dict, digits: int = 1) -> str:
    """One sentence for a :func:`compare_models` row.

    ``"resnet32 keeps 8.5 +- 2.1 points more top-1 than resnet20 at SNR 5 (paired over 5 seeds on
    the same 500 images)"``; for ``per-layer``, ``"loses ... points less top-1 per noised layer
    (A_avr)"``; when the interval holds 0, ``"... no difference shown: ..."``; without an
    interval, the difference and why there is none.
    """
    a, b = _short(row["model_a"]), _short(row["model_b"])
    diff, ci = row["difference"], row["ci_half"]
    where = f"at {row.get('strength_text') or row['strength']}"
    how = (f"paired over {row['seeds']} seeds on the same {row['images']} images" if row["paired"]
           else f"unpaired, {row['seeds']} draws" + ("" if row.get("images") else ", different images"))
    amount = f"{abs(diff):.{digits}f}" + (f" +- {ci:.{digits}f}" if ci is not None else "")
    verb, what = (("keeps", "top-1") if row["mode"] == "all"
                  else ("loses", "top-1 per noised layer (A_avr degradation)"))
    if ci is not None and abs(diff) <= ci:
        return (f"no difference shown: {b} {verb} {diff:+.{digits}f} +- {ci:.{digits}f} points {what} against {a} "
                f"{where}, an interval that holds 0 ({how})")
    claim = f"{b} {verb} {amount} points {'more' if diff > 0 else 'less'} {what} than {a} {where}"
    if ci is None:
        return f"{claim} (no interval: fewer than two draws; {how})"
    return f"{claim} ({how})"


def _short(name: str) -> str:
    """``resnet32`` for ``resnet32.onnx``."""
    return name[:-5] if name.endswith(".onnx") else name
