"""scripts/parity/crosssim_alpha_table.py: parity table b's cells from a report's results.parquet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "parity" / "crosssim_alpha_table.py"


def _row(mode: str, top1: float, *, error: str = "independent", alpha: float | None = None, seed: int | None = None):
    noise = json.dumps({"params": {"error": error}}) if mode == "all" else json.dumps({"params": {}})
    return {"model": "crosssim-resnet14.onnx", "mode": mode, "noise_model": "crosssim" if mode == "all" else "none",
            "noise": noise, "strength": alpha, "seed": seed, "top1_acc": top1}


def test_cells_hold_mean_t_interval_a_over_a0_and_collapsed_draws(tmp_path):
    rows = [_row("baseline", 80.0),
            _row("all", 80.0, alpha=0.02, seed=0), _row("all", 60.0, alpha=0.02, seed=1),
            _row("all", 10.0, alpha=0.1, seed=0), _row("all", 12.0, alpha=0.1, seed=1),
            _row("all", 70.0, error="proportional", alpha=0.02, seed=0)]
    path = tmp_path / "results.parquet"
    pl.DataFrame(rows).write_parquet(path)
    done = subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "| model (clean top-1 %) | error | draws | alpha 0.02 | alpha 0.1 |"
    # 80, 60: mean 70, sample std 14.142, t(0.975, 1) = 12.706 -> half-width 12.706 * 14.142 / sqrt(2) = 127.06
    # 10, 12: mean 11 = 0.1375 of 80, one draw at or below 11% counts as at chance
    assert lines[2] == ("| crosssim-resnet14.onnx (80.00) | independent | 2 | 70.00 ± 127.06 (0.875) "
                        "| 11.00 ± 12.71 (0.138, 1/2 at chance) |")
    # one draw: no interval; a strength not run yet: '-'
    assert lines[3] == "| crosssim-resnet14.onnx (80.00) | proportional | 1 | 70.00 ± 0.00 (0.875) | - |"
