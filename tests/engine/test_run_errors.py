"""engine/run_errors.py: ONNX Runtime errors while running a sweep.

* an ONNX Runtime error raised while *running* the baseline (an NHWC model with no static dims fed
  NCHW, BatchNormalization ``spatial=0``) is one line naming ONNX Runtime's message, the node, the
  input fed and its layout (assumed or read), the likely flag; exit 2;
* ONNX Runtime's own exception classes in noisy trials become error rows, the sweep exits 1, and
  report.md marks the numbers they are missing from; a model ONNX Runtime cannot load stops the
  sweep with one line and exit 2 before any trial is stored.

Models and data are built here (the colour classifier of :mod:`tests._colour`: 100% clean top-1 by
construction).
"""

from __future__ import annotations

import re

import numpy as np
import onnx
import polars as pl
import pytest
from onnx import helper, numpy_helper
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from onnxnoise.config import RunConfig
from onnxnoise.engine.context import prepare_context
from onnxnoise.engine.run_errors import describe_run_error
from onnxnoise.engine.runtime import SessionFactory

from tests._builders import tiny_cnn
from tests._checks import flat, run_cli, stored_frame
from tests._colour import colour_model, colour_npz


SWEEP = ("--preprocess", "raw", "--snr", "100,10", "--seeds", "2", "--device", "cpu")


# ---------------------------------------------------------------- class 4 in sweeps and reports


# ---------------------------------------------------------------- class 5: ONNX Runtime errors while running


def _nhwc_colour_model() -> onnx.ModelProto:
    """The colour classifier behind Transpose(NHWC -> NCHW) and an identity 1x1 Conv; input dims all symbolic."""
    model = colour_model()
    graph = model.graph
    for i, name in enumerate(("N", "H", "W", "C")):
        dim = graph.input[0].type.tensor_type.shape.dim[i]
        dim.Clear()
        dim.dim_param = name
    graph.initializer.append(numpy_helper.from_array(np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1), "mix.weight"))
    nodes = list(graph.node)
    nodes[0].input[0] = "mixed"
    del graph.node[:]
    graph.node.extend([helper.make_node("Transpose", ["input"], ["nchw"], name="to_nchw", perm=[0, 3, 1, 2]),
                       helper.make_node("Conv", ["nchw", "mix.weight"], ["mixed"], name="mix"), *nodes])
    onnx.checker.check_model(model)
    return model


def _bn_spatial0_model() -> onnx.ModelProto:
    """Opset 8: BatchNormalization(spatial=0) with per-channel (3,) parameters on the input, then the colour classifier."""
    model = colour_model()
    graph = model.graph
    for name, value in (("bn.scale", 1.0), ("bn.bias", 0.0), ("bn.mean", 0.0), ("bn.var", 1.0)):
        graph.initializer.append(numpy_helper.from_array(np.full(3, value, np.float32), name))
    nodes = list(graph.node)
    nodes[0].input[0] = "normed"
    del graph.node[:]
    graph.node.extend([helper.make_node("BatchNormalization", ["input", "bn.scale", "bn.bias", "bn.mean", "bn.var"],
                                        ["normed"], name="bn", spatial=0), *nodes])
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", 8))
    onnx.checker.check_model(model)
    return model


def _error_line(capfd, argv) -> tuple[int, str]:
    """Exit code and the one stderr line (also ONNX Runtime's own C++ log would land on fd 2)."""
    code, _, err = run_cli(capfd, *argv)
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return code, lines[0]


@pytest.mark.parametrize("command", ["bench", "sweep"])
def test_nhwc_model_without_static_dims_fed_nchw_is_one_line(command, tmp_path, capfd):
    model = tmp_path / "nhwc.onnx"
    onnx.save(_nhwc_colour_model(), str(model))
    data = colour_npz(tmp_path / "d.npz")
    argv = [command, model, "--data", data, "--preprocess", "raw", "--snr", "100", "--seeds", "1",
            "--device", "cpu", "--out", tmp_path / "run"]
    code, line = _error_line(capfd, argv)
    assert code == 2
    # ONNX Runtime's graph optimizer may rename the Conv (e.g. 'mixed_nchwc'); the model's node is named then.
    pattern = (r"onnxnoise: error: the clean baseline trial failed, so no noisy trial was run: onnxruntime Fail in "
               r"Conv node (?:'mix'|'mixed\w+' \(the optimized graph's name for model node 'mix'\)): Input channels C is "
               r"not equal to kernel channels \* group\. C: 8 kernel channels: 3 group: 1; fed input 'input' float32 "
               r"\(60, 3, 8, 8\) as NCHW \(assumed: the model's input shape \[N, H, W, C\] does not say where the "
               r"channels are, so the layout comes from the --preprocess raw preset\); likely fix: `--layout NHWC` "
               r"\(the failed row is recorded\)")
    assert re.fullmatch(pattern, line), line

    code, _, err = run_cli(capfd, *argv, "--layout", "NHWC", "--expect-top1", "100", "--tolerance", "0")
    assert code == 0, err  # the flag it names fixes it: 100% clean top-1


def test_batchnorm_spatial0_is_one_line_naming_the_node(tmp_path, capfd):
    model = tmp_path / "bn.onnx"
    onnx.save(_bn_spatial0_model(), str(model))
    code, line = _error_line(capfd, ["sweep", model, "--data", colour_npz(tmp_path / "d.npz"), "--preprocess", "raw",
                                     "--snr", "100", "--seeds", "1", "--device", "cpu", "--out", tmp_path / "run"])
    assert code == 2
    assert line == (
        "onnxnoise: error: the clean baseline trial failed, so no noisy trial was run: onnxruntime InvalidArgument in "
        "BatchNormalization node 'bn': Invalid input scale: NumDimensions() != 3; fed input 'input' float32 "
        "(60, 3, 8, 8) as NCHW (read from the model's input shape); likely fix: none of --layout/--crop: "
        "BatchNormalization 'bn' has spatial=0, which onnxruntime runs only with per-activation (C x H x W) "
        "parameters, and this model has per-channel ones; re-export it with spatial=1 (opset 9 or later) "
        "(the failed row is recorded)")
    trials = stored_frame(tmp_path / "run")
    assert trials["mode"].to_list() == ["baseline"]
    assert trials["error"][0].startswith("InvalidArgument: Non-zero status code returned while running "
                                         "BatchNormalization node. Name:'bn'")


def test_describe_run_error_messages(colour_onnx, tmp_path):
    context = prepare_context(RunConfig(model=colour_onnx, data=colour_npz(tmp_path / "d.npz"), preset="raw", device="cpu",
                                        batch_size=16))
    fed = "fed input 'input' float32 (16, 3, 8, 8) as NCHW (read from the model's input shape)"
    gemm = ("InvalidArgument: Non-zero status code returned while running Gemm node. Name:'fc' Status Message: "
            "GEMM: Dimension mismatch, W: {12,3} K: 8 N:12")
    assert describe_run_error(context, gemm) == (
        f"onnxruntime InvalidArgument in Gemm node 'fc': GEMM: Dimension mismatch, W: {{12,3}} K: 8 N:12; {fed}; "
        "likely fix: `--crop` (and `--resize`) if the model expects other than 8x8 images")
    matmul = ("Fail: Non-zero status code returned while running MatMul node. Name:'mm' Status Message: "
              "matmul_helper.h:59 Compute MatMul dimension mismatch")  # 'mm' is not a node of this model
    assert describe_run_error(context, matmul).startswith(
        "onnxruntime Fail in MatMul node 'mm': MatMul dimension mismatch; ")
    unnamed = "RuntimeException: Non-zero status code returned while running Reshape node."
    assert describe_run_error(context, unnamed).startswith(f"onnxruntime RuntimeException: {unnamed[18:]}; {fed}")
    assert describe_run_error(context, "ValueError: not from onnxruntime") is None
    assert describe_run_error(context, "SessionError: injected") is None


# ---------------------------------------------------------------- class 6: partial failures and unloadable models


def _fail_noisy_sessions(monkeypatch, fail) -> None:
    """Session creation raises onnxruntime's own ``Fail`` (not a RuntimeError) when ``fail(n, replacements)``.

    ``n`` counts the noisy sessions (those with replaced weights) from 1; clean ones always work.
    """
    create = SessionFactory.create
    seen = {"noisy": 0}

    def maybe_failing(self, replacements=None, **options):
        if replacements:
            seen["noisy"] += 1
            if fail(seen["noisy"], replacements):
                raise ort_state.Fail("[ONNXRuntimeError] : 1 : FAIL : injected")
        return create(self, replacements, **options)

    monkeypatch.setattr(SessionFactory, "create", maybe_failing)


def test_onnxruntime_errors_in_noisy_trials_are_rows_flagged_in_report(colour_onnx, tmp_path, capsys, monkeypatch):
    data = colour_npz(tmp_path / "d.npz")
    out = tmp_path / "run"
    # one trial at a time (--threads 1): side by side, the order sessions are created in is the threads' (the
    # n-th noisy session would be any trial's)
    args = ["sweep", colour_onnx, "--data", data, *SWEEP, "--threads", "1", "--out", out]
    _fail_noisy_sessions(monkeypatch, lambda n, _: n in (1, 3))  # seed 0 of each SNR
    code, stdout, err = run_cli(capsys, *args)
    assert code == 1, err
    assert "5 trials planned: 0 already done, 5 run now, 2 failed" in flat(stdout)
    trials = stored_frame(out).sort("key")
    failed = trials.filter(pl.col("error").is_not_null())
    assert failed["error"].to_list() == ["Fail: injected"] * 2
    assert sorted(failed["strength"].to_list()) == [10.0, 100.0] and failed["seed"].to_list() == [0, 0]

    code, stdout, err = run_cli(capsys, "report", out)
    assert code == 0, err
    markdown = (out / "report.md").read_text()
    assert ("- **WARNING**: colour.onnx: 2 of 4 all trials failed (first error: Fail: injected); the numbers they "
            "belong to are marked and average fewer seeds or layers") in markdown
    table = markdown.split("## Noise in all layers")[1].split("\n\n")[1]  # the whole-model table only
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| colour.onnx | SNR")]
    # One row per SNR (a failed trial groups with its seeds), the seed count says what is missing.
    assert [row[1:3] for row in rows] == [["SNR 100 (1% noise)", "1 of 2; 1 failed"],
                                          ["SNR 10 (10% noise)", "1 of 2; 1 failed"]]
    assert "WARNING: colour.onnx: 2 of 4 all trials failed" in flat(stdout)
    assert "failed" in stdout.splitlines()[[i for i, l in enumerate(stdout.splitlines()) if "seeds" in l][0]]

    monkeypatch.undo()  # resumed: the failed trials run again, nothing is flagged any more
    code, stdout, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "5 trials planned: 3 already done, 2 run now" in flat(stdout)
    run_cli(capsys, "report", out)
    markdown = (out / "report.md").read_text()
    assert "WARNING" not in markdown and "failed;" not in markdown and "1 of 2" not in markdown


def test_per_layer_failures_are_marked_in_the_a_avr_table(tmp_path, capsys, monkeypatch):
    model = tmp_path / "tiny.onnx"
    onnx.save(tiny_cnn(), str(model))
    data = tmp_path / "tiny.npz"
    rng = np.random.default_rng(0)
    np.savez(data, images=rng.integers(0, 256, size=(30, 8, 8, 3), dtype=np.uint8),
             labels=np.arange(30, dtype=np.int64) % 10)
    out = tmp_path / "run"
    _fail_noisy_sessions(monkeypatch, lambda _, replacements: "conv.weight" in replacements)  # layer 0 always fails
    code, stdout, err = run_cli(capsys, "sweep", model, "--data", data, "--preprocess", "raw", "--mode", "per-layer",
                             "--no-prefix-reuse", "--snr", "10", "--seeds", "2", "--device", "cpu", "--out", out)
    assert code == 1, err
    assert "7 trials planned: 0 already done, 7 run now, 2 failed" in flat(stdout)
    run_cli(capsys, "report", out)
    markdown = (out / "report.md").read_text()
    assert "- **WARNING**: tiny.onnx: 2 of 6 per-layer trials failed (first error: Fail: injected)" in markdown
    table = markdown.split("## Noise in one layer at a time: A_avr")[1].split("\n\n")[1]
    row = next(line for line in table.splitlines() if line.startswith("| tiny.onnx | SNR 10 "))
    # A_avr averages the 2 layers with results: the third, all failed, is named, as are the failed trials.
    assert row.split(" | ")[2:4] == ["2 of 3; 1 all failed", "2; 2 trials failed"]


def test_sweep_of_a_model_onnxruntime_cannot_load_stops_with_one_line(tmp_path, capfd):
    model = colour_model()
    model.graph.node.insert(0, helper.make_node("Scramble", ["input"], ["scrambled"], name="scramble",
                                                domain="com.example.nowhere"))
    model.graph.node[1].input[0] = "scrambled"
    model.opset_import.append(helper.make_opsetid("com.example.nowhere", 1))
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    out = tmp_path / "run"
    code, line = _error_line(capfd, ["sweep", path, "--data", colour_npz(tmp_path / "d.npz"), *SWEEP, "--out", out])
    assert code == 2
    assert line.startswith("onnxnoise: error: onnxruntime could not load the model: ")
    assert "com.example.nowhere" in line
    assert not (out / "trials.sqlite").exists()  # nothing stored: `report` cannot show a table of '-'
