"""compare's statistics: paired and Welch differences against scipy, the per-model draws, the verdict sentences."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats

from onnxnoise.report.versus import compare_models, model_draws, paired_difference, verdict_sentence, welch_difference
from tests._frames import layer_frame


def _half(result) -> float:
    low, high = result.confidence_interval(0.95)
    return (high - low) / 2


def test_paired_difference_is_scipys_paired_t_interval():
    a, b = [86.6, 85.0, 88.2, 84.4, 89.0], [90.8, 91.2, 89.6, 90.0, 92.4]
    diff, ci = paired_difference(a, b)
    assert diff == pytest.approx(np.mean(b) - np.mean(a))
    assert ci == pytest.approx(_half(stats.ttest_rel(b, a)))
    one = paired_difference([1.0], [3.0])
    assert one[0] == 2.0 and np.isnan(one[1])
    with pytest.raises(ValueError, match="equal"):
        paired_difference([1.0, 2.0], [1.0])


def test_welch_difference_is_scipys_welch_interval():
    a, b = [70.0, 72.5, 69.0], [80.0, 84.0, 79.5, 81.0]
    diff, ci = welch_difference(a, b)
    assert diff == pytest.approx(np.mean(b) - np.mean(a))
    assert ci == pytest.approx(_half(stats.ttest_ind(b, a, equal_var=False)))
    assert np.isnan(welch_difference([1.0], [2.0, 3.0])[1])
    assert welch_difference([1.0, 1.0], [2.0, 2.0]) == (1.0, 0.0)


def _two_models() -> pl.DataFrame:
    a = layer_frame({(5.0, 0): [880, 860, 870], (5.0, 1): [800, 820, 790]}, whole={5.0: [700, 650, 720]},
                    model="resnet20.onnx")
    b = layer_frame({(5.0, 0): [895, 890, 900], (5.0, 1): [880, 870, 890]}, whole={5.0: [800, 760, 830]},
                    model="resnet32.onnx", clean=920)
    return pl.concat([a, b], how="vertical")


def test_model_draws_whole_model_top1_and_per_layer_degradation_per_seed():
    draws = model_draws(_two_models()).sort("model", "mode", "seed")
    whole = draws.filter((pl.col("model") == "resnet20.onnx") & (pl.col("mode") == "all"))
    assert whole["value"].to_list() == pytest.approx([70.0, 65.0, 72.0]) and whole["clean"][0] == 90.0
    layers = draws.filter((pl.col("model") == "resnet20.onnx") & (pl.col("mode") == "per-layer"))
    # seed 0: A = (880/900 + 800/900) / 2 -> degradation 100 (1 - A)
    assert layers["value"][0] == pytest.approx(100 * (1 - (880 + 800) / 1800))


def test_compare_models_pairs_by_seed_on_the_same_images():
    rows = compare_models(_two_models())
    whole = rows.filter(pl.col("mode") == "all").row(0, named=True)
    a, b = [70.0, 65.0, 72.0], [80.0, 76.0, 83.0]
    assert (whole["model_a"], whole["model_b"]) == ("resnet20.onnx", "resnet32.onnx")
    assert whole["difference"] == pytest.approx(np.mean(b) - np.mean(a))
    # draws term var(d)/S = (1/3)/3 with d = 10, 11, 11 points; images term: at least 10%, 11%, 11% of the 1,000
    # images differ, per-image variance 1e4 k (1 - k) n / (n - 1), its mean over draws / n; Welch-Satterthwaite df
    draws = np.var([10.0, 11.0, 11.0], ddof=1) / 3
    image = np.mean([1e4 * k * (1 - k) * 1000 / 999 for k in (0.10, 0.11, 0.11)]) / 1000
    df = (image + draws) ** 2 / (image ** 2 / 999 + draws ** 2 / 2)
    assert whole["ci_half"] == pytest.approx(stats.t.ppf(0.975, df) * np.sqrt(image + draws))  # 2.038
    assert whole["ci_half"] == pytest.approx(2.038, abs=1e-3) and whole["ci_half"] > _half(stats.ttest_rel(b, a))
    assert whole["paired"] and whole["seeds"] == 3 and whole["images"] == 1000
    assert (whole["clean_a"], whole["clean_b"]) == (90.0, 92.0)
    layer = rows.filter(pl.col("mode") == "per-layer").row(0, named=True)
    deg_a = [100 * (1 - (880 + 800) / 1800), 100 * (1 - (860 + 820) / 1800), 100 * (1 - (870 + 790) / 1800)]
    deg_b = [100 * (1 - (895 + 880) / 1840), 100 * (1 - (890 + 870) / 1840), 100 * (1 - (900 + 890) / 1840)]
    assert layer["difference"] == pytest.approx(np.mean(deg_b) - np.mean(deg_a))
    assert layer["ci_half"] == pytest.approx(_half(stats.ttest_rel(deg_b, deg_a)))
    assert compare_models(_two_models().filter(pl.col("model") == "resnet20.onnx")).is_empty()


def test_compare_models_falls_back_to_welch_on_different_images():
    frame = _two_models().with_columns(
        pl.when(pl.col("model") == "resnet32.onnx").then(pl.lit("other")).otherwise(pl.col("dataset_fingerprint"))
        .alias("dataset_fingerprint"))
    whole = compare_models(frame).filter(pl.col("mode") == "all").row(0, named=True)
    assert not whole["paired"] and whole["images"] is None
    assert whole["ci_half"] == pytest.approx(_half(stats.ttest_ind([80.0, 76.0, 83.0], [70.0, 65.0, 72.0],
                                                              equal_var=False)))


def test_verdict_sentences():
    row = {"model_a": "resnet20.onnx", "model_b": "resnet32.onnx", "mode": "all", "strength": 5.0,
           "strength_text": "SNR 5", "difference": 8.52, "ci_half": 2.1, "paired": True, "seeds": 10, "images": 500}
    assert verdict_sentence(row) == ("resnet32 keeps 8.5 +- 2.1 points more top-1 than resnet20 at SNR 5 "
                                     "(paired over 10 seeds on the same 500 images)")
    assert verdict_sentence({**row, "difference": -8.52}).startswith("resnet32 keeps 8.5 +- 2.1 points less top-1")
    assert verdict_sentence({**row, "difference": 1.0}) == (
        "no difference shown: resnet32 keeps +1.0 +- 2.1 points top-1 against resnet20 at SNR 5, an interval that "
        "holds 0 (paired over 10 seeds on the same 500 images)")
    layer = {**row, "mode": "per-layer", "difference": -1.5, "ci_half": 0.6}
    assert verdict_sentence(layer).startswith("resnet32 loses 1.5 +- 0.6 points less top-1 per noised layer "
                                              "(A_avr degradation) than resnet20 at SNR 5")
    single = {**row, "ci_half": None, "paired": False, "seeds": 1, "images": None}
    assert verdict_sentence(single) == ("resnet32 keeps 8.5 points more top-1 than resnet20 at SNR 5 (no interval: "
                                        "fewer than two draws; unpaired, 1 draws, different images)")
