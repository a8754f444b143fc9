"""The sequential decision rule of ``onnxnoise check``: pure functions on a stream of noise draws.

Quantity tested: the expected accuracy drop ``theta`` in percentage points (clean minus noisy
top-1 or top-5) over noise draws *and* over the image population the evaluation images are a
sample of. Each draw is evaluated on the same ``n`` images as the clean baseline (paired). The
bounds after ``S`` draws are :func:`onnxnoise.check.bounds.paired_bounds`: images and draws as a
crossed design, the grand mean's variance estimated as ``var_i(m_i)/n + var_s(D_s)/S`` from the
per-image outcomes, a Welch-Satterthwaite t quantile, exact binomial floors for few fragile
images, clipped to the possible range ``[-(100 - clean), clean]``.

Repeated looks. The rule looks after every draw from ``min_draws`` to ``max_draws``
(``K = max_draws - min_draws + 1`` looks) and stops at the first decision:

* PASS when ``U < budget`` (and no draw so far is flagged collapsed);
* FAIL when ``L > budget``;
* INCONCLUSIVE when neither holds after ``max_draws`` draws; otherwise one more draw.

Each look's bounds use ``alpha_k`` from :func:`look_alphas`: Bonferroni weights summing to
``alpha = 1 - confidence``, half at the first look (a clear case decides at the minimum number of
draws) and the other half equally over the rest (repeated confidence intervals, C. Jennison & B. W.
Turnbull, JRSS B 51, 1989; *Group Sequential Methods with Applications to Clinical Trials*, 2000,
ch. 9; an alpha-spending sequence in the sense of K. K. G. Lan & D. L. DeMets, Biometrika 70,
1983). By the union bound over looks, ``P(some look has theta > U_k) <= alpha`` whatever the
correlation between looks, so the false-PASS rate (true drop >= budget, verdict PASS) and the
false-FAIL rate (true drop <= budget, verdict FAIL) are each at most ``alpha`` as far as each
look's bound holds (normal approximation with exact floors; measured by
``scripts/simulate_gate.py``, docs/check.md).

Minimum draws: :data:`MIN_DRAWS` = 5: fewer, skewed draws make the upper bound err too often even
with the skew correction (simulated on the resnet20 population at 2,000 images, skew floor 1.5:
6.0% false PASS with the first look at 3 draws, 4.3% at 5).

Identical draws: when every draw is the same trial by construction (no weight noise and no read
noise: ``--noise none`` with deterministic DAC/ADC stages), more draws add no information and every
look only spends ``alpha``. The rule then runs with ``min_draws = max_draws = 1``: one look on one
draw at the whole ``alpha``, the draw term ``B`` exactly 0, so the bounds are the images' alone
(``t_{1 - alpha, n - 1} sqrt(var_i(d_i) / n)`` with the exact binomial floors).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from onnxnoise.check.bounds import ImageStats, count_stats, image_stats, paired_bounds

__all__ = [
    "MIN_DRAWS", "MAX_DRAWS", "PASS", "FAIL", "INCONCLUSIVE", "CONTINUE", "VERDICTS",
    "Draw", "Bounds", "Decision", "look_alphas", "stream_stats", "drop_bounds", "decide", "decide_streams",
    "run_sequential",
]

#: Fewest draws before the rule may decide.
MIN_DRAWS: int = 5
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
        clean: Images right when clean (the metric's clean count), or ``None``: sets the
            possible range of the drop, ``[-(100 - c), c]`` with ``c = 100 clean / n``.
        diff: ``(n,) int8`` per-image difference (1 lost, -1 gained, 0), or ``None`` (counts
            only: the image term uses its upper bound, :func:`onnxnoise.check.bounds.count_stats`).
    """

    drop: float
    images: int | None = None
    lost: int | None = None
    gained: int | None = None
    collapsed: bool = False
    clean: int | None = None
    diff: np.ndarray | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_counts(cls, images: int, lost: int, gained: int, *, collapsed: bool = False, clean: int | None = None,
                    diff: np.ndarray | None = None) -> Draw:
        """A draw from paired counts; ``drop = 100 * (lost - gained) / images``.

        Raises:
            ValueError: If ``images < 2``, the counts are negative or exceed ``images``, or ``diff``
                disagrees with them.
        """
        if images < 2 or lost < 0 or gained < 0 or lost + gained > images:
            msg = f"paired counts need images >= 2 and 0 <= lost + gained <= images, got {images}, {lost}, {gained}"
            raise ValueError(msg)
        if diff is not None:
            diff = np.asarray(diff, dtype=np.int8)
            if diff.shape != (images,) or int((diff == 1).sum()) != lost or int((diff == -1).sum()) != gained:
                raise ValueError(f"per-image differences disagree with the counts {images}, {lost}, {gained}")
        return cls(100.0 * (lost - gained) / images, int(images), int(lost), int(gained), bool(collapsed),
                   None if clean is None else int(clean), diff)

    @property
    def paired(self) -> bool:
        """Whether the paired counts are known."""
        return self.images is not None and self.lost is not None and self.gained is not None

    def flagged(self, collapsed: bool) -> Draw:
        """This draw with its collapse flag set to ``collapsed``."""
        return Draw(self.drop, self.images, self.lost, self.gained, bool(collapsed), self.clean, self.diff)


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
    ints = isinstance(min_draws, int) and isinstance(max_draws, int)
    if not (ints and (2 <= min_draws <= max_draws or min_draws == max_draws == 1)):
        msg = (f"draws need 2 <= min_draws <= max_draws (or min_draws = max_draws = 1 for identical draws), got min "
               f"{min_draws!r}, max {max_draws!r}")
        raise ValueError(msg)


@dataclass(frozen=True)
class Bounds:
    """The drop's bounds after ``draws`` draws (points; one-sided, each at the look's ``alpha_look``).

    Attributes:
        draws: Number of draws ``S``.
        mean: Mean drop over the draws.
        lower: ``L``; ``upper``: ``U`` (NaN before ``min_draws``), inside ``[range_low, range_high]``.
        se_draws: ``sqrt(var_s(D_s) / S)``; ``se_images``: ``sqrt(var_i(m_i) / n)`` (0 without counts).
        t_lower, t_upper: The Welch-Satterthwaite t quantiles of each bound.
        floor_lower, floor_upper: The exact binomial floors of the image term
            (:func:`onnxnoise.check.bounds.exact_floors`).
        alpha_look: One-sided error probability spent at this look.
        range_low, range_high: The possible range ``[-(100 - c), c]`` (``[-100, 100]`` unknown).
        per_image: Whether per-image outcomes gave the image term (else counts: an upper bound).
    """

    draws: int
    mean: float
    lower: float
    upper: float
    se_draws: float = math.nan
    se_images: float = math.nan
    t_lower: float = math.nan
    t_upper: float = math.nan
    floor_lower: float = math.nan
    floor_upper: float = math.nan
    alpha_look: float = math.nan
    range_low: float = -100.0
    range_high: float = 100.0
    per_image: bool = False

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


def stream_stats(draws: Sequence[Draw]) -> ImageStats | None:
    """The image statistics of ``draws`` (per-image when every draw has ``diff``, else counts; ``None``
    when some draw has no counts)."""
    if not draws or not all(d.paired for d in draws):
        return None
    if all(d.diff is not None for d in draws):
        return image_stats(np.stack([d.diff for d in draws]))
    return count_stats(draws[0].images, [d.lost for d in draws], [d.gained for d in draws])


def _clean_percent(draws: Sequence[Draw]) -> float:
    d = draws[0] if draws else None
    return 100.0 * d.clean / d.images if d is not None and d.clean is not None and d.images else math.nan


def decide_streams(
    drops,
    budget: float,
    *,
    image: ImageStats | None = None,
    images=None,
    clean=math.nan,
    collapsed=None,
    confidence: float = 0.95,
    min_draws: int = MIN_DRAWS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Run the rule on many streams at once (the one implementation; :func:`decide` calls it).

    Args:
        drops: ``(R, N)`` float drops in points: ``R`` streams of ``N = max_draws`` draws.
        budget: Allowed drop in points.
        image: Image statistics *per look*: each field ``(R, N)``, column ``S - 1`` computed from
            the first ``S`` draws (:func:`onnxnoise.check.bounds.image_stats` /
            :func:`~onnxnoise.check.bounds.count_stats`), or ``None`` for drops only.
        images: Images per stream ``n`` (scalar or ``(R,)``); needed with ``image``.
        clean: Clean accuracy per stream, percent (scalar or ``(R,)``; NaN: range unknown).
        collapsed: ``(R, N)`` bool, draws flagged by the collapse rule.
        confidence: ``1 - alpha``, the bound of each one-sided error rate.
        min_draws: First look.

    Returns:
        ``(verdict, draws, lower, upper)``: ``(R,)`` arrays; ``verdict`` holds strings
        ``PASS``/``FAIL``/``INCONCLUSIVE``, ``draws`` the draws used, ``lower``/``upper`` the
        bounds at that look.

    Raises:
        ValueError: On an invalid budget, confidence or draw count, or ``image`` without ``images``.
    """
    drops = np.atleast_2d(np.asarray(drops, dtype=np.float64))
    runs, max_draws = drops.shape
    _check(budget, confidence, min_draws, max_draws)
    if image is not None and images is None:
        raise ValueError("`image` needs `images` (images per stream)")
    n = None if images is None else np.broadcast_to(np.asarray(images, dtype=np.float64), (runs,))
    c = np.broadcast_to(np.asarray(clean, dtype=np.float64), (runs,))
    flagged = (np.zeros_like(drops, dtype=bool) if collapsed is None
               else np.atleast_2d(np.asarray(collapsed, dtype=bool)))
    code = np.zeros(runs, dtype=np.int8)
    used = np.full(runs, max_draws, dtype=np.int64)
    lower = np.full(runs, np.nan)
    upper = np.full(runs, np.nan)
    alphas = look_alphas(1.0 - confidence, min_draws, max_draws)
    for s in range(min_draws, max_draws + 1):
        open_ = np.flatnonzero(code == 0)
        if open_.size == 0:
            break
        look = None if image is None else ImageStats(*(np.atleast_2d(np.broadcast_to(
            np.asarray(getattr(image, f), dtype=np.float64), (runs, max_draws)))[open_, s - 1]
            for f in ("variance", "fragile", "effect")))
        b = paired_bounds(drops[open_, :s], look, None if n is None else n[open_], c[open_], alphas[s - min_draws])
        lo, hi = b["lower"], b["upper"]
        passed = (hi < budget) & ~flagged[open_, :s].any(axis=1)
        failed = lo > budget
        new = np.where(passed, 1, np.where(failed, 2, 3 if s == max_draws else 0)).astype(np.int8)
        done = new != 0
        code[open_] = new
        used[open_[done]] = s
        lower[open_[done]], upper[open_[done]] = lo[done], hi[done]
    return np.array([_CODES[c] for c in code]), used, lower, upper


def drop_bounds(draws: Sequence[Draw], *, confidence: float = 0.95, min_draws: int = MIN_DRAWS,
                max_draws: int = MAX_DRAWS) -> Bounds:
    """The bounds of the rule after ``draws`` (NaN bounds before ``min_draws``).

    Uses the image term when every draw has paired counts (per-image when every draw has ``diff``).

    Raises:
        ValueError: On invalid settings or more draws than ``max_draws``.
    """
    _check(0.0, confidence, min_draws, max_draws)
    s = len(draws)
    if s > max_draws:
        msg = f"{s} draws given but max_draws is {max_draws}"
        raise ValueError(msg)
    mean = float(np.mean([d.drop for d in draws])) if s else math.nan
    c = _clean_percent(draws)
    low, high = (c - 100.0, c) if math.isfinite(c) else (-100.0, 100.0)
    stats = stream_stats(draws)
    per_image = stats is not None and all(d.diff is not None for d in draws)
    if s < min_draws:
        return Bounds(s, mean, math.nan, math.nan, range_low=low, range_high=high, per_image=per_image)
    alpha = float(look_alphas(1.0 - confidence, min_draws, max_draws)[s - min_draws])
    b = {k: float(v[0]) for k, v in paired_bounds(np.array([[d.drop for d in draws]]), stats,
                                                  draws[0].images if stats else None, c, alpha).items()}
    return Bounds(s, mean, b["lower"], b["upper"], b["se_draws"], b["se_images"] if stats else 0.0, b["t_lower"],
                  b["t_upper"], b["floor_lower"], b["floor_upper"], alpha, low, high, per_image)


def decide(draws: Sequence[Draw], budget: float, *, confidence: float = 0.95, min_draws: int = MIN_DRAWS,
           max_draws: int = MAX_DRAWS) -> Decision:
    """The rule's answer after ``draws`` (the draws seen so far, in order).

    ``CONTINUE`` before ``min_draws``, or while neither bound decides before ``max_draws``.

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
            draws = [d.flagged(f) for d, f in zip(draws, flag(draws))]
        decision = decide(draws, budget, confidence=confidence, min_draws=min_draws, max_draws=max_draws)
        if on_look is not None:
            on_look(decision, draws)
        if decision.verdict != CONTINUE:
            break
    assert decision is not None
    return decision, draws
