"""Layer facts: output-channel stds, their spread and narrow channels, against values computed by hand."""

from __future__ import annotations

import json

import numpy as np
import onnx
import polars as pl
import pytest

from onnxnoise.model import get_initializers, list_layers
from onnxnoise.report.layer_facts import (NARROW_SNR_FRACTION, channel_spread, channel_stds, facts_of_runs,
                                          layer_facts, narrow_note)
from tests._colour import colour_level
from tests._folded import GAIN, folded_colour_model


def test_channel_stds_are_population_stds_over_every_other_axis():
    w = np.zeros((2, 2, 2))
    w[0] = [[1, -1], [1, -1]]  # std 1
    w[1] = [[2, -2], [2, -2]]  # std 2
    assert channel_stds(w, 0) == pytest.approx([1.0, 2.0])
    # axis 1 (ConvTranspose / Gemm transB=0): channel j holds w[:, j, :] = {1,-1,2,-2} for both j
    assert channel_stds(w, 1) == pytest.approx([np.sqrt(2.5), np.sqrt(2.5)])


def test_channel_spread_ratio_narrowest_and_narrow_count():
    w = np.zeros((3, 4))
    w[0] = [1, -1, 1, -1]      # std 1
    w[1] = [2, -2, 2, -2]      # std 2
    w[2] = [0.1, -0.1, 0.1, -0.1]  # std 0.1
    sigma = np.sqrt((4 * 1 + 4 * 4 + 4 * 0.01) / 12)  # mean 0: root mean square of all 12 values
    spread = channel_spread(w, 0)
    assert spread.ratio == pytest.approx(20.0)
    assert spread.narrowest == pytest.approx(0.1 / sigma)
    assert (spread.narrow, spread.channels) == (1, 3)  # 0.1 / 1.29 = 0.077 < 0.25; 1 / 1.29 = 0.77 is not


def test_channel_spread_leaves_out_zero_channels_and_says_nan_for_none():
    w = np.array([[1.0, -1.0], [0.0, 0.0], [3.0, -3.0]])
    spread = channel_spread(w, 0)
    assert spread.ratio == pytest.approx(3.0) and spread.channels == 2
    empty = channel_spread(np.zeros((2, 3)), 0)
    assert np.isnan(empty.ratio) and np.isnan(empty.narrowest) and (empty.narrow, empty.channels) == (0, 0)
    with pytest.raises(ValueError, match="2\\+ dimensions"):
        channel_stds(np.ones(4), 0)


def test_layer_facts_of_the_folded_model():
    model = folded_colour_model()
    facts = layer_facts(list_layers(model), get_initializers(model))
    fold = facts.filter(pl.col("layer_name") == "fold").row(0, named=True)
    t = np.array([colour_level(k) / 255.0 for k in range(12)])
    # channel k holds (2 t_k g_k, 0, 0): std 2 t_k g_k sqrt(2)/3; widest k = 10 (g = 1), narrowest k = 1 (g = GAIN)
    assert fold["channel_std_ratio"] == pytest.approx(t[10] / (t[1] * GAIN), rel=1e-5)
    weight = get_initializers(model)["fold.weight"].astype(np.float64)
    assert fold["narrow_snr_fraction"] == pytest.approx(2 * t[1] * GAIN * np.sqrt(2) / 3 / weight.std(), rel=1e-5)
    stds = 2 * t * np.where(np.arange(12) % 2 == 0, 1.0, GAIN) * np.sqrt(2) / 3
    assert (stds / weight.std() < NARROW_SNR_FRACTION).sum() == 7  # the six odd channels and channel 0 (t = 10/255)
    assert (fold["narrow_channels"], fold["channels"]) == (7, 12)
    assert fold["op_type"] == "Conv" and fold["parameters"] == 36
    assert fold["params_share"] == pytest.approx(36 / facts["parameters"].sum())
    # the Mul's and Add's constants have no output-channel axis: no channel facts
    assert facts.filter(pl.col("layer_name") != "fold")["channel_std_ratio"].null_count() == 2


def test_narrow_note_names_the_effective_snr():
    assert narrow_note(0.5) is None and narrow_note(None) is None and narrow_note(float("nan")) is None
    assert narrow_note(NARROW_SNR_FRACTION) is None
    assert narrow_note(0.08, 2, 16, 5.0, "ratio") == "2/16 channels below 0.25x SNR (min SNR 0.4)"
    assert narrow_note(0.08, 2, 16, 5.0, "dB") == "2/16 channels below 0.25x SNR (min 0.08x)"


def test_facts_of_runs_reads_the_recorded_model_only_when_its_sha256_matches(tmp_path):
    import hashlib
    path = tmp_path / "folded.onnx"
    onnx.save(folded_colour_model(), path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    runs = pl.DataFrame({"model_sha256": [sha, "other"], "config": [json.dumps({"model": str(path)})] * 2})
    facts = facts_of_runs(runs)
    assert facts["model_sha256"].unique().to_list() == [sha] and facts.height == 3
    assert facts_of_runs(runs.filter(pl.col("model_sha256") == "other")).is_empty()
    missing = pl.DataFrame({"model_sha256": [sha], "config": [json.dumps({"model": str(tmp_path / "gone.onnx")})]})
    assert facts_of_runs(missing).is_empty()
