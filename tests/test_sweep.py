"""Sweeps: resume after kill -9, A_i / A_avr from the store, experiment files, reports."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from onnxnoise.cli import main
from onnxnoise.config import NoiseConfig, RunConfig, SweepConfig
from onnxnoise.engine.context import prepare_context
from onnxnoise.engine.executor import LocalExecutor
from onnxnoise.experiment import ExperimentError, load_experiment
from onnxnoise.report.stats import average_normalized_accuracy
from onnxnoise.report.study import collect_trials
from onnxnoise.store.store import open_store
from onnxnoise.sweep import recheck_sweep, run_sweep

from tests._checks import stored_rows as _stored_rows

REPO = Path(__file__).resolve().parent.parent

#: Trial columns whose values must not depend on whether (or when) a sweep was interrupted.
RESULT_COLUMNS = ("key", "key_version", "mode", "layer_index", "layers", "layers_noised", "noise_model", "noise",
                  "strength", "seed", "label_offset", "batch_size", "provider", "images", "top1_correct",
                  "top5_correct", "nan_count", "bn_variance_changed", "overflow_count", "clipped_count",
                  "zeros_kept", "error")


def _sweep_cmd(demo: tuple[Path, Path], out: Path) -> list[str]:
    model, data = demo
    return [sys.executable, "-m", "onnxnoise.cli", "sweep", str(model), "--data", str(data), "--mode", "per-layer",
            "--snr", "20,10,5", "--seeds", "0,1,2", "--device", "cpu", "--out", str(out)]


def _results(out: Path) -> pl.DataFrame:
    with open_store(out / "trials.sqlite", create=False) as store:
        frame = store.to_frame()
    return frame.select(RESULT_COLUMNS).sort("key")


def test_per_layer_sweep_survives_kill_9(demo_files, tmp_path):
    """Kill -9 the sweep at random moments (paced by its own commits, so any machine load works)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "120"}
    reference = tmp_path / "reference"
    subprocess.run(_sweep_cmd(demo_files, reference), check=True, env=env, capture_output=True, timeout=600)
    expected = _results(reference)
    assert expected.height == 1 + 6 * 3 * 3  # baseline + 6 layers x 3 SNRs x 3 seeds
    with open_store(reference / "trials.sqlite", create=False) as store:
        per_trial = float(store.to_frame()["seconds"].mean())
    assert expected["error"].null_count() == expected.height
    # The baseline has no strength; every noisy trial one of the requested SNRs, in the v2 columns.
    base = expected.filter(pl.col("mode") == "baseline")
    assert base.height == 1 and base["strength"].to_list() == [None] and base["seed"].to_list() == [None]
    noisy = expected.filter(pl.col("mode") == "per-layer")
    assert sorted(noisy["strength"].unique().to_list()) == [5.0, 10.0, 20.0]
    assert set(noisy["noise_model"].to_list()) == {"gaussian-snr"}
    assert noisy["layers_noised"].to_list() == [1] * noisy.height
    assert set(expected["key_version"].to_list()) == {2}
    assert set(expected["provider"].to_list()) == {"CPUExecutionProvider"}

    killed = tmp_path / "killed"
    db = killed / "trials.sqlite"
    rng = random.Random(0)
    kills = 0
    for _ in range(4):
        target = _stored_rows(db) + rng.randint(1, 5)
        proc = subprocess.Popen(_sweep_cmd(demo_files, killed), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while proc.poll() is None and _stored_rows(db) < target and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, per_trial))  # land anywhere inside the next trial
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        partial = _results(killed)
        assert partial["key"].n_unique() == partial.height
        assert partial.height < expected.height
    assert kills == 4
    subprocess.run(_sweep_cmd(demo_files, killed), check=True, env=env, capture_output=True, timeout=600)
    got = _results(killed)
    assert got.height == expected.height
    assert got.equals(expected)


def test_a_i_and_a_avr_from_store_equal_hand_computation(tmp_path):
    """Known counts: a_0 = 900/1000; layer 0 at seeds 0/1: 810, 720; layer 1: 900, 882."""
    run = tmp_path / "run"
    common = dict(model="m.onnx", model_sha256="abc", dataset="d", dataset_fingerprint="fp",
                  preprocess={"preset": "raw"}, noise_model="gaussian-snr",
                  noise={"params": {}, "bn_variance": "clamp", "keep_zeros": False},
                  images=1000, top5_correct=1000, nan_count=0, bn_variance_changed=0, seconds=1.0)
    with open_store(run / "trials.sqlite") as store:
        store.record_run({"model": "m.onnx", "model_sha256": "abc", "config": {"layers_total": 2}})
        store.record({**common, "key": "b", "mode": "baseline", "strength": None, "top1_correct": 900})
        for key, layer, seed, correct in [("a", 0, 0, 810), ("c", 0, 1, 720), ("d", 1, 0, 900), ("e", 1, 1, 882)]:
            store.record({**common, "key": key, "mode": "per-layer", "layer_index": layer, "layers": [f"l{layer}"],
                          "strength": 10.0, "seed": seed, "top1_correct": correct})
    trials = collect_trials([run])
    norm = dict(zip(trials["key"].to_list(), trials["top1_norm"].to_list()))
    assert norm["b"] == pytest.approx(1.0)
    assert norm["a"] == pytest.approx(0.9) and norm["c"] == pytest.approx(0.8)
    assert norm["d"] == pytest.approx(1.0) and norm["e"] == pytest.approx(0.98)
    a_avr = average_normalized_accuracy(trials).row(0, named=True)
    # A_0 = mean(0.9, 0.8) = 0.85, A_1 = mean(1.0, 0.98) = 0.99, A_avr = 0.92
    assert a_avr["strength"] == 10.0
    assert a_avr["top1_a_avr"] == pytest.approx(0.92)
    assert a_avr["top1_degradation_pct"] == pytest.approx(8.0)
    assert a_avr["layers"] == 2


def _experiment(tmp_path: Path, demo: tuple[Path, Path], extra: str = "") -> Path:
    model, data = demo
    path = tmp_path / "study.toml"
    path.write_text(f"""
name = "demo-study"
out = "runs"
{extra}
[data]
path = "{data}"
limit = 100

[models.demo]
path = "{model}"

[[sweeps]]
models = ["demo"]
modes = ["all"]
noise_pct = [1, 10]
seeds = [0, 1]

[[sweeps]]
modes = ["per-layer"]
snr = [10]
seeds = 1
""")
    return path


def test_experiment_file_runs_and_reports(demo_files, tmp_path, capsys):
    path = _experiment(tmp_path, demo_files)
    experiment = load_experiment(path)
    assert [name for name, _ in experiment.sweeps] == ["demo", "demo"]
    first, second = experiment.sweeps[0][1], experiment.sweeps[1][1]
    assert first.run.noise.model == "gaussian-snr"
    assert first.run.noise.strengths == (100.0, 10.0)  # noise_pct 1, 10 -> SNR 100, 10
    assert first.run.noise.seed_list == [0, 1] and first.modes == ("all",)
    assert second.run.noise.strengths == (10.0,) and second.run.noise.seed_list == [0]
    assert second.modes == ("per-layer",) and first.run.limit == second.run.limit == 100
    assert experiment.run_dir("demo") == tmp_path / "runs" / "demo"
    assert main(["sweep", "--config", str(path)]) == 0
    assert main(["sweep", "--config", str(path)]) == 0  # resume: nothing new
    out = capsys.readouterr().out
    assert "0 already done" in out and "already done, 0 run now" in out
    with open_store(tmp_path / "runs" / "demo" / "trials.sqlite", create=False) as store:
        trials = store.to_frame()
    # one baseline shared by both sweeps, 2 SNR x 2 seeds whole-model, 6 layers x 1 SNR x 1 seed
    assert trials.height == 1 + 4 + 6
    assert trials["error"].null_count() == trials.height
    counts = trials.group_by("mode", "strength").len().sort("mode", "strength")
    assert counts.rows() == [("all", 10.0, 2), ("all", 100.0, 2), ("baseline", None, 1), ("per-layer", 10.0, 6)]
    assert set(trials["images"].to_list()) == {100}
    assert main(["report", str(tmp_path / "runs")]) == 0
    report = (tmp_path / "runs" / "report.md").read_text()
    assert "## Noise in all layers" in report and "A_avr" in report
    figures = {p.name for p in (tmp_path / "runs" / "figures").iterdir()}
    assert {"accuracy-vs-noise.png", "per-layer-fashion_mnist_cnn.png", "degradation-by-model.svg"} <= figures
    assert main(["compare", str(tmp_path / "runs"), "--out", str(tmp_path / "cmp")]) == 0
    table = pl.read_csv(tmp_path / "cmp" / "compare.csv")
    assert table["layers"].to_list() == [6] and table["parameters"].to_list() == [55_482]


def test_experiment_file_errors(demo_files, tmp_path, capsys):
    path = _experiment(tmp_path, demo_files, extra="colour = 'blue'")
    with pytest.raises(ExperimentError, match="unknown key"):
        load_experiment(path)
    assert main(["sweep", "--config", str(path)]) == 2
    assert "unknown key(s) colour" in capsys.readouterr().err
    assert main(["sweep", "--config", str(tmp_path / "none.toml")]) == 2
    assert "experiment file not found" in capsys.readouterr().err


def test_experiment_file_sets_prefix_memory_and_tf32(demo_files, tmp_path, capsys):
    path = _experiment(tmp_path, demo_files)
    path.write_text(path.read_text().replace('modes = ["all"]', 'modes = ["all"]\nprefix_memory = 0.5\ntf32 = true'))
    first, second = (config.run for _, config in load_experiment(path).sweeps)
    assert (first.prefix_memory, first.tf32) == (0.5, True) and (second.prefix_memory, second.tf32) == (4.0, False)
    path.write_text(path.read_text().replace("prefix_memory = 0.5", "prefix_memory = -1"))
    assert main(["sweep", "--config", str(path)]) == 2
    assert "`prefix_memory` must be a positive number of GiB (e.g. 2 or 0.5), got -1" in capsys.readouterr().err


def test_report_on_missing_run_dir(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "run folder not found" in capsys.readouterr().err


def test_prefix_reuse_gives_the_same_trials_as_full_evaluation(cifar_resnet_onnx, shared_data, tmp_path):
    """Per-layer sweep of ResNet20 (BN kept, 300 images): identical counts with prefix reuse in lockstep,
    with prefix reuse on a kept cut (each trial alone, a Ray worker's path) and without prefix reuse."""
    run = RunConfig(model=cifar_resnet_onnx(20, keep_batchnorm=True), data=shared_data("cifar-10-batches-py"),
                    noise=NoiseConfig(strengths=(5.0, 2.0), seeds=(0,)), limit=300, device="cpu")
    frames = []
    for reuse, lockstep in ((True, True), (True, False), (False, True)):
        config = SweepConfig(run, modes=("per-layer",), prefix_reuse=reuse)
        executor = LocalExecutor(prefix_reuse=reuse, lockstep=lockstep)
        context = prepare_context(run)
        with open_store(tmp_path / f"reuse{reuse}-{lockstep}" / "trials.sqlite") as store:
            result = run_sweep(config, store, executor=executor, context=context)
            kept = context.prefix_runner().stats.kept_batches
            assert (kept > 0) == (reuse and not lockstep), kept  # lockstep keeps no cut
            assert result.planned == result.ran == 1 + 39 * 2
            assert result.failed == 0 and result.done == 0 and result.taken == 0
            frames.append(store.to_frame().select("key", "strength", "seed", "layer_index", "top1_correct",
                                                  "top5_correct", "nan_count", "bn_variance_changed").sort("key"))
    assert frames[0].equals(frames[1]) and frames[0].equals(frames[2])
    assert frames[0]["top1_correct"].null_count() == 0


def test_recheck_reproduces_stored_trials(demo_files, tmp_path):
    model, data = demo_files
    run = RunConfig(model=model, data=data, noise=NoiseConfig(strengths=(10.0, 5.0), seeds=(0, 1)), limit=200,
                    device="cpu")
    config = SweepConfig(run, modes=("all", "per-layer"))
    path = tmp_path / "trials.sqlite"
    with open_store(path) as store:
        result = run_sweep(config, store)
        assert result.planned == result.ran == 1 + 4 + 24 and result.failed == 0
        checked, mismatches = recheck_sweep(config, store, sample=8)
        assert checked == 8 and mismatches == []
        # A row tampered with by another program (WAL lets it write while the store is open) is caught.
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE trials SET top1_correct = top1_correct + 1 WHERE mode = 'all'")
        conn.close()
        checked, mismatches = recheck_sweep(config, store, sample=100)
        assert checked == 1 + 4 + 24
        assert len(mismatches) == 4 and all("top1_correct stored" in line for line in mismatches)


def test_sweep_rows_carry_the_v2_columns(demo_files, tmp_path):
    """Noise model, its settings (JSON), counters, label offset and batch size land in every row."""
    model, data = demo_files
    run = RunConfig(model=model, data=data, noise=NoiseConfig(strengths=(10.0,), seeds=1), limit=50, device="cpu",
                    batch_size=16)
    with open_store(tmp_path / "trials.sqlite") as store:
        run_sweep(SweepConfig(run, modes=("cumulative",)), store)
        trials = store.to_frame()
    assert trials.height == 1 + 6
    assert "snr" not in trials.columns and "kind" not in trials.columns and "noise_pct" not in trials.columns
    assert trials["noise_model"].to_list() == ["gaussian-snr"] * 7
    assert {json.loads(n)["bn_variance"] for n in trials["noise"].to_list()} == {"clamp"}
    assert trials["batch_size"].to_list() == [16] * 7 and trials["label_offset"].to_list() == [0] * 7
    cumulative = trials.filter(pl.col("mode") == "cumulative").sort("layer_index")
    assert cumulative["layer_index"].to_list() == cumulative["layers_noised"].to_list() == [1, 2, 3, 4, 5, 6]
    for column in ("overflow_count", "clipped_count", "zeros_kept", "nan_count"):
        assert cumulative[column].to_list() == [0] * 6, column


@pytest.mark.parametrize("bad, message", [
    ("seeds = 0", "seeds count must be >= 1, got 0"),
    ('seeds = ["a"]', "seed 'a' must be a non-negative integer"),
    ("limit = \"200\"", "`limit` must be an integer >= 1, got '200'"),
    ('modes = ["all", "perlayer"]', "mode(s) perlayer unknown; choose from all, per-layer, cumulative"),
    ("modes = []", "modes is empty; choose from all, per-layer, cumulative"),
    ("snr = [10, -2]", "SNR must be finite and > 0"),
    ('snr = "ten"', "value 'ten' is not a number"),
])
def test_experiment_value_errors_name_file_and_key(demo_files, tmp_path, bad, message):
    model, data = demo_files
    path = tmp_path / "bad.toml"
    path.write_text(f'[data]\npath = "{data}"\n[models.m]\npath = "{model}"\n[[sweeps]]\n{bad}\n'
                    + ("" if bad.startswith("snr") else "noise_pct = [1]\n"))
    with pytest.raises(ExperimentError) as info:
        load_experiment(path)
    assert str(info.value).startswith(f"{path}: [[sweeps]] #1: ")
    assert message in str(info.value)
