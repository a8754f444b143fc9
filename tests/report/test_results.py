"""report/results.py: the results table in timm's columns, from bench and report, and ``report --json``."""

from __future__ import annotations

import json

import polars as pl
import pytest

from onnxnoise.report.results import RESULT_COLUMNS, facts_by_model, result_schema, results_table
from tests._checks import run_cli
from tests._colour import colour_npz

TIMM = ["model", "top1", "top1_err", "top5", "top5_err", "param_count", "img_size", "crop_pct", "interpolation"]


@pytest.mark.parametrize(("shift", "top1"), [(0, 100.0), (1, 0.0)])
def test_bench_writes_the_known_top1_of_the_colour_classifier(colour_onnx, tmp_path, capsys, shift, top1):
    """The colour classifier is right on every image (shift 0) or wrong on every one (labels shifted by 1), clean
    and at SNR 1e6 (its class levels are 20/255 apart; noise of 1e-6 std(w) moves no logit past another)."""
    data = colour_npz(tmp_path / "colour.npz", shift=shift)
    code, _, err = run_cli(capsys, "bench", colour_onnx, "--data", data, "--preprocess", "raw", "--snr", "1000000",
                           "--seeds", "2", "--out", tmp_path / "out")
    assert code == 0, err
    table = pl.read_parquet(tmp_path / "out" / "results.parquet")
    assert table.columns[:9] == TIMM and table.schema == result_schema()
    assert table["noise"].to_list() == ["clean", "gaussian-snr"] and table["strength"].to_list() == [None, 1e6]
    assert table["top1"].to_list() == [top1, top1] and table["top1_err"].to_list() == [100.0 - top1] * 2
    assert table["seeds"].to_list() == [1, 2] and table["top1_ci_half"].to_list() == [None, 0.0]
    assert table["images"].to_list() == [60, 60] and table["ci_level"].to_list() == [0.95, 0.95]
    # fc: a 12 x 3 weight and 12 biases; 8 x 8 static input, no crop in the raw preset
    assert table["param_count"].to_list() == [48 / 1e6] * 2 and table["img_size"].to_list() == [8, 8]
    assert table["crop_pct"].to_list() == [None, None]
    csv = pl.read_csv(tmp_path / "out" / "results.csv")
    assert csv.columns == list(RESULT_COLUMNS) and csv["top1_err"].to_list() == [100.0 - top1] * 2


def test_img_size_is_the_crop_then_the_resize_then_the_square_input():
    summary = pl.DataFrame({
        "model": ["a", "b", "c"], "model_sha256": ["A", "B", "C"], "dataset": ["d"] * 3, "mode": ["all"] * 3,
        "preprocess": ['{"crop":224,"crop_pct":0.875,"interpolation":"bicubic","resize":256}', '{"resize":32}', "{}"],
        "noise_model": ["gaussian-snr"] * 3, "noise": ['{"params":{}}'] * 3, "strength": [10.0] * 3,
        "strength_text": ["SNR 10"] * 3, "top1_acc_mean": [75.12344, 50.0, None], "top5_acc_mean": [92.0, 80.0, None],
        "top1_acc_ci_half": [0.5, None, None], "top5_acc_ci_half": [0.1, None, None], "ci_level": [0.95] * 3,
        "seeds": [3, 1, 0], "images": [1000, 1000, None]})
    facts = facts_by_model([{"model_sha256": "A", "params_total": 25_557_032}, {"model_sha256": "C"},
                            {"model_sha256": "C", "input_size": [28, 28], "params_total": 10}])
    table = results_table(summary, facts)
    assert table["img_size"].to_list() == [224, 32, 28]
    assert table["top1"].to_list() == [75.1234, 50.0, None] and table["top1_err"].to_list() == [24.8766, 50.0, None]
    assert table["param_count"].to_list() == [25.557032, None, 1e-05]
    assert table.row(0, named=True)["crop_pct"] == 0.875 and table.row(0, named=True)["interpolation"] == "bicubic"


def test_report_json_prints_the_results_and_files(colour_onnx, tmp_path, capsys):
    data = colour_npz(tmp_path / "colour.npz")
    code, _, err = run_cli(capsys, "sweep", colour_onnx, "--data", data, "--preprocess", "raw", "--snr", "1000000",
                           "--seeds", "2", "--out", tmp_path / "run")
    assert code == 0, err
    code, out, err = run_cli(capsys, "report", tmp_path / "run", "--json")
    assert code == 0, err
    record = json.loads(out)  # stdout holds the JSON alone; the tables went to stderr
    assert record["tool"] == "onnxnoise report" and record["out_dir"] == str(tmp_path / "run")
    assert [(r["noise"], r["top1"], r["top1_err"], r["img_size"]) for r in record["results"]] == [
        ("clean", 100.0, 0.0, 8), ("gaussian-snr", 100.0, 0.0, 8)]
    assert {"results.parquet", "results.csv", "trials.parquet", "summary.csv", "report.md"} <= set(record["files"])
    assert record["a_avr"] == [] and record["warnings"] == []
    assert pl.read_parquet(tmp_path / "run" / "trials.parquet").height == 3


def test_crop_pct_is_the_presets_or_crop_over_resize():
    """fresh-final finding: tf-lite preprocessing (resize 256, crop 224, no crop_pct of its own) left crop_pct
    null, which outputs.md reads as "no crop"; timm's value for it is 224 / 256 = 0.875."""
    pre = ['{"crop":224,"resize":256}', '{"crop":[224,224],"resize":[256,256]}', '{"crop":200,"crop_pct":0.9}',
           '{"resize":32}', '{"crop":[224,200],"resize":256}']
    summary = pl.DataFrame({
        "model": list("abcde"), "model_sha256": list("ABCDE"), "dataset": ["d"] * 5, "mode": ["all"] * 5,
        "preprocess": pre, "noise_model": ["gaussian-snr"] * 5, "noise": ['{"params":{}}'] * 5,
        "strength": [10.0] * 5, "strength_text": ["SNR 10"] * 5, "top1_acc_mean": [50.0] * 5,
        "top5_acc_mean": [80.0] * 5, "top1_acc_ci_half": [None] * 5, "top5_acc_ci_half": [None] * 5,
        "ci_level": [0.95] * 5, "seeds": [1] * 5, "images": [100] * 5})
    assert results_table(summary, {})["crop_pct"].to_list() == [0.875, 0.875, 0.9, None, None]
