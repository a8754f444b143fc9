"""The issue's `--noise` spellings: model aliases, one strength inside --noise, stuck-at's p_sa0 / p_sa1."""

from __future__ import annotations

import pytest

from onnxnoise.config import NoiseConfig, RunConfig
from onnxnoise.errors import ConfigError, NoiseConfigError
from onnxnoise.noise_config import check_tile_rows, preset_overrides
from onnxnoise.settings import config_values


@pytest.mark.parametrize(("alias", "model"), [("gaussian", "gaussian-snr"), ("stuck", "stuck-at")])
def test_alias_names_the_registered_model(alias: str, model: str) -> None:
    assert NoiseConfig.from_options(noise=alias).model == model
    assert NoiseConfig(model=alias).model == model


def test_alias_and_name_give_the_same_settings() -> None:
    a = NoiseConfig.from_options(noise="gaussian:scope=channel", snr="10")
    b = NoiseConfig.from_options(noise="gaussian-snr:scope=channel", snr="10")
    assert a.to_dict() == b.to_dict()
    assert a.params["scope"] == "channel"


def test_time_strength_inside_noise() -> None:
    config = NoiseConfig.from_options(noise="pcm:t=1d,compensation=global")
    assert config.strengths == (86400.0,)
    assert config.params["compensation"] == "global"
    assert "t" not in config.params


def test_generic_strength_inside_noise() -> None:
    assert NoiseConfig.from_options(noise="bit-flip:strength=0.001").strengths == (0.001,)
    assert NoiseConfig.from_options(noise="gaussian:snr=5").strengths == (5.0,)


def test_stuck_rates_are_the_rate_with_its_split() -> None:
    by_kind = NoiseConfig.from_options(noise="stuck:p_sa0=0.01,p_sa1=0.001")
    by_rate = NoiseConfig.from_options(noise="stuck-at:sa1_fraction=0.09090909090909091",
                                     flags={"rate": "0.011"})
    assert by_kind.strengths == pytest.approx((0.011,), abs=1e-15)
    assert by_kind.params["sa1_fraction"] == pytest.approx(1 / 11, rel=1e-12)
    assert by_kind.model == by_rate.model == "stuck-at"
    only_sa0 = NoiseConfig.from_options(noise="stuck:p_sa0=0.02")
    assert only_sa0.strengths == (0.02,)
    assert only_sa0.params["sa1_fraction"] == 0.0


def test_strength_inside_and_outside_noise_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^give the pcm strength either inside --noise \(t=\.\.\.\) or as an option"):
        NoiseConfig.from_options(noise="pcm:t=1d", flags={"t": "1h"})


@pytest.mark.parametrize(("spec", "message"), [
    ("stuck:p_sa0=0.01,sa1_fraction=0.5", "give the fault rates either as p_sa0/p_sa1 or as the rate p"),
    ("stuck:p_sa0=0.7,p_sa1=0.6", "p_sa0 + p_sa1 must be at most 1"),
    ("stuck:p_sa0=2", "`p_sa0` must be a number in [0, 1], got 2"),
    ("pcm:t=1d,strength=1h", "pcm: give one strength in --noise, got t, strength"),
])
def test_bad_inline_strengths(spec: str, message: str) -> None:
    with pytest.raises(NoiseConfigError) as info:
        NoiseConfig.from_options(noise=spec)
    assert message in str(info.value)


@pytest.mark.parametrize("noise", ["pcm:mapping=tile-column", "crosssim:mapping=tile-column", "gaussian-max:scope=tile"])
def test_a_per_tile_full_scale_without_tile_rows_is_refused_before_any_trial(noise):
    config = NoiseConfig.from_options(noise=noise)
    with pytest.raises(ConfigError, match=r"^--noise .*(mapping=tile-column|scope=tile) takes one full scale per "
                                          r"tile: set --tile-rows R"):
        check_tile_rows(config, 0)
    check_tile_rows(config, 512)
    check_tile_rows(NoiseConfig.from_options(noise="pcm:mapping=channel"), 0)  # needs no tiles


def test_preset_overrides_are_the_given_flags_that_replace_the_presets():
    """What the stderr line of ``--analog-preset`` names: --noise, the preset's own settings and a strength option,
    in the expansion's order; settings the preset does not set (``--limit``) and flags not given are not listed."""
    given = {"analog_preset": "aihwkit-pcm", "adc_bits": 6, "t": "60s", "noise": "pcm:levels=16", "limit": 100,
             "dac_bits": None, "read_noise": 0.0}
    assert preset_overrides(given) == ["--noise pcm:levels=16", "--adc-bits 6", "--read-noise 0", "--t 60s"]
    assert preset_overrides({"analog_preset": "afm", "limit": 100}) == []
    assert preset_overrides({"adc_bits": 6}) == []  # no preset


def test_another_models_strength_under_a_preset_names_the_presets_noise() -> None:
    """``--analog-preset noisynn --snr 10``: the user never typed --noise, so the one line says where it came from."""
    with pytest.raises(ConfigError) as info:
        config_values(RunConfig, {"analog_preset": "noisynn", "snr": "10"})
    assert str(info.value) == (
        "`--snr` is the strength of gaussian-snr, not of gaussian-global-db; give gaussian-global-db's SNR over the "
        "whole model (dB) with `--snr-db` or `--strength` (e.g. --snr-db 40,30,20,10) (--analog-preset noisynn sets "
        "--noise gaussian-global-db)")
    assert config_values(RunConfig, {"analog_preset": "noisynn", "snr_db": "20"})["noise"].strengths == (20.0,)
