"""stats: normalized accuracy (eq. 2), A_avr (eq. 3), seed t-intervals, binomial intervals, on hand-made counts."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps

from onnxnoise.report.stats import (
    add_binomial_interval,
    average_normalized_accuracy,
    binomial_interval,
    normalized_accuracy,
    sort_by_noise,
    summarize_trials,
    t_half_width,
)

from tests._frames import trial_frame
import tests._noise_models  # noqa: F401  (registers test-drift)


#: Student t quantile t_{0.975, 2} (two-sided 95 %, 2 degrees of freedom); printed tables give 4.303.
T_975_2 = 4.302652729749462
#: t_{0.975, 1} (1 degree of freedom); printed tables give 12.706.
T_975_1 = 12.706204736174698

#: model m: a_0 = 900/1000 (top-5: 1000/1000). Per-layer top-1 correct counts at SNR 10, seeds 0, 1, 2.
M_LAYERS = {0: (810, 720, 630), 1: (900, 855, 810), 2: (450, 540, 360)}
#: A_{i,s} = a_{i,s} / a_0 for these counts.
M_NORM = {0: (0.9, 0.8, 0.7), 1: (1.0, 0.95, 0.9), 2: (0.5, 0.6, 0.4)}


GAUSS = json.dumps({"bn_variance": "clamp", "keep_zeros": False, "params": {}}, sort_keys=True)


def _row(model, mode, layer_index, strength, seed, top1, top5=1000, *, error=None, nan=0, sha=None,
         noise_model="gaussian-snr", noise=GAUSS, overflow=0, clipped=0, zeros=0):
    return {
        "key": f"{model}-{noise_model}-{mode}-{layer_index}-{strength}-{seed}",
        "model": model, "model_sha256": sha or f"sha-{model}", "dataset": "d", "dataset_fingerprint": "fp",
        "preprocess": '{"crop":32}', "mode": mode, "layer_index": layer_index,
        "layers_noised": None if mode == "baseline" else (1 if mode == "per-layer" else 3),
        "noise_model": noise_model, "noise": noise, "strength": strength, "seed": seed,
        "images": 1000, "top1_correct": top1, "top5_correct": top5, "nan_count": nan, "bn_variance_changed": 0,
        "overflow_count": overflow, "clipped_count": clipped, "zeros_kept": zeros, "error": error,
    }


def _frame(rows):
    frame = pl.DataFrame(rows, schema_overrides={"layer_index": pl.Int64, "seed": pl.Int64, "error": pl.String,
                                                 "strength": pl.Float64, "layers_noised": pl.Int64})
    ok = pl.col("error").is_null()
    return frame.with_columns(
        pl.when(ok).then(100.0 * pl.col("top1_correct") / pl.col("images")).alias("top1_acc"),
        pl.when(ok).then(100.0 * pl.col("top5_correct") / pl.col("images")).alias("top5_acc"),
    )


@pytest.fixture
def trials() -> pl.DataFrame:
    rows = [_row("m", "baseline", None, None, None, 900)]
    for layer, counts in M_LAYERS.items():
        for seed, c in enumerate(counts):
            rows.append(_row("m", "per-layer", layer, 10.0, seed, c, top5=950, nan=seed,
                             overflow=10 * seed, clipped=layer, zeros=100))
    rows.append(_row("m", "per-layer", 0, 10.0, 3, 0, error="SessionError: boom"))  # ignored everywhere
    rows.append(_row("m", "all", None, 10.0, 0, 450))
    # model m2 has its own baseline (500/1000); seed 1 lacks layer 1, so only seed 0 is complete.
    rows.append(_row("m2", "baseline", None, None, None, 500, top5=800))
    rows += [
        _row("m2", "per-layer", 0, 10.0, 0, 400, top5=800),
        _row("m2", "per-layer", 0, 10.0, 1, 300, top5=400),
        _row("m2", "per-layer", 1, 10.0, 0, 250, top5=800),
    ]
    return _frame(rows)


def test_normalized_accuracy_uses_each_experiments_baseline(trials):
    out = normalized_accuracy(trials)
    assert out.height == trials.height
    m = out.filter((pl.col("model") == "m") & (pl.col("mode") == "per-layer") & pl.col("error").is_null())
    for layer, expected in M_NORM.items():
        got = m.filter(pl.col("layer_index") == layer).sort("seed")["top1_norm"].to_list()
        assert got == list(expected)  # exact: a_i / a_0 of exact decimals
    assert m["top5_norm"].unique().to_list() == [0.95]
    assert out.filter(pl.col("mode") == "baseline")["top1_norm"].to_list() == [1.0, 1.0]
    assert out.filter((pl.col("model") == "m") & (pl.col("mode") == "all"))["top1_norm"].item() == 0.5
    m2 = out.filter((pl.col("model") == "m2") & (pl.col("mode") == "per-layer"))
    assert m2["top1_base"].unique().to_list() == [50.0]
    assert m2["top1_norm"].to_list() == [0.8, 0.6, 0.5]
    assert m2["top5_norm"].to_list() == [1.0, 0.5, 1.0]
    assert out.filter(pl.col("error").is_not_null())["top1_norm"].to_list() == [None]


def test_normalized_accuracy_without_baseline_is_null(trials):
    out = normalized_accuracy(trials.filter(pl.col("mode") != "baseline"))
    assert out["top1_norm"].null_count() == out.height


def test_summarize_trials_mean_std_t_interval(trials):
    summary = summarize_trials(trials)
    row = summary.filter((pl.col("model") == "m") & (pl.col("layer_index") == 0) & (pl.col("mode") == "per-layer"))
    assert row.height == 1
    row = row.row(0, named=True)
    assert row["seeds"] == 3 and row["errors"] == 1
    assert row["noise_model"] == "gaussian-snr" and row["strength"] == 10.0
    assert row["strength_text"] == "SNR 10 (10% noise)"
    assert "noise_pct" not in summary.columns and "snr" not in summary.columns
    assert row["nan_count"] == 0 + 1 + 2 + 0
    assert (row["overflow_count"], row["clipped_count"], row["zeros_kept"]) == (0 + 10 + 20, 0, 3 * 100)
    assert row["layers_noised"] == 1
    accs = [81.0, 72.0, 63.0]
    assert row["top1_acc_mean"] == pytest.approx(statistics.mean(accs), rel=1e-12)
    assert row["top1_acc_std"] == pytest.approx(9.0, rel=1e-12)
    assert row["top1_acc_ci_half"] == pytest.approx(T_975_2 * 9.0 / math.sqrt(3), rel=1e-9)
    assert row["top1_norm_mean"] == pytest.approx(0.8, rel=1e-12)
    assert row["top1_norm_ci_half"] == pytest.approx(T_975_2 * 0.1 / math.sqrt(3), rel=1e-9)
    assert row["top5_norm_std"] == 0.0
    base = summary.filter((pl.col("model") == "m") & (pl.col("mode") == "baseline")).row(0, named=True)
    assert base["seeds"] == 1 and base["top1_acc_mean"] == 90.0
    assert base["strength"] is None and base["strength_text"] == "clean"
    assert base["top1_acc_std"] is None and base["top1_acc_ci_half"] is None
    # order: per model, baseline first, then all, then per-layer by layer index
    m = summary.filter(pl.col("model") == "m")
    assert m["mode"].to_list() == ["baseline", "all", "per-layer", "per-layer", "per-layer"]
    assert m["layer_index"].to_list()[2:] == [0, 1, 2]


def test_average_normalized_accuracy_matches_hand_computation(trials):
    out = average_normalized_accuracy(trials)
    assert out["model"].to_list() == ["m", "m2"]
    m = out.row(0, named=True)
    a_i = [statistics.mean(M_NORM[layer]) for layer in (0, 1, 2)]  # 0.8, 0.95, 0.5
    a_avr = statistics.mean(a_i)  # eq. 3: 0.75
    assert a_avr == pytest.approx(0.75, rel=1e-15)
    assert m["layers"] == 3 and m["seeds"] == 3
    assert (m["noise_model"], m["strength"], m["strength_text"]) == ("gaussian-snr", 10.0, "SNR 10 (10% noise)")
    assert m["top1_a_avr"] == pytest.approx(a_avr, rel=1e-12)
    assert m["top1_degradation_pct"] == pytest.approx(25.0, rel=1e-12)
    per_seed = [statistics.mean(M_NORM[layer][s] for layer in (0, 1, 2)) for s in range(3)]
    expected_ci = T_975_2 * statistics.stdev(per_seed) / math.sqrt(3)
    # per-seed A_avr = 0.8, 0.78333, 0.66667: stdev 0.072648, half-width 4.3027 * 0.072648 / sqrt(3)
    assert expected_ci == pytest.approx(0.180468, abs=5e-7)
    assert m["top1_a_avr_ci_half"] == pytest.approx(expected_ci, rel=1e-9)
    assert m["top5_a_avr"] == pytest.approx(0.95, rel=1e-12)
    assert m["top5_degradation_pct"] == pytest.approx(5.0, rel=1e-9)
    assert m["top5_a_avr_ci_half"] == pytest.approx(0.0, abs=1e-12)
    m2 = out.row(1, named=True)
    # A_0 = mean(0.8, 0.6) = 0.7, A_1 = 0.5 (seed 0 only) -> A_avr = 0.6; one complete seed -> no CI.
    assert m2["layers"] == 2 and m2["seeds"] == 1
    assert m2["top1_a_avr"] == pytest.approx(0.6, rel=1e-12)
    assert m2["top1_a_avr_ci_half"] is None
    # a_0 kept so tables can clip A_avr's interval at its largest possible value 100 / a_0 (m: 90%, m2: 50%)
    assert (m["top1_base"], m2["top1_base"]) == (90.0, 50.0)
    from onnxnoise.report.console import a_avr_upper, format_interval
    assert a_avr_upper(m, "top1") == pytest.approx(100 / 90)
    assert format_interval(0.9435, 0.7290, 4, upper=a_avr_upper(m, "top1")) == "0.9435 [0.2145, 1.1111]"


def _two_models() -> pl.DataFrame:
    """Model m under gaussian-snr (more noise = lower SNR) and test-drift (more noise = higher t).

    Only gaussian-snr has a baseline row: drift trials must still be normalized by it
    (same model file, dataset, preprocessing; eq. 2 ignores the noise settings).
    """
    drift = json.dumps({"bn_variance": "keep", "keep_zeros": True, "params": {"nu": 0.1}}, sort_keys=True)
    rows = [_row("m", "baseline", None, None, None, 800)]
    for i, snr in enumerate((2.5, 100.0, 10.0)):  # stored out of order on purpose
        rows += [_row("m", "all", None, snr, s, 700 - 100 * i + 10 * s) for s in (0, 1)]
    for i, t in enumerate((100.0, 1.0, 10.0)):
        rows += [_row("m", "all", None, t, s, 600 - 100 * i - 20 * s, noise_model="test-drift", noise=drift)
                 for s in (0, 1)]
    for t in (100.0, 1.0):
        rows += [_row("m", "per-layer", layer, t, 0, 400 + 100 * layer + int(t), noise_model="test-drift",
                      noise=drift) for layer in (0, 1)]
    return _frame(rows)


def test_summary_order_and_text_follow_each_noise_models_direction():
    summary = summarize_trials(_two_models())
    order = [(r["noise_model"], r["mode"], r["strength"]) for r in summary.iter_rows(named=True)]
    assert order == [
        ("gaussian-snr", "baseline", None),
        ("gaussian-snr", "all", 100.0), ("gaussian-snr", "all", 10.0), ("gaussian-snr", "all", 2.5),
        ("test-drift", "all", 1.0), ("test-drift", "all", 10.0), ("test-drift", "all", 100.0),
        ("test-drift", "per-layer", 1.0), ("test-drift", "per-layer", 1.0),
        ("test-drift", "per-layer", 100.0), ("test-drift", "per-layer", 100.0),
    ]
    assert summary["layer_index"].to_list()[-4:] == [0, 1, 0, 1]
    texts = summary.filter(pl.col("mode") == "all")["strength_text"].to_list()
    assert texts[:3] == ["SNR 100 (1% noise)", "SNR 10 (10% noise)", "SNR 2.5 (40% noise)"]
    assert texts[3:] == ["time (s) 1", "time (s) 10", "time (s) 100"]
    # drift t = 10: 400 and 380 of 1000 correct -> 40 %, 38 %; normalized by the gaussian-snr baseline (80 %)
    row = summary.filter((pl.col("noise_model") == "test-drift") & (pl.col("strength") == 10.0)
                         & (pl.col("mode") == "all")).row(0, named=True)
    assert row["top1_acc_mean"] == pytest.approx(39.0, rel=1e-12)
    assert row["top1_norm_mean"] == pytest.approx(39.0 / 80.0, rel=1e-12)
    # two seeds: s = sqrt(2), half-width t_{0.975,1} * s / sqrt(2) = t_{0.975,1} (12.706 in printed tables)
    assert row["top1_acc_ci_half"] == pytest.approx(T_975_1, rel=1e-9)
    # sorting is idempotent and independent of the input order
    assert sort_by_noise(summary.reverse()).equals(summary)


def test_a_avr_per_noise_model_ordered_by_noise():
    out = average_normalized_accuracy(_two_models())
    assert out["noise_model"].to_list() == ["test-drift", "test-drift"]
    assert out["strength"].to_list() == [1.0, 100.0]
    assert out["strength_text"].to_list() == ["time (s) 1", "time (s) 100"]
    # t = 1: layers 0, 1 -> 401, 501 correct -> A_i = 0.50125, 0.62625 (a_0 = 80 %); A_avr = 0.56375
    assert out["top1_a_avr"][0] == pytest.approx((40.1 / 80 + 50.1 / 80) / 2, rel=1e-12)
    assert out["top1_degradation_pct"][0] == pytest.approx(100 * (1 - 0.56375), rel=1e-9)
    assert out["seeds"].to_list() == [1, 1] and out["top1_a_avr_ci_half"].to_list() == [None, None]


def test_unregistered_noise_model_is_shown_generically():
    frame = _frame([_row("m", "baseline", None, None, None, 900, noise_model="not-installed-here"),
                    _row("m", "all", None, 3.0, 0, 800, noise_model="not-installed-here"),
                    _row("m", "all", None, 0.5, 0, 850, noise_model="not-installed-here")])
    summary = summarize_trials(frame)
    assert summary["strength_text"].to_list() == ["clean", "strength 0.5", "strength 3"]


def test_t_half_width_against_table_and_scipy():
    assert sps.t.ppf(0.975, 2) == pytest.approx(4.303, abs=5e-4)  # printed t tables
    assert float(t_half_width(2.0, 3)) == pytest.approx(T_975_2 * 2.0 / math.sqrt(3), rel=1e-12)
    assert float(t_half_width(1.0, 2, level=0.9)) == pytest.approx(6.313751514675 / math.sqrt(2), rel=1e-9)
    assert np.isnan(t_half_width(1.0, 1))
    with pytest.raises(ValueError, match="`level`"):
        t_half_width(1.0, 3, level=95)


@pytest.mark.parametrize(
    ("k", "n", "wilson", "exact"),
    [
        # R. G. Newcombe, Stat. Med. 17 (1998) 857-872, Table II, methods 3 (score) and 5 (exact).
        (81, 263, (0.2553, 0.3662), (0.2527, 0.3676)),
        (15, 148, (0.0624, 0.1605), (0.0578, 0.1617)),
        (0, 20, (0.0, 0.1611), (0.0, 0.1684)),
        (1, 29, (0.0061, 0.1718), (0.0009, 0.1776)),
    ],
)
def test_binomial_interval_published_values(k, n, wilson, exact):
    assert binomial_interval(k, n) == pytest.approx(wilson, abs=5e-5)
    assert binomial_interval(k, n, method="clopper-pearson") == pytest.approx(exact, abs=5e-5)
    for ours, theirs in (("wilson", "wilson"), ("clopper-pearson", "exact")):
        ci = sps.binomtest(k, n).proportion_ci(0.95, method=theirs)
        assert binomial_interval(k, n, method=ours) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_binomial_interval_vectorized_and_checked():
    low, high = binomial_interval(np.array([0, 500, 1000]), 1000, 0.9)
    assert low.shape == (3,) and low[0] == 0.0 and high[2] == 1.0
    assert low[1] < 0.5 < high[1]
    with pytest.raises(ValueError, match="`correct`"):
        binomial_interval(5, 4)
    with pytest.raises(ValueError, match="`method`"):
        binomial_interval(1, 4, method="wald")


def test_add_binomial_interval_columns(trials):
    out = add_binomial_interval(trials)
    base = out.filter((pl.col("model") == "m") & (pl.col("mode") == "baseline")).row(0, named=True)
    low, high = binomial_interval(900, 1000)
    assert (base["top1_acc_low"], base["top1_acc_high"]) == pytest.approx((100 * low, 100 * high))
    assert base["top1_acc_low"] < base["top1_acc"] < base["top1_acc_high"]
    failed = out.filter(pl.col("error").is_not_null()).row(0, named=True)
    assert failed["top1_acc_low"] is None and failed["top5_acc_high"] is None


def test_trials_with_another_batch_size_are_not_pooled_as_seeds():
    """Two batch sizes are two measurements: separate rows, each normalized by its own baseline."""
    rows = []
    for batch, base, noisy in ((128, 900, (600, 620)), (64, 880, (500, 540))):
        common = {"model": "m", "model_sha256": "s", "dataset": "d", "dataset_fingerprint": "f", "preprocess": "{}",
                  "label_offset": 0, "batch_size": batch, "provider": "CPUExecutionProvider",
                  "noise_model": "gaussian-snr", "noise": "{}", "images": 1000, "error": None, "layer_index": None}
        rows.append({**common, "mode": "baseline", "strength": None, "seed": None, "top1_correct": base})
        rows += [{**common, "mode": "all", "strength": 5.0, "seed": seed, "top1_correct": c}
                 for seed, c in enumerate(noisy)]
    trials = pl.DataFrame(rows, schema_overrides={"strength": pl.Float64, "seed": pl.Int64, "layer_index": pl.Int64,
                                                  "error": pl.String})
    trials = trials.with_columns((pl.col("top1_correct") / 10.0).alias("top1_acc"),
                                 (pl.col("top1_correct") / 10.0).alias("top5_acc"))
    whole = summarize_trials(trials).filter(pl.col("mode") == "all").sort("batch_size")
    assert whole["seeds"].to_list() == [2, 2]
    assert whole["top1_acc_mean"].to_list() == pytest.approx([52.0, 61.0])
    assert whole["top1_norm_mean"].to_list() == pytest.approx([52.0 / 88.0, 61.0 / 90.0])


def test_clean_row_normalized_accuracy_is_exactly_one():
    """Three baselines of 1 of 1000 images: the float mean of 0.1 % three times is 0.10000000000000002."""
    trials = trial_frame("gaussian-snr", {}, (10.0,), baselines=3, top5_base=1)
    assert pl.Series([0.1] * 3).mean() != 0.1  # the float trap the counts avoid
    summary = summarize_trials(trials)
    base = summary.filter(pl.col("mode") == "baseline").row(0, named=True)
    assert base["top1_norm_mean"] == 1.0 and base["top5_norm_mean"] == 1.0
    noisy = summary.filter(pl.col("mode") == "all").row(0, named=True)
    assert noisy["top1_norm_mean"] == 700 / 900 and noisy["top5_norm_mean"] == 1.0
