"""The blame table: per-layer drops with their intervals (against scipy), ranks, flags, typed layer names."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from scipy import stats

from onnxnoise.report.blame import (BN_COLLAPSE, blame_table, layer_drops, layer_flags, paired_image_half_width,
                                    worst_strength)
from onnxnoise.report.layer_facts import FACT_SCHEMA
from onnxnoise.report.stats import summarize_trials
from tests._frames import layer_frame


def _t_half(values) -> float:
    low, high = stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
    return (high - low) / 2


def test_paired_image_half_width_is_the_one_sample_t_interval_of_the_per_image_differences():
    lost, gained, images = 37, 12, 500
    x = np.array([1] * lost + [-1] * gained + [0] * (images - lost - gained), dtype=float)
    assert 100 * x.mean() == pytest.approx(100 * (lost - gained) / images)
    assert paired_image_half_width(lost, gained, images) == pytest.approx(100 * _t_half(x), rel=1e-9)
    assert paired_image_half_width(0, 0, 100) == 0.0
    assert np.isnan(paired_image_half_width(1, 0, 1))
    both = paired_image_half_width(np.array([37, 0]), np.array([12, 0]), np.array([500, 100]))
    assert both[0] == pytest.approx(100 * _t_half(x)) and both[1] == 0.0


def test_layer_drops_t_over_draws_and_paired_images_for_one_draw():
    frame = layer_frame({(10.0, 0): [850, 870, 800], (10.0, 1): [890]}, gained=5)
    drops = layer_drops(frame).sort("layer_index")
    d0 = np.array([90 - 85.0, 90 - 87.0, 90 - 80.0])
    first, second = drops.row(0, named=True), drops.row(1, named=True)
    assert first["drop_mean"] == pytest.approx(d0.mean()) and first["draws"] == 3
    assert first["drop_ci_half"] == pytest.approx(_t_half(d0)) and first["interval"] == "draws"
    assert first["layer_name"] == "conv0" and first["top1_base"] == pytest.approx(90.0)
    # one draw: 15 lost, 5 gained of 1000 images
    x = np.array([1] * 15 + [-1] * 5 + [0] * 980, dtype=float)
    assert second["drop_mean"] == pytest.approx(1.0) and second["interval"] == "images"
    assert second["drop_ci_half"] == pytest.approx(100 * _t_half(x))


def test_blame_table_ranks_by_drop_with_facts_and_flags():
    per_layer = {(5.0, 0): [880, 870], (5.0, 1): [700, 720], (5.0, 2): [890, 895],
                 (10.0, 0): [895, 890], (10.0, 1): [850, 860], (10.0, 2): [900, 900]}
    counters = {(5.0, 1): {"bn_variance_changed": 3, "nan_count": 4}}
    frame = layer_frame(per_layer, names={0: "conv1", 1: "bn1", 2: "fc"}, counters=counters)
    frame = frame.with_columns(pl.when((pl.col("layer_index") == 1) & (pl.col("strength") == 5.0) & (pl.col("seed") == 0))
                               .then(100).otherwise(pl.col("top1_correct")).alias("top1_correct"))
    frame = frame.with_columns((100.0 * pl.col("top1_correct") / pl.col("images")).alias("top1_acc"))
    facts = pl.DataFrame({"layer_index": [0, 1, 2], "layer_name": ["conv1", "bn1", "fc"],
                          "op_type": ["Conv", "BatchNormalization", "Gemm"], "parameters": [300, 100, 600],
                          "params_share": [0.3, 0.1, 0.6], "channel_std_ratio": [40.0, None, 1.5],
                          "narrow_snr_fraction": [0.05, None, 0.9], "narrow_channels": [2, None, 0],
                          "channels": [16, None, 10], "model_sha256": ["sha-net"] * 3},
                         schema={**FACT_SCHEMA, "model_sha256": pl.String})
    summary = summarize_trials(frame, chance=10.0)
    blame = blame_table(frame, summary, facts)
    at5 = blame.filter(pl.col("strength") == 5.0)
    assert at5["layer_name"].to_list() == ["bn1", "conv1", "fc"] and at5["rank"].to_list() == [1, 2, 3]
    assert at5["drop_mean"].to_list() == pytest.approx([(80 + 18) / 2, 2.5, 0.75])
    assert blame.schema["layers"] == pl.List(pl.String) and blame.schema["flags"] == pl.List(pl.String)
    bn = at5.row(0, named=True)
    assert bn["layers"] == ["bn1"] and bn["op_type"] == "BatchNormalization" and bn["params_share"] == 0.1
    # seed 0 at 10% top-1 (chance) collapsed; BN variances were fixed: named BatchNorm-variance collapse
    assert bn["flags"] == ["BN variances fixed: 6 in 2 draws", "NaN logits: 8 images in 2 draws", f"{BN_COLLAPSE} 1/2"]
    conv = at5.row(1, named=True)
    assert conv["flags"] == ["2/16 channels below 0.25x SNR (min SNR 0.25)"]
    assert at5.row(2, named=True)["flags"] == []
    # SNR 5 is the most noise of gaussian-snr: worst_strength keeps its rows
    assert worst_strength(blame)["strength"].unique().to_list() == [5.0]
    assert blame["strength"].to_list() == [10.0] * 3 + [5.0] * 3  # least noise first, as summaries


def test_layer_flags_without_bn_names_plain_collapse_and_kept_variances():
    row = {"collapsed": 2, "draws": 3, "bn_variance_changed": 0, "nan_count": 0, "op_type": "Conv"}
    assert layer_flags(row) == ["collapsed 2/3"]
    kept = {**row, "bn_variance_changed": 5, "noise": json.dumps({"bn_variance": "keep"})}
    assert layer_flags(kept) == ["BN variances left negative: 5 in 3 draws", f"{BN_COLLAPSE} 2/3"]


def test_blame_table_is_empty_without_per_layer_trials():
    frame = layer_frame({}, whole={10.0: [800, 810]})
    assert blame_table(frame, summarize_trials(frame)).is_empty()


def test_layer_flags_count_one_draw_and_one_image_in_the_singular():
    """fresh22 finding 14: a 1-seed sweep's report said "BN variances fixed: 2 in 1 draws"."""
    row = {"bn_variance_changed": 2, "nan_count": 1, "draws": 1, "collapsed": 0, "noise": "{}"}
    assert layer_flags(row) == ["BN variances fixed: 2 in 1 draw", "NaN logits: 1 image in 1 draw"]
    assert layer_flags({**row, "nan_count": 3, "draws": 2})[1] == "NaN logits: 3 images in 2 draws"
