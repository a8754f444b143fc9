"""A device noise model registered from a test fixture reaches every surface with no other edit.

:class:`tests._noise_models.ToyDevice` (``test-toy-device``) is a :class:`onnxnoise.noise.device.DeviceModel`
with one stage hook and its own :class:`~onnxnoise.noise.axis.StrengthAxis`; the fixture registers it.
Without any edit elsewhere it must appear in ``onnxnoise noise-models``, in the ``--noise`` help with its
own strength option, be accepted by ``onnxnoise bench --noise test-toy-device --strength ...`` and in an
experiment file, land in the store's ``noise_model`` column, and label the report's axes and headers.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import polars as pl
import pytest

from onnxnoise.cli import main
from onnxnoise.experiment import load_experiment
from onnxnoise.model import list_layers
from onnxnoise.noise import NOISE_MODELS, StrengthAxis, axis_of, draw_noise, make_noise_model
from onnxnoise.report import plots, strength as strength_module
from onnxnoise.report.plots import plot_accuracy_vs_noise
from onnxnoise.report.stats import summarize_trials
from onnxnoise.report.strength import add_strength_text, noise_axis, strength_header
from onnxnoise.store import open_store

from tests._builders import conv_bn_resnet, labeled_npz
from tests._checks import run_cli
from tests._noise_models import Db, Drift, ToyDevice, toy_device_model  # noqa: F401  (the fixture)

NAME = ToyDevice.name
AXIS = ToyDevice.strength_axis


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy-device")
    model = conv_bn_resnet(seed=1, size=8, width=4)
    onnx.save(model, folder / "m.onnx")
    return folder / "m.onnx", labeled_npz(model, folder / "d.npz", n=40).path


def test_toy_device_runs_the_template(toy_device_model):
    model = make_noise_model(NAME, {"floor": 0.0})
    proto = conv_bn_resnet(seed=1, size=8, width=4)
    layers = list_layers(proto)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    draw = draw_noise(model, 0.25, 0, layers, inits, model_layers=layers)
    for layer in layers:
        for name, role in zip(layer.tensors, layer.roles):
            if role == "weight":  # analog: every device lost a quarter of its conductance
                np.testing.assert_allclose(draw.arrays[name], inits[name] * 0.75, rtol=1e-6, atol=1e-7)
            else:  # digital under analog="weights": exact
                assert draw.arrays[name] is inits[name]


def test_toy_device_in_cli_store_and_report(toy_device_model, files, tmp_path, capsys):
    model_path, data = files
    # noise-models lists it with its declared axis
    code, out, _ = run_cli(capsys, "noise-models", "--json")
    listing = {m["name"]: m for m in json.loads(out)["noise_models"]}
    assert code == 0 and listing[NAME]["strength"] == {
        "name": "loss", "label": "conductance loss", "more_noise_when": "higher", "time": False,
        "long_name": "toy conductance loss per device", "options": ["--toy-loss", "--strength"], "unit": "fraction",
        "log": False}
    assert listing[NAME]["params"] == {"analog": "weights", "floor": 0.0}
    assert listing[NAME]["default_strengths_text"] == ["loss 10%", "loss 50%"]

    # the --noise help names it, and its own option is a flag
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert NAME in help_text and "--toy-loss LIST" in help_text and "toy: fraction of conductance" in help_text

    # bench with --strength and with its own option: rows carry its name, text and unit
    for option in ("--strength", "--toy-loss"):
        out_dir = tmp_path / option.strip("-")
        code, out, err = run_cli(capsys, "bench", model_path, "--data", data, "--noise", f"{NAME}:floor=0",
                              option, "0.1,0.5", "--seeds", "1", "--preprocess", "raw", "--device", "cpu",
                              "--out", out_dir, "--json")
        assert code == 0, err
        summary = json.loads(out)
        assert (summary["strengths"], summary["strength_unit"]) == ([0.1, 0.5], "fraction")
        assert [r["strength_text"] for r in summary["results"] if r["mode"] == "all"] == ["loss 10%", "loss 50%"]
        trials = pl.read_parquet(out_dir / "trials.parquet")
        assert set(trials["noise_model"].to_list()) == {NAME}

    # an experiment file runs it into a store
    toml = tmp_path / "exp.toml"
    toml.write_text(f'''
[data]
path = "{data}"
preprocess = "raw"
[models.toy]
path = "{model_path}"
[[sweeps]]
noise = "{NAME}:floor=0.0"
strength = [0.1, 0.5]
seeds = 1
''')
    experiment = load_experiment(toml)
    (_, config), = experiment.sweeps
    assert (config.run.noise.model, config.run.noise.strengths) == (NAME, (0.1, 0.5))
    assert main(["sweep", "--config", str(toml)]) == 0
    with open_store(experiment.run_dir("toy") / "trials.sqlite", create=False) as store:
        trials = store.to_frame()
    assert trials["noise_model"].to_list() == [NAME] * 3 and trials["error"].null_count() == 3
    assert [json.loads(n)["params"] for n in trials["noise"]] == [{"analog": "weights", "floor": 0.0}] * 3

    # the report's headers, cells and figure axes come from its axis
    assert strength_header(trials) == AXIS.name
    texts = add_strength_text(trials).sort("strength", nulls_last=False)
    assert texts["strength_text"].to_list() == ["clean", "loss 10%", "loss 50%"]
    assert set(texts["strength_unit"].to_list()) == {"fraction"}
    axis = noise_axis(NAME)
    assert (axis.label, axis.invert, axis.log, axis.tick(0.1)) == (AXIS.name, False, False, "10%")
    figure = plot_accuracy_vs_noise(summarize_trials(trials))
    assert figure.axes[0].get_xlabel() == AXIS.name


def test_axis_declared_once_mirrors_and_older_plug_ins():
    for cls in NOISE_MODELS.values():  # the model attributes mirror the one declaration
        axis = cls.strength_axis
        assert (cls.strength_name, cls.strength_label, cls.more_noise_when, cls.default_strengths) == (
            axis.symbol, axis.label, axis.more_noise_when, axis.defaults)
        assert axis_of(cls) is axis
    # plug-ins that declare the attributes instead of an axis get the axis they describe
    assert (Drift.strength_axis.symbol, Drift.strength_axis.time, Drift.strength_axis.unit) == ("t", True, "s")
    assert (Db.strength_axis.label, Db.strength_axis.more_noise_when, Db.strength_axis.time) == ("SNR (dB)", "lower",
                                                                                               False)
    assert noise_axis(Db.name).invert is True and noise_axis(Drift.name).log is True
    with pytest.raises(ValueError, match="more_noise_when must be one of lower, higher, got 'up'"):
        StrengthAxis(more_noise_when="up")


def test_no_display_code_tests_a_model_name():
    for module in (plots, strength_module):
        source = open(module.__file__, encoding="utf-8").read()
        assert '"gaussian-snr"' not in source and "'gaussian-snr'" not in source, module.__name__
