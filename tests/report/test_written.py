"""report/written.py: tables written before the renames read under today's names."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from onnxnoise.errors import StoreError
from onnxnoise.report.written import RENAMED, current_names, read_table, trial_table

REPORTS = Path(__file__).resolve().parents[2] / "reports"


def test_old_interval_names_are_renamed_with_their_level():
    old = pl.DataFrame({"top1_acc_mean": [90.0], "top1_acc_ci": [1.5], "drop_ci": [0.25], "ci": [2.0]})
    new = current_names(old)
    assert new.columns == ["top1_acc_mean", "top1_acc_ci_half", "drop_ci_half", "ci_half", "ci_level"]
    assert new.row(0) == (90.0, 1.5, 0.25, 2.0, 0.95)
    today = pl.DataFrame({"top1_acc_ci_half": [1.0], "ci_level": [0.9]})
    assert current_names(today).equals(today)
    assert RENAMED["top1_a_avr_ci"] == "top1_a_avr_ci_half"


def test_an_old_report_folder_reads_through_the_shim(tmp_path):
    trials = pl.DataFrame({"key": ["k0"], "noise": ['{"params":{}}'], "top1_acc": [91.0]})
    trials.write_parquet(tmp_path / "results.parquet")  # before the rename: the per-trial table
    pl.DataFrame({"top1_acc_ci": [None, 0.5], "mode": ["baseline", "all"]}).write_parquet(tmp_path / "summary.parquet")
    assert trial_table(tmp_path) == tmp_path / "results.parquet"
    assert read_table(trial_table(tmp_path)).equals(trials)
    assert read_table(tmp_path / "summary.parquet")["top1_acc_ci_half"].to_list() == [None, 0.5]
    pl.DataFrame({"model": ["m"], "top1": [91.0]}).write_parquet(tmp_path / "results.parquet")  # today's: timm's
    with pytest.raises(StoreError, match="no trial table"):
        trial_table(tmp_path)


def test_typed_nested_columns_come_back_as_json_text(tmp_path):
    typed = pl.DataFrame({"noise": [{"bn_variance": "clamp", "keep_zeros": False}], "top1_acc_ci_half": [1.0]})
    typed.write_parquet(tmp_path / "trials.parquet")
    back = read_table(trial_table(tmp_path))
    assert back["noise"].to_list() == ['{"bn_variance":"clamp","keep_zeros":false}']


def test_committed_report_tables_read_under_todays_names():
    folder = REPORTS / "cifar10-resnet"
    summary = read_table(folder / "summary.parquet")
    assert {"top1_acc_ci_half", "top5_norm_ci_half", "ci_level"} <= set(summary.columns)
    assert "top1_acc_ci" not in summary.columns and set(summary["ci_level"].to_list()) == {0.95}
    a_avr = read_table(folder / "a_avr.parquet")
    assert {"top1_a_avr_ci_half", "top5_a_avr_ci_half"} <= set(a_avr.columns)
    assert trial_table(folder).name == "results.parquet" and "key" in read_table(trial_table(folder)).columns
