"""engine/baseline_checks.py: the clean baseline runs first and is checked before any noisy trial.

* a baseline that fails at run time stops bench and sweep with one line and exit 2: ONNX Runtime
  raises its own exception classes while running a batch (``Fail``, ``RuntimeException``, ...; not
  ``RuntimeError``); the engine turns any failure into an error row, and a failed *baseline* is a
  deterministic failure of the model as given, so no noisy trial runs;
* a clean top-1 at chance level (binomial interval) is a prominent warning in bench's and the sweep's
  output, in ``report``'s output and report.md;
* ``--expect-top1`` / ``--tolerance`` (and the experiment keys ``expect_top1`` / ``tolerance``) stop a
  bench or sweep with exit 1 before any noisy trial, also when the baseline is already stored; a bad
  value is bad input (exit 2).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import polars as pl
import pytest
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from onnxnoise.bench import chance_warning
from onnxnoise.cli import main
from onnxnoise.store import open_store

from tests._builders import tiny_cnn
from tests._checks import flat, run_cli, stored_frame, strict_json
from tests._colour import CLASSES, colour_folder, colour_model, colour_npz

ORT_MESSAGE = "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running Reshape node."


@pytest.fixture()
def failing_run(tmp_path, monkeypatch):
    model_path = tmp_path / "tiny.onnx"
    onnx.save(tiny_cnn(), str(model_path))
    data_path = tmp_path / "tiny.npz"
    rng = np.random.default_rng(0)
    np.savez(data_path, images=rng.integers(0, 256, size=(20, 8, 8, 3), dtype=np.uint8),
             labels=np.arange(20, dtype=np.int64) % 10)

    def fail(*args, **kwargs):
        raise ort_state.RuntimeException(ORT_MESSAGE)

    monkeypatch.setattr("onnxnoise.engine.trial.evaluate", fail)
    return model_path, data_path


@pytest.mark.parametrize("command", ["bench", "sweep"])
def test_failed_baseline_stops_with_one_line(failing_run, tmp_path, capsys, command):
    model, data = failing_run
    out = tmp_path / "out"
    code = main([command, str(model), "--data", str(data), "--preprocess", "raw", "--device", "cpu",
                 "--snr", "10", "--seeds", "2", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("onnxnoise: error:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("onnxnoise: error: the clean baseline trial failed, so no noisy trial was run: ")
    assert "RuntimeException" in lines[0] and "Reshape node" in lines[0]
    if command == "bench":
        trials = pl.read_parquet(out / "trials.parquet")
    else:
        with open_store(out / "trials.sqlite", create=False) as store:
            trials = store.to_frame()
    assert trials["mode"].to_list() == ["baseline"] and trials["error"][0] == "RuntimeException: Non-zero status code returned while running Reshape node."


CHANCE = ("clean top-1 0.00% (0/60 images, 95% interval 0.00-6.02%) is at or below chance (1/12 classes = "
          "8.33%): the preprocessing, the labels or the dataset layout are probably wrong")


SWEEP = ("--preprocess", "raw", "--snr", "100,10", "--seeds", "2", "--device", "cpu")


def test_sweep_baseline_at_chance_warns_in_sweep_report_and_report_md(colour_onnx, tmp_path, capsys):
    data = colour_npz(tmp_path / "shifted.npz", shift=1)  # every label one class off: exactly 0%
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "sweep", colour_onnx, "--data", data, *SWEEP, "--out", out)
    assert code == 0, err
    assert "WARNING: " + CHANCE in flat(stdout)
    assert stored_frame(out)["mode"].to_list() == ["baseline"] + ["all"] * 4  # a warning, not a stop

    code, stdout, err = run_cli(capsys, "report", out)
    assert code == 0, err
    assert "WARNING: colour.onnx on shifted: " + CHANCE in flat(stdout)
    markdown = (out / "report.md").read_text()
    assert f"## Warnings\n\n- **WARNING**: colour.onnx on shifted: {CHANCE}\n" in markdown


def test_sweep_expect_top1_stops_before_noisy_trials_also_on_resume(colour_onnx, tmp_path, capsys):
    data = colour_npz(tmp_path / "d.npz")
    out = tmp_path / "run"
    args = ["sweep", colour_onnx, "--data", data, *SWEEP, "--out", out]
    expected = ("onnxnoise: error: clean top-1 100.00% is outside the expected 99% ± 0.5 (--expect-top1 99 "
                "--tolerance 0.5); no noisy trial was run")
    code, _, err = run_cli(capsys, *args, "--expect-top1", "99", "--tolerance", "0.5")
    assert code == 1
    assert err.splitlines() == [expected]
    assert stored_frame(out)["mode"].to_list() == ["baseline"]

    # Resumed: the stored baseline is checked again, nothing else runs.
    code, stdout, err = run_cli(capsys, *args, "--expect-top1", "99")
    assert (code, err.splitlines()) == (1, [expected])
    assert stored_frame(out)["mode"].to_list() == ["baseline"]

    code, stdout, err = run_cli(capsys, *args, "--expect-top1", "100", "--tolerance", "0")
    assert code == 0, err
    assert "5 trials planned: 1 already done, 4 run now" in flat(stdout) and "WARNING" not in stdout
    assert stored_frame(out)["mode"].to_list() == ["baseline"] + ["all"] * 4


def _experiment(tmp_path: Path, model: Path, data: Path, *, model_keys: str = "", sweep_keys: str = "") -> Path:
    path = tmp_path / "study.toml"
    path.write_text(f"""
name = "study"
out = "{tmp_path / 'runs'}"
[data]
path = "{data}"
preprocess = "raw"
[models.colour]
path = "{model}"
{model_keys}
[[sweeps]]
snr = [100]
seeds = 1
device = "cpu"
{sweep_keys}
""")
    return path


def test_experiment_expect_top1_keys(colour_onnx, tmp_path, capsys):
    data = colour_npz(tmp_path / "d.npz")
    runs = tmp_path / "runs" / "colour"
    code, _, err = run_cli(capsys, "sweep", "--config", _experiment(tmp_path, colour_onnx, data, model_keys="expect_top1 = 90"))
    assert code == 1
    assert err.splitlines() == ["onnxnoise: error: clean top-1 100.00% is outside the expected 90% ± 0.5 "
                                "(--expect-top1 90 --tolerance 0.5); no noisy trial was run"]
    assert stored_frame(runs)["mode"].to_list() == ["baseline"]

    # A sweep's own keys override the model's.
    config = _experiment(tmp_path, colour_onnx, data, model_keys="expect_top1 = 90",
                         sweep_keys="expect_top1 = 95\ntolerance = 5")
    code, _, err = run_cli(capsys, "sweep", "--config", config)
    assert code == 0, err
    assert stored_frame(runs)["mode"].to_list() == ["baseline", "all"]

    config = _experiment(tmp_path, colour_onnx, data, sweep_keys="expect_top1 = 120")
    code, _, err = run_cli(capsys, "sweep", "--config", config)
    assert code == 2
    assert err == (f"onnxnoise: error: {config}: [[sweeps]] #1: `expect_top1` must be a percentage from 0 to 100, "
                   "got 120\n")


def test_baseline_at_chance_is_a_prominent_warning(colour_onnx, tmp_path, capsys):
    data = colour_npz(tmp_path / "shifted.npz", shift=1)  # every label one class off: exactly 0%
    out_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "bench", colour_onnx, "--data", data, "--preprocess", "raw", "--snr", "100",
                          "--seeds", "1", "--device", "cpu", "--out", out_dir, "--json")
    assert code == 0, err
    expected = ("clean top-1 0.00% (0/60 images, 95% interval 0.00-6.02%) is at or below chance (1/12 classes = "
                "8.33%): the preprocessing, the labels or the dataset layout are probably wrong")
    summary = strict_json(out)
    assert summary["baseline"]["top1_acc"] == 0.0
    assert summary["warnings"] == [expected]
    assert strict_json((out_dir / "bench.json").read_text())["warnings"] == [expected]
    assert "WARNING: " + expected in " ".join(err.split())


def test_chance_warning_uses_the_binomial_interval():
    assert chance_warning(0, 60, 12).startswith("clean top-1 0.00% ")
    # 9/60 = 15% is above 1/12 = 8.33%, but its 95% Wilson interval (8.1-26.1%) reaches chance.
    assert "is within the 95% interval of chance" in chance_warning(9, 60, 12)
    assert chance_warning(12, 60, 12) is None  # 20%, interval 11.8-31.8%
    assert chance_warning(60, 60, 12) is None
    assert chance_warning(0, 10, 1) is None  # one class: no chance level to compare with


def test_expect_top1_outside_tolerance_exits_1_before_noisy_trials(colour_onnx, tmp_path, capsys):
    root = colour_folder(tmp_path / "v2", {str(k): k for k in range(CLASSES)})
    out_dir = tmp_path / "run"
    args = ["bench", colour_onnx, "--data", root, "--preprocess", "raw", "--snr", "100,10", "--seeds", "2",
            "--device", "cpu", "--out", out_dir]
    code, out, err = run_cli(capsys, *args, "--expect-top1", "99", "--tolerance", "0.5")
    assert code == 1
    assert err.splitlines()[-1] == ("onnxnoise: error: clean top-1 100.00% is outside the expected 99% ± 0.5 "
                                    "(--expect-top1 99 --tolerance 0.5); no noisy trial was run")
    trials = pl.read_parquet(out_dir / "trials.parquet")
    assert trials["mode"].to_list() == ["baseline"]  # no noisy trial ran
    assert not (out_dir / "bench.json").exists()

    code, out, err = run_cli(capsys, *args, "--expect-top1", "99.6", "--json")  # default tolerance 0.5 points
    assert code == 0, err
    assert pl.read_parquet(out_dir / "trials.parquet")["mode"].to_list() == ["baseline"] + ["all"] * 4
    assert strict_json(out)["baseline"]["top1_acc"] == 100.0


def test_expect_top1_bad_value_is_bad_input(colour_onnx, tmp_path, capsys):
    code, _, err = run_cli(capsys, "bench", colour_onnx, "--data", colour_npz(tmp_path / "d.npz"), "--preprocess", "raw",
                        "--expect-top1", "120", "--device", "cpu")
    assert code == 2
    assert err == "onnxnoise: error: `expect_top1` must be a percentage from 0 to 100, got 120.0\n"


def test_chance_warning_names_the_float_outputs_when_a_feature_output_comes_first(tmp_path, capsys):
    """A model whose first float output is a feature vector ``feat [N, 192]`` and whose class scores come second:
    scored from ``feat``, the colour classifier (100% by construction on its labels) is at 0%, and the chance
    warning names the output read, the other one and ``--score-output``, which gives 100%."""
    model = colour_model()
    model.graph.node.append(onnx.helper.make_node("Flatten", ["input"], ["feat"], name="feat"))
    model.graph.output.insert(0, onnx.helper.make_tensor_value_info("feat", onnx.TensorProto.FLOAT, ["N", 192]))
    onnx.save(model, str(tmp_path / "two.onnx"))
    data = colour_npz(tmp_path / "d.npz")
    common = ["bench", tmp_path / "two.onnx", "--data", data, "--preprocess", "raw", "--snr", "10", "--seeds", "1",
              "--device", "cpu", "--json"]
    code, out, err = run_cli(capsys, *common, "--out", tmp_path / "a")
    assert code == 0, err
    summary = strict_json(out)
    assert summary["results"][0]["top1_acc_mean"] == 0.0
    assert summary["warnings"] == [chance_warning(0, 60, CLASSES) + "; the scores were read from `feat`; other float "
                                   "outputs: logits [N, 12]; choose one with --score-output NAME"]
    code, out, err = run_cli(capsys, *common, "--score-output", "logits", "--out", tmp_path / "b")
    assert code == 0, err
    summary = strict_json(out)
    assert summary["results"][0]["top1_acc_mean"] == 100.0 and summary["warnings"] == []
