"""CLI: bench end to end on a tiny model, layers, and bad input -> one line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import polars as pl
import pytest
from _builders import tiny_cnn
from onnx import TensorProto, helper

from onnxnoise.cli import main


@pytest.fixture()
def tiny(tmp_path) -> tuple[Path, Path]:
    """A tiny 8x8 RGB classifier and a 60-image .npz dataset for it."""
    model_path = tmp_path / "tiny.onnx"
    onnx.save(tiny_cnn(), str(model_path))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(60, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(60, dtype=np.int64) % 10
    data_path = tmp_path / "tiny.npz"
    np.savez(data_path, images=images, labels=labels)
    return model_path, data_path


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_bench_tiny_json(tiny, tmp_path, capsys):
    model, data = tiny
    out_dir = tmp_path / "run"
    code, out, err = _run(capsys, "bench", model, "--data", data, "--snr", "100,2", "--seeds", "2",
                          "--preprocess", "raw", "--out", out_dir, "--json", "--device", "cpu")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["images"] == 60
    assert summary["provider"] == "CPUExecutionProvider"
    # Baseline equals a direct ONNX Runtime evaluation with the same preprocessing (x / 255).
    npz = np.load(data)
    x = (npz["images"].astype(np.float32) / 255.0).transpose(0, 3, 1, 2)
    logits = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    expected = 100.0 * float((logits.argmax(1) == npz["labels"]).mean())
    assert summary["baseline"]["top1_acc"] == pytest.approx(expected)
    trials = pl.read_parquet(out_dir / "trials.parquet")
    assert trials.height == 1 + 2 * 2
    assert trials["snr"].to_list()[1:] == [100.0, 100.0, 2.0, 2.0]
    assert trials.filter(pl.col("kind") == "baseline")["top1_norm"][0] == pytest.approx(1.0)
    assert pl.read_csv(out_dir / "trials.csv").height == 5
    assert (out_dir / "bench.json").is_file()


def test_layers_json(tiny, capsys):
    code, out, _ = _run(capsys, "layers", tiny[0], "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["total_layers"] == 3
    assert payload["total_params"] == 112 + 16 + 50
    assert [layer["op_type"] for layer in payload["layers"]] == ["Conv", "BatchNormalization", "Gemm"]


def _no_weights_model(path: Path) -> Path:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("case, expected", [
    ("missing_model", "model file not found"),
    ("not_onnx", "is not an ONNX model"),
    ("no_weights", "has no float initializers"),
    ("snr_zero", "`--snr` value '0' must be > 0"),
    ("snr_negative", "`--snr` value '-5' must be > 0"),
    ("snr_text", "`--snr` value 'ten' is not a number"),
    ("missing_data", "does not exist"),
    ("empty_folder", "empty"),
    ("unknown_layout", "dataset"),
    ("labels_beyond", "but the model has 10 outputs"),
])
def test_bad_input_one_line_exit_2(case, expected, tiny, tmp_path, capsys):
    model, data = tiny
    args = ["bench", model, "--data", data, "--snr", "10", "--seeds", "1", "--preprocess", "raw",
            "--out", tmp_path / "out"]
    if case == "missing_model":
        args[1] = tmp_path / "nope.onnx"
    elif case == "not_onnx":
        bad = tmp_path / "bad.onnx"
        bad.write_bytes(b"\x00\x01garbage" * 100)
        args[1] = bad
    elif case == "no_weights":
        args[1] = _no_weights_model(tmp_path / "relu.onnx")
    elif case.startswith("snr"):
        args[5] = {"snr_zero": "0", "snr_negative": "-5", "snr_text": "ten"}[case]
    elif case == "missing_data":
        args[3] = tmp_path / "no_such_folder"
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        args[3] = tmp_path / "empty"
    elif case == "unknown_layout":
        folder = tmp_path / "weird"
        folder.mkdir()
        (folder / "notes.txt").write_text("hello")
        args[3] = folder
    elif case == "labels_beyond":
        npz = np.load(data)
        np.savez(tmp_path / "wide.npz", images=npz["images"], labels=np.arange(60) % 20)
        args[3] = tmp_path / "wide.npz"
    code, out, err = _run(capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("onnxnoise: error:") or lines[0].startswith("onnxnoise bench: error:")
    assert expected.lower() in lines[0].lower()
    assert "Traceback" not in err


def test_console_script_bad_snr_no_traceback(tiny):
    model, data = tiny
    proc = subprocess.run([sys.executable, "-m", "onnxnoise.cli", "bench", str(model), "--data", str(data),
                           "--snr", "-1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "onnxnoise: error: `--snr` value '-1' must be > 0"


def test_cuda_unavailable_is_an_error(tiny, tmp_path, capsys, monkeypatch):
    import onnxnoise.engine.runtime as runtime

    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    model, data = tiny
    code, _, err = _run(capsys, "bench", model, "--data", data, "--snr", "10", "--device", "cuda",
                        "--preprocess", "raw", "--out", tmp_path / "o")
    assert code == 2
    assert "`--device cuda` but this onnxruntime has no CUDAExecutionProvider" in err


def test_label_offset_shifts_labels(tiny, tmp_path, capsys):
    model, data = tiny
    npz = np.load(data)
    labels = np.arange(60) % 9  # 9 classes; the model's output k + 1 stands for class k
    shifted = tmp_path / "nine.npz"
    np.savez(shifted, images=npz["images"], labels=labels)
    code, out, err = _run(capsys, "bench", model, "--data", shifted, "--snr", "10", "--seeds", "1",
                          "--preprocess", "raw", "--label-offset", "1", "--out", tmp_path / "o", "--json")
    assert code == 0, err
    x = (npz["images"].astype(np.float32) / 255.0).transpose(0, 3, 1, 2)
    logits = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    summary = json.loads(out)
    assert summary["label_offset"] == 1
    assert summary["baseline"]["top1_acc"] == pytest.approx(100.0 * float((logits.argmax(1) == labels + 1).mean()))
    code, _, err = _run(capsys, "bench", model, "--data", shifted, "--snr", "10", "--preprocess", "raw",
                        "--label-offset", "2", "--out", tmp_path / "o2")
    assert code == 2 and "beyond the model's 10 outputs" in err


def test_preprocessing_precedence_flag_preset_metadata():
    from onnxnoise.bench import BenchConfig, prepare_bench
    from onnxnoise.demo import demo_paths

    model, data = demo_paths()
    meta = prepare_bench(BenchConfig(model=model, data=data, snrs=(), limit=20)).meta
    assert meta["preprocess_source"] == "model metadata"
    assert meta["preprocess"]["mean"] == pytest.approx([0.286])  # the demo's training statistics
    meta = prepare_bench(BenchConfig(model=model, data=data, snrs=(), limit=20, preset="mnist")).meta
    assert meta["preprocess_source"] == "--preprocess"
    assert meta["preprocess"]["mean"] == pytest.approx([0.5]) and meta["preprocess"]["channels"] == 1
    meta = prepare_bench(BenchConfig(model=model, data=data, snrs=(), limit=20, preset="mnist",
                                     preprocess={"mean": (0.1,)})).meta
    assert meta["preprocess"]["mean"] == pytest.approx([0.1])
