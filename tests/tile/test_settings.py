"""TileSettings: what is on, its dict, and one-line errors for bad values."""

import pytest

from onnxnoise.tile import TileSettings


def test_default_is_off_and_each_stage_turns_it_on():
    assert not TileSettings().active
    for on in (dict(dac_bits=8), dict(adc_bits=4), dict(read_noise=0.04), dict(tile_rows=256)):
        assert TileSettings(**on).active
    assert not TileSettings(tile_rows=256).needs_calibration
    assert TileSettings(read_noise=0.04).needs_calibration
    assert not TileSettings(dac_bound=3.0).active  # a fixed range alone turns no stage on


@pytest.mark.parametrize("on, measures", [
    (dict(dac_bits=8), True), (dict(dac_bits=8, dac_bound=3.0), False), (dict(read_noise=0.04, dac_bound=3.0), False),
    (dict(adc_bits=8, dac_bound=3.0), True), (dict(adc_bits=8, adc_bound=10.0, dac_bound=3.0), False),
    (dict(adc_bits=8, adc_bound=10.0), True), (dict(tile_rows=256, dac_bound=3.0), False),
])
def test_a_calibration_run_is_needed_unless_every_range_is_fixed(on, measures):
    assert TileSettings(**on).measures is measures


def test_to_dict_lists_every_field():
    d = TileSettings(dac_bits=8, adc_bits=8, read_noise=0.04, tile_rows=512, adc_bound=10).to_dict()
    assert d == {"dac_bits": 8, "adc_bits": 8, "read_noise": 0.04, "tile_rows": 512, "adc_bound": 10.0,
                 "adc_scope": "layer", "calibration": "max", "percentile": 99.99, "calibration_images": 500}
    assert isinstance(d["adc_bound"], float)
    assert TileSettings(dac_bits=8, dac_bound=3).to_dict()["dac_bound"] == 3.0  # only when set (see to_dict)


@pytest.mark.parametrize("bad, word", [
    (dict(dac_bits=1), "dac_bits"), (dict(adc_bits=25), "adc_bits"), (dict(dac_bits=8.0), "dac_bits"),
    (dict(read_noise=-0.1), "read_noise"), (dict(read_noise=float("inf")), "read_noise"),
    (dict(adc_bound=float("nan")), "adc_bound"), (dict(tile_rows=-1), "tile_rows"),
    (dict(adc_scope="row"), "adc_scope"), (dict(calibration="mean"), "calibration"),
    (dict(percentile=0), "percentile"), (dict(percentile=100.5), "percentile"),
    (dict(calibration_images=0), "calibration_images"), (dict(dac_bound=-3.0), "dac_bound"),
    (dict(dac_bound=float("inf")), "dac_bound"), (dict(dac_bound="3"), "dac_bound"),
])
def test_bad_values_are_one_line_errors(bad, word):
    with pytest.raises(ValueError) as info:
        TileSettings(**bad)
    assert str(info.value).startswith(word) and "\n" not in str(info.value)
