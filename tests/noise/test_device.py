"""A device noise model registered from a test fixture reaches every surface with no other edit.

:class:`tests._noise_models.ToyDevice` (``test-toy-device``) is a :class:`onnxnoise.noise.device.DeviceModel`
with one stage hook and its own :class:`~onnxnoise.noise.axis.StrengthAxis`; the fixture registers it.
Without any edit elsewhere it must appear in ``onnxnoise noise-models``, in the ``--noise`` help with its
own strength option, be accepted by ``onnxnoise bench --noise test-toy-device --strength ...`` and in an
experiment file, land in the store's ``noise_model`` column, and label the report's axes and headers.

Also: the device models noise every analog weight, whatever layout ops bring it to its matrix op
(exact counts of changed values), and refuse a selection in which they could change nothing.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import polars as pl
import pytest

from onnxnoise.cli import main
from onnxnoise.errors import NoiseConfigError
from onnxnoise.experiment import load_experiment
from onnxnoise.model import get_initializers, list_layers
from onnxnoise.noise import NOISE_MODELS, StrengthAxis, axis_of, draw_noise, make_noise_model
from onnxnoise.report import plots, strength as strength_module
from onnxnoise.report.plots import plot_accuracy_vs_noise
from onnxnoise.report.stats import summarize_trials
from onnxnoise.report.strength import add_strength_text, noise_axis, strength_header
from onnxnoise.store import open_store

from tests._builders import WEIGHT_ROUTES, conv_bn_resnet, labeled_npz, routed_classifier
from tests._checks import one_line, run_cli
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
    assert listing[NAME]["params"] == {"analog": "weights", "mapping": "tensor", "floor": 0.0}
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


# ---------------------------------------------------------------- every analog weight, or a refusal


@pytest.mark.parametrize("route", WEIGHT_ROUTES)
def test_device_models_change_a_weight_reached_through_layout_ops(route):
    model = routed_classifier(route)
    layers, inits = list_layers(model), get_initializers(model)
    w = inits["W"]
    assert np.count_nonzero(w) == w.size == 1920
    # every device stuck off (rate 1, only SA0): every weight reads 0, the digital bias stays exact
    draw = draw_noise(make_noise_model("stuck-at", {"sa1_fraction": 0.0}), 1.0, 0, layers, inits)
    assert draw.changed_values == {"fc": 1920} and not draw.arrays["W"].any()
    assert draw.arrays["b"] is inits["b"]
    # 2 conductance levels: every weight becomes -w_max, 0 or w_max; only the largest |w| was on that grid
    levels = draw_noise(make_noise_model("conductance-levels"), 2, 0, layers, inits)
    on_grid = int(np.count_nonzero(np.abs(w) == np.abs(w).max()))
    assert levels.changed_values == {"fc": 1920 - on_grid} and on_grid == 1
    pcm = draw_noise(make_noise_model("pcm"), 86400.0, 0, layers, inits)
    assert pcm.changed_values == {"fc": 1920}


@pytest.mark.parametrize("noise", ["pcm", "stuck-at", "conductance-levels"])
def test_a_selection_without_a_weight_matrix_is_refused_naming_it(noise):
    layers = list_layers(conv_bn_resnet(seed=1, size=8, width=4))
    model = make_noise_model(noise)
    model.check_layers(layers)  # BatchNormalization layers stay digital by design beside the Conv weights
    bns = [layer for layer in layers if layer.op_type == "BatchNormalization"]
    with pytest.raises(NoiseConfigError) as refused:
        model.check_layers(bns[:2])
    assert str(refused.value) == (
        f"{noise} treats only weight matrices as analog (analog=weights) and none of the 2 selected layer(s) holds "
        "one, so noise would change nothing there: 'stem.bn' (BatchNormalization), 'block1.a.bn' (BatchNormalization)"
        "; select layers with a weight (e.g. --op-types Conv,ConvTranspose,Gemm,MatMul,Einsum or --layer-regex) or "
        f"treat every tensor as analog (--noise {noise}:analog=all)")
    make_noise_model(noise, {"analog": "all"}).check_layers(bns)  # every tensor analog: accepted


def _sliced_weight_model():
    """``Flatten -> Gemm(transB=1)`` whose weight is a ``Slice`` of a larger initializer, then ``Mul`` by a scale."""
    rng = np.random.default_rng(3)
    inits = [onnx.numpy_helper.from_array(rng.normal(size=(20, 192)).astype(np.float32), "W_all"),
             onnx.numpy_helper.from_array(rng.normal(size=10).astype(np.float32), "b"),
             onnx.numpy_helper.from_array(np.array([0], np.int64), "starts"),
             onnx.numpy_helper.from_array(np.array([10], np.int64), "ends")]
    nodes = [onnx.helper.make_node("Flatten", ["input"], ["x"], name="flatten"),
             onnx.helper.make_node("Slice", ["W_all", "starts", "ends"], ["W"], name="w_rows"),
             onnx.helper.make_node("Gemm", ["x", "W", "b"], ["logits"], name="fc", transB=1)]
    graph = onnx.helper.make_graph(
        nodes, "sliced", [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["N", 3, 8, 8])],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", 10])], inits)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_a_layer_a_device_model_cannot_map_is_refused_before_any_trial(tmp_path, capsys):
    model = _sliced_weight_model()  # W reaches the Gemm through a Slice: discovery lists the Slice as its layer
    assert [(layer.name, layer.op_type, layer.roles) for layer in list_layers(model)] == [
        ("w_rows", "Slice", ("input0",)), ("fc", "Gemm", ("bias",))]
    onnx.save(model, tmp_path / "sliced.onnx")
    data = labeled_npz(model, tmp_path / "d.npz", n=20, relabel=0.0).path
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "bench", tmp_path / "sliced.onnx", "--data", data, "--preprocess", "raw",
                           "--noise", "pcm", "--t", "1d", "--seeds", "1", "--device", "cpu", "--out", out)
    assert code == 2
    assert one_line(err) == (
        "onnxnoise: error: pcm treats only weight matrices as analog (analog=weights) and none of the 2 selected "
        "layer(s) holds one, so noise would change nothing there: 'w_rows' (Slice), 'fc' (Gemm); select layers with "
        "a weight (e.g. --op-types Conv,ConvTranspose,Gemm,MatMul,Einsum or --layer-regex) or treat every tensor as "
        "analog (--noise pcm:analog=all)")
    assert not out.exists()  # not even the baseline ran


def test_a_non_normalization_layer_without_a_weight_is_refused_beside_weight_layers():
    model = routed_classifier("transpose")
    scale = onnx.helper.make_node("Mul", ["logits_raw", "gamma"], ["logits"], name="layer_scale")
    for node in model.graph.node:
        node.output[:] = ["logits_raw" if o == "logits" else o for o in node.output]
    model.graph.node.append(scale)
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.linspace(0.5, 1.5, 10).astype(np.float32), "gamma"))
    layers = list_layers(model)
    assert [(layer.name, layer.roles) for layer in layers] == [("fc", ("weight", "bias")), ("layer_scale", ("input1",))]
    with pytest.raises(NoiseConfigError, match=r"^stuck-at treats only weight matrices as analog \(analog=weights\) "
                       r"and 1 selected layer\(s\) hold none, so noise would change nothing there: 'layer_scale' "
                       r"\(Mul\); select layers"):
        make_noise_model("stuck-at").check_layers(layers)
    make_noise_model("stuck-at").check_layers(layers[:1])  # --op-types MatMul: accepted
