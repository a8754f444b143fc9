"""report/console.py: the one console summary table, the A_avr table, the bench caption, intervals and labels."""

from __future__ import annotations

import polars as pl
import pytest

from onnxnoise.report.console import a_avr_table, bench_caption, summary_table
from onnxnoise.report.stats import average_normalized_accuracy, summarize_trials
from onnxnoise.report.strength import strength_header

from tests._checks import console_text as _text
from tests._frames import DRIFT, GAUSS, seeded_trial_frame
import tests._noise_models  # noqa: F401  (registers test-drift and test-db)


def _lines(text: str) -> list[list[str]]:
    """Table body rows as lists of stripped cells (rich's box characters split them)."""
    rows = []
    for line in text.splitlines():
        if "│" in line or "┃" in line:
            rows.append([c.strip() for c in line.replace("┃", "│").split("│")[1:-1]])
    return rows


def test_summary_table_one_noise_model():
    summary = summarize_trials(seeded_trial_frame(clipped=3))
    text = _text(summary_table(summary, title="net on d"))
    rows = _lines(text)
    # One model, one noise model: no model or noise-model column (the title names the model).
    assert rows[0] == ["SNR", "seeds", "top-1 %", "top-5 %", "top-1 a/a0", "NaN", "clipped"]
    # clean first, then increasing noise; ± is the t half-width over 2 seeds:
    # t_{0.975,1} * s / sqrt(2) with s = sqrt(2) % -> 12.71
    assert rows[1] == ["clean", "1", "90.00", "99.00", "1.0000", "0", "0"]
    assert rows[2] == ["SNR 100 (1% noise)", "2", "71.00 ± 12.71", "98.00 ± 0.00",
                       "0.7889 ± 0.1412", "0", "6"]  # clipped: 3 per trial, summed over 2 seeds
    assert rows[3][0] == "SNR 10 (10% noise)" and rows[3][2] == "61.00 ± 12.71"
    assert len(rows) == 4  # per-layer rows are not in this table
    assert "BN var" not in text and "overflow" not in text and "failed" not in text  # all zero: no column


def test_summary_table_flags_failed_trials():
    trials = seeded_trial_frame().with_columns(
        pl.when((pl.col("mode") == "all") & (pl.col("seed") == 1) & (pl.col("strength") == 10.0))
        .then(pl.lit("SessionError: boom")).otherwise(pl.col("error")).alias("error"))
    rows = _lines(_text(summary_table(summarize_trials(trials))))
    assert rows[0][:4] == ["SNR", "seeds", "failed", "top-1 %"]
    assert [r[1:3] for r in rows[1:]] == [["1", "0"], ["2", "0"], ["1", "1"]]


def test_summary_table_several_noise_models_and_a_avr_table():
    trials = pl.concat([seeded_trial_frame(), seeded_trial_frame("test-drift", DRIFT, (1.0, 60.0))])
    summary = summarize_trials(trials)
    rows = _lines(_text(summary_table(summary)))
    assert rows[0][:2] == ["noise model", "strength"]
    assert [r[1] for r in rows[1:]] == ["clean", "SNR 100 (1% noise)", "SNR 10 (10% noise)",
                                        "clean", "time (s) 1", "time (s) 60"]
    assert "clipped" not in rows[0]
    a_avr = average_normalized_accuracy(trials)
    rows = _lines(_text(a_avr_table(a_avr)))
    assert rows[0][:3] == ["model", "noise model", "strength"]
    # SNR 100 (i = 1): layers 0, 1 -> 71 %, 76 % of a_0 = 90 % -> A_avr = 0.8167, degradation 18.33 %
    assert rows[1][2:7] == ["SNR 100 (1% noise)", "2", "2", "0.8167 ± 0.0000", "18.33"]
    assert [r[2] for r in rows[1:]] == ["SNR 100 (1% noise)", "SNR 10 (10% noise)", "time (s) 1", "time (s) 60"]
    assert strength_header(a_avr.filter(pl.col("noise_model") == "test-drift")) == "time (s)"


META = {"model": "net.onnx", "layers_noised": 2, "layers_total": 3, "params_noised": 1234, "dataset": "d",
        "images": 1000, "preprocess": {"preset": "raw", "scale": 1 / 255, "mean": [0], "std": [1], "channels": 1},
        "seeds": 3, "provider": "CPUExecutionProvider"}


def test_bench_caption_describes_the_noise_model():
    text = bench_caption({**META, "noise_model": "gaussian-snr",
                          "noise": {"params": {}, "bn_variance": "clamp", "keep_zeros": True},
                          "bn_variance_changed": 4}).plain
    assert "noise: additive Gaussian, sigma = std(w)/SNR per tensor (paper eq. 1), 3 seed(s)" in text
    assert "BN variance policy clamp (4 negative variances fixed)" in text
    assert "exact zeros kept at zero" in text
    text = bench_caption({**META, "noise_model": "test-drift",
                          "noise": {"params": {"nu": 0.1}, "bn_variance": "keep", "keep_zeros": False}}).plain
    assert "noise: test-drift (nu=0.1), 3 seed(s), BN variance policy keep;" in text
    assert "Gaussian" not in text and "exact zeros" not in text


def test_bench_caption_gives_the_providers_node_share():
    noise = {"params": {}, "bn_variance": "clamp", "keep_zeros": False}
    shared = {"provider": "CPUExecutionProvider", "nodes": 40, "total": 45, "share": 0.888889,
              "by_provider": {"CPUExecutionProvider": 40, "OtherExecutionProvider": 5}}
    text = " ".join(bench_caption({**META, "noise_model": "gaussian-snr", "noise": noise,
                                   "provider_nodes": shared}).plain.split())
    assert "execution provider CPUExecutionProvider (runs 40 of 45 nodes)" in text
    text = bench_caption({**META, "noise_model": "gaussian-snr", "noise": noise}).plain
    assert "runs" not in text and "nodes)" not in text


@pytest.mark.parametrize("model", ["gaussian-snr", "test-drift"])
def test_single_seed_has_no_interval(model):
    trials = seeded_trial_frame(model, GAUSS if model == "gaussian-snr" else DRIFT, (1.0,)).filter(
        pl.col("seed").is_null() | (pl.col("seed") == 0))
    rows = _lines(_text(summary_table(summarize_trials(trials))))
    assert rows[2][2] == "60.00"  # no ± with one seed


def test_interval_beyond_0_100_shows_clipped_bounds():
    # Two seeds at 30.2% and 90.3% top-1 (the demo at SNR 10): the t interval (t = 12.706) leaves 0..100.
    trials = seeded_trial_frame(strengths=(10.0,)).with_columns(
        pl.when((pl.col("mode") == "all") & (pl.col("seed") == 0)).then(302)
        .when((pl.col("mode") == "all") & (pl.col("seed") == 1)).then(903)
        .otherwise(pl.col("top1_correct")).alias("top1_correct"))
    trials = trials.with_columns((100.0 * pl.col("top1_correct") / pl.col("images")).alias("top1_acc"))
    rows = _lines(_text(summary_table(summarize_trials(trials))))
    assert rows[2][2] == "60.25 [0.00, 100.00]"
    assert rows[1][2] == "90.00"  # the baseline: one trial, no interval


def test_summary_table_names_the_noise_settings_that_differ():
    """Two sweeps of one model with different parameters (pcm compensation) get a settings column."""
    none = '{"bn_variance":"clamp","keep_zeros":false,"params":{"compensation":"none"}}'
    glob = '{"bn_variance":"clamp","keep_zeros":false,"params":{"compensation":"global"}}'
    trials = pl.concat([seeded_trial_frame("pcm", none, (1.0, 3600.0)), seeded_trial_frame("pcm", glob, (1.0, 3600.0))])
    rows = _lines(_text(summary_table(summarize_trials(trials))))
    assert rows[0][:2] == ["noise settings", "time after programming t_inf"]  # cells read `t = 1 s`, not seconds
    assert sorted({r[0] for r in rows[1:]}) == ["compensation=global", "compensation=none"]


def test_one_model_on_two_datasets_is_two_labelled_rows_not_duplicates():
    from onnxnoise.report.console import lead_columns

    rows = pl.DataFrame({"model": ["net.onnx", "net.onnx"], "dataset": ["imagenet-val1300", "imagenette-val500"],
                         "batch_size": [64, 64]})
    assert lead_columns(rows) == (["dataset"], [["imagenet-val1300"], ["imagenette-val500"]])
    assert lead_columns(rows.head(1)) == ([], [[]])


def test_the_settings_cell_is_key_value_text_not_json():
    """Two tile-stage runs told apart by their ``settings`` JSON: cells ``adc_bits=4`` and
    ``adc_bits=6, calibration=percentile, ...`` (they wrap between settings in a narrow column), NULL ``default``."""
    from onnxnoise.report.console import setting_columns

    rows = pl.DataFrame({"settings": ['{"adc_bits":4}', '{"adc_bits":6,"calibration":"percentile","read_noise":0.04}',
                                      None]})
    assert setting_columns(rows) == (["settings"], [["adc_bits=4"], ["adc_bits=6, calibration=percentile, "
                                                                       "read_noise=0.04"], ["default"]])


def test_caption_says_which_preprocessing_values_came_from_where():
    meta = {"model": "m.onnx", "layers_noised": 1, "layers_total": 1, "params_noised": 10, "dataset": "d",
            "images": 10, "preprocess": {"preset": "cifar", "scale": 1 / 255, "mean": [0.5], "std": [0.25],
                                         "channel_order": "RGB"},
            "preprocess_source": "model metadata", "preprocess_overrides": ["mean", "std"],
            "noise_model": "gaussian-snr", "noise": {"params": {}}, "seeds": [0]}
    text = " ".join(bench_caption(meta).plain.split())
    assert "preprocessing from the model's metadata, overridden: mean, std (no resize, RGB," in text
    meta.update(preprocess_source="--preprocess", preprocess_overrides=[])
    assert "preprocessing preset cifar (--preprocess) (no resize" in " ".join(bench_caption(meta).plain.split())


def test_an_a_over_a0_interval_is_clipped_at_its_largest_possible_value():
    """fresh22b finding 1: with a clean top-1 of 93.2% a/a0 is at most 100 / 93.2 = 1.0730; an interval past it is
    shown clipped, as the legend says (it was [0.0000, 1.6833])."""
    from onnxnoise.report.console import format_interval, norm_upper

    upper = norm_upper(0.7554, 70.40)  # a/a0 0.7554 at top-1 70.40%: a_0 = 93.2%
    assert upper == pytest.approx(100 / 93.2, rel=1e-3)
    assert format_interval(0.7554, 0.9279, 4, upper=upper) == "0.7554 [0.0000, 1.0730]"
    assert format_interval(0.98, 0.01, 4, upper=upper) == "0.9800 ± 0.0100"
    assert norm_upper(0.0, 0.0) is None and norm_upper(None, 50.0) is None
