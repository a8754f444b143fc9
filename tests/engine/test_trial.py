"""One trial engine: bench, full-model sweep and prefix-reuse sweep agree; keys cover every setting.

Built models only (no ../shared): :func:`_builders.conv_bn_resnet` with 10 outputs, and with
11 outputs (a background class at output 0) on 10-class data with ``label_offset`` 1.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import polars as pl
import pytest

from onnxnoise.bench import run_bench
from onnxnoise.config import NoiseConfig, RunConfig, SweepConfig
from onnxnoise.engine.context import prepare_context
from onnxnoise.engine.plan import plan_trials
from onnxnoise.report.stats import summarize_trials
from onnxnoise.store import open_store
from onnxnoise.sweep import run_sweep

from tests._builders import conv_bn_resnet, labeled_npz
import tests._noise_models  # noqa: F401  (registers test-zero-every-k)

IMAGES = 200
COUNTS = ["top1_correct", "top5_correct", "nan_count"]
TRIAL_ID = ["mode", "layer_index", "strength", "seed"]


def _setup(tmp_path: Path, num_classes: int, label_offset: int):
    model_path = tmp_path / f"resnet{num_classes}.onnx"
    model = conv_bn_resnet(num_classes=num_classes)
    onnx.save(model, model_path)
    labeled = labeled_npz(model, tmp_path / f"data{num_classes}.npz", n=IMAGES, label_offset=label_offset)
    return model_path, labeled


def _run_config(model_path: Path, data: Path, **kwargs) -> RunConfig:
    noise = kwargs.pop("noise", NoiseConfig(strengths=(1e6, 3.0), seeds=(0, 1)))
    return RunConfig(model=model_path, data=data, noise=noise, preset="raw", device="cpu", batch_size=64, **kwargs)


@pytest.mark.parametrize("num_classes, label_offset", [(10, 0), (11, 1)], ids=["offset-0", "offset-1"])
def test_bench_full_sweep_and_prefix_sweep_count_the_same(tmp_path, num_classes, label_offset):
    model_path, labeled = _setup(tmp_path, num_classes, label_offset)
    config = _run_config(model_path, labeled.path, label_offset=label_offset)
    context = prepare_context(config)
    bench = run_bench(config, context=context).trials
    stored = {}
    for prefix in (False, True):
        with open_store(tmp_path / f"prefix-{prefix}.sqlite") as store:
            result = run_sweep(SweepConfig(config, modes=("all", "per-layer"), prefix_reuse=prefix), store,
                               context=context)
            assert (result.failed, result.ran) == (0, 1 + 2 * 2 * (1 + 13))
            stored[prefix] = store.to_frame().select(*TRIAL_ID, *COUNTS).sort(TRIAL_ID, nulls_last=False)
    assert stored[False].equals(stored[True])
    whole = stored[True].filter(pl.col("mode").is_in(["baseline", "all"]))
    assert bench.select(*TRIAL_ID, *COUNTS).sort(TRIAL_ID, nulls_last=False).equals(whole)
    # The known clean value: 140/200 (30% relabeled), and SNR 1e6 changes no prediction in any layer.
    base = stored[True].filter(pl.col("mode") == "baseline")
    assert base["top1_correct"].to_list() == [labeled.top1_correct] == [140]
    faint = stored[True].filter(pl.col("strength") == 1e6)
    assert faint["top1_correct"].unique().to_list() == [140] and faint.height == 2 * 14
    assert (bench["label_offset"] == label_offset).all()


def _keys(config: RunConfig) -> set[str]:
    return {item.key for item in plan_trials(prepare_context(config), ("all",))}


def test_every_setting_that_can_change_a_count_changes_the_key(tmp_path):
    model_path, labeled = _setup(tmp_path, 11, 1)
    base = _run_config(model_path, labeled.path, label_offset=1, noise=NoiseConfig(strengths=(5.0,), seeds=1))
    two_outputs = onnx.load(model_path)
    two_outputs.graph.node.append(onnx.helper.make_node("Identity", ["logits"], ["scores"]))
    two_outputs.graph.output.append(onnx.helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, ["N", 11]))
    onnx.save(two_outputs, tmp_path / "two.onnx")
    other_data = labeled_npz(conv_bn_resnet(num_classes=11), tmp_path / "other.npz", n=IMAGES, seed=5,
                             label_offset=1)
    variants = {
        "label_offset": dataclasses.replace(base, label_offset=0),
        "batch_size": dataclasses.replace(base, batch_size=32),
        "limit": dataclasses.replace(base, limit=100),
        "preprocess": dataclasses.replace(base, preprocess={"scale": 1.0 / 256}),
        "score_output": dataclasses.replace(base, model=tmp_path / "two.onnx", score_output="logits"),
        "dataset": dataclasses.replace(base, data=other_data.path),
        "bn_variance": dataclasses.replace(base, noise=dataclasses.replace(base.noise, bn_variance="abs")),
        "keep_zeros": dataclasses.replace(base, noise=dataclasses.replace(base.noise, keep_zeros=True)),
        "noise_model": dataclasses.replace(base, noise=NoiseConfig(model="test-zero-every-k", strengths=(5.0,),
                                                                   seeds=1)),
    }
    reference = _keys(base)
    for name, config in variants.items():
        assert not (_keys(config) & reference), f"{name} does not change the keys"
    toy = NoiseConfig(model="test-zero-every-k", strengths=(5.0,), seeds=1)
    assert not _keys(dataclasses.replace(base, noise=dataclasses.replace(toy, params={"offset": 1}))) & _keys(
        dataclasses.replace(base, noise=toy)), "noise parameters do not change the keys"
    # Provider, its precision options and the onnxruntime version are resolved facts of the context.
    context = prepare_context(base)
    for change in ({"provider": "CUDAExecutionProvider"}, {"provider_options": {"use_tf32": "0"}},
                   {"versions": {**context.versions, "onnxruntime": "0.0.0"}}):
        changed = {item.key for item in plan_trials(dataclasses.replace(context, **change), ("all",))}
        assert not changed & reference, f"{change} does not change the keys"
    assert {item.key for item in plan_trials(context, ("all",))} == reference  # and nothing else does


def test_rerun_with_another_label_offset_does_not_reuse_rows(tmp_path):
    model_path, labeled = _setup(tmp_path, 11, 1)
    with open_store(tmp_path / "trials.sqlite") as store:
        for offset, top1 in ((0, None), (1, 140)):
            config = SweepConfig(_run_config(model_path, labeled.path, label_offset=offset,
                                             noise=NoiseConfig(strengths=(1e6,), seeds=1)), modes=("per-layer",))
            result = run_sweep(config, store)
            assert (result.done, result.ran) == (0, 14)
            rows = store.to_frame().filter(pl.col("label_offset") == offset)
            if top1 is not None:
                assert rows["top1_correct"].unique().to_list() == [top1]


def test_toy_noise_model_stores_resumes_and_reports(tmp_path):
    model_path, labeled = _setup(tmp_path, 10, 0)
    noise = NoiseConfig(model="test-zero-every-k", strengths=(1.0, 4.0), seeds=1)
    config = SweepConfig(_run_config(model_path, labeled.path, noise=noise), modes=("all", "per-layer"))
    with open_store(tmp_path / "trials.sqlite") as store:
        first = run_sweep(config, store)
        again = run_sweep(config, store)
        trials = store.to_frame()
    assert (first.ran, first.failed) == (1 + 2 * 14, 0)
    assert (again.done, again.ran) == (first.planned, 0)
    noisy = trials.filter(pl.col("mode") != "baseline")
    assert set(noisy["noise_model"]) == {"test-zero-every-k"} and set(noisy["strength"]) == {1.0, 4.0}
    # k = 1 zeroes every weight of every layer: constant logits, and a tie never counts as a hit.
    assert noisy.filter((pl.col("mode") == "all") & (pl.col("strength") == 1.0))["top1_correct"].to_list() == [0]
    summary = summarize_trials(trials)
    whole = summary.filter(pl.col("mode") == "all")
    assert whole["strength"].to_list() == [4.0, 1.0]  # least noise first (more noise when k is lower)
    assert whole.filter(pl.col("strength") == 1.0)["top1_acc_mean"].to_list() == [0.0]


def test_two_sweeps_into_one_store_at_once(tmp_path):
    model_path, labeled = _setup(tmp_path, 10, 0)
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "onnxnoise.cli", "sweep", str(model_path), "--data", str(labeled.path),
            "--preprocess", "raw", "--device", "cpu", "--mode", "per-layer", "--snr", "10,5,3", "--seeds", "2",
            "--out", str(out)]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (stdout, stderr) in zip(procs, outputs):
        assert proc.returncode == 0, stderr
    ran = [int(re.search(r"(\d+) run now", " ".join(stdout.split())).group(1)) for stdout, _ in outputs]
    assert sum(ran) == 1 + 3 * 2 * 13  # each trial recorded by exactly one of the two processes
    with open_store(out / "trials.sqlite", create=False) as store:
        trials = store.to_frame()
    assert trials.height == 1 + 3 * 2 * 13 and trials["key"].n_unique() == trials.height
    assert trials["error"].is_null().all()
    assert np.all(trials["images"].to_numpy() == IMAGES)


def test_outcome_sink_receives_every_noisy_trials_per_image_outcomes(tmp_path):
    """``RunContext.outcome_sink`` gets (row, Outcomes) of each noisy trial, in both trial paths (one trial, and
    per-layer trials in lockstep), never the baseline's; the hits agree with the row's paired counts."""
    from onnxnoise.engine.plan import Trial
    from onnxnoise.engine.trial import BASELINE_TRIAL, run_trial, run_trials

    model_path, labeled = _setup(tmp_path, 10, 0)
    context = prepare_context(_run_config(model_path, labeled.path))
    seen = []
    context.outcome_sink = lambda row, outcomes: seen.append((row, outcomes))
    run_trial(context, BASELINE_TRIAL)
    assert seen == []
    clean = context.clean_outcomes.top1_hit
    names = tuple(layer.name for layer in context.selected)
    row = run_trial(context, Trial("all", None, names, 3.0, 0))
    trials = [Trial("per-layer", layer.index, (layer.name,), 3.0, 1) for layer in context.selected[:3]]
    rows = run_trials(context, trials, prefix_reuse=True)
    assert [r["layers"] for r, _ in seen] == [list(names)] + [[t.layers[0]] for t in trials]
    for got, (sunk, outcomes) in zip([row, *rows], seen):
        assert sunk is got and len(outcomes.top1_hit) == IMAGES
        assert int((clean & ~outcomes.top1_hit).sum()) == got["lost_top1"]
        assert int((~clean & outcomes.top1_hit).sum()) == got["gained_top1"]
