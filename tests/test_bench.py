"""bench.py: one model on one dataset; real models on real data (../shared) and what bench records.

Exact checks on full test sets where they are cheap (CIFAR-10 ResNets), the ImageNet
models on the 500-image Imagenette validation subset as 1000-way classification. Also: the
preprocessing settings given on the command line are recorded, a zero baseline is JSON null, and --scope-check
says whether a BN-folded model's answer depends on the scope of sigma."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import polars as pl
import pytest
from onnx import numpy_helper

import onnxnoise
from onnxnoise.bench import run_bench
from onnxnoise.config import NoiseConfig, RunConfig
from onnxnoise.data.loading import usable_cpus
from onnxnoise.engine.context import prepare_context
from onnxnoise.engine.plan import Trial
from onnxnoise.engine.trial import run_trial

from tests._builders import WEIGHT_ROUTES, labeled_npz, routed_classifier
from tests._checks import one_line, run_cli, strict_json
from tests._colour import colour_npz
from tests._folded import folded_colour_model

BASELINE = Trial("baseline", None, (), None, None)


def _baseline(model: Path, data: Path, **kwargs) -> dict:
    """The clean trial's row, run by the engine (no noisy trials), with ``top1_acc``/``top5_acc`` in percent."""
    context = prepare_context(RunConfig(model=model, data=data, device="cpu", **kwargs))
    row = run_trial(context, BASELINE)
    assert row["error"] is None, row["error"]
    assert row["mode"] == "baseline" and row["strength"] is None and row["seed"] is None
    assert row["nan_count"] == 0 and row["layers_noised"] == 0
    return {**row, "top1_acc": 100.0 * row["top1_correct"] / row["images"],
            "top5_acc": 100.0 * row["top5_correct"] / row["images"]}


@pytest.mark.parametrize("depth, published, correct", [(20, 91.73, 9173), (56, 93.39, 9339)])
@pytest.mark.parametrize("layout", ["cifar-10-batches-py", "cifar10-test-png"])
def test_cifar_resnet_published_top1(depth, published, correct, layout, cifar_resnet_onnx, shared_data):
    row = _baseline(cifar_resnet_onnx(depth), shared_data(layout))
    assert row["images"] == 10_000
    assert row["top1_correct"] == correct
    assert row["top1_acc"] == pytest.approx(published, abs=1e-9)
    assert row["provider"] == "CPUExecutionProvider" and row["label_offset"] == 0


@pytest.mark.parametrize("model, preset, top1_ref, top5_ref", [
    ("efficientnet-lite0/efficientnet_lite0.onnx", "tf-lite", 69.2, 91.4),
    ("squeezenet1.0-deepcompression/squeezenet1_0_deepcompression.onnx", "caffe", 57.8, 80.4),
])
def test_imagenet_models_on_imagenette(model, preset, top1_ref, top5_ref, shared_path, shared_data):
    """1000-way classification of the 500 Imagenette val images; references from the models' MANIFESTs."""
    row = _baseline(shared_path(f"models/{model}", kind="file"), shared_data("imagenette-val500"), preset=preset)
    assert row["images"] == 500
    assert row["top1_acc"] == pytest.approx(top1_ref, abs=0.5)
    assert row["top5_acc"] == pytest.approx(top5_ref, abs=0.5)


def test_imagenet_flat_val_loads(shared_path, shared_data):
    model = shared_path("models/squeezenet1.0-deepcompression/squeezenet1_0_deepcompression.onnx", kind="file")
    context = prepare_context(RunConfig(model=model, data=shared_data("imagenet-val1300"), preset="caffe",
                                        limit=100))
    assert context.dataset.format == "imagenet-val"
    assert context.dataset.num_classes == 1000
    assert len(context.data) == 100


def test_resnet20_accuracy_falls_with_snr(cifar_resnet_onnx, shared_data):
    """Noise in all layers, 3 seeds: mean top-1 decreases as SNR decreases (subset of 2,000 images)."""
    config = RunConfig(model=cifar_resnet_onnx(20), data=shared_data("cifar-10-batches-py"),
                       noise=NoiseConfig(strengths=(100.0, 10.0, 5.0), seeds=3), limit=2000, device="cpu")
    result = run_bench(config)
    summary = result.summary
    assert summary["mode"].to_list() == ["baseline", "all", "all", "all"]
    assert summary["strength"].to_list() == [None, 100.0, 10.0, 5.0]
    top1 = summary["top1_acc_mean"].to_list()
    # Baseline vs SNR 100 (1% noise) differ by noise only; from there accuracy falls.
    assert top1[0] > 85 and abs(top1[0] - top1[1]) < 1.0
    assert top1[1] > top1[2] > top1[3]
    assert summary["seeds"].to_list()[1:] == [3, 3, 3]
    assert summary["top1_norm_mean"][0] == pytest.approx(1.0)
    assert result.trials.height == 10 and result.meta["failed"] == 0


def test_keep_batchnorm_nan_logits_are_never_predictions(cifar_resnet_onnx, shared_data):
    """BN kept as ops: at SNR 100 noise makes some running variances negative (paper setting).

    With ``clamp`` (default) they are set to 0 and counted, logits stay finite; with
    ``keep`` the negative variances give NaN logits that are counted and scored as wrong.
    """
    model = cifar_resnet_onnx(20, keep_batchnorm=True)
    data = shared_data("cifar-10-batches-py")
    clamp = run_bench(RunConfig(model=model, data=data, noise=NoiseConfig(strengths=(100.0, 5.0), seeds=1),
                                limit=500, device="cpu"))
    noisy = clamp.trials.filter(pl.col("mode") == "all")
    assert noisy.height == 2
    assert noisy["bn_variance_changed"].sum() > 0
    assert noisy["nan_count"].sum() == 0
    assert clamp.meta["bn_variance_changed"] == noisy["bn_variance_changed"].sum()
    keep = run_bench(RunConfig(model=model, data=data, limit=500, device="cpu",
                               noise=NoiseConfig(strengths=(5.0,), seeds=1, bn_variance="keep")))
    row = keep.trials.row(1, named=True)
    assert row["mode"] == "all" and row["strength"] == 5.0
    assert row["bn_variance_changed"] > 0
    assert row["nan_count"] > 0
    assert row["top1_correct"] <= row["images"] - row["nan_count"]
    assert row["top5_correct"] <= row["images"] - row["nan_count"]


def test_bench_records_the_overridden_preprocessing_settings(tiny_float_int8, tmp_path, capsys):
    float_path, _, data = tiny_float_int8
    code, out, err = run_cli(capsys, "bench", float_path, "--data", data, "--preprocess", "raw", "--mean", "0.1",
                          "--std", "0.9", "--seeds", "1", "--snr", "10", "--device", "cpu", "--out", tmp_path / "r",
                          "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["preprocess_source"] == "--preprocess" and summary["preprocess_overrides"] == ["mean", "std"]
    assert "preprocessing preset raw (--preprocess), overridden: mean, std" in " ".join(err.split())


def test_zero_baseline_writes_null_not_nan(colour_onnx, tmp_path, capsys):
    data = colour_npz(tmp_path / "shifted.npz", shift=1)
    out_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "bench", colour_onnx, "--data", data, "--preprocess", "raw", "--snr", "100,1",
                          "--seeds", "2", "--device", "cpu", "--out", out_dir, "--json")
    assert code == 0, err
    for text in (out, (out_dir / "bench.json").read_text()):
        assert "NaN" not in text and "Infinity" not in text
        summary = strict_json(text)
        assert (summary["tool"], summary["version"]) == ("onnxnoise bench", onnxnoise.__version__)
        rows = {(r["mode"], r["strength"]): r for r in summary["results"]}
        assert rows[("baseline", None)]["top1_acc_mean"] == 0.0
        # a / a0 with a0 = 0 is undefined: null, never a bare NaN token.
        assert rows[("all", 100.0)]["top1_norm_mean"] is None
        assert rows[("all", 1.0)]["top1_norm_mean"] is None

    code, out, _ = run_cli(capsys, "layers", colour_onnx, "--json")
    assert code == 0 and strict_json(out)["total_layers"] == 1


# ---------------------------------------------------------------- device noise reaches every analog weight


@pytest.fixture(scope="module")
def routed(tmp_path_factory):
    """``route -> (model path, npz path, labels)`` of :func:`routed_classifier` models, clean top-1 100%."""
    folder = tmp_path_factory.mktemp("routed")

    def get(route: str):
        model = routed_classifier(route)
        path = folder / f"{route}.onnx"
        onnx.save(model, path)
        data = labeled_npz(model, folder / f"{route}.npz", n=60, relabel=0.0)
        bias = next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == "b")
        return path, data, int(np.argmax(bias))
    return get


@pytest.mark.parametrize("route", WEIGHT_ROUTES)
def test_stuck_at_moves_accuracy_whatever_route_the_weight_takes(routed, route):
    path, data, bias_class = routed(route)
    noise = NoiseConfig(model="stuck-at", params={"sa1_fraction": 0.0}, strengths=(0.0, 1.0), seeds=(0,))
    result = run_bench(RunConfig(model=path, data=data.path, noise=noise, preset="raw", device="cpu"))
    rows = {r["strength"]: r for r in result.trials.iter_rows(named=True)}
    assert rows[None]["top1_correct"] == 60  # clean: 100% by construction
    # rate 0 changes nothing; rate 1 sticks every device off: every weight 0, the logits are the (digital) bias
    assert (rows[0.0]["top1_correct"], json.loads(rows[0.0]["changed_values"])) == (60, {"fc": 0})
    assert json.loads(rows[1.0]["changed_values"]) == {"fc": 1920}
    assert rows[1.0]["top1_correct"] == int((data.labels == bias_class).sum()) < 60
    assert json.loads(rows[None]["changed_values"]) == {}
    model = path.name
    assert result.meta["warnings"] == [
        f"{model}: stuck-at changed no stored value of 1 noised layer(s) ('fc') in 1 of 2 noisy trial(s), at "
        "p = 0% faulty devices: those trials ran those layers' clean values (column changed_values). A strength that "
        "changes nothing by definition (a fault rate of 0, a levels grid the weights already sit on) or an all-zero "
        "tensor does that; otherwise the layer is not noised as the run says",
        # rate 1 leaves the bias alone: one class for every image, a draw at chance
        "stuck-at: 1 of 2 draws collapsed to chance or far below the others"]


def test_bench_shows_the_unchanged_layer_warning_in_console_and_bench_json(routed, tmp_path, capsys):
    path, data, _ = routed("einsum")
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "bench", path, "--data", data.path, "--preprocess", "raw", "--noise",
                                "stuck-at", "--rate", "0,0.5", "--seeds", "1", "--device", "cpu", "--out", out)
    assert code == 0, err
    summary = strict_json((out / "bench.json").read_text())
    (warning,) = summary["warnings"]
    assert warning.startswith("einsum.onnx: stuck-at changed no stored value of 1 noised layer(s) ('fc') in 1 of 2 "
                              "noisy trial(s), at p = 0% faulty devices: ")
    assert f"WARNING: {warning}" in " ".join(stdout.split())
    # the layout of the whole-model trials (engine.layout's rule: one 1-thread session per usable CPU, a tiny model)
    layout = summary["trial_layout"]
    cpus = usable_cpus()
    assert (layout["sessions"], layout["threads"]) == ((cpus, 1) if cpus > 1 else (1, 0))
    trials = pl.read_parquet(out / "trials.parquet")
    changed = dict(zip(trials["strength"].to_list(), trials["changed_values"].to_list()))
    assert trials.schema["changed_values"] == pl.List(pl.Struct({"layer": pl.String, "count": pl.Int64}))
    assert changed[None] == [] and changed[0.0] == [{"layer": "fc", "count": 0}]  # typed: report/nested.py
    assert [e["layer"] for e in changed[0.5]] == ["fc"] and 0 < changed[0.5][0]["count"] < 1920


def test_bench_scope_check_says_the_folded_model_depends_on_the_scope(tmp_path, capsys):
    model, data = tmp_path / "folded.onnx", colour_npz(tmp_path / "colour.npz")
    onnx.save(folded_colour_model(), str(model))
    code, out, err = run_cli(capsys, "bench", model, "--data", data, "--preprocess", "raw", "--snr", "10000,100000",
                             "--seeds", "3", "--layer-regex", "^fold$", "--scope-check", "1", "--device", "cpu",
                             "--out", tmp_path / "b", "--json")
    assert code == 0, err
    check = json.loads(out)["scope_check"]
    (row,) = check["strengths"]
    # the worst strength is SNR 10000; per output channel every draw keeps 100% (module doc of tests/_folded.py)
    assert row["strength"] == 10000.0 and row["top1_channel"] == 100.0 and row["seeds"] == 3
    assert row["top1_scope"] < 50.0 and row["depends"] is True
    assert check["lines"][0].endswith("the answer depends on the scope")
    assert "the answer depends on the scope" in " ".join(err.split())
    assert (tmp_path / "b" / "scope-check.parquet").is_file()


@pytest.mark.parametrize(("noise", "expected"), [
    ("bit-flip", "--scope-check needs a noise model with a `scope` parameter (e.g. gaussian-snr), bit-flip has none"),
    ("gaussian-snr:scope=channel", "compares with scope=channel, which this run already uses"),
])
def test_scope_check_refused_one_line_exit_2(noise, expected, tmp_path, capsys):
    model, data = tmp_path / "folded.onnx", colour_npz(tmp_path / "colour.npz")
    onnx.save(folded_colour_model(), str(model))
    strength = ["--ber", "0.001"] if noise == "bit-flip" else ["--snr", "10"]
    code, _, err = run_cli(capsys, "bench", model, "--data", data, "--preprocess", "raw", "--noise", noise, *strength,
                           "--scope-check", "1", "--out", tmp_path / "b")
    assert code == 2 and expected in one_line(err)
    code, _, err = run_cli(capsys, "bench", model, "--data", data, "--scope-check", "-1", "--out", tmp_path / "c")
    assert code == 2 and "`--scope-check` must be an integer >= 0, got -1" in one_line(err)


def test_draws_that_collapse_warn_for_any_noise_model_in_the_cli_and_the_api(colour_onnx, tmp_path, capsys):
    """The colour classifier (100% clean, 12 classes: chance 8.33%, the chance band ends at 8.33 + 0.1 x 91.67 =
    17.5%) at SNR 0.01 (noise sigma 10 x the weights'): both draws land at chance (5 and 4 of 60 images), so both
    collapse and gaussian-snr, which gives no advice of its own, still gets the one WARNING line; SNR 100 keeps
    37 and 43 of 60 (61.7%, 71.7%: neither at chance nor far below the other) and adds nothing to it."""
    data = colour_npz(tmp_path / "colour.npz")
    expected = "gaussian-snr: 2 of 4 draws collapsed to chance or far below the others"
    run = onnxnoise.bench_model(colour_onnx, data, preprocess="raw", snr="0.01,100", seeds=2, device="cpu")
    hits = {(r["strength"], r["seed"]): r["top1_correct"] for r in run.trials.iter_rows(named=True)}
    assert hits == {(None, None): 60, (0.01, 0): 5, (0.01, 1): 4, (100.0, 0): 37, (100.0, 1): 43}
    assert dict(run.summary.select("strength", "collapsed").rows()) == {None: 0, 0.01: 2, 100.0: 0}
    assert list(run.warnings) == [expected] and run.meta["warnings"] == [expected]
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "bench", colour_onnx, "--data", data, "--preprocess", "raw", "--snr",
                                "0.01,100", "--seeds", "2", "--device", "cpu", "--out", out)
    assert code == 0, err
    assert f"WARNING: {expected}" in " ".join(stdout.split())
    assert strict_json((out / "bench.json").read_text())["warnings"] == [expected]
