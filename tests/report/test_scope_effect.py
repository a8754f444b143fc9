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
    assert at5["difference"] == pytest.approx((low + high) / 2) and at5["ci"] == pytest.approx((high - low) / 2)
    assert at5["depends"] is True and (at5["top1_scope"], at5["top1_channel"]) == pytest.approx((21.0, 62.333333))
    assert rows.row(1, named=True)["depends"] is False  # +0.0 on average: the interval holds 0


def test_scope_sentences():
    row = {"seeds": 5, "top1_scope": 21.4, "top1_channel": 65.6, "difference": 44.2, "ci": 3.1, "depends": True}
    assert scope_sentence(row, "SNR 100") == ("SNR 100: top-1 21.4% with sigma per tensor, 65.6% per output channel "
                                              "(+44.2 +- 3.1 points, paired over 5 seeds): the answer depends on the "
                                              "scope")
    assert scope_sentence({**row, "depends": False}, "SNR 100").endswith(
        "does not depend on the scope here (the interval holds 0)")
    one = {**row, "seeds": 1, "ci": None, "depends": None}
    assert "(+44.2 points, paired over 1 seed): no interval from one seed" in scope_sentence(one, "SNR 100")
