"""report/unchanged.py: a noised layer that a draw left exactly as it was is one WARNING line per model and
noise model, read from the trial column ``changed_values``, in bench, sweep and report (console and report.md)."""

from __future__ import annotations

import json

import onnx
import polars as pl

from onnxnoise.report.unchanged import unchanged_layers_warnings
from onnxnoise.store.schema import trial_frame

from tests._builders import conv_bn_resnet, labeled_npz, routed_classifier
from tests._checks import run_cli

TAIL = ("those trials ran those layers' clean values (column changed_values). A strength that changes nothing by "
        "definition (a fault rate of 0, a levels grid the weights already sit on) or an all-zero tensor does that; "
        "otherwise the layer is not noised as the run says")


def _row(changed, *, model="net", noise_model="stuck-at", strength=0.0, mode="all", error=None) -> dict:
    return {"model": model, "noise_model": noise_model, "noise": json.dumps({"params": {}}), "mode": mode,
            "strength": strength, "seed": 0, "error": error,
            "changed_values": None if changed is None else json.dumps(changed)}


def test_layers_with_zero_changed_values_are_named_with_what_was_seen():
    layers = {f"l{i}": 0 for i in range(7)}
    rows = [_row(None, mode="baseline", strength=None),
            _row({"fc": 0, "conv": 12}, strength=0.0),
            _row({"fc": 5, "conv": 12}, strength=0.5),
            _row({"fc": 0}, strength=0.0, error="RuntimeError: x"),        # failed: not read
            _row(None, strength=0.1),                                      # stored before the column: not counted
            _row(layers, model="other", noise_model="pcm", strength=60.0),
            _row({"fc": 3}, model="fine", noise_model="pcm", strength=60.0)]
    lines = unchanged_layers_warnings(trial_frame(rows))
    assert lines == [
        f"net: stuck-at changed no stored value of 1 noised layer(s) ('fc') in 1 of 2 noisy trial(s), at p = 0% "
        f"faulty devices: {TAIL}",
        f"other: pcm changed no stored value of 7 noised layer(s) ('l0', 'l1', 'l2', 'l3', 'l4' and 2 more) in 1 of 1 "
        f"noisy trial(s), at t = 1 min: {TAIL}"]
    assert unchanged_layers_warnings(trial_frame(rows[2:3])) == []
    assert unchanged_layers_warnings(pl.DataFrame({"mode": ["all"]})) == []  # no such column: nothing to say


def test_sweep_and_report_show_the_warning(tmp_path, capsys):
    model = routed_classifier("transpose")
    onnx.save(model, tmp_path / "t.onnx")
    data = labeled_npz(model, tmp_path / "t.npz", n=20, relabel=0.0).path
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "sweep", tmp_path / "t.onnx", "--data", data, "--preprocess", "raw",
                                "--noise", "stuck-at", "--rate", "0,1", "--seeds", "1", "--mode", "per-layer",
                                "--device", "cpu", "--out", out)
    assert code == 0, err
    line = (f"t.onnx: stuck-at changed no stored value of 1 noised layer(s) ('fc') in 1 of 2 noisy trial(s), at "
            f"p = 0% faulty devices: {TAIL}")
    assert f"WARNING: {line}" in " ".join(stdout.split())
    code, stdout, err = run_cli(capsys, "report", out)
    assert code == 0, err
    assert f"WARNING: {line}" in " ".join(stdout.split())
    assert f"- **WARNING**: {line}" in (out / "report.md").read_text()


def test_per_layer_trials_of_layers_the_noise_cannot_touch_are_named_with_the_fix():
    """A per-layer trial whose layer holds no tensor the noise model acts on (``changed_values`` ``{}``) ran the
    clean model: a BatchNormalization layer under pcm's analog=weights, a float layer under bit-flip."""
    def per_layer(layer, changed, noise_model="pcm"):
        return {**_row(changed, noise_model=noise_model, strength=60.0, mode="per-layer"),
                "layers": json.dumps([layer])}

    rows = [per_layer("conv", {"conv": 9}), per_layer("bn1", {}), per_layer("bn1", {}), per_layer("bn2", {}),
            per_layer("fc", {}, noise_model="bitflip"), {**_row({}, noise_model="pcm"), "layers": "[]"}]
    for row in rows:
        row["noise"] = json.dumps({"params": {}})
    lines = unchanged_layers_warnings(trial_frame(rows))
    assert lines == [
        "net: pcm acts on no tensor of 2 layer(s) ('bn1', 'bn2'): their 3 per-layer trial(s) ran the clean model; "
        "leave them out (--op-types Conv,ConvTranspose,Gemm,MatMul,Einsum: normalization layers stay digital under "
        "analog=weights) or treat every tensor as analog (--noise pcm:analog=all)",
        "net: bitflip acts on no tensor of 1 layer(s) ('fc'): their 1 per-layer trial(s) ran the clean model; leave "
        "them out (--op-types or --layer-regex)"]


def test_a_per_layer_pcm_sweep_of_a_conv_bn_network_names_its_batchnorm_layers(tmp_path, capsys):
    """The default selection of a Conv+BN network is not refused by pcm (BN layers are digital by design); the
    per-layer trials of its 6 BN layers ran the clean model, and the sweep says so (the 7 others change values)."""
    model = conv_bn_resnet()
    onnx.save(model, tmp_path / "bn.onnx")
    data = labeled_npz(model, tmp_path / "bn.npz", n=20).path
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "sweep", tmp_path / "bn.onnx", "--data", data, "--preprocess", "raw",
                                "--noise", "pcm", "--t", "1d", "--seeds", "1", "--mode", "per-layer",
                                "--device", "cpu", "--out", out)
    assert code == 0, err
    text = " ".join(stdout.split())
    assert "14 trials planned" in text  # the baseline and 13 layers: 6 Conv, 6 BatchNormalization, 1 Gemm
    assert "WARNING: bn.onnx: pcm acts on no tensor of 6 layer(s) (" in text
    assert "their 6 per-layer trial(s) ran the clean model" in text
