"""scripts/bench_stages.py: the ratio / interval helper on given numbers (no timing here)."""

from __future__ import annotations

import math

import pytest


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("bench_stages")


def test_ratio_summary_is_the_t_interval_of_the_per_round_ratios(bench):
    # per-round ratios 0.5, 0.6, 0.4: mean 0.5, sample std 0.1; t(0.975, 2) = 4.302653
    s = bench.ratio_summary([100.0, 200.0, 50.0], [50.0, 120.0, 20.0])
    assert s["ratios"] == pytest.approx([0.5, 0.6, 0.4])
    assert s["mean"] == pytest.approx(0.5)
    assert s["half_width"] == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-6)
    assert (s["low"], s["high"]) == pytest.approx((0.5 - 0.248414, 0.5 + 0.248414), abs=1e-6)
    assert s["measuring_error"] is None


def test_a_ratio_above_one_is_flagged_and_one_round_has_no_interval(bench):
    s = bench.ratio_summary([100.0, 100.0], [103.0, 101.0])   # staged faster than clean: the load moved
    assert s["mean"] == pytest.approx(1.02) and s["measuring_error"].startswith("MEASURING ERROR: ratio 1.020")
    one = bench.ratio_summary([100.0], [40.0])
    assert one["mean"] == pytest.approx(0.4) and math.isnan(one["half_width"])
    with pytest.raises(ValueError, match="one clean and one staged rate per round, got 2 and 1"):
        bench.ratio_summary([1.0, 2.0], [1.0])
