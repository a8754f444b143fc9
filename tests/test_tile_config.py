"""tile_config.py: the tile stages' settings, their flags, validation (one line, exit 2) and key values."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxnoise.config import RunConfig, TileConfig
from onnxnoise.settings import config_values
from onnxnoise.errors import ConfigError
from onnxnoise.experiment import load_experiment
from onnxnoise.settings import declared
from onnxnoise.tile import TileSettings
from onnxnoise.tile_config import check_given_tile_options, unused_tile_settings

from tests._builders import tiny_cnn
from tests._checks import help_words, one_line, run_cli

FLAGS = ["--dac-bits", "--adc-bits", "--read-noise", "--tile-rows", "--adc-bound", "--dac-bound", "--adc-scope",
         "--calibration", "--calibration-percentile", "--calibration-images"]


def test_one_setting_per_tile_settings_field_off_by_default():
    assert [s.flag for s in declared(TileConfig)] == FLAGS
    assert all(s.trial_key is True and s.commands == ("bench", "sweep", "check") for s in declared(TileConfig))
    assert TileConfig().settings() == TileSettings() and not TileConfig().active
    assert TileConfig().key_values() == {}
    assert TileConfig(calibration_images=100, adc_scope="column").key_values() == {}  # no stage on: no key
    assert TileConfig(dac_bits=8, percentile=99.0).key_values() == {"dac_bits": 8, "calibration_percentile": 99.0}
    assert TileConfig(tile_rows=256).active  # a tile split alone changes partial sums' rounding
    given = TileConfig(dac_bits=8, adc_bits=6, read_noise=0.04, tile_rows=512, adc_bound=10.0, adc_scope="column",
                       calibration="percentile", percentile=99.9, calibration_images=50)
    assert given.settings() == TileSettings(8, 6, 0.04, 512, 10.0, "column", "percentile", 99.9, 50)
    assert RunConfig(model="m.onnx", data="d", tile=given).to_dict()["tile"] == given.to_dict()


@pytest.mark.parametrize(("argv", "expected"), [
    (["--dac-bits", "1"], "`--dac-bits` must be 0 (off) or an integer from 2 to 24, got 1"),
    (["--adc-bits", "25"], "`--adc-bits` must be 0 (off) or an integer from 2 to 24, got 25"),
    (["--read-noise", "-0.1"], "`--read-noise` must be a finite number >= 0 (0 = off), got -0.1"),
    (["--dac-bound", "-3"], "`--dac-bound` must be a finite number >= 0 (0 = calibrated), got -3.0"),
    (["--dac-bound", "nan"], "`--dac-bound` must be a finite number >= 0 (0 = calibrated), got nan"),
    (["--tile-rows", "-4"], "`--tile-rows` must be an integer >= 0 (0 = no split), got -4"),
    (["--calibration-percentile", "0"], "`--calibration-percentile` must be a number in (0, 100], got 0.0"),
    (["--calibration-images", "0"], "`--calibration-images` must be an integer >= 1, got 0"),
])
def test_bad_values_are_one_line_exit_2(argv, expected, tmp_path, capsys):
    onnx.save(tiny_cnn(), tmp_path / "tiny.onnx")
    np.savez(tmp_path / "d.npz", images=np.zeros((10, 8, 8, 3), np.uint8), labels=np.arange(10))
    code, _, err = run_cli(capsys, "bench", tmp_path / "tiny.onnx", "--data", tmp_path / "d.npz", *argv,
                           "--out", tmp_path / "out")
    assert code == 2
    assert expected in one_line(err)
    assert not (tmp_path / "out").exists()


def test_choices_are_refused_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_cli(capsys, "bench", tmp_path / "m.onnx", "--adc-scope", "row")
    assert exit_.value.code == 2
    assert "argument --adc-scope: invalid choice: 'row'" in one_line(capsys.readouterr().err)


def test_flags_in_help_of_every_command_that_runs_trials(capsys):
    for command in ("bench", "sweep", "check"):
        words = help_words(capsys, command)
        assert all(flag in words for flag in FLAGS), command
        assert "analog tile input/output stages" in words


def test_experiment_file_keys(tmp_path):
    (tmp_path / "exp.toml").write_text(
        '[data]\npath = "d.npz"\n[models.m]\npath = "m.onnx"\n'
        '[[sweeps]]\nsnr = [10]\ndac_bits = 8\nadc_bits = 8\ncalibration_percentile = 99.5\n'
        'calibration = "percentile"\ndac_bound = 3.0\n')
    (_, sweep), = load_experiment(tmp_path / "exp.toml").sweeps
    assert sweep.run.tile == TileConfig(dac_bits=8, adc_bits=8, calibration="percentile", percentile=99.5,
                                        dac_bound=3.0)
    (tmp_path / "bad.toml").write_text('[data]\npath = "d.npz"\n[models.m]\npath = "m.onnx"\n'
                                       '[[sweeps]]\nsnr = [10]\nadc_bits = 1\n')
    with pytest.raises(Exception, match="adc_bits"):
        load_experiment(tmp_path / "bad.toml")


def test_a_bad_value_in_python_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^`--adc-scope` must be one of layer, column, got 'row'$"):
        TileConfig(adc_scope="row")


NO_RANGE = "no range is calibrated without a DAC, an ADC or read noise"
FIXED = "no range is calibrated: `--dac-bound` fixes the DAC range"


@pytest.mark.parametrize(("settings", "unused"), [
    (TileSettings(), {}),  # defaults: nothing set, nothing unused
    (TileSettings(adc_bound=10.0), {"adc_bound": "the ADC it bounds is off"}),
    (TileSettings(adc_bits=8, adc_bound=10.0), {}),
    (TileSettings(adc_scope="column", tile_rows=256), {"adc_scope": "the ADC and the read noise it scopes are off"}),
    (TileSettings(read_noise=0.04, adc_scope="column"), {}),  # the read noise's w_max is per column
    (TileSettings(adc_bits=8, dac_bound=3.0), {"dac_bound": "only the DAC, the read noise and a fixed `--adc-bound`"}),
    (TileSettings(read_noise=0.04, dac_bound=3.0), {}),  # scales the read noise
    (TileSettings(adc_bits=8, adc_bound=10.0, dac_bound=3.0), {}),  # scales the fixed ADC bound
    (TileSettings(tile_rows=512, calibration="percentile", calibration_images=50),
     {"calibration": NO_RANGE, "calibration_images": NO_RANGE}),
    (TileSettings(dac_bits=8, dac_bound=3.0, calibration_images=50, percentile=99.0),  # every range fixed
     {"calibration_images": FIXED, "calibration_percentile": FIXED}),
    (TileSettings(dac_bits=8, dac_bound=3.0, adc_bits=8, calibration_images=50), {}),  # the ADC range is measured
    (TileSettings(adc_bits=8, percentile=99.0),
     {"calibration_percentile": "the ranges are the clean activations' max"}),
    (TileSettings(adc_bits=8, calibration="percentile", percentile=99.0), {}),
])
def test_settings_that_no_stage_reads(settings, unused):
    found = unused_tile_settings(settings)
    assert found.keys() == unused.keys()
    assert all(found[key].startswith(why) for key, why in unused.items())


def test_only_a_given_setting_that_acts_on_nothing_is_refused():
    """A preset's ``adc_bound`` left without its ADC by ``--adc-bits 0`` runs; the same bound typed is refused."""
    tile = TileConfig(adc_bound=10.0, tile_rows=512)
    check_given_tile_options({"adc_bits": 0, "adc_bound": None}, tile)  # not given: no error
    with pytest.raises(ConfigError, match=r"^`--adc-bound 10` has no effect in this run: the ADC it bounds is off; "
                                          r"add `--adc-bits BITS` \(e.g. 8\), or drop `--adc-bound`$"):
        check_given_tile_options({"adc_bound": "10"}, tile)
    values = config_values(RunConfig, {"analog_preset": "aihwkit-pcm", "adc_bits": 0})
    assert (values["tile"].adc_bits, values["tile"].adc_bound) == (0, 10.0)
    with pytest.raises(ConfigError, match=r"^`--adc-bound 5` has no effect"):
        config_values(RunConfig, {"analog_preset": "aihwkit-pcm", "adc_bits": 0, "adc_bound": 5.0})


@pytest.mark.parametrize(("argv", "expected"), [
    (["--adc-bound", "10"], "`--adc-bound 10` has no effect in this run: the ADC it bounds is off; add `--adc-bits "
                            "BITS` (e.g. 8), or drop `--adc-bound`"),
    (["--dac-bound", "3"], "`--dac-bound 3` has no effect in this run: only the DAC, the read noise and a fixed "
                           "`--adc-bound` read the DAC range, and none is on; add `--dac-bits BITS` (e.g. 8), or drop "
                           "`--dac-bound`"),
    (["--adc-bits", "8", "--calibration-percentile", "99"],
     "`--calibration-percentile 99` has no effect in this run: the ranges are the clean activations' max "
     "(`--calibration max`); add `--calibration percentile`, or drop `--calibration-percentile`"),
    (["--calibration", "percentile"], "`--calibration percentile` has no effect in this run: no range is calibrated "
                                      "without a DAC, an ADC or read noise; add `--dac-bits`, `--adc-bits` or "
                                      "`--read-noise`, or drop `--calibration`"),
    (["--analog-preset", "aihwkit-pcm-untrained", "--calibration-images", "100"],
     "`--calibration-images 100` has no effect in this run: no range is calibrated: `--dac-bound` fixes the DAC range "
     "and the ADC is off or fixed by `--adc-bound`; set `--dac-bound 0` to calibrate the DAC range, or drop "
     "`--calibration-images`"),
])
def test_a_setting_that_acts_on_nothing_is_one_line_exit_2(argv, expected, tmp_path, capsys):
    onnx.save(tiny_cnn(), tmp_path / "tiny.onnx")
    np.savez(tmp_path / "d.npz", images=np.zeros((10, 8, 8, 3), np.uint8), labels=np.arange(10))
    code, _, err = run_cli(capsys, "bench", tmp_path / "tiny.onnx", "--data", tmp_path / "d.npz", *argv,
                           "--out", tmp_path / "out")
    assert code == 2
    assert one_line(err).endswith(expected)
    assert not (tmp_path / "out").exists()
