"""Extending onnxnoise: a setting, a trial column and a device noise model, each declared in one place.

docs/contributing.md walks through the three. Here each is declared by a fixture and nothing else
is edited: the run setting ``--toy-gain`` (``trial_key=True``), the counter column ``test_misses``
(images missed at top-1, :mod:`_columns`) and the device model ``test-toy-device`` with its own
strength option ``--toy-loss`` (:mod:`_noise_models`). One user session then finds all three in
the command-line help, an experiment file, the trial store and a report.
"""

from __future__ import annotations

import json

import polars as pl
import pytest

from onnxnoise.cli.app import main
from onnxnoise.config import RunConfig
from onnxnoise.engine.context import prepare_context
from onnxnoise.engine.plan import plan_trials
from onnxnoise.errors import ConfigError
from onnxnoise.experiment import load_experiment
from onnxnoise.settings import RUNTIME, Setting, register_setting, unregister_setting
from onnxnoise.store import open_store

from tests._checks import help_words
from tests._columns import toy_counter  # noqa: F401 - fixture
from tests._noise_models import toy_device_model  # noqa: F401 - fixture


def _positive(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"`--toy-gain` must be a number > 0, got {value!r}")
    return float(value)


#: A setting that can change counts (as far as the package knows): it enters the trial key.
TOY_GAIN = Setting(key="toy_gain", flag="--toy-gain", type=float, metavar="G", parse=_positive, group=RUNTIME,
                   files=("sweeps",), unit="x", trial_key=True, default=1.5,
                   help="toy gain, recorded and keyed (default {default})")


@pytest.fixture
def toy_gain():
    """:data:`TOY_GAIN`, registered while the test runs."""
    register_setting(TOY_GAIN)
    try:
        yield TOY_GAIN
    finally:
        unregister_setting(TOY_GAIN.key)


@pytest.fixture
def toys(toy_gain, toy_counter, toy_device_model):  # noqa: F811 - the fixtures imported above
    """All three declared at once."""
    return toy_gain, toy_counter, toy_device_model



@pytest.mark.parametrize("command", ["bench", "sweep", "check"])
def test_the_three_are_in_the_help(toys, capsys, command):
    text = help_words(capsys, command)
    assert "--toy-gain G toy gain, recorded and keyed (default 1.5)" in text
    assert "--toy-loss LIST test-toy-device: toy: fraction of conductance every device loses, e.g. 0.1,0.5" in text
    assert "test-toy-device" in text  # among --noise's models


def test_the_three_in_an_experiment_file_the_store_and_a_report(toys, resnet_npz, tmp_path, capsys):
    model, data = resnet_npz
    study = tmp_path / "study.toml"
    study.write_text(f'out = "runs"\n[data]\npath = "{data}"\npreprocess = "raw"\n\n[models.m]\npath = "{model}"\n\n'
                     '[[sweeps]]\nnoise = "test-toy-device:floor=0.0"\ntoy_loss = [0.1, 0.5]\nseeds = 1\n'
                     'device = "cpu"\ntoy_gain = 2.5\n')
    (_, sweep), = load_experiment(study).sweeps
    assert sweep.run.extra == {"toy_gain": 2.5}
    assert (sweep.run.noise.model, sweep.run.noise.strengths) == ("test-toy-device", (0.1, 0.5))
    assert main(["sweep", "--config", str(study)]) == 0
    capsys.readouterr()

    run_dir = tmp_path / "runs" / "m"
    with open_store(run_dir / "trials.sqlite", create=False) as store:
        trials = store.to_frame().sort("strength", nulls_last=False)
        runs = store.runs()
    assert trials["noise_model"].to_list() == ["test-toy-device"] * 3 and trials["error"].null_count() == 3
    # the toy column holds its measured value in every row: images missed at top-1
    assert trials["test_misses"].to_list() == (trials["images"] - trials["top1_correct"]).to_list()
    assert trials["images"].to_list() == [40, 40, 40]
    # the keyed setting is in every row's context (what the key hashed) and in the run's recorded config
    assert [json.loads(c)["settings"] for c in trials["context"]] == [{"toy_gain": 2.5}] * 3
    assert trials["settings"].to_list() == ['{"toy_gain":2.5}'] * 3  # a baseline-identifying column of its own
    assert json.loads(runs["config"][0])["toy_gain"] == 2.5

    out = tmp_path / "report"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    capsys.readouterr()
    summary = pl.read_csv(out / "summary.csv").filter(pl.col("mode") == "all").sort("strength")
    assert summary["strength_text"].to_list() == ["loss 10%", "loss 50%"]
    assert summary["test_misses"].to_list() == trials.filter(pl.col("mode") == "all")["test_misses"].to_list()
    assert summary["noise_model"].unique().to_list() == ["test-toy-device"]
    report = (out / "report.md").read_text()
    assert '- other settings that change counts: {"toy_gain":2.5}' in report
    assert "| m.onnx | loss 10% | 1 |" in report and "toy conductance loss per device" in report


def test_runs_under_other_keyed_settings_stay_apart_in_a_report(toy_gain, resnet_npz, tmp_path, capsys):
    """Two sweeps of one model in one store, the keyed setting at its default and away from it: two baselines."""
    model, data = resnet_npz
    sweep = '[[sweeps]]\nsnr = [5]\nseeds = 1\ndevice = "cpu"\n'
    study = tmp_path / "study.toml"
    study.write_text(f'out = "runs"\n[data]\npath = "{data}"\npreprocess = "raw"\n\n[models.m]\npath = "{model}"\n\n'
                     f'{sweep}\n{sweep}toy_gain = 2.5\n')
    assert main(["sweep", "--config", str(study)]) == 0
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "runs" / "m"), "--out", str(out)]) == 0
    capsys.readouterr()
    summary = pl.read_csv(out / "summary.csv")
    assert summary.filter(pl.col("mode") == "baseline")["settings"].to_list() == [None, '{"toy_gain":2.5}']
    assert summary.filter(pl.col("mode") == "all").height == 2  # one row per setting, never one mixed row
    report = (out / "report.md").read_text()
    assert "| model | dataset | settings | images |" in report
    assert "| m.onnx | d | default | 40 |" in report and "| m.onnx | d | toy_gain=2.5 | 40 |" in report
    assert "seeds used: 0" in report


def test_a_keyed_setting_changes_keys_only_away_from_its_default(toys, resnet_npz):
    model, data = resnet_npz

    def keys(**extra) -> list[str]:
        context = prepare_context(RunConfig(model=model, data=data, preset="raw", device="cpu", extra=extra))
        return [item.key for item in plan_trials(context, ("all",))]

    unset, default, other = keys(), keys(toy_gain=1.5), keys(toy_gain=2.5)
    assert unset == default  # at its default, runs made before the setting existed keep their keys
    assert not set(other) & set(default)
