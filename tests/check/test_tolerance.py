"""onnxnoise/check/tolerance.py: the range to search after a search in which nothing passed (the search itself
runs on built models in tests/cli/test_check_command.py)."""

from __future__ import annotations

import pytest

from onnxnoise.check.tolerance import SearchResult, quieter_range
from onnxnoise.noise import get_noise_model


def _none_passes(name: str, low: float, high: float, *, log: bool = True) -> tuple[SearchResult, object]:
    model = get_noise_model(name)()
    return SearchResult(None, (None, None), low, high, model.more_noise_when, log, 0.05), model


@pytest.mark.parametrize(("name", "low", "high", "log", "expected"), [
    ("gaussian-snr", 10.0, 100.0, True, (100.0, 1000.0)),       # quiet end SNR 100: 100^2 / 10
    ("pcm", 86_400.0, 864_000.0, True, (8_640.0, 86_400.0)),   # quiet end 1 d: 1 d^2 / 10 d = 2.4 h
    ("conductance-levels", 2.0, 16.0, True, (16.0, 128.0)),    # more levels are quieter: 16^2 / 2, whole
    ("gaussian-global-db", 10.0, 20.0, False, (20.0, 30.0)),   # dB: linear, 2 x 20 - 10
    ("multiplicative", 0.001, 0.5, True, (2e-06, 0.001)),      # 0.001^2 / 0.5
    ("stuck-at", 0.0, 0.1, False, None),                        # 2 x 0 - 0.1 < 0: no fault rate is quieter than 0
])
def test_the_next_range_is_as_wide_beyond_the_quiet_end(name, low, high, log, expected):
    search, model = _none_passes(name, low, high, log=log)
    assert quieter_range(search, model) == expected


def test_a_search_that_found_a_strength_has_no_next_range():
    search, model = _none_passes("gaussian-snr", 10.0, 100.0)
    search.found, search.bracket = 100.0, (100.0, 10.0)
    assert quieter_range(search, model) is None
