"""report/strength.py: each noise model's strength axis (gaussian special case, generic, dB), and headers that match their cells."""

from __future__ import annotations

from onnxnoise.report.console import summary_table
from onnxnoise.report.stats import summarize_trials
from onnxnoise.report.strength import GAUSSIAN_NOISE_LABEL, noise_axis, strength_axis, strength_header

from tests._checks import console_text as _text
from tests._frames import trial_frame
import tests._noise_models  # noqa: F401  (registers test-drift and test-db)


def test_strength_headers_match_their_cells():
    summary = summarize_trials(trial_frame("pcm", {"compensation": "global"}, (86400.0,)))
    assert strength_header(summary) == "time after programming t_inf"
    text = _text(summary_table(summary))
    assert "time after programming t_inf" in text and "t = 1 d" in text and "time (s)" not in text
    stuck = summarize_trials(trial_frame("stuck-at", {}, (0.01,)))
    assert strength_header(stuck) == "device fault rate p"
    assert "p = 1% faulty devices" in _text(summary_table(stuck))


def test_strength_axis_gaussian_special_case_and_generic():
    assert strength_axis("gaussian-snr", 10.0) == (GAUSSIAN_NOISE_LABEL, 10.0)
    assert strength_axis("gaussian-snr", 2.5) == (GAUSSIAN_NOISE_LABEL, 40.0)
    assert strength_axis("gaussian-snr", None) == (GAUSSIAN_NOISE_LABEL, 0.0)  # the clean baseline at 0 %
    gauss = noise_axis("gaussian-snr")
    assert (gauss.legend(100.0), gauss.tick(100.0), gauss.invert) == ("1% (SNR 100)", "1%", False)
    drift = noise_axis("test-drift")
    assert (drift.label, drift.x(60.0), drift.baseline_x, drift.invert) == ("time (s)", 60.0, None, False)
    assert drift.legend(60.0) == "time (s) 60"
    db = noise_axis("test-db")
    assert (db.label, db.x(20.0), db.invert) == ("SNR (dB)", 20.0, True)  # noise grows to the right
    assert noise_axis("not-installed-here").label == "strength"
