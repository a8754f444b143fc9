"""The gate's confidence bounds on a paired accuracy drop: images and noise draws as a crossed design.

Every noise draw ``s = 1..S`` is evaluated on the same ``n`` images as the clean model. Per image
``i`` and draw ``s`` the paired difference is ``d_is = 1`` (right when clean, wrong under noise:
*lost*), ``-1`` (*gained*) or ``0``; the draw's drop is ``D_s = 100 mean_i d_is`` points and the
estimate is the grand mean ``M = mean_s D_s``. The tested quantity ``theta`` is its expectation
over the image population *and* the noise draws.

**Variance decomposition.** Images and draws are crossed random factors (every draw sees every
image): ``d_is = mu + a_i + b_s + e_is`` with image effects ``a_i`` (variance ``s_a^2``: some
images are fragile, some never move), draw effects ``b_s`` (``s_b^2``: a draw that hits a key weight
hurts many images at once) and the interaction ``e_is`` (``s_e^2``: which fragile image flips in
which draw). The grand mean's variance is ``s_a^2 / n + s_b^2 / S + s_e^2 / (n S)`` (two-way
random-effects ANOVA; for arrays of any distribution, A. B. Owen, "The pigeonhole bootstrap",
Ann. Appl. Stat. 1, 2007, eq. 2.4; P. McCullagh, Bernoulli 6, 2000). It is estimated by::

    A = var_i(m_i) / n      (m_i = mean_s d_is, the image's own mean over the draws, ddof 1)
    B = var_s(D_s) / S      (ddof 1)

with ``E[A] = (s_a^2 + s_e^2 / S) / n`` and ``E[B] = s_b^2 / S + s_e^2 / (n S)``: ``A + B`` over-states
the variance by ``s_e^2 / (n S)`` only (conservative, and small next to the rest). The image term
``A`` uses each image's mean over the draws, so the flips that differ from draw to draw average out
instead of being counted as image variance (what adding a worst-case image bound did before).
Without per-image outcomes (counts only) ``var_i(m_i)`` is replaced by its upper bound, the mean
within-draw variance :func:`image_variance` (``var_i(mean_s d_is) <= mean_s var_i(d_is)``, Jensen).

**Bound.** ``M -/+ t_{1 - alpha, nu} sqrt(A + B)`` with the Welch-Satterthwaite degrees of freedom
``nu = (A + B)^2 / (A^2 / (n - 1) + B^2 / (S - 1))`` (F. E. Satterthwaite, Biometrics Bulletin 2,
1946; B. L. Welch, Biometrika 34, 1947): about ``S - 1`` when the draws dominate, about ``n - 1``
when the images do.

**Few fragile images.** The normal approximation fails when few images ever change (the Wald
interval of a rare proportion): a sample that holds none of the population's fragile images shows
``A = B = 0``. So the image variance is at least that of the exact binomial bound of the *fragile
share*: with ``u`` images discordant in any draw so far and ``mu`` their mean ``|m_i|``, the upper
floor is ``100 mu (q_U - u / n)`` with ``q_U = B^-1(1 - alpha; u + 1, n - u)`` the one-sided
Clopper-Pearson bound (C. J. Clopper & E. S. Pearson, Biometrika 26, 1934), and the lower floor
``100 mu (u / n - q_L)``, ``q_L = B^-1(alpha; u, n - u + 1)``. Each floor enters as the image
variance ``(floor / t_{1 - alpha, n - 1})^2`` when that exceeds ``A`` (so with no draw variance the
half-width is the floor itself). At ``u = 0`` the upper floor is
the rule of three, ``100 (1 - alpha^(1/n))``; when every discordant image flips in every draw
(``mu = 1``) the bound is the exact binomial one.

**Skewed draws.** Noise draws are right-skewed: most draws cost a little, a few cost a lot
(ResNet20 at SNR 10 on 10,000 images, 20 draws: sample skewness 1.2). A t bound on few skewed
draws errs on the low side: for the studentized mean of ``S`` draws with skewness ``g``,
``P(T < -z) = Phi(-z) + g (2 z^2 + 1) phi(z) / (6 sqrt(S)) + O(1/S)`` (Edgeworth expansion;
P. Hall, *The Bootstrap and Edgeworth Expansion*, 1992, sec. 2.6), so the upper bound's error
exceeds its nominal ``alpha`` (measured: 8-9% instead of 5%). The upper bound therefore uses the
quantile ``z'`` that solves ``Phi(-z') + g' (2 z'^2 + 1) phi(z') / 6 = alpha``, with
``g' = max(sample skewness, DRAW_SKEW) * (B / (A + B))^(3/2) / sqrt(S)`` (only the draws' share of the
variance is skewed), as the level of its t quantile. The lower bound (FAIL) is left as it is:
right skew makes it conservative.

**Range.** A drop on ``n`` images with clean accuracy ``c`` percent lies in ``[-(100 - c), c]``
(every clean miss gained, every clean hit lost); both bounds are clipped to it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from onnxnoise.lazy import lazy_module

_sps = lazy_module("scipy.stats")

__all__ = ["DRAW_SKEW", "ImageStats", "skew_level", "image_variance", "image_stats", "count_stats", "exact_floors",
           "paired_bounds"]


#: Skewness of the draws' drops assumed at least (the sample's when larger): the upper bound's Edgeworth correction.
DRAW_SKEW: float = 2.0


def skew_level(alpha: float, skew) -> np.ndarray:
    """The level ``Phi(-z')`` whose one-sided Edgeworth error is ``alpha`` at skewness ``skew`` of the mean.

    Solves ``Phi(-z) + skew (2 z^2 + 1) phi(z) / 6 = alpha`` for ``z >= z_alpha`` (bisection, 60 steps;
    Hall 1992, sec. 2.6). ``skew <= 0`` returns ``alpha``. Arrays broadcast; returns float64 in (0, alpha].
    """
    g = np.maximum(np.asarray(skew, dtype=np.float64), 0.0)
    z0 = _sps.norm.isf(alpha)
    lo, hi = np.full_like(g, z0), np.full_like(g, z0 + 8.0)
    for _ in range(60):
        mid = (lo + hi) / 2.0
        err = _sps.norm.sf(mid) + g * (2.0 * mid * mid + 1.0) * _sps.norm.pdf(mid) / 6.0
        lo, hi = np.where(err > alpha, mid, lo), np.where(err > alpha, hi, mid)
    return np.where(g > 0, _sps.norm.sf(hi), alpha)


def image_variance(images, lost, gained) -> np.ndarray:
    """Per-image variance of the paired difference within one draw, points^2 (the counts-only image variance).

    ``v = 100^2 [(lost + gained)/n - ((lost - gained)/n)^2] n / (n - 1)``: the unbiased sample variance
    of ``d_i in {-1, 0, 1}`` over the ``n`` images. Arrays broadcast; returns float64.
    """
    n = np.asarray(images, dtype=np.float64)
    lost = np.asarray(lost, dtype=np.float64)
    gained = np.asarray(gained, dtype=np.float64)
    moment = (lost + gained) / n
    mean = (lost - gained) / n
    return 1e4 * np.maximum(moment - mean * mean, 0.0) * n / (n - 1.0)


@dataclass(frozen=True)
class ImageStats:
    """What the bounds need of the images at one look (arrays broadcast over streams).

    Attributes:
        variance: ``var_i(m_i)`` in points^2 (``1e4`` times the variance of the per-image means
            ``m_i`` over the draws so far, ddof 1), or its counts-only upper bound.
        fragile: ``u``, images discordant in at least one draw so far (counts only: the mean
            discordant images per draw).
        effect: ``mu``, the mean ``|m_i|`` of those images, in ``[0, 1]`` (1 when ``u = 0``
            or counts only).
    """

    variance: np.ndarray
    fragile: np.ndarray
    effect: np.ndarray


def image_stats(diff: np.ndarray) -> ImageStats:
    """:class:`ImageStats` of per-image differences.

    Args:
        diff: ``(..., S, n)`` integer ``d_is`` (1 lost, -1 gained, 0), ``S >= 1`` draws, ``n >= 2`` images.

    Returns:
        Arrays of shape ``(...)``.
    """
    d = np.asarray(diff, dtype=np.float64)
    m = d.mean(axis=-2)
    fragile = np.count_nonzero(np.any(d != 0, axis=-2), axis=-1).astype(np.float64)
    total = np.abs(m).sum(axis=-1)
    effect = np.where(fragile > 0, total / np.maximum(fragile, 1.0), 1.0)
    return ImageStats(1e4 * m.var(axis=-1, ddof=1), fragile, effect)


def count_stats(images, lost, gained) -> ImageStats:
    """Counts-only :class:`ImageStats`: ``(..., S)`` counts of ``S`` draws -> arrays ``(...)``.

    The variance is the mean of :func:`image_variance` over the draws (an upper bound of
    ``var_i(m_i)``), ``fragile`` the mean discordant images per draw, ``effect`` 1.
    """
    lost = np.asarray(lost, dtype=np.float64)
    gained = np.asarray(gained, dtype=np.float64)
    var = image_variance(images, lost, gained).mean(axis=-1)
    fragile = (lost + gained).mean(axis=-1)
    return ImageStats(var, fragile, np.ones_like(fragile))


def exact_floors(fragile, effect, images, alpha) -> tuple[np.ndarray, np.ndarray]:
    """The image term's exact floors ``(lower, upper)``, points: ``100 mu (u/n - q_L)`` and ``100 mu (q_U - u/n)``.

    ``q_U = B^-1(1 - alpha; u + 1, n - u)`` (1 when ``u >= n``) and ``q_L = B^-1(alpha; u, n - u + 1)``
    (0 when ``u <= 0``): for a whole ``u`` the one-sided Clopper-Pearson bounds of a proportion
    (``scipy.stats.binomtest(u, n).proportion_ci(1 - 2 alpha)``). The quantile is continuous in
    ``u``, so a mean over draws need not be whole. At ``u = 0`` the upper floor is
    ``100 (1 - alpha^(1/n))`` (rule of three: 0.74 points on 500 images at ``alpha = 0.025``).

    Args:
        fragile: ``u`` (>= 0); effect: ``mu`` in [0, 1]; images: ``n``; alpha: one-sided error in (0, 1).
        Arrays broadcast.

    Returns:
        Two float64 arrays of half-widths, >= 0.
    """
    u = np.asarray(fragile, dtype=np.float64)
    n = np.asarray(images, dtype=np.float64)
    mu = np.asarray(effect, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        high = np.where(u >= n, 1.0, _sps.beta.ppf(1.0 - alpha, u + 1.0, np.maximum(n - u, 1e-300)))
        low = np.where(u <= 0, 0.0, _sps.beta.ppf(alpha, np.maximum(u, 1e-300), n - u + 1.0))
    return np.maximum(100.0 * mu * (u / n - low), 0.0), np.maximum(100.0 * mu * (high - u / n), 0.0)


def _half(a: np.ndarray, b: np.ndarray, n: np.ndarray, s: int, alpha) -> tuple[np.ndarray, np.ndarray]:
    """``t_{1-alpha, nu} sqrt(a + b)`` with Welch-Satterthwaite ``nu``; also returns the quantile."""
    total = a + b
    with np.errstate(invalid="ignore", divide="ignore"):
        denom = a * a / (n - 1.0) + (b * b / (s - 1.0) if s > 1 else np.where(b > 0, np.inf, 0.0))
        nu = np.where(denom > 0, total * total / np.where(denom > 0, denom, 1.0), np.inf)
    t = _sps.t.ppf(1.0 - alpha, np.maximum(nu, 1.0))
    return t * np.sqrt(total), t


def paired_bounds(drops: np.ndarray, stats: ImageStats | None, images, clean, alpha: float) -> dict[str, np.ndarray]:
    """One-sided bounds of the drop at one look, for ``R`` streams at once.

    Args:
        drops: ``(R, S)`` draw drops ``D_s``, points.
        stats: The images' :class:`ImageStats` (arrays ``(R,)``), or ``None`` when only drops are
            known (no image term, no floors: the draws' t bound).
        images: ``n`` per stream (scalar or ``(R,)``; ignored without ``stats``).
        clean: Clean accuracy per stream, percent (scalar or ``(R,)``); NaN: range ``[-100, 100]``.
        alpha: One-sided error probability of each bound at this look.

    Returns:
        ``(R,)`` float64 arrays: ``mean``, ``lower``, ``upper``, ``se_draws`` (``sqrt(B)``),
        ``se_images`` (``sqrt(A)``), ``t_lower`` / ``t_upper`` (the quantiles used; the upper one at the
        skew-corrected level :func:`skew_level`),
        ``floor_lower`` / ``floor_upper`` (:func:`exact_floors`, 0 without stats).
    """
    drops = np.atleast_2d(np.asarray(drops, dtype=np.float64))
    runs, s = drops.shape
    mean = drops.mean(axis=1)
    b = drops.var(axis=1, ddof=1) / s if s > 1 else np.zeros(runs)
    if stats is None:
        n = np.full(runs, np.inf)
        a = np.zeros(runs)
        lo_floor = hi_floor = np.zeros(runs)
    else:
        n = np.broadcast_to(np.asarray(images, dtype=np.float64), (runs,))
        a = np.broadcast_to(np.asarray(stats.variance, dtype=np.float64), (runs,)) / n
        lo_floor, hi_floor = exact_floors(stats.fragile, stats.effect, n, alpha)
        lo_floor, hi_floor = np.broadcast_to(lo_floor, (runs,)), np.broadcast_to(hi_floor, (runs,))
    q = _sps.t.ppf(1.0 - alpha, np.maximum(n - 1.0, 1.0))  # a floor alone (no draw variance) is the half-width
    lo_half, t_lo = _half(np.maximum(a, (lo_floor / q) ** 2), b, n, s, alpha)
    a_hi = np.maximum(a, (hi_floor / q) ** 2)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # identical draws: skewness NaN, read as 0
        sample = _sps.skew(drops, axis=1, bias=False) if s > 2 else np.zeros(runs)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(a_hi + b > 0, b / np.where(a_hi + b > 0, a_hi + b, 1.0), 0.0)
    skew = np.fmax(np.nan_to_num(sample, nan=0.0), DRAW_SKEW) * share ** 1.5 / np.sqrt(s)
    hi_half, t_hi = _half(a_hi, b, n, s, skew_level(alpha, skew))
    c = np.broadcast_to(np.asarray(clean, dtype=np.float64), (runs,))
    top = np.where(np.isfinite(c), c, 100.0)
    bottom = np.where(np.isfinite(c), c - 100.0, -100.0)
    return {"mean": mean, "lower": np.clip(mean - lo_half, bottom, top), "upper": np.clip(mean + hi_half, bottom, top),
            "se_draws": np.sqrt(b), "se_images": np.sqrt(a), "t_lower": t_lo, "t_upper": t_hi,
            "floor_lower": lo_floor, "floor_upper": hi_floor}
