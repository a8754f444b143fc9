"""report/stages.py: the stages in words, clipped fractions from the counters, in summaries and reports."""

from __future__ import annotations

import polars as pl
import pytest

from onnxnoise.report.stages import add_clipped_fractions, clipped_text, stages_line, stages_lines, stages_text
from onnxnoise.store.schema import trial_frame


def test_stages_in_words():
    assert stages_text({}) == "" and stages_line({"calibration_images": 50}, {}) is None
    assert stages_text({"tile_rows": 256}) == "tiles of 256 rows (partial sums added in float, no converters)"
    assert stages_text({"dac_bits": 8, "adc_bits": 6, "adc_scope": "column", "read_noise": 0.04, "tile_rows": 512,
                        "calibration": "percentile", "percentile": 99.9, "calibrated_on": 200}) == (
        "8-bit DAC, 6-bit ADC (per tile and output column), read noise 0.04 x_max*w_max, tiles of 512 rows; "
        "ranges calibrated (99.9th percentile) on the first 200 evaluation images, clean model")
    assert stages_text({"adc_bits": 8, "adc_bound": 10.0}).startswith(
        "8-bit ADC (fixed range +-10 x_max*w_max per tile); ranges calibrated (max) on up to the first 500")
    # aihwkit-pcm-untrained: the bound's unit and its scope (each column's w_max) are said
    assert stages_text({"dac_bits": 8, "adc_bits": 8, "adc_bound": 10.0, "dac_bound": 3.0, "adc_scope": "column"}) == (
        "8-bit DAC, 8-bit ADC (fixed range +-10 x_max*w_max per tile and output column), DAC range fixed +-3; no "
        "range calibrated")
    assert stages_text({"dac_bits": 8, "adc_bits": 8, "dac_bound": 3.0}).startswith(
        "8-bit DAC, 8-bit ADC (one range per tile), DAC range fixed +-3; ranges calibrated (max)")
    assert clipped_text({"dac_clipped": 3, "dac_values": 1000, "adc_clipped": 0, "adc_values": 40}) == (
        "DAC 0.3% of 1,000 inputs, ADC 0% of 40 outputs")
    assert stages_line({"dac_bits": 4}, {"dac_clipped": 1, "dac_values": 8}).endswith("; clipped: DAC 12.5% of 8 "
                                                                                       "inputs")


def _rows() -> pl.DataFrame:
    base = {"mode": "all", "noise_model": "none", "error": None, "images": 10, "top1_correct": 9}
    staged = '{"adc_bits":8,"dac_bits":8}'
    return trial_frame([
        {**base, "mode": "baseline", "settings": staged},
        {**base, "settings": staged, "dac_clipped": 2, "dac_values": 100, "adc_clipped": 1, "adc_values": 50},
        {**base, "settings": staged, "dac_clipped": 4, "dac_values": 100, "adc_clipped": 0, "adc_values": 50},
        {**base, "settings": None},  # a run without stages: no line
    ])


def test_one_line_per_stage_setting_with_the_summed_fractions():
    assert stages_lines(_rows()) == [
        "input/output stages: 8-bit DAC, 8-bit ADC (one range per tile); ranges calibrated (max) on up to the first "
        "500 evaluation images, clean model; clipped: DAC 3% of 200 inputs, ADC 1% of 100 outputs"]


def test_clipped_fractions_of_a_summary():
    summary = pl.DataFrame({"dac_clipped": [None, 6], "dac_values": [0, 200], "adc_clipped": [0, 1],
                            "adc_values": [0, 100]})
    out = add_clipped_fractions(summary)
    assert out["dac_clipped_pct"].to_list() == [None, pytest.approx(3.0)]
    assert out["adc_clipped_pct"].to_list() == [None, pytest.approx(1.0)]
    assert add_clipped_fractions(pl.DataFrame({"x": [1]})).columns == ["x"]
