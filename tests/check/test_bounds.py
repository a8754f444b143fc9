"""The gate's bound statistics against closed forms and scipy (onnxnoise/check/bounds.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from onnxnoise.check.bounds import (
    DRAW_SKEW,
    count_stats,
    exact_floors,
    image_stats,
    image_variance,
    paired_bounds,
    skew_level,
)


def test_image_variance_is_the_sample_variance_of_the_per_image_differences():
    d = np.array([1] * 7 + [-1] * 2 + [0] * 91)  # 7 lost, 2 gained of 100
    assert image_variance(100, 7, 2) == pytest.approx(1e4 * d.var(ddof=1))


def test_image_stats_of_a_small_matrix_by_hand():
    # 3 draws x 4 images: image 0 lost in every draw, image 1 once, image 2 gained once and lost once, image 3 never
    d = np.array([[1, 1, -1, 0], [1, 0, 1, 0], [1, 0, 0, 0]])
    st = image_stats(d)
    m = np.array([1.0, 1 / 3, 0.0, 0.0])
    assert st.variance == pytest.approx(1e4 * m.var(ddof=1))
    assert st.fragile == 3  # images 0, 1, 2 changed in some draw
    assert st.effect == pytest.approx((1 + 1 / 3 + 0) / 3)


def test_counts_only_variance_bounds_the_per_image_one_from_above():
    """var_i(mean_s d_is) <= mean_s var_i(d_is) (Jensen): the counts-only image term is the conservative one."""
    rng = np.random.default_rng(3)
    d = np.where(rng.random((6, 500)) < 0.08, 1, 0) - np.where(rng.random((6, 500)) < 0.02, 1, 0)
    lost, gained = (d == 1).sum(axis=1), (d == -1).sum(axis=1)
    counted = count_stats(500, lost, gained)
    per_image = image_stats(d)
    assert per_image.variance < counted.variance
    assert counted.fragile == pytest.approx((lost + gained).mean()) and counted.effect == 1.0


@pytest.mark.parametrize(("u", "n"), [(0, 100), (3, 100), (17, 500), (250, 10_000)])
def test_exact_floors_are_the_clopper_pearson_bounds(u, n):
    lower, upper = exact_floors(u, 1.0, n, 0.025)
    ci = stats.binomtest(u, n).proportion_ci(confidence_level=0.95, method="exact")
    assert upper == pytest.approx(100 * (ci.high - u / n), rel=1e-9)
    assert lower == pytest.approx(100 * (u / n - ci.low), rel=1e-9, abs=1e-12)


def test_exact_floors_at_the_ends_and_scaled_by_the_effect():
    assert exact_floors(0, 1.0, 500, 0.025)[1] == pytest.approx(100 * (1 - 0.025 ** (1 / 500)))  # rule of three
    assert exact_floors(0, 1.0, 500, 0.025)[0] == 0.0
    assert exact_floors(500, 1.0, 500, 0.025)[1] == 0.0  # every image discordant: nothing above
    assert exact_floors(2, 1.0, 2, 0.025)[0] == pytest.approx(100 * (1 - math.sqrt(0.025)))  # q_L = alpha^(1/2)
    half = exact_floors(10, 0.5, 1000, 0.025)[1]
    assert half == pytest.approx(0.5 * exact_floors(10, 1.0, 1000, 0.025)[1])


def test_skew_level_solves_the_edgeworth_equation():
    assert skew_level(0.025, 0.0) == pytest.approx(0.025)
    for g in (0.1, 0.5, 1.0):
        level = float(skew_level(0.025, g))
        z = stats.norm.isf(level)
        assert stats.norm.sf(z) + g * (2 * z * z + 1) * stats.norm.pdf(z) / 6 == pytest.approx(0.025, rel=1e-9)
        assert level < 0.025


def test_drops_only_bounds_are_the_t_bound_with_the_skew_corrected_upper_level():
    drops = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])  # mean 3, sd sqrt(2.5), sample skewness 0
    b = paired_bounds(drops, None, None, math.nan, 0.025)
    se = math.sqrt(2.5 / 5)
    assert b["lower"][0] == pytest.approx(3 - stats.t.ppf(0.975, 4) * se)
    level = float(skew_level(0.025, DRAW_SKEW / math.sqrt(5)))  # only draws: share 1, skewness max(0, 1.5)
    assert b["upper"][0] == pytest.approx(3 + stats.t.isf(level, 4) * se)
    assert b["se_draws"][0] == pytest.approx(se) and b["se_images"][0] == 0.0


def test_crossed_bound_by_hand_with_welch_satterthwaite_degrees_of_freedom():
    rng = np.random.default_rng(0)
    n, s, alpha = 400, 6, 0.01
    fragile = rng.random(n) < 0.3
    d = ((rng.random((s, n)) < 0.3) & fragile).astype(int) - ((rng.random((s, n)) < 0.05) & fragile).astype(int)
    drops = 100 * d.mean(axis=1)
    a = 1e4 * d.mean(axis=0).var(ddof=1) / n
    b = drops.var(ddof=1) / s
    nu = (a + b) ** 2 / (a * a / (n - 1) + b * b / (s - 1))
    out = paired_bounds(drops[None, :], image_stats(d), n, 90.0, alpha)
    lo_floor = out["floor_lower"][0]
    assert (lo_floor / stats.t.ppf(1 - alpha, n - 1)) ** 2 < a  # the floor is not what decides here
    assert out["lower"][0] == pytest.approx(drops.mean() - stats.t.ppf(1 - alpha, nu) * math.sqrt(a + b))
    assert out["t_lower"][0] == pytest.approx(stats.t.ppf(1 - alpha, nu))
    assert out["se_images"][0] == pytest.approx(math.sqrt(a)) and out["se_draws"][0] == pytest.approx(math.sqrt(b))


def test_two_images_lost_in_every_draw_give_the_exact_lower_bound_and_stay_in_range():
    """All of 2 images lost in 5 draws: no variance at all, so the exact floor is the bound: 100 sqrt(alpha)
    below; above, the drop cannot exceed the clean accuracy (100%)."""
    d = np.ones((5, 2), dtype=int)
    out = paired_bounds(np.full((1, 5), 100.0), image_stats(d), 2, 100.0, 0.025)
    assert out["lower"][0] == pytest.approx(100 * math.sqrt(0.025))  # 15.81, not 100
    assert out["upper"][0] == 100.0


def test_bounds_never_leave_the_possible_range():
    rng = np.random.default_rng(1)
    drops = rng.normal(50, 40, (200, 5))
    out = paired_bounds(drops, None, None, 60.0, 0.001)
    assert (out["lower"] >= -40.0).all() and (out["upper"] <= 60.0).all()
    assert (out["upper"] == 60.0).any() and (out["lower"] == -40.0).any()


def test_crossed_variance_estimate_is_conservative_by_the_interaction_only():
    """E[A + B] = s_a^2/n + s_b^2/S + 2 s_e^2/(nS) for d_is = a_i + b_s + e_is (closed form, Owen 2007)."""
    rng = np.random.default_rng(5)
    reps, n, s = 4000, 40, 5
    sa, sb, se = 0.3, 0.2, 0.5
    d = (rng.normal(0, sa, (reps, 1, n)) + rng.normal(0, sb, (reps, s, 1)) + rng.normal(0, se, (reps, s, n)))
    a = d.mean(axis=1).var(axis=1, ddof=1) / n
    b = d.mean(axis=2).var(axis=1, ddof=1) / s
    expected = sa ** 2 / n + sb ** 2 / s + 2 * se ** 2 / (n * s)
    assert (a + b).mean() == pytest.approx(expected, rel=0.03)
    true_var = d.mean(axis=(1, 2)).var()
    assert true_var == pytest.approx(sa ** 2 / n + sb ** 2 / s + se ** 2 / (n * s), rel=0.06)
