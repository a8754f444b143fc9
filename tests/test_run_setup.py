"""onnxnoise/run_setup.py: one path from a model, a dataset (path or registered name) and options to a
RunConfig, for the CLI and the Python API alike."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from onnxnoise.config import RunConfig, SweepConfig
from onnxnoise.data.registry import register_dataset
from onnxnoise.errors import ConfigError, NoiseConfigError
from onnxnoise.run_setup import (default_out_dir, flag_words, in_setting_keys, keyword_options, option_settings, run_setup,
                                 sweep_file_free_settings, sweep_overrides)


def test_keyword_options_convert_text_as_the_flag_does():
    options = keyword_options("bench", {"limit": "100", "snr": "10,100", "batch_size": 64, "cache": False}, RunConfig)
    assert (options["limit"], options["snr"], options["batch_size"], options["cache"]) == (100, "10,100", 64, False)
    assert options["seeds"] is None  # not given
    assert set(options) == {s.key for s in option_settings("bench", RunConfig)}


def test_keyword_options_refuse_what_the_command_does_not_take():
    with pytest.raises(ConfigError, match=r"^bench takes no option 'modes'; its options are"):
        keyword_options("bench", {"modes": "all"}, RunConfig)  # a sweep's option
    assert keyword_options("sweep", {"modes": "all"}, SweepConfig)["modes"] == "all"
    with pytest.raises(ConfigError, match=r"^sweep takes no option 'mode' \(did you mean 'modes'\?\); its "):
        keyword_options("sweep", {"mode": "all"}, SweepConfig)  # the flag is --mode, the key modes
    with pytest.raises(ConfigError, match=r"^batch_size='x' is not a valid --batch-size value$"):
        keyword_options("bench", {"batch_size": "x"}, RunConfig)


def test_run_setup_resolves_a_registered_name_and_says_so(demo_files, tmp_path, monkeypatch):
    monkeypatch.setenv("ONNXNOISE_CONFIG_DIR", str(tmp_path))
    model, data = demo_files
    register_dataset("fm", data)
    setup = run_setup(model, "fm", {"snr": "10", "seeds": 2}, command="bench")
    assert setup.config.data == data.resolve() and setup.config.noise.strengths == (10.0,)
    assert setup.notes == (f"--data fm: registered dataset `fm` ({data.resolve()}, 10 classes)",)
    assert setup.warnings == ()
    assert run_setup(model, None, {}, command="bench").config.data == data.resolve()  # 10 outputs: the 10-class set


def test_run_setup_says_what_noise_none_measures(demo_files):
    model, data = demo_files
    setup = run_setup(model, data, {"noise": "none", "seeds": 3}, command="sweep")
    assert len(setup.warnings) == 2 and setup.warnings[0].startswith("--noise none leaves the weights exact")
    assert "its 3 seeds give the same trial" in setup.warnings[1]


def test_default_out_dirs():
    assert default_out_dir("sweep", "models/My Net.onnx") == Path("runs/My-Net")
    assert re.fullmatch(r"reports/net-\d{8}-\d{6}", default_out_dir("bench", "net.onnx").as_posix())
    assert re.fullmatch(r"reports/check-net-\d{8}-\d{6}", default_out_dir("check", "net.onnx").as_posix())
    assert re.fullmatch(r"reports/compare-\d{8}-\d{6}", default_out_dir("compare").as_posix())


def test_flag_words_write_a_value_back_as_the_flag_reads_it():
    settings = {s.key: s for s in option_settings("check", RunConfig)}
    assert flag_words(settings["limit"], 100) == ["--limit", "100"]
    assert flag_words(settings["cache"], False) == ["--no-cache"] and flag_words(settings["cache"], True) == []
    assert flag_words(settings["mean"], (0.5, 0.25, 0.125)) == ["--mean", "0.5,0.25,0.125"]
    assert flag_words(settings["mean"], [0.5, 0.25, 0.125]) == ["--mean", "0.5,0.25,0.125"]  # the API's list
    assert flag_words(settings["noise_params"], ["scope=layer"]) == ["--noise-param", "scope=layer"]
    # a noise model object's parameters (keyword_options): one --noise-param each, JSON values
    assert flag_words(settings["noise_params"], {"scope": "channel", "levels": [1, 2], "on": True}) == [
        "--noise-param", 'scope="channel"', "--noise-param", "levels=[1, 2]", "--noise-param", "on=true"]
    assert flag_words(settings["limit"], None) == []


def test_sweep_overrides_are_the_settings_a_file_cannot_hold():
    assert {s.key for s in sweep_file_free_settings()} >= {"executor", "address", "workers"}
    assert not {"snr", "modes", "seeds", "limit"} & {s.key for s in sweep_file_free_settings()}
    assert sweep_overrides({"executor": "local", "snr": "10"})["executor"] == "local"  # snr: not a file-free key
    assert "run" not in sweep_overrides({}) and "snr" not in sweep_overrides({"snr": "10"})


def test_api_errors_name_settings_by_key_and_leave_other_text():
    @in_setting_keys("bench", RunConfig)
    def fails(message: str, error: type = ConfigError):
        raise error(message)

    with pytest.raises(ConfigError, match=r"^`batch_size` must be >= 1; see --frobnicate and batch_size-- as is$"):
        fails("`--batch-size` must be >= 1; see --frobnicate and batch_size-- as is")
    with pytest.raises(NoiseConfigError, match=r"^give noise_pct or snr, not both$") as caught:
        fails("give --noise-pct or --snr, not both", NoiseConfigError)
    assert type(caught.value) is NoiseConfigError
    with pytest.raises(ValueError, match="^--batch-size$"):  # not the project's error: untouched
        fails("--batch-size", ValueError)
