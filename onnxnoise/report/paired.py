"""Paired statistics of noisy trials against the clean model on the same images.

Every trial row carries paired counts (the columns of role :data:`onnxnoise.store.schema.PAIRED`):
``flips`` (top-1 class changed), ``lost_top1`` / ``gained_top1`` (top-1 hit lost / gained)
and the same for top-5. From them:

* **flip rate** ``flips / images``: how many predictions the noise changes, right or
  wrong; it moves long before the accuracy does, since losses and gains cancel in the
  accuracy but not here;
* **McNemar's test** of noisy against clean top-1 on the same images (Q. McNemar,
  "Note on the sampling error of the difference between correlated proportions or
  percentages", Psychometrika 12, 153-157, 1947), in its exact form: under "noise does not
  change the accuracy" each discordant image is a loss or a gain with probability 1/2, so
  ``lost ~ Binomial(lost + gained, 1/2)``; the two-sided p value is
  ``scipy.stats.binomtest(lost, lost + gained, 0.5).pvalue`` (the exact conditional test,
  e.g. Agresti, *Categorical Data Analysis*, 3rd ed., 2013, sec. 11.1.1; Fagerland, Lydersen
  & Laake, BMC Med. Res. Methodol. 13:91, 2013). It tests one draw over the images; the
  spread over draws is the Student t interval of :mod:`onnxnoise.report.stats`;
* **collapsed draws** (:func:`collapsed`): draws far below the others of their group, as
  noise in BatchNormalization variances produces (ResNet20 with BN kept at 10% noise: seeds
  at 11%, 13% and 86% top-1), or at chance whatever the others do (pcm without drift
  compensation: every draw near 10% on CIFAR-10). A mean and t interval over such a bimodal
  set describe neither mode, and a mean at chance describes a broken model, so the collapse
  rate is shown beside the mean; :func:`collapse_hints` adds the noise model's advice.
"""

from __future__ import annotations

import numpy as np

from onnxnoise.lazy import lazy_module
from onnxnoise.report.strength import noise_model_for

pl = lazy_module("polars")
_sps = lazy_module("scipy.stats")

__all__ = ["COLLAPSE_GAP", "CHANCE_BAND", "PAIRED_HEADERS", "mcnemar_p", "flip_rate", "collapsed", "collapse_rule",
           "collapse_hints", "collapse_hint_line", "add_paired_columns", "has_paired", "paired_cells", "collapsed_cell",
           "short_of_target"]

#: Headers of :func:`paired_cells` (console and report.md tables).
PAIRED_HEADERS: tuple[str, ...] = ("flips %", "lost", "gained", "p<.05", "collapsed")

#: Least drop below the best draw, as a fraction of the clean model's accuracy above chance,
#: for a draw to count as collapsed (:func:`collapsed`).
COLLAPSE_GAP: float = 0.25

#: The chance band of :func:`collapsed`: a draw that kept less than this share of the clean
#: model's accuracy above chance is at chance, collapsed whatever the other draws did.
CHANCE_BAND: float = 0.1


def mcnemar_p(lost: int, gained: int) -> float:
    """Exact two-sided McNemar p value of ``lost`` vs ``gained`` discordant images.

    ``p = binomtest(lost, lost + gained, 0.5).pvalue`` (scipy: the two-sided p sums the
    probabilities of outcomes no more likely than the observed one); 1.0 when there is no
    discordant image (no evidence of any change).

    Args:
        lost: Images right on the clean model and wrong with noise (McNemar's ``b``), >= 0.
        gained: Images wrong on the clean model and right with noise (``c``), >= 0.

    Returns:
        The p value in (0, 1].

    Raises:
        ValueError: On a negative or non-integer count.
    """
    if any(isinstance(v, bool) or int(v) != v or v < 0 for v in (lost, gained)):
        msg = f"McNemar counts must be integers >= 0, got lost={lost!r}, gained={gained!r}"
        raise ValueError(msg)
    n = int(lost) + int(gained)
    if n == 0:
        return 1.0
    return float(_sps.binomtest(int(lost), n, 0.5).pvalue)


def flip_rate(flips: int, images: int) -> float:
    """``flips / images``: the fraction of images whose top-1 class the noise changed (0..1).

    Raises:
        ValueError: If ``images < 1`` or ``flips`` is outside ``[0, images]``.
    """
    if images < 1 or not 0 <= flips <= images:
        msg = f"flip rate needs 0 <= flips <= images and images >= 1, got flips={flips!r}, images={images!r}"
        raise ValueError(msg)
    return flips / images


def collapse_rule(top1, best, clean, chance):
    """The collapse test, elementwise on numpy arrays or Polars expressions (see :func:`collapsed`)."""
    gap = best - top1
    relative = ((top1 - chance) < (best - chance) / 2) & (gap >= COLLAPSE_GAP * (clean - chance)) & (gap > 0)
    at_chance = (top1 - chance) < CHANCE_BAND * (clean - chance)
    return (relative | at_chance) & (clean > chance)


def collapsed(top1, *, clean: float, chance: float = 0.0) -> np.ndarray:
    """Which draws of one group (same model, noise and strength; seeds differ) collapsed.

    A draw with top-1 ``a`` (percent) collapsed when it is far below the best draw
    (relative: both 1 and 2 hold) or at chance (absolute: 3 holds), with ``r`` the group's
    best draw, ``c`` chance and ``a_0`` the clean top-1:

    1. ``a - c < (r - c) / 2``: it kept less than half of what the best draw has above
       chance, i.e. it is closer to chance than to the best draw;
    2. ``r - a >= 0.25 (a_0 - c)`` (:data:`COLLAPSE_GAP`): the gap to the best draw is at
       least a quarter of the clean model's accuracy above chance;
    3. ``a - c < 0.1 (a_0 - c)`` (:data:`CHANCE_BAND`): it kept less than a tenth of the
       clean model's accuracy above chance (below 18.2% for a 91.7% CIFAR-10 model; below
       chance counts too). Such a draw is closer to chance than to the clean accuracy and
       at least 0.9 (so more than a quarter) of ``a_0 - c`` below it.

    Rule 3 exists because rules 1 and 2 compare with the best draw: a group whose every
    draw is at chance (a BatchNorm layer noised to 14%, pcm without drift compensation at
    11% on 10 classes) would show no collapse at all. Its band is narrow on purpose: a
    model degrading smoothly to 20-35% at a low SNR (0.12-0.31 of ``a_0 - c`` kept) is
    degraded, not at chance. The band is a share of the accuracy, not a test against the
    sampling error of a small image set: with few images and few classes (100 images,
    chance 50%) a draw truly at chance can land above it.

    Why the best draw and not the median: collapse only ever lowers accuracy, and when
    most draws collapse (11%, 13%, 86%: the median is 13%) a median- or MAD-based rule
    takes the collapsed mode for the normal one and flags nothing; the best draw stands
    for the uncollapsed mode whenever one draw escaped. Rule 1 alone flags seed jitter
    where every draw sits near chance (11% vs 13%, chance 10%) or near the top; rule 2
    requires a gap on the scale of the model's own accuracy, which such jitter never
    reaches, while smooth degradation where all draws fall together (e.g. 20-35% at a
    low SNR) is not collapse either: no draw is far below the others. Example: 11, 13,
    86 with ``a_0 = 91.7``, ``c = 10``: 11 and 13 collapsed (rate 2/3); 11, 13, 14:
    all three (rule 3).

    A draw is never collapsed relative to itself (the gap must be positive), but a single
    draw at chance is (rule 3); nothing collapses when the clean model is at or below
    chance (e.g. random weights): there is no accuracy to collapse from. ``chance = 0``
    (the default, when the class count is unknown) only lowers every threshold, so it
    flags no more draws than the true chance would.

    Args:
        top1: ``(n,)`` top-1 accuracies of the group's draws, percent (NaN = failed, never collapsed).
        clean: The clean model's top-1, percent.
        chance: Chance top-1, percent (``100 / classes``).

    Returns:
        ``(n,) bool``.
    """
    top1 = np.asarray(top1, dtype=np.float64)
    finite = np.isfinite(top1)
    if not finite.any():
        return np.zeros(top1.shape, dtype=bool)
    best = np.nanmax(top1)
    with np.errstate(invalid="ignore"):
        return finite & collapse_rule(top1, best, clean, chance)


def add_paired_columns(trials: pl.DataFrame, group_keys: list[str], *, chance: float = 0.0,
                       alpha: float = 0.05) -> pl.DataFrame:
    """Add each trial's paired statistics and collapse flag.

    Args:
        trials: One row per trial with ``top1_acc``, ``top1_base`` (see
            :func:`onnxnoise.report.stats.normalized_accuracy`), ``images`` and, when
            measured, the paired counts; rows of rows recorded before the paired counts
            existed have them null.
        group_keys: Columns whose equal values make one group of draws.
        chance: Chance top-1 in percent (0 when unknown; see :func:`collapsed`).
        alpha: Significance level of ``mcnemar_significant``.

    Returns:
        ``trials`` plus ``flip_pct`` (``100 flips / images``), ``mcnemar_p`` (top-1, exact,
        :func:`mcnemar_p`), ``mcnemar_significant`` (``mcnemar_p < alpha``) - null where the
        paired counts are - and ``collapsed`` (bool; null for the baseline and failed trials).
    """
    if "lost_top1" in trials.columns:
        lost = trials["lost_top1"].to_numpy()
        gained = trials["gained_top1"].to_numpy()
        p = [None if (b is None or c is None or b != b or c != c) else mcnemar_p(int(b), int(c))
             for b, c in zip(lost.tolist(), gained.tolist())]
        trials = trials.with_columns(
            (100.0 * pl.col("flips") / pl.col("images")).alias("flip_pct"),
            pl.Series("mcnemar_p", p, dtype=pl.Float64),
        ).with_columns((pl.col("mcnemar_p") < alpha).alias("mcnemar_significant"))
    valid = pl.col("top1_acc").is_not_null() & (pl.col("mode") != "baseline")
    if "error" in trials.columns:
        valid = valid & pl.col("error").is_null()
    best = pl.col("top1_acc").filter(valid).max().over(group_keys)
    clean = pl.col("top1_base").fill_null(100.0)
    flag = collapse_rule(pl.col("top1_acc"), best, clean, chance)
    return trials.with_columns(pl.when(valid).then(flag).otherwise(None).alias("collapsed"))


def collapse_hints(summary: pl.DataFrame) -> list[str]:
    """One warning line per noise setting whose draws collapsed, with the noise model's advice when it has some.

    Args:
        summary: A :func:`~onnxnoise.report.stats.summarize_trials` frame (``collapsed``,
            ``seeds``, ``noise_model`` and, when present, ``noise``).

    Returns:
        For every noise model and settings with collapsed draws, :func:`collapse_hint_line` (draws over all
        its noisy groups), e.g. ``gaussian-snr: 2 of 4 draws collapsed to chance or far below the others``
        or, with the model's :meth:`~onnxnoise.noise.NoiseModel.collapse_hint`, ``pcm: 12 of 15 draws
        collapsed to chance or far below the others; pcm without drift compensation ...``; ``[]`` when
        no draw collapsed.
    """
    if "collapsed" not in summary.columns or "noise_model" not in summary.columns:
        return []
    keys = [c for c in ("noise_model", "noise") if c in summary.columns]
    noisy = summary.filter(pl.col("collapse_rate").is_not_null()) if "collapse_rate" in summary.columns else summary
    totals = noisy.group_by(keys, maintain_order=True).agg(pl.col("collapsed").fill_null(0).sum(),
                                                           pl.col("seeds").sum())
    lines = []
    for row in totals.filter(pl.col("collapsed") > 0).rows(named=True):
        line = collapse_hint_line(noise_model_for(row["noise_model"], row.get("noise")), row["collapsed"],
                                  row["seeds"])
        if line:
            lines.append(line)
    return lines


def collapse_hint_line(model, collapsed_draws: int, draws: int, where: str = "") -> str | None:
    """``"pcm: 3 of 3 draws[ at t = 1 y] collapsed to chance or far below the others[; <hint>]"``.

    Every noise model whose draws collapse (:func:`collapsed`) gets the line; ``; <hint>`` ends it
    when the model gives advice (:meth:`~onnxnoise.noise.NoiseModel.collapse_hint`, e.g. pcm's
    ``compensation=global``), e.g. ``gaussian-snr: 2 of 2 draws collapsed to chance or far below the
    others`` has none.

    Args:
        model: A noise model instance (its ``name``; an object without ``collapse_hint`` gives no advice).
        collapsed_draws: Draws flagged by :func:`collapsed`; ``None`` is returned when 0.
        draws: Draws in all.
        where: Optional place, e.g. ``t = 1 y``.

    Returns:
        The warning line, or ``None`` when nothing collapsed.
    """
    if not collapsed_draws:
        return None
    hint = getattr(model, "collapse_hint", lambda: None)()
    at = f" at {where}" if where else ""
    advice = f"; {hint}" if hint else ""
    return f"{model.name}: {collapsed_draws} of {draws} draws{at} collapsed to chance or far below the others{advice}"


def has_paired(summary: pl.DataFrame) -> bool:
    """Whether a :func:`~onnxnoise.report.stats.summarize_trials` frame has noisy rows with paired counts."""
    return "paired_draws" in summary.columns and bool(
        (summary.filter(pl.col("mode") != "baseline")["paired_draws"].fill_null(0) > 0).any())


def collapsed_cell(row: dict) -> str:
    """``"collapsed/draws"`` of a summary row (``-`` for the baseline or no draw)."""
    if row.get("collapse_rate") is None:
        return "-"
    return f"{row['collapsed']}/{row['seeds']}"


def paired_cells(row: dict) -> list[str]:
    """One summary row's cells under :data:`PAIRED_HEADERS`.

    Mean top-1 flip rate (percent of images), mean top-1 hits lost and gained (images),
    draws whose exact McNemar p < 0.05 of the draws with paired counts (``k/n``), and
    collapsed draws of all successful draws (``k/n``); ``-`` where not measured.
    """
    def number(value, digits):
        return "-" if value is None else f"{value:.{digits}f}"

    draws = row.get("paired_draws") or 0
    return [number(row.get("flip_pct_mean"), 2), number(row.get("lost_top1_mean"), 1),
            number(row.get("gained_top1_mean"), 1), f"{row.get('mcnemar_significant') or 0}/{draws}" if draws else "-",
            collapsed_cell(row)]


def short_of_target(summary: pl.DataFrame, half_width: float, max_seeds: int) -> list[str]:
    """``--seeds auto`` groups that stopped at ``max_seeds`` draws without reaching ``half_width``.

    Args:
        summary: Output of :func:`onnxnoise.report.stats.summarize_trials` (``top1_acc_ci_half``
            is the 95% t half-width of the mean top-1, accuracy points).
        half_width: The target ``--ci-halfwidth``, points.
        max_seeds: ``--max-seeds``.

    Returns:
        One line per noisy group whose interval is still at least ``half_width`` wide
        (or undefined) after ``max_seeds`` or more draws, e.g. ``all, SNR 10: 20 draws,
        95% half-width 3.41 points (target 0.5)``.
    """
    rows = summary.filter((pl.col("mode") != "baseline") & (pl.col("seeds") >= max_seeds)
                          & (pl.col("top1_acc_ci_half").is_null() | (pl.col("top1_acc_ci_half") >= half_width)))
    several = "model" in rows.columns and rows["model"].n_unique() > 1
    lines = []
    for row in rows.iter_rows(named=True):
        where = ", ".join(str(v) for v in (row["model"] if several else None, row["mode"], row["strength_text"],
                                           None if row.get("layer_index") is None else f"layer {row['layer_index']}")
                          if v is not None)
        ci = row["top1_acc_ci_half"]
        lines.append(f"{where}: {row['seeds']} draws, 95% half-width "
                     f"{'-' if ci is None else f'{ci:.2f}'} points (target {half_width:g})")
    return lines
