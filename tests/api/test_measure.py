"""The Python API's runs (onnxnoise/api/measure.py): bench_model, sweep_model and sweep_experiment give the CLI's
counts, take registered dataset names and options by setting key, print nothing, and raise the project's errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import onnxnoise
from onnxnoise.data.registry import register_dataset
from onnxnoise.errors import ConfigError, DataError
from onnxnoise.noise.gaussian import GaussianSNR
from onnxnoise.report.study import collect_trials
from tests._checks import run_cli


@pytest.fixture()
def registry(tmp_path, monkeypatch):
    """A dataset registry of this test only."""
    monkeypatch.setenv("ONNXNOISE_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path / "config"


def test_bench_with_a_registered_name_counts_as_with_the_path(demo_files, registry, capfd):
    model, data = demo_files
    register_dataset("fashion-demo", data)
    run = onnxnoise.bench_model(model, "fashion-demo", snr=10, seeds=1)
    assert run.trials["top1_correct"].to_list() == [932, 903]  # the demo's known counts (docs/api.md)
    assert run.config.data == data.resolve()
    assert run.notes == (f"--data fashion-demo: registered dataset `fashion-demo` ({data.resolve()}, 10 classes)",)
    assert run.out is None and run.files == ()
    assert capfd.readouterr() == ("", "")  # silent by default


def test_bench_writes_what_the_cli_writes(demo_files, tmp_path, capsys):
    model, data = demo_files
    run = onnxnoise.bench_model(model, data, out=tmp_path / "api", snr="10,100", seeds=1, limit="200")
    assert run.config.limit == 200  # the flag's text, converted as --limit converts it
    assert sorted(p.name for p in run.files) == ["bench.json", "results.csv", "results.parquet", "summary.csv",
                                                 "summary.parquet", "trials.csv", "trials.parquet"]
    assert all(p.is_file() for p in run.files)
    assert sorted(p.name for p in (tmp_path / "api").iterdir()) == sorted(p.name for p in run.files)  # all listed
    # The timm-style table (fresh22 finding 6): as results.parquet holds it, the baseline first.
    assert run.results.equals(pl.read_parquet(tmp_path / "api" / "results.parquet"))
    assert run.trials["top1_correct"].to_list() == [183, 182, 181]  # of 200: clean, SNR 100, SNR 10 (seed 0)
    assert run.results.select("noise", "strength", "top1", "top1_err", "images").rows() == [
        ("clean", None, 91.5, 8.5, 200), ("gaussian-snr", 100.0, 91.0, 9.0, 200),  # least noise first
        ("gaussian-snr", 10.0, 90.5, 9.5, 200)]
    record = json.loads((tmp_path / "api" / "bench.json").read_text())
    code, _, _ = run_cli(capsys, "bench", model, "--data", data, "--snr", "10,100", "--seeds", "1", "--limit", "200",
                         "--out", tmp_path / "cli")
    cli = json.loads((tmp_path / "cli" / "bench.json").read_text())
    assert code == 0
    assert [r["top1_acc_mean"] for r in record["results"]] == [r["top1_acc_mean"] for r in cli["results"]]
    assert record["results"] == json.loads(json.dumps(run.record["results"]))
    assert len(record["results"]) == 3 and record["baseline"]["top1_acc"] == run.baseline_top1


def test_progress_on_request_goes_to_stderr(demo_files, capfd):
    model, data = demo_files
    onnxnoise.bench_model(model, data, snr=10, seeds=1, limit=100, progress=True)
    out, err = capfd.readouterr()
    assert out == "" and "2/2 trials" in err  # no terminal: one line every ~10% of the trials


def test_bad_input_raises_the_projects_errors(demo_files, registry, tmp_path):
    model, data = demo_files
    with pytest.raises(ConfigError, match=r"^bench takes no option 'snrr' \(did you mean 'snr'\?\); its options are .*\bsnr\b"):
        onnxnoise.bench_model(model, data, snrr=10)
    with pytest.raises(ConfigError, match=r"^limit='ten' is not a valid limit value$"):
        onnxnoise.bench_model(model, data, limit="ten")
    # messages written for the command line name the setting as the caller gave it: the key, not the flag
    with pytest.raises(ConfigError, match=r"^`batch_size` must be an integer >= 1, got 0$"):
        onnxnoise.bench_model(model, data, batch_size=0)
    with pytest.raises(ConfigError, match=r"^`limit` must be an integer >= 1, got 0$"):
        onnxnoise.sweep_model(model, data, out=tmp_path / "s", limit=0)
    with pytest.raises(ConfigError, match=r"^`noise_pct` value 'x' is not a number"):
        onnxnoise.bench_model(model, data, noise_pct="x")
    with pytest.raises(ConfigError, match="`data` given without `model`"):
        onnxnoise.bench_model(data=data)
    with pytest.raises(DataError, match="is not a registered dataset name"):
        onnxnoise.bench_model(model, "no-such-set")
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ConfigError, match="^out .* is a file, not a folder"):
        onnxnoise.bench_model(model, data, out=afile)


def test_sweep_per_layer_then_resume(demo_files, tmp_path):
    model, data = demo_files
    options = {"modes": "per-layer", "snr": 10, "seeds": 1, "limit": 100}
    first = onnxnoise.sweep_model(model, data, out=tmp_path / "run", **options)
    assert (first.planned, first.done, first.ran, first.failed) == (7, 0, 7, 0)  # baseline + 6 demo layers
    assert first.trials.height == 7 and first.store == tmp_path / "run" / "trials.sqlite"
    assert first.trials.filter(first.trials["mode"] == "per-layer")["layer_index"].sort().to_list() == [0, 1, 2, 3,
                                                                                                          4, 5]
    again = onnxnoise.sweep_model(model, data, out=tmp_path / "run", **options)
    assert (again.done, again.ran) == (7, 0)
    assert again.trials.sort("key")["top1_correct"].to_list() == first.trials.sort("key")["top1_correct"].to_list()


def test_compare_of_one_model_under_two_names_finds_no_difference(demo_files, tmp_path):
    model, data = demo_files
    other = tmp_path / "twin.onnx"
    shutil.copy(model, other)
    for path, name in ((model, "a"), (other, "b")):
        onnxnoise.sweep_model(path, data, out=tmp_path / name, modes="all", snr=10, seeds=2, limit=100)
    compared = onnxnoise.compare_runs([tmp_path / "a", tmp_path / "b"], out=tmp_path / "cmp")
    assert compared.markdown == tmp_path / "cmp" / "compare.md" and compared.markdown.is_file()
    top1 = compared.verdicts.filter(compared.verdicts["metric"] == "top-1 %")
    assert top1.height == 1 and top1["paired"].to_list() == [True]
    assert (top1["difference"].to_list(), top1["ci_half"].to_list()) == ([0.0], [0.0])  # same weights, seeds, images
    assert top1["value_a"].to_list() == top1["value_b"].to_list()
    assert compared.json["verdicts"][0]["model_b"] == "twin.onnx"


def test_a_noise_model_object_runs_as_its_text(demo_files):
    """``noise=GaussianSNR(scope="channel")`` is ``noise="gaussian-snr:scope=channel"``: same trial keys, counts."""
    model, data = demo_files
    common = {"snr": 10, "seeds": 1, "limit": 100}
    text = onnxnoise.bench_model(model, data, noise="gaussian-snr:scope=channel", **common)
    obj = onnxnoise.bench_model(model, data, noise=GaussianSNR(scope="channel"), **common)
    plain = onnxnoise.bench_model(model, data, noise=GaussianSNR(), **common)
    assert obj.trials["key"].to_list() == text.trials["key"].to_list()
    assert obj.trials["top1_correct"].to_list() == text.trials["top1_correct"].to_list()
    assert plain.trials["key"].to_list() == onnxnoise.bench_model(model, data, **common).trials["key"].to_list()
    with pytest.raises(ConfigError, match="either as `noise` or as `noise_model`"):
        onnxnoise.bench_model(model, data, noise=GaussianSNR(), noise_model="pcm")


def _demo_experiment(folder: Path, model: Path, data: Path) -> Path:
    """An experiment file on the demo and its copy ``twin``: whole-model SNR 10 and 100 on both, then
    per-layer SNR 10 on the demo; 100 images, seed 0."""
    twin = folder / "twin.onnx"
    shutil.copy(model, twin)
    path = folder / "demo.toml"
    path.write_text(f"""name = "demo-study"
[data]
path = "{data.as_posix()}"
limit = 100
[models.demo]
path = "{model.as_posix()}"
[models.twin]
path = "twin.onnx"
[[sweeps]]
modes = ["all"]
snr = [10, 100]
seeds = 1
[[sweeps]]
models = ["demo"]
modes = ["per-layer"]
snr = [10]
seeds = 1
""")
    return path


def test_sweep_experiment_runs_what_sweep_config_runs(demo_files, tmp_path, capsys):
    model, data = demo_files
    path = _demo_experiment(tmp_path, model, data)
    done = onnxnoise.sweep_experiment(path, out=tmp_path / "api")
    assert capsys.readouterr() == ("", "")  # silent by default
    assert done.experiment.name == "demo-study" and done.out == tmp_path / "api"
    assert [run.config.run.model.name for run in done.runs] == ["fashion_mnist_cnn.onnx", "twin.onnx",
                                                                 "fashion_mnist_cnn.onnx"]
    # whole-model: the baseline and two strengths; per-layer: the baseline (done by the first sweep) and 6 layers
    assert [(run.planned, run.done, run.ran, run.failed) for run in done.runs] == [(3, 0, 3, 0), (3, 0, 3, 0),
                                                                                  (7, 1, 6, 0)]
    assert [run.out.name for run in done.runs] == ["demo", "twin", "demo"] and done.failed == 0
    assert done.trials.height == 13
    code, _, _ = run_cli(capsys, "sweep", "--config", path, "--out", tmp_path / "cli")
    assert code == 0
    for name in ("demo", "twin"):
        api = collect_trials([tmp_path / "api" / name]).sort("key")
        cli = collect_trials([tmp_path / "cli" / name]).sort("key")
        assert api["key"].to_list() == cli["key"].to_list()
        assert api["top1_correct"].to_list() == cli["top1_correct"].to_list()
        assert api.height == (9 if name == "demo" else 3)
    again = onnxnoise.sweep_experiment(path, out=tmp_path / "api", executor="local")
    assert [(run.done, run.ran) for run in again.runs] == [(3, 0), (3, 0), (7, 0)]


def test_sweep_experiment_takes_only_what_a_file_cannot_hold(demo_files, tmp_path):
    model, data = demo_files
    path = _demo_experiment(tmp_path, model, data)
    with pytest.raises(ConfigError, match=r"^sweep_experiment takes no option 'snr': the experiment file gives the "
                                          r"run's settings; its options are .*\bexecutor\b"):
        onnxnoise.sweep_experiment(path, snr=10)
    with pytest.raises(onnxnoise.ExperimentError, match="experiment file not found"):
        onnxnoise.sweep_experiment(tmp_path / "missing.toml")
    assert not (tmp_path / "runs").exists()


def test_an_error_of_a_dataset_picked_without_data_names_it(demo_files, registry, tmp_path):
    """fresh22 finding 3: the API returns the "using registered dataset" note only with a result, so an error of
    the run on the picked dataset says which one it was (here a 32x32 gray set for the 28x28 demo, whose `mnist`
    preprocessing does not resize)."""

    model, _ = demo_files
    gray32 = tmp_path / "gray32.npz"
    np.savez(gray32, images=np.zeros((10, 32, 32), np.uint8), labels=np.arange(10, dtype=np.int64))
    register_dataset("gray32", gray32)
    with pytest.raises(DataError) as info:
        onnxnoise.bench_model(model, None, snr=10, seeds=1)
    message = str(info.value)
    assert message.startswith("preprocessing gives 32x32 images but the model expects 28x28; ")
    assert message.endswith(f"; the dataset was the registered `gray32` ({gray32.resolve()}), picked because no "
                            "data was given: pass data=NAME or a path to choose another")
    assert "\n" not in message
