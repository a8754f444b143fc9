"""The sequential decision rule of ``onnxnoise check``: pure functions on a stream of noise draws.

Quantity tested: the expected accuracy drop ``theta`` in percentage points (clean minus
noisy top-1 or top-5) of the model under the noise, over noise draws *and* over the
image population the evaluation images are a sample of. Each draw ``s`` is evaluated
on the same ``n`` images as the clean baseline, so its drop is paired:
``D_s = 100 * (lost_s - gained_s) / n`` where ``lost_s`` are images the clean model gets
right and the noisy one wrong, ``gained_s`` the opposite.

Uncertainty, two sources (images are shared, so they do not average out over draws):

* **draws**: given the images, ``D_1 .. D_S`` are independent and identically
  distributed; their mean estimates ``theta_img``, the expected drop *on these images*.
  Bound: Student t over draws, ``t_{1 - a_k, S - 1} * s_D / sqrt(S)`` (``s_D`` the sample
  standard deviation, ``ddof = 1``); assumes roughly normal draw-to-draw variation
  (a draw far below the others, a *collapse*, breaks it, see ``collapsed`` below).
* **images**: ``theta_img - theta`` is the mean over ``n`` sampled images of each image's
  expected paired difference ``d_i in [-1, 1]``; by the central limit theorem it is
  ``N(0, Var(d_i) / n)``. ``Var(d_i)`` is bounded above by the per-image variance of the
  paired difference within one draw, ``v_s = [(lost + gained)/n - ((lost - gained)/n)^2]
  * n/(n-1)`` (law of total variance: within-draw variance = image variance + flip
  variance), averaged over the draws. Bound: ``z_{1 - a_img} * sqrt(mean(v_s) / n)``.
  This term does not shrink with more draws.
* **images, few discordant**: the normal approximation fails when the discordant
  images are few (the Wald interval's failure for a rare proportion): a sample that
  happens to hold none of the population's fragile images shows ``lost = gained = 0`` in
  every draw, ``v = 0`` and a zero image term, and passes whatever the true drop (on
  100 images, a population whose 1.5% fragile images flip in every draw, true drop 1.5
  points, passes a 1-point budget in 22% of samples). The upper bound's image term is
  therefore at least the exact binomial one (:func:`exact_image_half`): with ``k`` the
  mean discordant images per draw (``lost + gained``), ``100 * (q_U - k / n)`` where
  ``q_U = B^-1(1 - a_img; k + 1, n - k)`` is the one-sided Clopper-Pearson upper bound
  of the discordant rate (C. J. Clopper & E. S. Pearson, Biometrika 26, 1934). It is
  exact when every discordant image is lost in every draw (the case where the normal
  approximation fails worst) and reduces at ``k = 0`` to ``100 * (1 - a_img^(1/n))``,
  the "rule of three" (about ``369 / n`` points at ``a_img = 0.025``): nothing discordant
  among ``n`` images does not show a drop below that.

Bounds (one-sided, each with error probability ``alpha = 1 - confidence``)::

    U = mean(D) + t_{1 - a_k, S-1} * s_D / sqrt(S) + max(z_{1 - a_img} * sqrt(mean(v) / n), exact_images)
    L = mean(D) - t_{1 - a_k, S-1} * s_D / sqrt(S) - z_{1 - a_img} * sqrt(mean(v) / n)

(the exact term widens ``U`` only: the normal ``L`` errs on the safe side when discordant
images are few, its Wald bound lying below the exact one).

``P(theta > U) <= a_k + a_img`` by the union bound (Bonferroni): if ``theta <=
theta_img + max(z.., exact_images)`` and ``theta_img <= mean(D) + t..`` then ``theta <= U``. Linear addition
of the two half-widths is what the union bound needs (it is wider than a root sum of
squares). The split is ``a_img = alpha / 2`` and ``alpha / 2`` for the draws; without
paired counts (drops only) the image term is absent and the draws get all of ``alpha``.

Repeated looks. The rule looks after every draw from ``min_draws`` to ``max_draws``
(``K = max_draws - min_draws + 1`` looks) and stops at the first decision:

* PASS when ``U < budget`` (and no draw so far is flagged collapsed);
* FAIL when ``L > budget``;
* INCONCLUSIVE when neither holds after ``max_draws`` draws; otherwise one more draw.

Looking repeatedly at a t bound inflates its error rate; the draw term therefore
spends its ``alpha_draws`` over the looks with Bonferroni weights (repeated
confidence intervals, C. Jennison & B. W. Turnbull, "Interim analyses: the repeated
confidence interval approach", JRSS B 51, 1989; *Group Sequential Methods with
Applications to Clinical Trials*, 2000, ch. 9; an alpha-spending sequence in the
sense of K. K. G. Lan & D. L. DeMets, Biometrika 70, 1983): the first look gets half
of ``alpha_draws`` (so a clear case can pass with the minimum number of draws), the
remaining looks share the other half equally. By the union bound over looks,
``P(some look has theta > U_k) <= alpha`` whatever the correlation between looks, so the
false-PASS rate (true drop >= budget, verdict PASS) and the false-FAIL rate (true drop
<= budget, verdict FAIL) are each at most ``alpha``. The image term is not re-spent:
the images are the same at every look, so its event is one event.

Minimum draws: :data:`MIN_DRAWS` = 3. With 2 draws the t quantile has 1 degree of
freedom (``t_{0.9875, 1} = 25.5``) and only identical draws could pass; with 3 draws
``t_{0.9875, 2} = 6.2``, so a model whose drop is clearly inside the budget passes at 3.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _sps

__all__ = [
    "MIN_DRAWS", "MAX_DRAWS", "PASS", "FAIL", "INCONCLUSIVE", "CONTINUE", "VERDICTS",
    "Draw", "Bounds", "Decision", "look_alphas", "image_variance", "discordant_images", "exact_image_half",
    "drop_bounds", "decide", "decide_streams", "run_sequential",
]

#: Fewest draws before the rule may decide.
MIN_DRAWS: int = 3
#: Default most draws (``--max-seeds``).
MAX_DRAWS: int = 10

PASS, FAIL, INCONCLUSIVE, CONTINUE = "PASS", "FAIL", "INCONCLUSIVE", "CONTINUE"
#: Final verdicts.
VERDICTS: tuple[str, ...] = (PASS, FAIL, INCONCLUSIVE)
_CODES = {0: CONTINUE, 1: PASS, 2: FAIL, 3: INCONCLUSIVE}


@dataclass(frozen=True)
class Draw:
    """One noisy draw compared with the clean model on the same images.

    Attributes:
        drop: Accuracy drop in percentage points, clean minus noisy (positive = worse).
        images: Images evaluated ``n``; ``None`` when only the drop is known.
        lost: Images right when clean, wrong under noise (for the chosen metric).
        gained: Images wrong when clean, right under noise.
        collapsed: The draw is flagged by the collapse rule (far below the others).
    """

    drop: float
    images: int | None = None
    lost: int | None = None
    gained: int | None = None
    collapsed: bool = False

    @classmethod
    def from_counts(cls, images: int, lost: int, gained: int, *, collapsed: bool = False) -> Draw:
        """A draw from paired counts; ``drop = 100 * (lost - gained) / images``.

        Raises:
            ValueError: If ``images < 2`` or the counts are negative or exceed ``images``.
        """
        if images < 2 or lost < 0 or gained < 0 or lost + gained > images:
            msg = f"paired counts need images >= 2 and 0 <= lost + gained <= images, got {images}, {lost}, {gained}"
            raise ValueError(msg)
        return cls(100.0 * (lost - gained) / images, int(images), int(lost), int(gained), bool(collapsed))

    @property
    def paired(self) -> bool:
        """Whether the paired counts are known."""
        return self.images is not None and self.lost is not None and self.gained is not None


def image_variance(images, lost, gained) -> np.ndarray:
    """Per-image variance of the paired difference within one draw, in points^2.

    ``v = 100^2 * [(lost + gained)/n - ((lost - gained)/n)^2] * n / (n - 1)``: the
    unbiased sample variance of ``d_i in {-1, 0, 1}`` over the ``n`` images (``d_i = 1``
    lost, ``-1`` gained). Arrays broadcast; returns float64.
    """
    n = np.asarray(images, dtype=np.float64)
    lost = np.asarray(lost, dtype=np.float64)
    gained = np.asarray(gained, dtype=np.float64)
    moment = (lost + gained) / n
    mean = (lost - gained) / n
    return 1e4 * np.maximum(moment - mean * mean, 0.0) * n / (n - 1.0)


def discordant_images(images, drops, image_var) -> np.ndarray:
    """``lost + gained`` of draws, recovered from their drop (points) and :func:`image_variance`.

    Inverts ``v = 1e4 [k/n - (D/100)^2] n/(n-1)``: ``k = n [v (n-1) / (1e4 n) + (D/100)^2]``,
    rounded to whole images (the counts are integers). Arrays broadcast; returns float64.
    """
    n = np.asarray(images, dtype=np.float64)
    share = np.asarray(image_var, dtype=np.float64) * (n - 1.0) / (1e4 * n) + (np.asarray(drops) / 100.0) ** 2
    return np.round(n * share)


def exact_image_half(discordant, images, alpha_images: float) -> np.ndarray:
    """The image term's exact binomial half-width, points: ``100 * (q_U - k / n)``.

    ``q_U = B^-1(1 - alpha_images; k + 1, n - k)`` (the beta quantile; for a whole ``k``
    the one-sided Clopper-Pearson upper bound of a proportion, Biometrika 26, 1934, equal
    to ``scipy.stats.binomtest(k, n).proportion_ci(1 - 2 alpha_images).high``), 1 when
    ``k >= n``. At ``k = 0``: ``100 * (1 - alpha_images ** (1 / n))``, the rule of three
    (3.62 points on 100 images, 0.037 on 10,000 at ``alpha_images = 0.025``).

    Args:
        discordant: Mean discordant images per draw ``k`` (``lost + gained``), >= 0; a
            mean over draws need not be whole (the quantile is continuous in ``k``).
        images: Images ``n`` (>= 1), broadcast against ``discordant``.
        alpha_images: One-sided error probability of the image term, in (0, 1).

    Returns:
        float64 array (or 0-d) of half-widths in points, >= 0.
    """
    k = np.asarray(discordant, dtype=np.float64)
    n = np.asarray(images, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        upper = np.where(k >= n, 1.0, _sps.beta.ppf(1.0 - alpha_images, k + 1.0, np.maximum(n - k, 1e-300)))
    return np.maximum(100.0 * (upper - k / n), 0.0)


def look_alphas(alpha: float, min_draws: int, max_draws: int) -> np.ndarray:
    """Error probability spent at each look ``S = min_draws .. max_draws`` (Bonferroni weights).

    Returns:
        ``(K,) float64``, ``K = max_draws - min_draws + 1``, summing to ``alpha``: half at
        the first look and the rest equally over the others (all of it when ``K = 1``).
    """
    looks = max_draws - min_draws + 1
    if looks == 1:
        return np.array([alpha])
    return np.array([alpha / 2.0] + [alpha / 2.0 / (looks - 1)] * (looks - 1))


def _check(budget: float, confidence: float, min_draws: int, max_draws: int) -> None:
    if not (isinstance(budget, (int, float)) and math.isfinite(budget) and 0 <= budget <= 100):
        msg = f"the drop budget must be a number of percentage points from 0 to 100, got {budget!r}"
        raise ValueError(msg)
    if not (isinstance(confidence, (int, float)) and 0.5 <= confidence < 1):
        msg = f"the confidence must be in [0.5, 1), e.g. 0.95, got {confidence!r}"
        raise ValueError(msg)
    if not (isinstance(min_draws, int) and isinstance(max_draws, int) and 2 <= min_draws <= max_draws):
        msg = f"draws need 2 <= min_draws <= max_draws, got min {min_draws!r}, max {max_draws!r}"
        raise ValueError(msg)


@dataclass(frozen=True)
class Bounds:
    """The drop's bounds after ``draws`` draws (points; one-sided, each at the rule's confidence).

    Attributes:
        draws: Number of draws ``S``.
        mean: Mean drop over the draws.
        lower: ``L``; ``upper``: ``U`` (NaN before ``min_draws``).
        se_draws: ``s_D / sqrt(S)``; ``se_images``: ``sqrt(mean(v) / n)`` (0 without counts).
        t_quantile: ``t_{1 - a_k, S-1}``; ``z_quantile``: ``z_{1 - a_img}`` (0 without counts).
        alpha_look: ``a_k`` spent at this look; ``alpha_images``: ``a_img``.
        exact_images: :func:`exact_image_half` of the mean discordant images per draw (0
            without counts); the upper bound's image term is ``max(z_quantile * se_images,
            exact_images)``, the lower bound's ``z_quantile * se_images``.
    """

    draws: int
    mean: float
    lower: float
    upper: float
    se_draws: float
    se_images: float
    t_quantile: float
    z_quantile: float
    alpha_look: float
    alpha_images: float
    exact_images: float = 0.0

    def to_dict(self) -> dict[str, float | int]:
        """JSON-ready fields (may hold NaN: write with strict JSON that maps it to null)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Decision:
    """The rule's answer after the draws seen so far.

    Attributes:
        verdict: ``PASS``, ``FAIL``, ``INCONCLUSIVE`` (max draws reached) or ``CONTINUE``.
        bounds: The bounds it was decided on.
        budget: The drop budget in points.
        confidence: The rule's confidence (``1 - alpha``).
        min_draws, max_draws: The rule's draw limits.
        collapsed: Draws flagged collapsed so far (a PASS is withheld while any is).
    """

    verdict: str
    bounds: Bounds
    budget: float
    confidence: float
    min_draws: int
    max_draws: int
    collapsed: int = 0

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return {"verdict": self.verdict, "budget": self.budget, "confidence": self.confidence,
                "min_draws": self.min_draws, "max_draws": self.max_draws, "collapsed": self.collapsed,
                **self.bounds.to_dict()}


def _half_widths(drops: np.ndarray, image_var: np.ndarray | None, images, alpha: float,
                 min_draws: int, max_draws: int) -> tuple[np.ndarray, ...]:
    """Mean, draw standard error, image standard error, exact image half-width and quantiles at look
    ``S = drops.shape[-1]``."""
    s = drops.shape[-1]
    alpha_images = alpha / 2.0 if image_var is not None else 0.0
    alpha_look = float(look_alphas(alpha - alpha_images, min_draws, max_draws)[s - min_draws])
    mean = drops.mean(axis=-1)
    se_draws = drops.std(axis=-1, ddof=1) / math.sqrt(s)
    t = float(_sps.t.ppf(1.0 - alpha_look, s - 1))
    if image_var is None:
        se_images, exact, z = np.zeros_like(mean), np.zeros_like(mean), 0.0
    else:
        n = np.asarray(images, dtype=np.float64)
        se_images = np.sqrt(image_var.mean(axis=-1) / n)
        discordant = discordant_images(n[..., None], drops, image_var).mean(axis=-1)
        exact = exact_image_half(discordant, n, alpha_images)
        z = float(_sps.norm.ppf(1.0 - alpha_images))
    return mean, se_draws, se_images, exact, t, z, alpha_look, alpha_images


def decide_streams(
    drops: np.ndarray,
    budget: float,
    *,
    image_var: np.ndarray | None = None,
    images: int | np.ndarray | None = None,
    collapsed: np.ndarray | None = None,
    confidence: float = 0.95,
    min_draws: int = MIN_DRAWS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Run the rule on many streams at once (the one implementation; :func:`decide` calls it).

    Args:
        drops: ``(R, N)`` float drops in points: ``R`` streams of ``N = max_draws`` draws.
        budget: Allowed drop in points.
        image_var: ``(R, N)`` per-image variances :func:`image_variance` of each draw, or
            ``None`` for drops only (no image term).
        images: Images per stream ``n`` (scalar or ``(R,)``); needed with ``image_var``.
        collapsed: ``(R, N)`` bool, draws flagged by the collapse rule.
        confidence: ``1 - alpha``, the bound of each one-sided error rate.
        min_draws: First look.

    Returns:
        ``(verdict, draws, lower, upper)``: ``(R,)`` arrays; ``verdict`` holds strings
        ``PASS``/``FAIL``/``INCONCLUSIVE`` (``CONTINUE`` never: the last look decides),
        ``draws`` the draws used, ``lower``/``upper`` the bounds at that look.

    Raises:
        ValueError: On an invalid budget, confidence or draw count, or ``image_var``
            without ``images``.
    """
    drops = np.atleast_2d(np.asarray(drops, dtype=np.float64))
    runs, max_draws = drops.shape
    _check(budget, confidence, min_draws, max_draws)
    if image_var is not None:
        if images is None:
            raise ValueError("`image_var` needs `images` (images per stream)")
        image_var = np.atleast_2d(np.asarray(image_var, dtype=np.float64))
        images = np.broadcast_to(np.asarray(images, dtype=np.float64), (runs,))
    flagged = (np.zeros_like(drops, dtype=bool) if collapsed is None
               else np.atleast_2d(np.asarray(collapsed, dtype=bool)))
    code = np.zeros(runs, dtype=np.int8)
    used = np.full(runs, max_draws, dtype=np.int64)
    lower = np.full(runs, np.nan)
    upper = np.full(runs, np.nan)
    alpha = 1.0 - confidence
    for s in range(min_draws, max_draws + 1):
        open_ = np.flatnonzero(code == 0)
        if open_.size == 0:
            break
        var = None if image_var is None else image_var[open_, :s]
        mean, se_d, se_i, exact, t, z, _, _ = _half_widths(drops[open_, :s], var,
                                                           None if images is None else images[open_],
                                                           alpha, min_draws, max_draws)
        lo, hi = mean - t * se_d - z * se_i, mean + t * se_d + np.maximum(z * se_i, exact)
        passed = (hi < budget) & ~flagged[open_, :s].any(axis=1)
        failed = lo > budget
        last = s == max_draws
        new = np.where(passed, 1, np.where(failed, 2, 3 if last else 0)).astype(np.int8)
        done = new != 0
        code[open_] = new
        used[open_[done]] = s
        lower[open_[done]], upper[open_[done]] = lo[done], hi[done]
    return np.array([_CODES[c] for c in code]), used, lower, upper


def drop_bounds(draws: Sequence[Draw], *, confidence: float = 0.95, min_draws: int = MIN_DRAWS,
                max_draws: int = MAX_DRAWS) -> Bounds:
    """The bounds of the rule after ``draws`` (NaN bounds before ``min_draws``).

    Uses the image term only when every draw has paired counts.

    Raises:
        ValueError: On invalid settings or more draws than ``max_draws``.
    """
    _check(0.0, confidence, min_draws, max_draws)
    s = len(draws)
    if s > max_draws:
        msg = f"{s} draws given but max_draws is {max_draws}"
        raise ValueError(msg)
    drops = np.array([[d.drop for d in draws]], dtype=np.float64).reshape(1, s)
    mean = float(drops.mean()) if s else math.nan
    if s < min_draws:
        return Bounds(s, mean, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    paired = all(d.paired for d in draws)
    var = image_variance([d.images for d in draws], [d.lost for d in draws],
                         [d.gained for d in draws]).reshape(1, s) if paired else None
    images = float(np.mean([d.images for d in draws])) if paired else None
    _, se_d, se_i, exact, t, z, a_look, a_img = _half_widths(drops, var, images, 1.0 - confidence, min_draws,
                                                             max_draws)
    draws_half, image_half = float(t * se_d[0]), float(z * se_i[0])
    return Bounds(s, mean, mean - draws_half - image_half, mean + draws_half + max(image_half, float(exact[0])),
                  float(se_d[0]), float(se_i[0]), t, z, a_look, a_img, float(exact[0]))


def decide(draws: Sequence[Draw], budget: float, *, confidence: float = 0.95, min_draws: int = MIN_DRAWS,
           max_draws: int = MAX_DRAWS) -> Decision:
    """The rule's answer after ``draws`` (the draws seen so far, in order).

    The verdict is that of :func:`decide_streams` on the same draws if it decided at
    exactly ``len(draws)`` draws, ``CONTINUE`` before (or when an earlier look would
    already have decided: the caller should have stopped there).

    Raises:
        ValueError: On invalid settings or more draws than ``max_draws``.
    """
    _check(budget, confidence, min_draws, max_draws)
    bounds = drop_bounds(draws, confidence=confidence, min_draws=min_draws, max_draws=max_draws)
    flagged = sum(d.collapsed for d in draws)
    verdict = CONTINUE
    if len(draws) >= min_draws:
        if bounds.upper < budget and not flagged:
            verdict = PASS
        elif bounds.lower > budget:
            verdict = FAIL
        elif len(draws) == max_draws:
            verdict = INCONCLUSIVE
    return Decision(verdict, bounds, float(budget), float(confidence), min_draws, max_draws, int(flagged))


def run_sequential(next_draw: Callable[[int], Draw], budget: float, *, confidence: float = 0.95,
                   min_draws: int = MIN_DRAWS, max_draws: int = MAX_DRAWS,
                   flag: Callable[[list[Draw]], Sequence[bool]] | None = None,
                   on_look: Callable[[Decision, list[Draw]], None] | None = None) -> tuple[Decision, list[Draw]]:
    """Draw until the rule decides: ``next_draw(i)`` for ``i = 0, 1, ...`` (at most ``max_draws``).

    Args:
        next_draw: Returns draw ``i`` (e.g. runs the noisy trial of seed ``first_seed + i``).
        flag: Re-flags every draw so far as collapsed or not after each new draw (a
            collapse rule compares a draw with the others, so flags may change).
        on_look: Called with each :class:`Decision` and the draws so far.

    Returns:
        The final decision (never ``CONTINUE``) and the draws taken (flags as decided on).
    """
    _check(budget, confidence, min_draws, max_draws)
    draws: list[Draw] = []
    decision = None
    for i in range(max_draws):
        draws.append(next_draw(i))
        if flag is not None:
            draws = [Draw(d.drop, d.images, d.lost, d.gained, bool(f)) for d, f in zip(draws, flag(draws))]
        decision = decide(draws, budget, confidence=confidence, min_draws=min_draws, max_draws=max_draws)
        if on_look is not None:
            on_look(decision, draws)
        if decision.verdict != CONTINUE:
            break
    assert decision is not None
    return decision, draws
