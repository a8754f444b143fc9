"""A gate on a metric that cannot change: top-5 on a model with five outputs or fewer is refused
by check and a warning in bench, sweep and report (the 4-output colour classifier: top-1 100% clean)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from onnxnoise.check.gate import identical_draws
from onnxnoise.config import RunConfig
from onnxnoise.noise_config import NoiseConfig
from onnxnoise.tile_config import TileConfig
from onnxnoise.engine.metrics import fixed_top5

from tests._checks import flat, one_line, run_cli, strict_json
from tests._colour import colour_images, colour_model, colour_npz

FOUR = fixed_top5(4)


@pytest.fixture()
def four_outputs(tmp_path) -> tuple[Path, Path]:
    """The colour classifier cut to its first 4 classes, and 10 solid images of each (top-1 100% clean)."""
    model = colour_model()
    for tensor in model.graph.initializer:
        tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor)[:4].copy(), tensor.name))
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", 4]))
    onnx.checker.check_model(model)
    onnx.save(model, str(tmp_path / "four.onnx"))
    images = np.concatenate([colour_images(k, 10) for k in range(4)])
    np.savez(tmp_path / "d.npz", images=images, labels=np.repeat(np.arange(4), 10))
    return tmp_path / "four.onnx", tmp_path / "d.npz"


def test_check_refuses_top5_on_four_outputs(four_outputs, tmp_path, capsys):
    model, data = four_outputs
    args = ["check", model, "--data", data, "--preprocess", "raw", "--snr", "0.5", "--device", "cpu",
            "--max-drop", "1", "--out", tmp_path / "c"]
    code, _, err = run_cli(capsys, *args, "--metric", "top5")
    assert code == 2
    assert one_line(err) == ("onnxnoise: error: --metric top5 cannot gate this model: top-5 cannot change: the model "
                             "has 4 outputs, so every label is always among its 5 highest scores (only non-finite "
                             "scores miss); use --metric top1")
    symbolic = onnx.load(str(model))  # the class count left symbolic in the graph: shape inference finds 4
    symbolic.graph.output[0].CopyFrom(helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", "C"]))
    onnx.save(symbolic, str(tmp_path / "symbolic.onnx"))
    code, _, err = run_cli(capsys, *[tmp_path / "symbolic.onnx" if a == model else a for a in args], "--metric", "top5")
    assert code == 2 and "cannot gate this model: top-5 cannot change: the model has 4 outputs" in one_line(err)
    code, out, err = run_cli(capsys, *args, "--max-seeds", "5")  # top-1 gates, and fails under this noise
    assert code == 1, err
    assert "WARNING: " + FOUR in flat(out + err)


def test_bench_sweep_and_report_warn_that_top5_cannot_change(four_outputs, tmp_path, capsys):
    model, data = four_outputs
    common = ["--data", data, "--preprocess", "raw", "--snr", "0.5", "--seeds", "2", "--device", "cpu"]
    code, out, err = run_cli(capsys, "bench", model, *common, "--out", tmp_path / "b", "--json")
    assert code == 0, err
    summary = strict_json(out)
    noisy = [row for row in summary["results"] if row["mode"] == "all"][0]
    assert noisy["top1_acc_mean"] < 75.0 and noisy["top5_acc_mean"] == 100.0  # top-1 lost, top-5 cannot move
    # both draws at SNR 0.5 fall to chance (4 classes): the collapse warning every noise model gets follows
    assert summary["warnings"] == [FOUR, "gaussian-snr: 2 of 2 draws collapsed to chance or far below the others"]
    assert "WARNING: " + FOUR in flat(err)
    code, out, err = run_cli(capsys, "sweep", model, *common, "--out", tmp_path / "s")
    assert code == 0, err
    assert "WARNING: " + FOUR in flat(out + err)
    code, out, err = run_cli(capsys, "report", tmp_path / "s")
    assert code == 0, err
    assert f"WARNING: four.onnx: {FOUR}" in flat(out)
    assert f"- **WARNING**: four.onnx: {FOUR}" in (tmp_path / "s" / "report.md").read_text()


@pytest.mark.parametrize("limit", ["1", None])
def test_check_on_one_image_is_one_line_exit_2(limit, tmp_path, capsys):
    """One image has no paired variance: check said so with a ValueError traceback (exit 1)."""
    onnx.save(colour_model(), str(tmp_path / "m.onnx"))
    if limit is None:  # a dataset of one image
        np.savez(tmp_path / "d.npz", images=colour_images(3, 1), labels=np.array([3]), num_classes=np.int64(12))
        data, extra = tmp_path / "d.npz", []
    else:
        data, extra = colour_npz(tmp_path / "d.npz"), ["--limit", limit]
    code, _, err = run_cli(capsys, "check", tmp_path / "m.onnx", "--data", data, "--preprocess", "raw", "--snr", "10",
                           "--max-drop", "50", "--device", "cpu", "--out", tmp_path / "c", *extra)
    assert code == 2
    assert one_line(err) == ("onnxnoise: error: check needs at least 2 images to bound a drop, got 1; evaluate more "
                             "images (a larger --limit or dataset)")


@pytest.mark.parametrize(("noise", "read_noise", "identical"), [
    ("none", 0.0, True), ("none", 0.04, False), ("gaussian-snr", 0.0, False)])
def test_identical_draws_only_without_weight_and_read_noise(noise, read_noise, identical, tmp_path):
    """Every draw is the same trial only for `--noise none` without read noise (DAC/ADC are deterministic)."""
    config = RunConfig(model=tmp_path / "m.onnx", data=tmp_path / "d.npz", noise=NoiseConfig(model=noise),
                       tile=TileConfig(dac_bits=8, adc_bits=8, read_noise=read_noise))
    assert identical_draws(config) is identical
