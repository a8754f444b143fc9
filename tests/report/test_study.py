"""report/study.py: report.md headings cite the paper only for its noise; the A_avr footer only with an A_avr table."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from onnxnoise.cli.output import intervals_note
from onnxnoise.report.study import write_report

from tests._checks import run_cli
from tests._frames import trial_frame


ROOT = Path(__file__).resolve().parents[2]


def _runs() -> pl.DataFrame:
    return pl.DataFrame({"model": ["net"], "model_sha256": ["sha"], "versions": ['{"onnxnoise":"x"}'],
                         "config": ['{"layers_total": 2, "params_total": 100}']})


def test_report_headings_cite_the_paper_only_for_its_noise(tmp_path):
    pcm = write_report(trial_frame("pcm", {}, (1.0,), per_layer=True), _runs(), tmp_path / "pcm").markdown.read_text()
    assert "## Noise in all layers (pcm)\n" in pcm and "Table III" not in pcm
    assert "## Noise in one layer at a time: A_avr (pcm; A_avr as in paper eq. 3)\n" in pcm
    gauss = write_report(trial_frame("gaussian-snr", {}, (10.0,)), _runs(), tmp_path / "g").markdown.read_text()
    assert "## Noise in all layers (paper Table III, Fig. 2)\n" in gauss


def test_report_footer_explains_a_avr_only_with_an_a_avr_table(tmp_path, capsys):
    assert "A_avr" not in intervals_note(a_avr=False) and "A_avr = mean over layers" in intervals_note(a_avr=True)
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "sweep", ROOT / "models/demo/fashion_mnist_cnn.onnx", "--data",
                        ROOT / "models/demo/fashion_mnist_test1000.npz", "--limit", "20", "--seeds", "1", "--snr", "10",
                        "--mode", "all", "--device", "cpu", "--out", run)
    assert code == 0, err
    code, out, err = run_cli(capsys, "report", run, "--out", tmp_path / "report")
    assert code == 0, err
    assert "± = 95% Student t interval over seeds" in out and "A_avr" not in out
