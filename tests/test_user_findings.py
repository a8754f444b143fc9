"""What a new user found running onnxnoise from a clean clone (issues 9 and 10), one test per finding.

bit-flip on float and dynamically quantized models, captions from the noise model in use, a
``--layout`` that contradicts the model, table headers and captions, normalized accuracy of the
clean row, figure titles and legends, report.md headings and footers, where preprocessing came
from, negative times, experiment-file syntax in messages, and README's quantization snippet.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import polars as pl
import pytest
from tests._builders import labeled_npz, qdq_matmul, tiny_cnn
from tests._checks import console_text as _text, with_accuracy
from scipy import stats

from onnxnoise.cli.output import intervals_note
from onnxnoise.data import layout_conflict
from onnxnoise.errors import ExperimentError, NoiseConfigError
from onnxnoise.experiment import load_experiment
from onnxnoise.model import get_initializers, list_layers, load_model
from onnxnoise.noise import draw_noise, make_noise_model
from onnxnoise.noise.gaussian import GaussianSNR
from onnxnoise.report.console import bench_caption, summary_table
from onnxnoise.report.plots import plot_accuracy_vs_noise, plot_compare
from onnxnoise.report.stats import average_normalized_accuracy, summarize_trials
from onnxnoise.report.strength import strength_header
from onnxnoise.report.study import write_report
from tests._checks import run_cli, one_line

ROOT = Path(__file__).resolve().parents[1]
BITFLIP = make_noise_model("bit-flip")




def _readme_snippet() -> str:
    """The Python block of README's 'Integer weights for bit-flip' section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("#### Integer weights for bit-flip", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """tiny_cnn (float, input [N, 3, 8, 8]), its int8 version made by README's snippet, and a labeled .npz."""
    folder = tmp_path_factory.mktemp("findings")
    float_path, int8_path = folder / "tiny.onnx", folder / "tiny-int8.onnx"
    model = tiny_cnn()
    onnx.save(model, float_path)
    code = _readme_snippet()
    assert '"resnet20.onnx"' in code and '"resnet20-int8.onnx"' in code
    code = code.replace('"resnet20.onnx"', repr(str(float_path))).replace('"resnet20-int8.onnx"', repr(str(int8_path)))
    exec(compile(code, "README.md", "exec"), {})  # the README's own code path, on a tiny model
    data = labeled_npz(model, folder / "d.npz", n=60)
    return float_path, int8_path, data.path


# ---------------------------------------------------------------- 1, 2, 3, 9: bit-flip


def test_bitflip_on_a_float_model_is_refused_before_any_trial(models, tmp_path, capsys):
    float_path, _, data = models
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "bench", float_path, "--data", data, "--preprocess", "raw", "--noise", "bit-flip",
                        "--ber", "1e-3", "--seeds", "2", "--device", "cpu", "--out", out)
    assert code == 2
    assert one_line(err) == (
        "onnxnoise: error: bit-flip noise needs integer-quantized weights, but the 3 selected layer(s) hold only "
        "float tensors; quantize the model first (onnxruntime.quantization.quantize_dynamic or quantize_static, "
        "see README 'Integer weights for bit-flip') or choose another --noise")
    assert not out.exists()  # not even the baseline ran


def test_any_model_needing_integer_weights_is_checked_the_same_way():
    """The check is the base class's, driven by ``needs_integer_weights``: no bit-flip code involved."""
    class NeedsInts(GaussianSNR):
        needs_integer_weights = True

    layers = list_layers(tiny_cnn())
    with pytest.raises(NoiseConfigError, match=r"^gaussian-snr noise needs integer-quantized weights, but the 3 "):
        NeedsInts().check_layers(layers)
    GaussianSNR().check_layers(layers)  # the default needs nothing


def test_bitflip_on_a_dynamically_quantized_model_flips_integers_and_leaves_floats_exact(models):
    _, int8_path, _ = models
    model = load_model(int8_path)
    layers, inits = list_layers(model), get_initializers(model)
    assert [layer.op_type for layer in layers] == ["ConvInteger", "BatchNormalization", "MatMulInteger"]
    BITFLIP.check_layers(layers)  # some integer tensors: accepted
    ber = 0.05
    draw = draw_noise(BITFLIP, ber, 0, layers, inits)
    integer = [n for layer in layers for n, q in zip(layer.tensors, layer.quant or (None,) * len(layer.tensors))
               if q is not None]
    floats = [n for layer in layers for n in layer.tensors if n not in integer]
    assert len(integer) == 2 and len(floats) == 6  # conv/fc int8 weights; conv.bias, bn x4, fc.bias
    for name in floats:
        assert draw.arrays[name] is inits[name]  # not integer memory: exact, the same array
    flipped = sum(int(np.unpackbits((inits[n].view(np.uint8) ^ draw.arrays[n].view(np.uint8)).ravel()).sum())
                  for n in integer)
    bits = sum(inits[n].size * 8 for n in integer)
    assert bits == (108 + 40) * 8 and all(draw.arrays[n].dtype == np.int8 for n in integer)
    interval = stats.binomtest(flipped, bits, ber).proportion_ci(0.999)
    assert interval.low <= ber <= interval.high, (flipped, bits)
    assert draw.clipped_count == 0


def test_bitflip_bench_on_the_readme_model_runs_and_says_what_stayed_exact(models, tmp_path, capsys):
    _, int8_path, data = models
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "bench", int8_path, "--data", data, "--preprocess", "raw", "--noise",
                             "bit-flip", "--ber", "1e-2", "--seeds", "2", "--device", "cpu", "--out", out, "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["failed"] == 0
    assert summary["quantization"] == (
        "quantized dynamic weights (2 layers): bits flipped in the stored integers of 2 tensors (148 values); "
        "6 float tensors (30 values: bias, mean, scale, var) left exact, not integer memory")
    assert [r["seeds"] for r in summary["results"]] == [1, 2]


def test_quantization_caption_comes_from_the_noise_model_in_use():
    rng = np.random.default_rng(0)
    q = rng.integers(-128, 128, size=(256, 64)).astype(np.int8)
    model = qdq_matmul(q, 0.01 * np.ones(64), np.zeros(64, np.int8), rng.integers(-5000, 5000, 64).astype(np.int32),
                       1e-4)
    layers = list_layers(model)
    assert BITFLIP.describe_quantization(layers) == (
        "quantized QDQ weights (1 layer): bits flipped in the stored integers of 2 tensors (16,448 values)")
    assert make_noise_model("gaussian-snr").describe_quantization(layers, 3) == (
        "quantized QDQ weights (1 layer): dequantize-noise-requantize, 3 values clipped")
    assert BITFLIP.describe_quantization(list_layers(tiny_cnn())) is None
    assert "float tensors (biases, normalization, float layers) left exact" in BITFLIP.describe()


# ---------------------------------------------------------------- 4: --layout against the model's input


def test_layout_contradicting_the_model_input_is_one_line(models, tmp_path, capsys):
    float_path, _, data = models
    argv = ["bench", float_path, "--data", data, "--preprocess", "raw", "--seeds", "1", "--snr", "10",
            "--device", "cpu", "--out", tmp_path / "run"]
    code, _, err = run_cli(capsys, *argv, "--layout", "NHWC")
    assert code == 2
    assert one_line(err) == ("onnxnoise: error: --layout NHWC contradicts the model's input, which is NCHW "
                              "[N, 3, 8, 8]; drop --layout or pass --layout NCHW")
    code, _, err = run_cli(capsys, *argv, "--layout", "NCHW")
    assert code == 0, err


@pytest.mark.parametrize("layout, shape, expected", [
    ("NCHW", (None, 32, 32, 3), "--layout NCHW contradicts the model's input, which is NHWC [N, 32, 32, 3]; "
                                "drop --layout or pass --layout NHWC"),
    ("NHWC", (1, 1, 28, 28), "--layout NHWC contradicts the model's input, which is NCHW [1, 1, 28, 28]; "
                             "drop --layout or pass --layout NCHW"),
    ("NHWC", (None, 32, 32, 3), None),
    ("NHWC", (None, 3, None, None), None),  # dynamic sizes: the shape cannot tell
    ("NCHW", (None, 3, 8, 3), None),  # channels-like at both ends: ambiguous
    ("NHWC", (None, 10), None),
])
def test_layout_conflict(layout, shape, expected):
    assert layout_conflict(layout, shape) == expected


# ---------------------------------------------------------------- 5, 6: tables, figures, report.md


NOISE = {"bn_variance": "clamp", "keep_zeros": False}


def _trials(noise_model: str, params: dict, strengths, *, baselines: int = 1, per_layer: bool = False,
            top5_base: int = 990) -> pl.DataFrame:
    noise = json.dumps({**NOISE, "params": params}, sort_keys=True)
    common = {"model": "net", "model_sha256": "sha", "dataset": "d", "dataset_fingerprint": "fp",
              "preprocess": "{}", "noise_model": noise_model, "noise": noise, "images": 1000, "nan_count": 0,
              "error": None, "provider": "CPUExecutionProvider", "layers": "[]"}
    rows = [{**common, "mode": "baseline", "layer_index": None, "strength": None, "seed": None,
             "top1_correct": 900, "top5_correct": top5_base} for _ in range(baselines)]
    for strength in strengths:
        rows.append({**common, "mode": "all", "layer_index": None, "strength": strength, "seed": 0,
                     "top1_correct": 700, "top5_correct": top5_base})
        if per_layer:
            rows += [{**common, "mode": "per-layer", "layer_index": i, "strength": strength, "seed": 0,
                      "top1_correct": 800, "top5_correct": top5_base} for i in (0, 1)]
    frame = pl.DataFrame(rows, schema_overrides={"layer_index": pl.Int64, "seed": pl.Int64, "error": pl.String,
                                                 "strength": pl.Float64})
    return with_accuracy(frame)




def test_strength_headers_match_their_cells():
    summary = summarize_trials(_trials("pcm", {"compensation": "global"}, (86400.0,)))
    assert strength_header(summary) == "time after programming t_inf"
    text = _text(summary_table(summary))
    assert "time after programming t_inf" in text and "t = 1 d" in text and "time (s)" not in text
    stuck = summarize_trials(_trials("stuck-at", {}, (0.01,)))
    assert strength_header(stuck) == "device fault rate p"
    assert "p = 1% faulty devices" in _text(summary_table(stuck))


def test_stuck_at_caption_shows_the_stuck_on_share_as_a_percentage():
    model = make_noise_model("stuck-at", {"sa1_fraction": 1 / 11})
    assert model.describe().startswith("stuck-at faults per device, 9.09% of them stuck-on (the rest stuck-off), ")
    assert "50% of them stuck-on" in make_noise_model("stuck-at").describe()


def test_clean_row_normalized_accuracy_is_exactly_one():
    """Three baselines of 1 of 1000 images: the float mean of 0.1 % three times is 0.10000000000000002."""
    trials = _trials("gaussian-snr", {}, (10.0,), baselines=3, top5_base=1)
    assert pl.Series([0.1] * 3).mean() != 0.1  # the float trap the counts avoid
    summary = summarize_trials(trials)
    base = summary.filter(pl.col("mode") == "baseline").row(0, named=True)
    assert base["top1_norm_mean"] == 1.0 and base["top5_norm_mean"] == 1.0
    noisy = summary.filter(pl.col("mode") == "all").row(0, named=True)
    assert noisy["top1_norm_mean"] == 700 / 900 and noisy["top5_norm_mean"] == 1.0


def test_figures_say_seed_not_seeds_and_name_settings_for_one_run_as_for_several():
    one = summarize_trials(_trials("pcm", {"compensation": "global"}, (1.0, 86400.0), per_layer=True))
    fig = plot_compare(average_normalized_accuracy(_trials("pcm", {"compensation": "global"}, (1.0,),
                                                           per_layer=True)))
    title = fig.axes[0].get_title()
    assert "; 1 seed, error bars" in title and "1 seeds" not in title
    legend = [t.get_text() for t in plot_accuracy_vs_noise(one).axes[0].get_legend().get_texts()]
    assert legend == ["net [compensation=global]"]
    both = summarize_trials(pl.concat([_trials("pcm", {"compensation": "global"}, (1.0,)),
                                       _trials("pcm", {"compensation": "none"}, (1.0,))]))
    legend = [t.get_text() for t in plot_accuracy_vs_noise(both).axes[0].get_legend().get_texts()]
    assert legend == ["net [compensation=global]", "net [compensation=none]"]
    default = summarize_trials(_trials("gaussian-snr", {}, (10.0,)))
    assert [t.get_text() for t in plot_accuracy_vs_noise(default).axes[0].get_legend().get_texts()] == ["net"]


def _runs() -> pl.DataFrame:
    return pl.DataFrame({"model": ["net"], "model_sha256": ["sha"], "versions": ['{"onnxnoise":"x"}'],
                         "config": ['{"layers_total": 2, "params_total": 100}']})


def test_report_headings_cite_the_paper_only_for_its_noise(tmp_path):
    pcm = write_report(_trials("pcm", {}, (1.0,), per_layer=True), _runs(), tmp_path / "pcm").markdown.read_text()
    assert "## Noise in all layers (pcm)\n" in pcm and "Table III" not in pcm
    assert "## Noise in one layer at a time: A_avr (pcm; A_avr as in paper eq. 3)\n" in pcm
    gauss = write_report(_trials("gaussian-snr", {}, (10.0,)), _runs(), tmp_path / "g").markdown.read_text()
    assert "## Noise in all layers (paper Table III, Fig. 2)\n" in gauss


def test_report_footer_explains_a_avr_only_with_an_a_avr_table(tmp_path, capsys):
    assert "A_avr" not in intervals_note(a_avr=False) and "A_avr = mean over layers" in intervals_note(a_avr=True)
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "sweep", ROOT / "models/demo/fashion_mnist_cnn.onnx", "--data",
                        ROOT / "models/demo/fashion_mnist_test1000.npz", "--limit", "20", "--seeds", "1", "--snr", "10",
                        "--mode", "all", "--device", "cpu", "--out", run)
    assert code == 0, err
    code, out, err = run_cli(capsys, "report", run, "--out", tmp_path / "report")
    assert code == 0, err
    assert "± = 95% Student t interval over seeds" in out and "A_avr" not in out


# ---------------------------------------------------------------- 7: where preprocessing came from


def test_caption_says_which_preprocessing_values_came_from_where():
    meta = {"model": "m.onnx", "layers_noised": 1, "layers_total": 1, "params_noised": 10, "dataset": "d",
            "images": 10, "preprocess": {"preset": "cifar", "scale": 1 / 255, "mean": [0.5], "std": [0.25],
                                         "channel_order": "RGB"},
            "preprocess_source": "model metadata", "preprocess_overrides": ["mean", "std"],
            "noise_model": "gaussian-snr", "noise": {"params": {}}, "seeds": [0]}
    text = " ".join(bench_caption(meta).plain.split())
    assert "preprocessing from the model's metadata, overridden: mean, std (no resize, RGB," in text
    meta.update(preprocess_source="--preprocess", preprocess_overrides=[])
    assert "preprocessing preset cifar (--preprocess) (no resize" in " ".join(bench_caption(meta).plain.split())


def test_bench_records_the_overridden_preprocessing_settings(models, tmp_path, capsys):
    float_path, _, data = models
    code, out, err = run_cli(capsys, "bench", float_path, "--data", data, "--preprocess", "raw", "--mean", "0.1",
                          "--std", "0.9", "--seeds", "1", "--snr", "10", "--device", "cpu", "--out", tmp_path / "r",
                          "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["preprocess_source"] == "--preprocess" and summary["preprocess_overrides"] == ["mean", "std"]
    assert "preprocessing preset raw (--preprocess), overridden: mean, std" in " ".join(err.split())


# ---------------------------------------------------------------- 8: negative times, file syntax


@pytest.mark.parametrize("argv, expected", [
    (["--noise", "pcm", "--t", "-1s"], "`--t` value '-1s' is negative; times must be >= 0 (e.g. 0s,1s,1h,1d,30d,1y)"),
    (["--noise", "pcm", "--strength", "1s,-1h"],
     "`--strength` value '-1h' is negative; times must be >= 0 (e.g. 0s,1s,1h,1d,30d,1y)"),
    (["--noise", "bit-flip", "--ber", "-1e-3"], "bit error rate must be a number in [0, 1], got -0.001"),
])
def test_negative_strength_reaches_the_range_check(argv, expected, tmp_path, capsys):
    code, _, err = run_cli(capsys, "bench", ROOT / "models/demo/fashion_mnist_cnn.onnx", *argv, "--out", tmp_path)
    assert code == 2
    assert one_line(err) == f"onnxnoise: error: {expected}"


def test_experiment_file_messages_use_the_file_syntax(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(f'[data]\npath = "{tmp_path / "d.npz"}"\n[models.m]\npath = "{tmp_path / "m.onnx"}"\n'
                    '[[sweeps]]\nnoise = "pcm"\nt = ["1s", "soon"]\n')
    with pytest.raises(ExperimentError) as info:
        load_experiment(path)
    assert str(info.value) == (f"{path}: [[sweeps]] #1: `t` value 'soon' is not a number; give a list of numbers, "
                               "e.g. [100, 10, 5]")
    path.write_text(path.read_text().replace('t = ["1s", "soon"]', 't = ["-1d"]'))
    with pytest.raises(ExperimentError, match=re.escape('times must be >= 0 (e.g. ["0s", "1s", "1h", "1d", "30d", '
                                                        '"1y"])')):
        load_experiment(path)
