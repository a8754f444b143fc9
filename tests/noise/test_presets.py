"""noise/presets.py and its expansion (noise_config.apply_analog_preset, RunConfig.expand_options).

One test per preset checks its expanded noise parameters, settings and strengths against the values its
source publishes (../shared/PARITY.md); setting keys this build's RunConfig lacks (the tile stages, until
they are merged) are skipped with a reason instead of failing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from onnxnoise.config import RunConfig
from onnxnoise.errors import ConfigError
from onnxnoise.noise import make_noise_model
from onnxnoise.noise.crosssim import CrossSim
from onnxnoise.noise.pcm import G_MAX_REF, PROG_COEFF, T0, T_READ
from onnxnoise.noise.presets import PRESETS, expand_preset
from onnxnoise.noise_config import apply_analog_preset
from onnxnoise.options import parse_noise, parse_strengths
from onnxnoise.settings import config_values, declared
from onnxnoise.tile_config import TileConfig

KNOWN = {s.key for s in declared(RunConfig)} | {s.key for s in declared(TileConfig)}
DAY = 86400.0


def _noise(name):
    expansion = expand_preset(name)
    model, params = parse_noise(expansion.noise)
    return make_noise_model(model, params or {}), expansion


def _settings(name, expected):
    """The preset's settings equal ``expected``, every one a declared setting that a run takes from the preset."""
    expansion = expand_preset(name)
    assert dict(expansion.settings) == expected
    assert set(expected) <= KNOWN
    values = config_values(RunConfig, {"analog_preset": name})
    run = RunConfig(**values, model=Path("m.onnx"), data=Path("d.npz"))
    flat = {**run.to_dict(), **run.to_dict().get("tile", {})}
    for key, value in expected.items():
        field = "percentile" if key == "calibration_percentile" else key
        assert flat[field] == value, key


def test_aihwkit_pcm_weight_side_matches_pcmlikenoisemodel_defaults():
    model, expansion = _noise("aihwkit-pcm")
    assert expansion.noise == "pcm:compensation=global,mapping=tile-column"
    assert (model.g_max, model.compensation, model.mapping, model.levels) == (25.0, "global", "tile-column", 0)
    assert model.programming and model.drift and model.read_noise
    assert PROG_COEFF == (0.26348, 1.9650, -1.1731) and G_MAX_REF == 25.0 and T0 == 20.0 and T_READ == 250e-9
    # 60 s, 1 h, 1 d, 30 d, 360 d = 31,104,000 s (the notebook's last time point)
    assert parse_strengths(strength=expansion.strengths, noise_model=type(model)) == (
        60.0, 3600.0, DAY, 30 * DAY, 31_104_000.0)
    assert expand_preset("aihwkit-pcm-weights").noise == expansion.noise
    assert expand_preset("aihwkit-pcm-weights").strengths == expansion.strengths


def test_aihwkit_pcm_forward_settings_are_aihwkits():
    _settings("aihwkit-pcm", {"dac_bits": 8, "adc_bits": 8, "read_noise": 0.04, "adc_bound": 10.0, "tile_rows": 512,
                              "adc_scope": "column"})


def test_aihwkit_pcm_untrained_is_aihwkit_pcm_with_the_input_range_at_its_init_value():
    _settings("aihwkit-pcm-untrained", {"dac_bits": 8, "adc_bits": 8, "read_noise": 0.04, "adc_bound": 10.0,
                                        "tile_rows": 512, "adc_scope": "column", "dac_bound": 3.0})
    untrained, base = expand_preset("aihwkit-pcm-untrained"), expand_preset("aihwkit-pcm")
    assert (untrained.noise, untrained.strengths) == (base.noise, base.strengths)
    assert "init_value 3.0" in PRESETS["aihwkit-pcm-untrained"].cites["dac_bound"]
    # every range follows from the settings: no calibration run
    run = RunConfig(**config_values(RunConfig, {"analog_preset": "aihwkit-pcm-untrained"}), model=Path("m.onnx"),
                    data=Path("d.npz"))
    assert run.tile.settings().dac_bound == 3.0 and run.tile.settings().measures is False


def test_aihwkit_pcm_weights_has_a_perfect_forward_pass():
    _settings("aihwkit-pcm-weights", {"tile_rows": 512})


def test_afm_presets_are_five_percent_of_the_row_max():
    for name, scope in (("afm", "row"), ("afm-tile", "tile")):
        model, expansion = _noise(name)
        assert model.name == "gaussian-max" and model.scope == scope and model.analog == "weights"
        assert parse_strengths(strength=expansion.strengths, noise_model=type(model)) == (0.05,)
    _settings("afm", {})


def test_afm_tile_has_512_input_tiles():
    _settings("afm-tile", {"tile_rows": 512})


@pytest.mark.parametrize("error", ["independent", "proportional"])
def test_crosssim_presets_are_the_isca_2024_setting(error):
    model, expansion = _noise(f"crosssim-{error}")
    assert isinstance(model, CrossSim) and model.error == error and model.mapping == "tensor"
    assert model.g_ratio == pytest.approx(4.45 / 20.0)  # Rmin 4.45 kOhm, Rmax 20 kOhm
    assert 0.3 in parse_strengths(strength=expansion.strengths, noise_model=type(model))
    _settings(f"crosssim-{error}", {"dac_bits": 8, "adc_bits": 8, "tile_rows": 576, "calibration": "max",
                                    "calibration_images": 500})


def test_noisynn_and_paper_are_the_existing_models_with_their_grids():
    for name, model_name in (("noisynn", "gaussian-global-db"), ("paper", "gaussian-snr")):
        model, expansion = _noise(name)
        assert model.name == model_name and model.params() == {} and expansion.strengths is None
        _settings(name, {})
        noise = config_values(RunConfig, {"analog_preset": name})["noise"]
        assert noise.strengths == tuple(sorted(model.default_strengths, reverse=True))


def test_every_preset_cites_each_parameter_it_sets():
    for preset in PRESETS.values():
        model, params = parse_noise(preset.noise)
        named = {model, *(params or {}), *preset.settings, *(["strengths"] if preset.strengths else [])}
        assert named <= set(preset.cites), (preset.name, named - set(preset.cites))
        assert "PARITY.md" in preset.source or "NOISE-MODELS.md" in preset.source


def test_explicit_options_override_the_preset_and_same_model_noise_merges():
    known = sorted(KNOWN | {"dac_bits", "tile_rows", "read_noise", "adc_bits", "adc_bound", "adc_scope"})
    out, expansion = apply_analog_preset({"analog_preset": "aihwkit-pcm", "dac_bits": 6, "noise": "pcm:levels=16"},
                                         known)
    assert expansion.name == "aihwkit-pcm" and out["dac_bits"] == 6 and out["adc_bits"] == 8
    assert out["noise_model"] == "pcm"
    assert out["noise_params"] == {"compensation": "global", "mapping": "tile-column", "levels": 16}
    assert out["strength"] == "60s,1h,1d,30d,360d"
    out, _ = apply_analog_preset({"analog_preset": "aihwkit-pcm", "t": "1d"}, known)
    assert out.get("strength") is None and out["t"] == "1d"  # the user's own strength option wins
    out, _ = apply_analog_preset({"analog_preset": "aihwkit-pcm", "noise": "pcm:compensation=none,t=1h"}, known)
    assert out["noise_params"]["compensation"] == "none" and out.get("strength") is None  # inline strength wins
    out, _ = apply_analog_preset({"analog_preset": "afm", "noise": "gaussian-snr"}, known)
    assert out["noise_model"] == "gaussian-snr" and out["noise_params"] is None and out.get("strength") is None
    assert apply_analog_preset({"noise": "pcm"}, known) == ({"noise": "pcm"}, None)


def test_unknown_presets_and_missing_settings_are_one_line():
    with pytest.raises(ConfigError, match=r"unknown --analog-preset 'ibm'; choose from aihwkit-pcm, .*noise-models "
                                          r"--presets"):
        config_values(RunConfig, {"analog_preset": "ibm"})
    with pytest.raises(ConfigError, match=r"^--analog-preset afm-tile sets tile_rows, which this onnxnoise does not "
                                          r"have"):
        apply_analog_preset({"analog_preset": "afm-tile"}, ["noise"])


def test_the_preset_name_enters_no_trial_key():
    setting = next(s for s in declared(RunConfig) if s.key == "analog_preset")
    assert setting.trial_key is False and setting.flag == "--analog-preset" and "sweeps" in setting.files
