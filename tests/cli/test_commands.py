"""CLI commands: bench end to end on a tiny model, layers (and what it set aside, and why), report's blame
table and compare's verdicts on two tiny sweeps, and bad input -> one line, exit 2."""

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
from onnx import TensorProto, helper

import onnxnoise
from onnxnoise.cli import main
from onnxnoise.config import RunConfig
from onnxnoise.engine.context import prepare_context
from onnxnoise.noise import NOISE_MODELS

from tests._builders import conv_bn_resnet, labeled_npz, tiny_cnn
from tests._checks import one_line, run_cli
from tests._disk import fill_disk, leftovers
from tests._graphs import if_model, normalized_inside, save_model


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


def test_bench_closes_with_the_files_of_its_run_folder(tiny, tmp_path, capsys, monkeypatch):
    """The closing line names every table bench wrote (was: the trials files only), one line within 80 columns
    for a short folder; the API's BenchRun.files are the same files, and they are the folder's whole content."""
    model, data = tiny
    monkeypatch.chdir(tmp_path)
    common = ["--data", data, "--snr", "100", "--seeds", "1", "--preprocess", "raw", "--device", "cpu"]
    code, out, err = run_cli(capsys, "bench", model, *common, "--out", "run")
    assert code == 0, err
    closing = "wrote run/: results, summary, trials (.parquet + .csv), bench.json"
    assert out.splitlines()[-1] == closing and len(closing) <= 80
    written = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert written == ["bench.json", "results.csv", "results.parquet", "summary.csv", "summary.parquet", "trials.csv",
                       "trials.parquet"]
    run = onnxnoise.bench_model(model, data, out=tmp_path / "api", snr=100, seeds=1, preprocess="raw", device="cpu")
    assert sorted(p.name for p in run.files) == written == sorted(p.name for p in (tmp_path / "api").iterdir())


def test_bench_tiny_json(tiny, tmp_path, capsys):
    model, data = tiny
    out_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "bench", model, "--data", data, "--snr", "100,2", "--seeds", "2",
                          "--preprocess", "raw", "--out", out_dir, "--json", "--device", "cpu")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["images"] == 60
    assert summary["provider"] == "CPUExecutionProvider"
    assert summary["noise_model"] == "gaussian-snr" and summary["strengths"] == [100.0, 2.0]
    assert summary["seeds"] == [0, 1] and summary["failed"] == 0
    # Baseline equals a direct ONNX Runtime evaluation with the same preprocessing (x / 255).
    npz = np.load(data)
    x = (npz["images"].astype(np.float32) / 255.0).transpose(0, 3, 1, 2)
    logits = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    expected = 100.0 * float((logits.argmax(1) == npz["labels"]).mean())
    assert summary["baseline"]["top1_acc"] == pytest.approx(expected)
    trials = pl.read_parquet(out_dir / "trials.parquet")
    assert trials.height == 1 + 2 * 2
    assert not {"snr", "kind", "noise_pct"} & set(trials.columns)
    assert trials["mode"].to_list() == ["baseline", "all", "all", "all", "all"]
    assert trials["strength"].to_list() == [None, 100.0, 100.0, 2.0, 2.0]
    assert trials["seed"].to_list() == [None, 0, 1, 0, 1]
    assert trials["noise_model"].to_list() == ["gaussian-snr"] * 5
    assert trials["error"].null_count() == 5 and trials["images"].to_list() == [60] * 5
    baseline = trials.filter(pl.col("mode") == "baseline").row(0, named=True)
    assert baseline["top1_acc"] == pytest.approx(expected)
    assert baseline["top1_correct"] == round(expected * 60 / 100)
    assert pl.read_csv(out_dir / "trials.csv").height == 5
    table = pl.read_parquet(out_dir / "summary.parquet")
    assert table["mode"].to_list() == ["baseline", "all", "all"]
    assert table["strength"].to_list() == [None, 100.0, 2.0]
    assert table["seeds"].to_list() == [1, 2, 2]
    assert table["top1_norm_mean"][0] == pytest.approx(1.0)
    assert table["top1_acc_mean"][0] == pytest.approx(expected)
    assert table["top1_acc_ci_half"][0] is None and table["top1_acc_ci_half"][1] is not None
    assert pl.read_csv(out_dir / "summary.csv").height == 3
    written = json.loads((out_dir / "bench.json").read_text())
    assert [(r["mode"], r["strength"], r["seeds"]) for r in written["results"]] == [
        ("baseline", None, 1), ("all", 100.0, 2), ("all", 2.0, 2)]
    assert written["results"][0]["top1_acc_mean"] == pytest.approx(expected)


def test_layers_json(tiny, capsys):
    code, out, _ = run_cli(capsys, "layers", tiny[0], "--json")
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
    ("snr_zero", "SNR must be finite and > 0"),
    ("snr_negative", "SNR must be finite and > 0"),
    ("snr_text", "`--snr` value 'ten' is not a number"),
    ("snr_inf", "SNR must be finite and > 0"),
    ("noise_pct_zero", "`--noise-pct` values must be finite and > 0, got 0"),
    ("seeds_zero", "seeds count must be >= 1, got 0"),
    ("seeds_text", "seeds must be a count N, seeds like 40,30, or auto (with --ci-halfwidth), got '1,a'"),
    ("noise_model_unknown", "unknown noise model 'nope'; choose from "),
    ("snr_and_strength", "give only one of --snr, --noise-pct or --strength"),
    ("noise_param_bad", "noise parameter 'eta' must look like NAME=VALUE"),
    ("layer_regex_none", "'^no_such_layer$' matches no layer (names look like: conv, bn, fc)"),
    ("layer_regex_none", "`--layer-regex` '^no_such_layer$' matches no layer"),
    ("missing_data", "does not exist"),
    ("empty_folder", "empty"),
    ("unknown_layout", "dataset"),
    ("labels_beyond", "but the model's score output `logits` has 10 outputs"),
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
    elif case.startswith("snr_") and case != "snr_and_strength":
        args[5] = {"snr_zero": "0", "snr_negative": "-5", "snr_text": "ten", "snr_inf": "inf"}[case]
    elif case == "noise_pct_zero":
        args[4:6] = ["--noise-pct", "0"]
    elif case == "seeds_zero":
        args[7] = "0"
    elif case == "seeds_text":
        args[7] = "1,a"
    elif case == "noise_model_unknown":
        args[4:6] = ["--noise-model", "nope"]  # no --snr: that would be refused as a gaussian-snr option first
    elif case == "snr_and_strength":
        args += ["--strength", "5"]
    elif case == "noise_param_bad":
        args += ["--noise-param", "eta"]
    elif case == "layer_regex_none":
        args += ["--layer-regex", "^no_such_layer$"]
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
    code, out, err = run_cli(capsys, *args)
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
    assert proc.stderr.strip() == ("onnxnoise: error: SNR must be finite and > 0 (a linear ratio sigma_w / "
                                   "sigma_noise; the clean baseline is added for you), got -1.0")


@pytest.mark.parametrize("argv, expected", [
    (["--snr", "inf"], "onnxnoise: error: SNR must be finite and > 0 (a linear ratio sigma_w / sigma_noise; "
                       "the clean baseline is added for you), got inf"),
    (["--seeds", "0"], "onnxnoise: error: seeds count must be >= 1, got 0 (a count N runs seeds 0..N-1; a count of 1 runs seed 0)"),
    (["--noise-model", "nope"], "onnxnoise: error: unknown noise model 'nope'; choose from {models}"),
])
def test_noise_options_refused_one_line_exit_2(argv, expected, tiny, tmp_path, capsys):
    """`--snr inf` (the baseline is always run), `--seeds 0` and an unknown model: one exact line, exit 2."""
    # Every registered model is listed (other test modules register toy models at import: read it now).
    expected = expected.format(models=", ".join(sorted(NOISE_MODELS)))
    model, data = tiny
    code, out, err = run_cli(capsys, "bench", model, "--data", data, "--preprocess", "raw", "--device", "cpu",
                          "--out", tmp_path / "out", *argv)
    assert code == 2
    assert err.strip() == expected
    assert out == "" and not (tmp_path / "out").exists()


def test_failed_trial_exits_1_and_writes_error_rows(tiny, tmp_path, capsys, monkeypatch):
    """A session that fails for noisy weights: the baseline is kept, each noisy trial is an error row, exit 1."""
    from onnxnoise.engine.runtime import SessionFactory
    from onnxnoise.errors import SessionError

    create = SessionFactory.create

    def failing_with_noise(self, replacements=None, **options):
        if replacements:
            raise SessionError("injected failure for noisy weights")
        return create(self, replacements, **options)

    monkeypatch.setattr(SessionFactory, "create", failing_with_noise)
    model, data = tiny
    out_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "bench", model, "--data", data, "--snr", "10,5", "--seeds", "2",
                          "--preprocess", "raw", "--device", "cpu", "--out", out_dir, "--json")
    assert code == 1, err
    assert "4 trial(s) failed" in err
    summary = json.loads(out)
    assert summary["failed"] == 4
    for name in ("trials.parquet", "trials.csv"):
        read = pl.read_parquet if name.endswith(".parquet") else pl.read_csv
        trials = read(out_dir / name)
        assert trials.height == 1 + 2 * 2, name
        base = trials.filter(pl.col("mode") == "baseline")
        assert base["error"].to_list() == [None] and base["images"].to_list() == [60]
        failed = trials.filter(pl.col("mode") == "all")
        assert failed["error"].to_list() == ["SessionError: injected failure for noisy weights"] * 4
        assert failed["strength"].to_list() == [10.0, 10.0, 5.0, 5.0] and failed["seed"].to_list() == [0, 1, 0, 1]
        for column in ("images", "top1_correct", "top5_correct", "top1_acc"):
            assert failed[column].null_count() == 4, column
    table = pl.read_parquet(out_dir / "summary.parquet")
    assert table.filter(pl.col("mode") == "all")["errors"].to_list() == [2, 2]
    assert table.filter(pl.col("mode") == "all")["seeds"].to_list() == [0, 0]
    assert summary["baseline"]["top1_acc"] is not None


def test_cuda_unavailable_is_an_error(tiny, tmp_path, capsys, monkeypatch):
    import onnxnoise.engine.runtime as runtime

    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    model, data = tiny
    code, _, err = run_cli(capsys, "bench", model, "--data", data, "--snr", "10", "--device", "cuda",
                        "--preprocess", "raw", "--out", tmp_path / "o")
    assert code == 2
    assert "`--device cuda` but this onnxruntime has no CUDAExecutionProvider" in err


def test_label_offset_shifts_labels(tiny, tmp_path, capsys):
    model, data = tiny
    npz = np.load(data)
    labels = np.arange(60) % 9  # 9 classes; the model's output k + 1 stands for class k
    shifted = tmp_path / "nine.npz"
    np.savez(shifted, images=npz["images"], labels=labels)
    code, out, err = run_cli(capsys, "bench", model, "--data", shifted, "--snr", "10", "--seeds", "1",
                          "--preprocess", "raw", "--label-offset", "1", "--out", tmp_path / "o", "--json")
    assert code == 0, err
    x = (npz["images"].astype(np.float32) / 255.0).transpose(0, 3, 1, 2)
    logits = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    summary = json.loads(out)
    assert summary["label_offset"] == 1
    assert summary["baseline"]["top1_acc"] == pytest.approx(100.0 * float((logits.argmax(1) == labels + 1).mean()))
    code, _, err = run_cli(capsys, "bench", model, "--data", shifted, "--snr", "10", "--preprocess", "raw",
                        "--label-offset", "2", "--out", tmp_path / "o2")
    assert code == 2 and "beyond the model's 10 outputs" in err


def test_preprocessing_precedence_flag_preset_metadata(demo_files):
    model, data = demo_files
    facts = prepare_context(RunConfig(model=model, data=data, limit=20)).facts()
    assert facts["preprocess_source"] == "model metadata"
    assert facts["preprocess"]["mean"] == pytest.approx([0.286])  # the demo's training statistics
    facts = prepare_context(RunConfig(model=model, data=data, limit=20, preset="mnist")).facts()
    assert facts["preprocess_source"] == "--preprocess"
    assert facts["preprocess"]["mean"] == pytest.approx([0.5]) and facts["preprocess"]["channels"] == 1
    facts = prepare_context(RunConfig(model=model, data=data, limit=20, preset="mnist",
                                      preprocess={"mean": (0.1,)})).facts()
    assert facts["preprocess"]["mean"] == pytest.approx([0.1])


def test_layers_command_says_what_it_set_aside_and_why(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    path = save_model(normalized_inside(conv_bn_resnet(seed=3)), tmp_path / "inside.onnx")
    assert main(["layers", path]) == 0
    out = capsys.readouterr().out
    assert "13 layers" in out
    assert "set aside, not noised (2 float tensor(s)):" in out
    assert ("norm.mean [1, 3, 1, 1]: input preprocessing: Sub applied to the graph input before the first weight op "
            "(normalization inside the graph), not a weight") in out
    assert main(["layers", path, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["total_layers"] == 13 and report["left_out"] == []
    assert [(e["tensor"], e["preprocessing"]) for e in report["set_aside"]] == [("norm.mean", True), ("norm.std", True)]
    # weights left where discovery does not look: a warning line
    bad = save_model(if_model("W", "W"), tmp_path / "if.onnx")
    assert main(["layers", bad]) == 0
    out = capsys.readouterr().out
    assert out.count("WARNING: weight left out (not listed, not noised): initializer 'W' inside If 'branch'") == 2


def test_full_disk_at_bench_json_keeps_the_previous_file_and_says_what_is_kept(demo_files, tmp_path, monkeypatch,
                                                                                 capsys):
    model, data = demo_files
    argv = ["bench", model, "--data", data, "--limit", "20", "--seeds", "1", "--snr", "10", "--device", "cpu",
            "--out", tmp_path]
    assert run_cli(capsys, *argv)[0] == 0
    old = (tmp_path / "bench.json").read_bytes()
    (tmp_path / "trials.csv").write_text("stale\n")
    refused = fill_disk(monkeypatch, "bench.json")
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and refused == ["bench.json"]
    assert err == (f"onnxnoise: error: No space left on device: {tmp_path / 'bench.json'} (any trial rows written "
                   "before it are kept; fix it and run the same command again)\n")
    assert (tmp_path / "bench.json").read_bytes() == old and leftovers(tmp_path) == []
    assert pl.read_csv(tmp_path / "trials.csv").height == 2  # the rows written before the full disk: kept


def test_full_disk_at_check_outputs_keeps_the_previous_files(tmp_path, monkeypatch, capsys):
    """A PASS run first (60 images: the exact image term alone is about 5 points, so the budget is 10), then the same
    run on a full disk: check.json, junit.xml and check.md stay as they were."""
    model_path, data = tmp_path / "m.onnx", tmp_path / "d.npz"
    model = conv_bn_resnet(seed=0)
    onnx.save(model, model_path)
    labeled_npz(model, data, n=60)
    out = tmp_path / "out"
    argv = ["check", model_path, "--data", data, "--preprocess", "raw", "--snr", "1e6", "--max-drop", "10",
            "--out", out]
    assert run_cli(capsys, *argv)[0] == 0
    before = {name: (out / name).read_bytes() for name in ("junit.xml", "check.md")}
    refused = fill_disk(monkeypatch, "junit.xml")
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and refused == ["junit.xml"] and leftovers(tmp_path) == []
    assert err == (f"onnxnoise: error: No space left on device: {out / 'junit.xml'} (no file was left half-written; "
                   "fix it and run the same command again)\n")
    assert {name: (out / name).read_bytes() for name in before} == before  # check.md comes after: not reached


def test_full_disk_at_check_trial_tables_keeps_the_previous_verdict_files(tmp_path, monkeypatch, capsys):
    """The trial tables are written before the verdict files: a full disk at trials.parquet leaves check.json,
    junit.xml and check.md of the previous run beside its own trial tables (no mixed set)."""
    model_path, data = tmp_path / "m.onnx", tmp_path / "d.npz"
    model = conv_bn_resnet(seed=0)
    onnx.save(model, model_path)
    labeled_npz(model, data, n=60)
    out = tmp_path / "out"
    argv = ["check", model_path, "--data", data, "--preprocess", "raw", "--snr", "1e6", "--max-drop", "10",
            "--out", out]
    assert run_cli(capsys, *argv)[0] == 0
    names = ("check.json", "junit.xml", "check.md", "trials.parquet", "trials.csv")
    before = {name: (out / name).read_bytes() for name in names}
    refused = fill_disk(monkeypatch, "trials.parquet")
    code, _, err = run_cli(capsys, *argv[:-4], "--snr", "1e5", "--max-drop", "10", "--out", out)
    assert code == 2 and refused == ["trials.parquet"] and leftovers(tmp_path) == []
    assert err == (f"onnxnoise: error: No space left on device: {out / 'trials.parquet'} (no file was left "
                   "half-written; fix it and run the same command again)\n")
    assert {name: (out / name).read_bytes() for name in names} == before


@pytest.fixture()
def resnet(tmp_path) -> tuple[Path, Path]:
    """A small Conv+BN residual network and 40 labeled images whose clean top-1 is 70% (28 images)."""
    model = conv_bn_resnet()
    onnx.save(model, tmp_path / "resnet.onnx")
    labeled_npz(model, tmp_path / "resnet.npz", n=40)
    return tmp_path / "resnet.onnx", tmp_path / "resnet.npz"


def test_bench_with_8_bit_dac_and_adc_shows_the_stage_columns(resnet, tmp_path, capsys):
    model, data = resnet
    out_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "bench", model, "--data", data, "--preprocess", "raw", "--device", "cpu",
                             "--noise", "none", "--dac-bits", "8", "--adc-bits", "8", "--seeds", "2",
                             "--calibration-images", "20", "--out", out_dir, "--json")
    assert code == 0, err
    text = " ".join(out.split())
    assert ("input/output stages: 8-bit DAC, 8-bit ADC (one range per tile); ranges calibrated (max) on the first 20 "
            "evaluation images, clean model; clipped: DAC") in text
    trials = pl.read_csv(out_dir / "trials.csv")
    assert trials["mode"].to_list() == ["baseline", "all", "all"]
    assert trials["dac_values"].to_list()[0] is None and trials["adc_values"].to_list()[0] is None
    staged = trials.filter(pl.col("mode") == "all")
    # Inputs of the staged (weight) layers per image: stem conv 3x16x16, four 8x16x16 convs (block 1's two, block
    # 2's first and its shortcut), block 2's second conv 16x8x8, the Gemm's 16 features: 10,000.
    assert staged["dac_values"].to_list() == [40 * (768 + 4 * 2048 + 1024 + 16)] * 2
    assert staged["adc_values"][0] > 0 and staged["dac_clipped"][0] >= 0 and staged["adc_clipped"][0] >= 0
    assert staged["top1_correct"].to_list()[0] == staged["top1_correct"].to_list()[1]  # no read noise: same draws
    written = json.loads((out_dir / "bench.json").read_text())
    assert written["stages"]["dac_bits"] == 8 and written["stages"]["calibrated_on"] == 20
    assert written["config"]["tile"]["adc_bits"] == 8 and written["dac_values"] == 2 * staged["dac_values"][0]
    assert written["results"][1]["dac_clipped_pct"] == pytest.approx(
        100.0 * staged["dac_clipped"].sum() / staged["dac_values"].sum())
    assert (out_dir / "calibration.json").is_file()


def test_sweep_with_stages_resumes_with_the_kept_calibration(resnet, tmp_path, capsys):
    model, data = resnet
    argv = ["sweep", model, "--data", data, "--preprocess", "raw", "--device", "cpu", "--snr", "20", "--seeds", "1",
            "--mode", "all,per-layer", "--adc-bits", "6", "--read-noise", "0.02", "--tile-rows", "16",
            "--calibration-images", "20", "--out", tmp_path / "run"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert "input/output stages: 6-bit ADC (one range per tile), read noise 0.02 x_max*w_max, tiles of 16 rows" in " ".join(
        out.split())
    calibration = (tmp_path / "run" / "calibration.json").read_text()
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert "0 run now" in out  # every key is the same: the calibration was reused, not measured again
    assert (tmp_path / "run" / "calibration.json").read_text() == calibration
    code, _, err = run_cli(capsys, "report", tmp_path / "run")
    assert code == 0, err
    report = " ".join((tmp_path / "run" / "report.md").read_text().split())
    assert "- input/output stages: 6-bit ADC (one range per tile), read noise 0.02 x_max*w_max, tiles of 16 rows" in report
    assert '"adc_bits":6' in report  # with the other settings that change counts


def test_noise_models_mentions_the_tile_stages(capsys):
    code, out, _ = run_cli(capsys, "noise-models", "--json")
    assert code == 0
    stages = json.loads(out)["tile_stages"]
    assert stages["flags"][:3] == ["--dac-bits", "--adc-bits", "--read-noise"]
    assert stages["alone"] == "--noise none --dac-bits 8 --adc-bits 8"
    code, out, _ = run_cli(capsys, "noise-models")
    assert "tile stages: the analog tile's input/output stages" in " ".join(out.split())
    # none has no strength to give: its entry shows the stages alone, not `--noise none --strength 0`
    assert ("none: Weights left exact (strength 0 only): the tile's input/output stages alone. strength: none to give "
            "(its one strength is 0: weights exact) e.g. --noise none --dac-bits 8 --adc-bits 8") in " ".join(out.split())


def test_bench_with_an_analog_preset_shows_and_runs_its_expansion(tiny, tmp_path, capsys):
    """``--analog-preset afm``: gaussian-max per output row at gamma 0.05, said on stderr and in bench.json."""
    model, data = tiny
    code, out, err = run_cli(capsys, "bench", model, "--data", data, "--analog-preset", "afm", "--seeds", "1",
                             "--preprocess", "raw", "--out", tmp_path / "run", "--json", "--device", "cpu")
    assert code == 0, err
    assert ("onnxnoise: --analog-preset afm = --noise gaussian-max:scope=row --strength 0.05 (flags given explicitly "
            "override it)") in err
    summary = json.loads(out)
    assert summary["noise_model"] == "gaussian-max" and summary["strengths"] == [0.05]
    assert summary["noise"]["params"] == {"analog": "weights", "scope": "row"}
    assert summary["analog_preset"]["flags"] == "--noise gaussian-max:scope=row --strength 0.05"
    assert summary["config"]["analog_preset"] == "afm"
    code, out, err = run_cli(capsys, "bench", model, "--data", data, "--analog-preset", "afm", "--gamma", "0.1",
                             "--seeds", "1", "--preprocess", "raw", "--out", tmp_path / "run2", "--json",
                             "--device", "cpu")
    assert code == 0, err
    assert json.loads(out)["strengths"] == [0.1]  # an explicit strength wins over the preset's
    assert ("onnxnoise: --analog-preset afm = --noise gaussian-max:scope=row --strength 0.05 (overridden here by "
            "--gamma 0.1)") in err  # the line names what replaced the preset's settings


def test_noise_none_says_what_its_trials_measure(tiny, tmp_path, capsys):
    """``--noise none``: with no DAC, ADC or read noise every trial is the clean model, and without read noise every
    seed is the same trial; both said on stderr (WARNING lines), and the sweep header names no strength axis."""
    model, data = tiny
    common = ["--data", data, "--noise", "none", "--preprocess", "raw", "--device", "cpu", "--limit", "20"]
    code, out, err = run_cli(capsys, "bench", model, *common, "--seeds", "2", "--out", tmp_path / "a", "--json")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("onnxnoise: WARNING:")]
    assert warnings == [
        "onnxnoise: WARNING: --noise none leaves the weights exact and no DAC, ADC or read noise is on, so every "
        "trial equals the clean model; add --dac-bits, --adc-bits or --read-noise to measure the tile's stages",
        "onnxnoise: WARNING: --noise none without --read-noise draws nothing at random: its 2 seeds give the same "
        "trial; --seeds 1 gives the same numbers"]
    summary = json.loads(out)
    assert {r["top1_acc_mean"] for r in summary["results"]} == {summary["baseline"]["top1_acc"]}  # as said
    code, _, err = run_cli(capsys, "bench", model, *common, "--read-noise", "0.05", "--seeds", "2",
                           "--out", tmp_path / "b")
    assert code == 0, err
    assert "WARNING" not in err  # read noise: a stage, and random per seed
    code, out, err = run_cli(capsys, "sweep", model, *common, "--adc-bits", "4", "--seeds", "1",
                             "--out", tmp_path / "c")
    assert code == 0, err
    assert "WARNING" not in err
    assert "modes all, none (weights exact), seeds 0 ->" in " ".join(out.split())


def test_noise_models_presets_lists_every_expansion_with_sources(capsys):
    code, out, _ = run_cli(capsys, "noise-models", "--presets", "--json")
    assert code == 0
    presets = {p["name"]: p for p in json.loads(out)["presets"]}
    assert list(presets) == ["aihwkit-pcm", "aihwkit-pcm-untrained", "aihwkit-pcm-weights", "afm", "afm-tile",
                             "crosssim-independent", "crosssim-proportional", "noisynn", "paper"]
    assert presets["aihwkit-pcm"]["flags"] == (
        "--noise pcm:compensation=global,mapping=tile-column --dac-bits 8 --adc-bits 8 --read-noise 0.04 --adc-bound 10.0 "
        "--tile-rows 512 --adc-scope column --strength 60s,1h,1d,30d,360d")
    assert presets["aihwkit-pcm-untrained"]["flags"] == presets["aihwkit-pcm"]["flags"].replace(
        "--adc-scope column", "--adc-scope column --dac-bound 3.0")
    assert "PARITY.md sec. 1" in presets["aihwkit-pcm"]["source"] and "w_noise 0.0175" in presets["aihwkit-pcm"][
        "cites"]["pcm"]
    code, out, _ = run_cli(capsys, "noise-models", "--presets")
    assert code == 0 and "crosssim-proportional" in out and "--analog-preset NAME" in out


def test_unknown_analog_preset_is_one_line_exit_2(tiny, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(capsys, "bench", tiny[0], "--data", tiny[1], "--analog-preset", "aihwkit")
    assert exit_info.value.code == 2
    assert "argument --analog-preset: invalid choice: 'aihwkit'" in one_line(capsys.readouterr().err)


@pytest.fixture()
def two_sweeps(tmp_path, capsys):
    """Two tiny models swept on the same 40 images, modes all and per-layer, SNR 2 and 10, seeds 0 and 1."""
    rng = np.random.default_rng(0)
    data = tmp_path / "tiny.npz"
    np.savez(data, images=rng.integers(0, 256, size=(40, 8, 8, 3), dtype=np.uint8),
             labels=np.arange(40, dtype=np.int64) % 10)
    runs = []
    for seed in (0, 1):
        model = tmp_path / f"tiny{seed}.onnx"
        onnx.save(tiny_cnn(seed=seed), str(model))
        run = tmp_path / f"run{seed}"
        code, _, err = run_cli(capsys, "sweep", model, "--data", data, "--preprocess", "raw", "--snr", "2,10",
                               "--seeds", "2", "--mode", "all,per-layer", "--device", "cpu", "--out", run)
        assert code == 0, err
        runs.append(run)
    return runs


def test_report_prints_the_top_n_layers_and_writes_all(two_sweeps, tmp_path, capsys):
    code, out, err = run_cli(capsys, "report", two_sweeps[0], "--out", tmp_path / "rep", "--top", "2")
    assert code == 0, err
    words = " ".join(out.split())
    assert "layers to blame: tiny0.onnx at SNR 2 (50% noise) (worst 2 of 3)" in words
    md = (tmp_path / "rep" / "report.md").read_text()
    first = next(line for line in md.splitlines() if line.startswith("| "))
    assert first.startswith("| rank | layer | op type | parameters | share % | drop at SNR 2")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(capsys, "report", two_sweeps[0], "--top", "0")
    assert exit_info.value.code == 2
    assert "argument --top: expected a whole number >= 1, got '0'" in one_line(capsys.readouterr().err)


def test_compare_two_models_json_and_compare_md(two_sweeps, tmp_path, capsys):
    code, out, err = run_cli(capsys, "compare", *two_sweeps, "--out", tmp_path / "cmp", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["reference"] == "tiny0.onnx"
    modes = sorted((v["mode"], v["strength"]) for v in data["verdicts"])
    assert modes == [("all", 2.0), ("all", 10.0), ("per-layer", 2.0), ("per-layer", 10.0)]
    assert all(v["paired"] and v["seeds"] == 2 and v["images"] == 40 for v in data["verdicts"])
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert md.startswith("# onnxnoise compare: tiny1.onnx against tiny0.onnx\n\n## Verdicts\n\n- ")
    assert all(f"- {v['sentence']}" in md for v in data["verdicts"])
    code, out, _ = run_cli(capsys, "report", *two_sweeps, "--out", tmp_path / "both")
    assert code == 0 and "differences with intervals and a verdict: onnxnoise compare" in out


def test_bench_config_file_gives_the_keys_of_the_same_flags_and_flags_override_it(tiny, tmp_path, capsys):
    model, data = tiny
    (tmp_path / "cfg").mkdir()
    settings = tmp_path / "cfg" / "bench.toml"  # model and data relative to the file's folder
    settings.write_text('model = "../tiny.onnx"\ndata = "../tiny.npz"\nsnr = [100, 10]\nseeds = 2\nbatch_size = 16\n'
                        'preprocess = "raw"\nout = "from-file"\n')
    code, _, err = run_cli(capsys, "bench", "--config", settings)
    assert code == 0, err
    code, _, err = run_cli(capsys, "bench", model, "--data", data, "--snr", "100,10", "--seeds", "2", "--batch-size",
                           "16", "--preprocess", "raw", "--out", tmp_path / "flags")
    assert code == 0, err
    from_file = pl.read_parquet(tmp_path / "cfg" / "from-file" / "trials.parquet")
    flags = pl.read_parquet(tmp_path / "flags" / "trials.parquet")
    assert from_file.height == 5 and from_file["key"].to_list() == flags["key"].to_list()
    code, _, err = run_cli(capsys, "bench", "--config", settings, "--snr", "5", "--out", tmp_path / "override")
    assert code == 0, err
    assert pl.read_parquet(tmp_path / "override" / "trials.parquet")["strength"].drop_nulls().unique().to_list() == [5.0]


@pytest.mark.parametrize("command", ["bench", "check"])
def test_config_file_with_an_unknown_key_is_one_line_naming_it_and_the_valid_keys(tiny, tmp_path, capsys, command):
    model, _ = tiny
    settings = tmp_path / "s.toml"
    settings.write_text("snr = [10]\nsnrr = 5\n")
    code, out, err = run_cli(capsys, command, model, "--config", settings)
    line = one_line(err)
    assert code == 2 and out == ""
    assert line.startswith(f"onnxnoise: error: {settings}: unknown key(s) snrr; {command} --config takes model, out, ")
    assert ", snr, " in line and (", max_drop, " in line) == (command == "check")
    assert (", seeds, " in line) == (command == "bench")  # check chooses its draws: not offered (fresh22b #2)


def test_check_config_refuses_the_draw_settings_in_the_files_words(tiny, tmp_path, capsys):
    model, _ = tiny
    settings = tmp_path / "s.toml"
    settings.write_text("snr = [10]\nmax_drop = 2\nci_halfwidth = 0.5\n")
    code, out, err = run_cli(capsys, "check", model, "--config", settings)
    assert code == 2 and out == ""
    assert one_line(err) == (f"onnxnoise: error: {settings}: check --config takes no `ci_halfwidth`: check chooses its "
                             "number of draws itself; use max_seeds = N (and first_seed = S for other seeds)")


def test_check_without_model_or_max_drop_anywhere_is_one_line(tmp_path, capsys):
    settings = tmp_path / "s.toml"
    settings.write_text("snr = [10]\n")
    code, _, err = run_cli(capsys, "check", "--config", settings)
    assert code == 2 and one_line(err) == ("onnxnoise: error: check needs --max-drop POINTS (or `max_drop = ...` in its "
                                           "--config file)")
    settings.write_text("snr = [10]\nmax_drop = 2\n")
    code, _, err = run_cli(capsys, "check", "--config", settings)
    assert code == 2
    assert one_line(err) == 'onnxnoise: error: `check` needs MODEL (or `model = "FILE.onnx"` in its --config file)'
