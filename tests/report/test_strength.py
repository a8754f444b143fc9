"""report/strength.py: strength headers match the cells beneath them."""

from __future__ import annotations

from onnxnoise.report.console import summary_table
from onnxnoise.report.stats import summarize_trials
from onnxnoise.report.strength import strength_header

from tests._checks import console_text as _text
from tests._frames import trial_frame


def test_strength_headers_match_their_cells():
    summary = summarize_trials(trial_frame("pcm", {"compensation": "global"}, (86400.0,)))
    assert strength_header(summary) == "time after programming t_inf"
    text = _text(summary_table(summary))
    assert "time after programming t_inf" in text and "t = 1 d" in text and "time (s)" not in text
    stuck = summarize_trials(trial_frame("stuck-at", {}, (0.01,)))
    assert strength_header(stuck) == "device fault rate p"
    assert "p = 1% faulty devices" in _text(summary_table(stuck))
