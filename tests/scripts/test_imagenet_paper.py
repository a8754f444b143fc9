"""scripts/imagenet_paper.py (issue 13, point 4): run order of its sweeps and the tables beside the paper.

Reads only committed files (experiments/imagenet-paper/*.toml, reports/cifar10-resnet/results.parquet,
reports/imagenet-paper/results.parquet); runs no trial.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import _imagenet_paper_tables as tables  # noqa: E402
import imagenet_paper  # noqa: E402

from tests._checks import needs_committed_reports  # noqa: E402

BN_KEPT = REPO / "reports" / "cifar10-resnet" / "results.parquet"


def test_sweeps_run_whole_model_first_then_per_layer_by_first_seed():
    experiments = [imagenet_paper.load_experiment(imagenet_paper.EXPERIMENTS / f) for f in imagenet_paper.FILES]
    order = [(e.source.stem, name, config.modes[0], config.run.noise.seeds)
             for e, name, config in imagenet_paper.ordered_sweeps(experiments)]
    assert len(order) == 14
    assert [o[2] for o in order[:7]] == ["all"] * 7  # every noise-in-all-layers sweep first
    assert order[7] == ("resnet44-bn-vs-folded", "resnet44-folded", "per-layer", (0, 1, 2))
    assert order[8] == ("resnet44-bn-vs-folded", "resnet44-bn", "per-layer", (0,))
    assert [o[3] for o in order[9:]] == [(0, 1), (0, 1), (1, 2), (2,), (2,)]  # first draws of every model first


@needs_committed_reports
def test_bn_kept_a_avr_reads_the_committed_resnet44_sweep():
    """A_avr per seed over 87 layers equals reports/cifar10-resnet/a_avr.csv (SNR 1: 0.7088 ± 0.0313)."""
    kept = pl.read_parquet(BN_KEPT).rename({"snr": "strength"}).filter(
        (pl.col("model") == "resnet44-bn.onnx") & (pl.col("mode") == "per-layer"))
    per_seed = tables._a_avr_per_seed(kept)
    assert per_seed.height == 18 and set(per_seed["layers"].to_list()) == {87}
    at_1 = per_seed.filter(pl.col("strength") == 1.0)["top1_norm"].to_numpy()
    mean, half = tables._t(at_1)
    assert mean == pytest.approx(0.70882, abs=1e-5) and half == pytest.approx(0.03129, abs=1e-5)
    # The folded side missing: one line says so instead of a table.
    assert tables.bn_question(pl.DataFrame({"error": [], "model": [], "mode": []}, schema={
        "error": pl.String, "model": pl.String, "mode": pl.String}), BN_KEPT)[-2] == "(not measured yet: BN folded)"


@needs_committed_reports
def test_bn_table_has_the_mean_over_snrs_beside_access_2022():
    """With the kept sweep standing in for the folded one both columns read 91.54 ± 1.92 (mean of 6 SNRs)."""
    kept = pl.read_parquet(BN_KEPT).rename({"snr": "strength"}).filter(pl.col("model") == "resnet44-bn.onnx")
    lines = tables.bn_question(kept.with_columns(pl.lit("resnet44-folded.onnx").alias("model")), BN_KEPT)
    row = next(line for line in lines if line.startswith("| mean over the six SNRs"))
    assert [cell.strip() for cell in row.strip("|").split("|")][1:] == ["91.54 ± 1.92", "91.54 ± 1.92"]
    assert "| IEEE Access 2022 (with BN / without BN) | 41.32 | 91.95 |" in lines


@needs_committed_reports
def test_table_iii_rows_from_the_committed_study():
    results = REPO / "reports" / "imagenet-paper" / "results.parquet"
    trials = pl.read_parquet(results).with_columns(pl.col("model").str.replace(r" @ .*$", ""))
    lines = tables.table_iii(trials)
    assert "| ResNet50 (Table III) | 93 | 92 | 89 | 69 | 24 | 0.26 |" in lines
    row = next(line for line in lines if line.startswith("| efficientnet_lite0 | imagenet-val1300 | every weight | top-1"))
    assert row.split(" | ")[4:6] == ["82.38", "81.49 ± 0.96"]  # clean 1071 / 1300; SNR 100 over seeds 0-2
