"""scripts/bench_throughput.py: ratios judged on their lower bound against physical maxima and the time ideal,
targets on the time and the MAC ideal, the clean layouts, and one short run on a built model."""

from __future__ import annotations

import json

import onnx
import pytest

from onnxnoise.engine.prefix import GraphSplitter
from onnxnoise.model import list_layers
from onnxnoise.model.macs import node_macs, prefix_reuse_ideal


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("bench_throughput")


@pytest.fixture(scope="module")
def measure(bench):
    import _bench_measure  # scripts/ is on sys.path once the script is loaded

    return _bench_measure


def test_targets_are_judged_on_the_lower_bound(measure):
    # mean 1.6, s = 0.1, n = 3: half-width t(0.975, 2) x 0.1 / sqrt(3) = 4.3027 x 0.057735 = 0.24842
    r = measure.ratio_summary("prefix/clean", [1.5, 1.6, 1.7], maximum=1.8, maximum_name="time ideal (upper end)")
    assert r["low"] == pytest.approx(1.6 - 0.248414, abs=1e-5) and r["measuring_error"] is None
    assert measure.target_met(r, 1.35) and not measure.target_met(r, 1.36)


def test_a_ratio_above_its_ideal_is_a_measuring_error_and_never_meets_a_target(measure):
    r = measure.ratio_summary("prefix/clean", [2.4, 2.43, 2.44], maximum=1.794, maximum_name="time ideal (upper end)")
    assert r["measuring_error"].startswith("MEASURING ERROR: prefix/clean = 2.423 is above its time ideal (upper end) "
                                           "1.794 (its whole 95% interval is above it)")
    assert not measure.target_met(r, 0.9 * 1.794) and r["low"] > 0.9 * 1.794
    whole = measure.ratio_summary("all/clean", [1.02, 0.99])  # physical maximum 1 by name, within noise of it
    assert "above its physical maximum 1.000 (within noise of it)" in whole["measuring_error"]
    assert not measure.target_met(whole, 0.5)


def test_clean_layouts_and_the_best_of_them(measure):
    assert measure.clean_layouts(0, 2) == {"clean-1x2": (1, 0), "clean-2x1": (2, 1)}
    assert measure.clean_layouts(4, 2) == {"clean-1x4": (1, 4), "clean-4x1": (4, 1)}
    assert measure.clean_layouts(1, 8) == {"clean-1x1": (1, 1)}
    rounds = [{"a": {"images_per_s": 100.0}, "b": {"images_per_s": 90.0}},
              {"a": {"images_per_s": 60.0}, "b": {"images_per_s": 95.0}}]  # a: mean 80, b: 92.5
    assert measure.best_clean(rounds, ["a", "b"]) == "b"


def test_side_by_side_clean_sessions_take_passes_from_one_queue(measure, monkeypatch):
    seen = []
    monkeypatch.setattr(measure, "evaluate", lambda session, data: seen.append(session))
    out = measure.run_clean(["a", "b"], list(range(10)), passes=5)
    assert len(seen) == 5 and set(seen) <= {"a", "b"} and out["passes"] == 5
    assert out["images_per_s"] == pytest.approx(50 / out["wall_s"])
    seen.clear()
    assert measure.run_clean(["a", "b"], list(range(10)))["passes"] == 2 and len(seen) == 2
    seen.clear()
    assert measure.run_clean(["a"], list(range(10)), passes=5)["passes"] == 1 and seen == ["a"]


def test_a_short_per_layer_run_checks_every_ratio_against_the_time_ideal(bench, resnet_npz, capsys):
    model_path, data = resnet_npz
    code = bench.main([str(model_path), "--data", str(data), "--preprocess", "raw", "--mode", "per-layer",
                       "--repeats", "2", "--warmup-trials", "1", "--batch-size", "8", "--cache-repeats", "0",
                       "--profile-runs", "3", "--profile-warmup", "1", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    model = onnx.load(model_path)
    splitter = GraphSplitter(model, output_name=model.graph.output[0].name)
    positions = [splitter.position(layer.tensors) for layer in list_layers(model)]  # one pass: one group
    ideal = prefix_reuse_ideal(node_macs(model), [[p if p < len(splitter) else 0 for p in positions]])
    assert out["mac_ideal"] == pytest.approx(ideal, rel=1e-12) and 1.0 < ideal
    timed = out["time_ideal"]  # the same formula on profiled node times: 3 runs, each with its ideal
    assert (timed["runs"], timed["warmup"], timed["batch_images"], len(timed["per_run"])) == (3, 1, 8, 3)
    assert timed["low"] == min(timed["per_run"]) and timed["high"] == max(timed["mean"], *timed["per_run"])
    assert 1.0 < timed["low"] <= timed["mean"] <= timed["high"]
    assert list(out["clean_layouts"]) == list(bench.clean_layouts(0, bench.usable_cpus()))
    limits = {r["label"]: (r["maximum"], r["maximum_name"]) for r in out["ratios"]}
    assert limits["prefix/clean"] == (timed["high"], "time ideal (upper end)")
    assert limits["prefix/no-prefix"] == (timed["high"], "time ideal (upper end)")
    assert limits["no-prefix/clean"] == (1.0, "physical maximum")
    targets = [c for c in out["checks"] if c["check"].startswith("per-layer with prefix reuse")]
    assert [(t["check"].split(" = ")[0].split(" x ")[1], t["check"].endswith("(CPU time)")) for t in targets] == [
        (f"time ideal {timed['mean']:.3f}", False), (f"MAC ideal {ideal:.3f}", False),
        (f"time ideal {timed['mean']:.3f}", True), (f"MAC ideal {ideal:.3f}", True)]
    labels = ("prefix/clean", "prefix/clean", "prefix/clean (CPU time)", "prefix/clean (CPU time)")
    for target, label, value in zip(targets, labels, (timed["mean"], ideal) * 2):
        prefix = next(r for r in out["ratios"] if r["label"] == label)
        assert target["value"] == prefix["low"]
        assert target["met"] == (prefix["measuring_error"] is None and prefix["low"] >= 0.9 * value)
    errors = [r for r in out["ratios"] if r["name"].startswith("prefix/") and r["mean"] > timed["high"]]
    check = next(c for c in out["checks"] if c["check"].startswith("no ratio above its maximum"))
    assert all(r["measuring_error"] for r in errors) and check["met"] == (not any(
        r["measuring_error"] for r in out["ratios"]))


def test_ideals_only_prints_both_ideals_and_times_nothing(bench, resnet_npz, capsys):
    model_path, data = resnet_npz
    args = [str(model_path), "--data", str(data), "--preprocess", "raw", "--batch-size", "8", "--ideals-only",
            "--profile-runs", "2", "--profile-warmup", "0"]
    assert bench.main([*args, "--mode", "per-layer", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    out = json.loads(lines[-1])
    assert "rounds" not in out and "checks" not in out and len(out["time_ideal"]["per_run"]) == 2
    printed = next(line for line in lines if line.startswith("ideals of prefix reuse"))
    assert f"MAC ideal {out['mac_ideal']:.3f}x" in printed and f"time ideal {out['time_ideal']['mean']:.3f}x" in printed
    with pytest.raises(SystemExit) as exit_info:  # argparse: one line, exit 2
        bench.main([*args, "--mode", "all"])
    assert exit_info.value.code == 2 and "--ideals-only needs --mode per-layer" in capsys.readouterr().err
