"""The scope check's statistic: per strength, channel minus tensor scope paired by seed (against scipy)."""

from __future__ import annotations

import polars as pl
import pytest
from scipy import stats

from onnxnoise.report.scope_effect import scope_effect, scope_sentence


def _frame(values: dict[float, list[float]]) -> pl.DataFrame:
    rows = [{"mode": "all", "strength": s, "seed": seed, "top1_acc": v, "error": None}
            for s, draws in values.items() for seed, v in enumerate(draws)]
    return pl.DataFrame(rows, schema_overrides={"error": pl.String})


def test_scope_effect_pairs_by_seed_and_says_when_the_interval_excludes_zero():
    tensor = _frame({5.0: [20.0, 25.0, 18.0], 10.0: [80.0, 82.0, 79.0], 100.0: [90.0, 90.0, 90.0]})
    channel = _frame({5.0: [60.0, 66.0, 61.0], 10.0: [81.0, 80.0, 80.0]})
    rows = scope_effect(tensor, channel)
    assert rows["strength"].to_list() == [5.0, 10.0]
    at5 = rows.row(0, named=True)
    low, high = stats.ttest_rel([60.0, 66.0, 61.0], [20.0, 25.0, 18.0]).confidence_interval(0.95)
    assert at5["difference"] == pytest.approx((low + high) / 2) and at5["ci_half"] == pytest.approx((high - low) / 2)
    assert at5["depends"] is True and (at5["top1_scope"], at5["top1_channel"]) == pytest.approx((21.0, 62.333333))
    assert rows.row(1, named=True)["depends"] is False  # +0.0 on average: the interval holds 0


def test_scope_sentences():
    row = {"seeds": 5, "top1_scope": 21.4, "top1_channel": 65.6, "difference": 44.2, "ci_half": 3.1, "depends": True}
    assert scope_sentence(row, "SNR 100") == ("SNR 100: top-1 21.4% with sigma per tensor, 65.6% per output channel "
                                              "(+44.2 +- 3.1 points, paired over 5 seeds): the answer depends on the "
                                              "scope")
    assert scope_sentence({**row, "depends": False}, "SNR 100").endswith(
        "does not depend on the scope here (the interval holds 0)")
    one = {**row, "seeds": 1, "ci_half": None, "depends": None}
    assert "(+44.2 points, paired over 1 seed): no interval from one seed" in scope_sentence(one, "SNR 100")


def test_the_same_one_image_in_every_seed_is_not_a_dependence():
    """`bench --limit 50 --snr 10 --seeds 2 --scope-check 1` on ResNet20: both seeds 86% per tensor and 84% per
    channel (one image of 50) printed `-2.0 +- 0.0 points ...: the answer depends on the scope`. With the images'
    term: each pair differs by at least 1 image of 50, v = 1e4 (0.02 - 0.0004) 50/49 = 200, A = 200/50 = 4, B = 0,
    nu = 49: -2.0 ± t(.975, 49) * 2 = ±4.02, which holds 0."""
    tensor, channel = _frame({10.0: [86.0, 86.0]}), _frame({10.0: [84.0, 84.0]})
    assert scope_effect(tensor, channel).row(0, named=True)["depends"] is True  # without image counts: ±0
    with_n = [f.with_columns(pl.lit(50).alias("images")) for f in (tensor, channel)]
    row = scope_effect(*with_n).row(0, named=True)
    assert row["difference"] == pytest.approx(-2.0)
    assert row["ci_half"] == pytest.approx(stats.t.ppf(0.975, 49) * 2.0) and row["ci_half"] == pytest.approx(4.019, abs=1e-3)
    assert row["depends"] is False


def test_the_images_term_keeps_a_large_scope_effect():
    """200 images, channel minus tensor +8, +10, +12 points: A = mean(1e4 (k - k^2) 200/199) / 200 with
    k = .08, .10, .12 -> (736 + 900 + 1056) / 3 / 199 = 4.5092; B = var(8, 10, 12) / 3 = 4/3; nu =
    (A + B)^2 / (A^2/199 + B^2/2) = 34.4; t(.975, 34.4) sqrt(5.8425) = 4.91, below the draws' own t(.975, 2)
    sqrt(4/3) = 4.97, which it keeps (an added variance never narrows the interval): still a dependence."""
    tensor, channel = _frame({30.0: [40.0, 40.0, 40.0]}), _frame({30.0: [48.0, 50.0, 52.0]})
    with_n = [f.with_columns(pl.lit(200).alias("images")) for f in (tensor, channel)]
    row = scope_effect(*with_n).row(0, named=True)
    a = (736.0 + 900.0 + 1056.0) / 3.0 / 199.0
    b = 4.0 / 3.0
    nu = (a + b) ** 2 / (a * a / 199.0 + b * b / 2.0)
    assert a == pytest.approx(4.5092, abs=1e-4) and nu == pytest.approx(34.44, abs=0.01)
    assert stats.t.ppf(0.975, nu) * (a + b) ** 0.5 == pytest.approx(4.91, abs=0.01)
    assert row["ci_half"] == pytest.approx(stats.t.ppf(0.975, 2) * (4.0 / 3.0) ** 0.5)
    assert row["ci_half"] == pytest.approx(4.969, abs=1e-3)
    assert row["difference"] == pytest.approx(10.0) and row["depends"] is True
