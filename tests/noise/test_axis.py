"""Each noise model's own strength option (--t, --rate, --ber...), its units in tables and its figure axis."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import polars as pl
import pytest

from onnxnoise.cli.commands import _run_config
from onnxnoise.cli.parser import build_parser
from onnxnoise.config import NoiseConfig
from onnxnoise.errors import ConfigError, ExperimentError
from onnxnoise.experiment import load_experiment
from onnxnoise.noise import NOISE_MODELS, axis_of, format_seconds
from onnxnoise.options import strength_options
from onnxnoise.report.console import summary_table
from onnxnoise.report.plots import plot_accuracy_vs_noise, plot_compare
from onnxnoise.report.stats import average_normalized_accuracy, summarize_trials

from tests._builders import tiny_cnn
from tests._checks import run_cli

#: Every built-in model's own option(s), as typed on the command line.
OWN_OPTIONS = {
    "gaussian-snr": ["--snr", "--noise-pct"], "gaussian-global-db": ["--snr-db"], "multiplicative": ["--eta"],
    "pcm": ["--t"], "stuck-at": ["--rate"], "conductance-levels": ["--levels"], "bit-flip": ["--ber"],
    "gaussian-max": ["--gamma"], "crosssim": ["--alpha"],
}


@pytest.fixture
def tiny(tmp_path) -> tuple[Path, Path]:
    """The tiny 8x8 RGB classifier of tests/_builders.py and a 40-image .npz for it."""
    model_path = tmp_path / "tiny.onnx"
    onnx.save(tiny_cnn(), str(model_path))
    rng = np.random.default_rng(0)
    data_path = tmp_path / "tiny.npz"
    np.savez(data_path, images=rng.integers(0, 256, size=(40, 8, 8, 3), dtype=np.uint8),
             labels=np.arange(40, dtype=np.int64) % 10)
    return model_path, data_path


def _config(tiny: tuple[Path, Path], *argv: str):
    """The RunConfig ``onnxnoise bench MODEL --data DATA *argv`` builds (parser -> commands._run_config)."""
    model, data = tiny
    args = build_parser().parse_args(["bench", str(model), "--data", str(data), *argv])
    return _run_config(args, model, data)


def test_every_model_declares_its_own_option():
    assert {name: [f"--{f}" for f in axis_of(cls).flags] for name, cls in NOISE_MODELS.items()
            if name in OWN_OPTIONS} == OWN_OPTIONS
    # one option belongs to one model: a flag names its model
    options = strength_options()
    assert set(options) == {"snr", "noise-pct", "snr-db", "eta", "t", "rate", "levels", "ber", "gamma", "alpha"}
    assert options["t"].startswith("pcm: time after programming")
    assert options["rate"].startswith("stuck-at: device fault rate")


@pytest.mark.parametrize("model, argv, stored", [
    ("pcm", ["--t", "1h,1d"], (3600.0, 86400.0)),
    ("pcm", ["--t", "1d,1s,30d,1y"], (1.0, 86400.0, 2592000.0, 31536000.0)),  # least noise first
    ("pcm", ["--t", "90min,7200"], (5400.0, 7200.0)),  # plain numbers are seconds
    ("stuck-at", ["--rate", "0.01,0.001"], (0.001, 0.01)),
    ("bit-flip", ["--ber", "1e-3,1e-5"], (1e-5, 1e-3)),
    ("multiplicative", ["--eta", "0.1,0.05"], (0.05, 0.1)),
    ("gaussian-global-db", ["--snr-db", "10,20"], (20.0, 10.0)),  # lower dB = more noise: higher first
    ("conductance-levels", ["--levels", "8,64"], (64.0, 8.0)),
    ("gaussian-snr", ["--snr", "10,100"], (100.0, 10.0)),
    ("gaussian-snr", ["--noise-pct", "10,1"], (100.0, 10.0)),  # SNR = 100 / pct
    ("gaussian-max", ["--gamma", "0.1,0.05"], (0.05, 0.1)),
    ("crosssim", ["--alpha", "0.3,0.01"], (0.01, 0.3)),
    ("pcm", ["--strength", "1h,1d"], (3600.0, 86400.0)),  # the generic spelling stays
])
def test_own_option_parses_to_stored_strengths(model, argv, stored, tiny):
    config = _config(tiny, "--noise", model, *argv)
    assert config.noise.model == model
    assert config.noise.strengths == stored


@pytest.mark.parametrize("model", sorted(OWN_OPTIONS))
def test_defaults_are_the_models_grid(model, tiny):
    assert _config(tiny, "--noise", model).noise.strengths == \
        NoiseConfig(model=model, strengths=NOISE_MODELS[model].default_strengths).strengths


@pytest.mark.parametrize("argv, expected", [
    (["--noise", "pcm", "--rate", "0.01"],
     "`--rate` is the strength of stuck-at, not of pcm; give pcm's time after programming t_inf with `--t` or "
     "`--strength` (e.g. --t 1s,1h,1d,30d,1y)"),
    (["--noise", "pcm", "--snr", "10"],
     "`--snr` is the strength of gaussian-snr, not of pcm; give pcm's time after programming t_inf with `--t` or "
     "`--strength` (e.g. --t 1s,1h,1d,30d,1y)"),
    (["--noise", "stuck-at", "--ber", "1e-3"],
     "`--ber` is the strength of bit-flip, not of stuck-at; give stuck-at's device fault rate p with `--rate` or "
     "`--strength` (e.g. --rate 0.001,0.003,0.01,0.03,0.1)"),
    (["--noise", "bit-flip", "--rate", "1e-3"],
     "`--rate` is the strength of stuck-at, not of bit-flip; give bit-flip's bit error rate (BER) with `--ber` or "
     "`--strength` (e.g. --ber 1e-05,1e-04,1e-03)"),
    (["--t", "1h"],  # no --noise: the default gaussian-snr
     "`--t` is the strength of pcm, not of gaussian-snr; give gaussian-snr's SNR with `--snr`, `--noise-pct` or "
     "`--strength` (e.g. --snr 100,50,20,10)"),
    (["--noise", "none", "--snr", "10"],  # one fixed strength: nothing to give, not "give none's ... with --strength"
     "`--snr` is the strength of gaussian-snr; --noise none has no strength to set (weights exact): drop `--snr`"),
    (["--noise", "pcm", "--t", "1h", "--strength", "1d"], "give only one of --t or --strength, got --t, --strength"),
    (["--noise", "stuck-at", "--rate", "1h"],
     "`--rate` value '1h' has a time unit, but the stuck-at strength `p` (fault rate) is not a time; "
     "give plain numbers"),
    (["--noise", "pcm", "--t", "1s,3x"],
     "`--t` value '3x' has an unknown time unit 'x'; use one of s, min, h, d, w, y (e.g. 1s,1h,1d,30d,1y)"),
])
def test_wrong_option_one_line_exit_2(argv, expected, tiny, tmp_path, capsys):
    model, data = tiny
    code, out, err = run_cli(capsys, "bench", model, "--data", data, "--preprocess", "raw", "--seeds", "1",
                          "--out", tmp_path / "out", *argv)
    assert code == 2
    assert err.strip() == f"onnxnoise: error: {expected}"
    assert out == "" and not (tmp_path / "out").exists()


def _experiment(tmp_path: Path, sweeps: str) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(f'[data]\npath = "{tmp_path / "d.npz"}"\n[models.m]\npath = "{tmp_path / "m.onnx"}"\n{sweeps}')
    return path


def test_experiment_file_takes_the_same_keys(tmp_path):
    path = _experiment(tmp_path, '''
[[sweeps]]
noise = "pcm:compensation=global"
t = ["1h", "1d", 60]
[[sweeps]]
noise = "stuck-at"
rate = [0.01, 0.001]
[[sweeps]]
noise = "bit-flip"
ber = [1e-4]
[[sweeps]]
noise = "gaussian-global-db"
snr_db = [30, 10]
[[sweeps]]
noise_pct = [1, 10]
''')
    got = [(c.run.noise.model, c.run.noise.strengths) for _, c in load_experiment(path).sweeps]
    assert got == [("pcm", (60.0, 3600.0, 86400.0)), ("stuck-at", (0.001, 0.01)), ("bit-flip", (1e-4,)),
                   ("gaussian-global-db", (30.0, 10.0)), ("gaussian-snr", (100.0, 10.0))]


def test_experiment_file_wrong_key_names_the_models_key(tmp_path):
    path = _experiment(tmp_path, '[[sweeps]]\nnoise = "pcm"\nrate = [0.01]\n')
    with pytest.raises(ExperimentError) as info:
        load_experiment(path)
    assert str(info.value) == (
        f"{path}: [[sweeps]] #1: `rate` is the strength of stuck-at, not of pcm; give pcm's time after programming "
        't_inf with `t` or `strength` (e.g. t = ["1s", "1h", "1d", "30d", "1y"])')


def test_noise_models_lists_each_option(capsys):
    code, out, _ = run_cli(capsys, "noise-models", "--json")
    assert code == 0
    listing = {m["name"]: m for m in json.loads(out)["noise_models"]}
    for name, options in OWN_OPTIONS.items():
        assert listing[name]["strength"]["options"] == [*options, "--strength"]
    assert listing["stuck-at"]["example"] == "--rate 0.001,0.003,0.01,0.03,0.1"
    assert listing["bit-flip"]["example"] == "--ber 1e-05,1e-04,1e-03"
    assert (listing["stuck-at"]["strength"]["unit"], listing["stuck-at"]["strength"]["log"]) == ("fraction", True)
    code, out, _ = run_cli(capsys, "noise-models")
    assert code == 0
    text = " ".join(out.split())  # rich wraps long lines
    assert "given with --t or --strength; takes time units s, min, h, d, w, y; unit s, log axis" in text
    assert "e.g. --noise pcm --t 1s,1h,1d,30d,1y" in text
    assert "e.g. --noise stuck-at --rate 0.001,0.003,0.01,0.03,0.1" in text
    assert "given with --snr or --noise-pct or --strength" in text


def test_value_text_in_each_axis_style():
    assert [format_seconds(s) for s in (1.0, 3600.0, 86400.0, 2592000.0, 31536000.0, 5400.0, 0.0)] == \
        ["1 s", "1 h", "1 d", "30 d", "1 y", "1.5 h", "0 s"]
    pcm, stuck, ber = (axis_of(NOISE_MODELS[n]) for n in ("pcm", "stuck-at", "bit-flip"))
    assert [pcm.format_value(v) for v in (1.0, 86400.0)] == ["1 s", "1 d"]
    assert [stuck.format_value(v) for v in (0.001, 0.03, 0.1)] == ["0.1%", "3%", "10%"]
    assert [ber.format_value(v) for v in (1e-3, 2.5e-4, 0.0)] == ["1e-03", "2.5e-04", "0"]
    assert (pcm.unit, stuck.unit, axis_of(NOISE_MODELS["gaussian-global-db"]).unit) == ("s", "fraction", "dB")


def test_pcm_sweep_stores_seconds_and_report_prints_human_time(tiny, tmp_path, capsys):
    model, data = tiny
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "sweep", model, "--data", data, "--preprocess", "raw", "--noise", "pcm",
                          "--t", "1h,1d", "--seeds", "1", "--device", "cpu", "--out", run)
    assert code == 0, err
    assert "pcm time after programming t_inf 1 h, 1 d, seeds 0" in " ".join(out.split())
    code, out, err = run_cli(capsys, "report", run)
    assert code == 0, err
    results = pl.read_csv(run / "trials.csv")
    noisy = results.filter(pl.col("mode") == "all").sort("strength")
    assert noisy["strength"].to_list() == [3600.0, 86400.0]  # CSV keeps seconds
    summary = pl.read_csv(run / "summary.csv").filter(pl.col("mode") == "all").sort("strength")
    assert summary["strength"].to_list() == [3600.0, 86400.0]
    assert summary["strength_unit"].to_list() == ["s", "s"]
    assert summary["strength_text"].to_list() == ["t = 1 h", "t = 1 d"]
    assert "t = 1 h" in out and "t = 1 d" in out and "3600" not in out and "86400" not in out
    md = (run / "report.md").read_text()
    assert "| t = 1 h |" in md and "| t = 1 d |" in md and "86400" not in md


def _frame(model: str, strengths: tuple[float, ...], noise: str = '{"params":{}}') -> pl.DataFrame:
    base = {"model": "m", "model_sha256": "s", "dataset": "d", "dataset_fingerprint": "fp", "preprocess": "{}",
            "images": 100, "nan_count": 0, "error": None, "noise_model": model, "noise": noise,
            "top5_correct": 99, "layer_index": None}
    rows = [{**base, "mode": "baseline", "strength": None, "seed": None, "top1_correct": 90}]
    rows += [{**base, "mode": mode, "strength": v, "seed": s, "top1_correct": 90 - i - s,
              "layer_index": layer}
             for i, v in enumerate(strengths) for s in range(2)
             for mode, layer in (("all", None), ("per-layer", 0), ("per-layer", 1))]
    return pl.DataFrame(rows, schema_overrides={"layer_index": pl.Int64, "seed": pl.Int64, "error": pl.String,
                                                "strength": pl.Float64}).with_columns(
        (100.0 * pl.col("top1_correct") / pl.col("images")).alias("top1_acc"),
        (100.0 * pl.col("top5_correct") / pl.col("images")).alias("top5_acc"))


@pytest.mark.parametrize("model, strengths, xlabel, ticks", [
    ("pcm", (1.0, 3600.0, 86400.0, 2592000.0, 31536000.0), "time after programming t_inf",
     ["1 s", "1 h", "1 d", "30 d", "1 y"]),
    ("stuck-at", (0.001, 0.01, 0.1), "device fault rate p", ["0.1%", "1%", "10%"]),
    ("bit-flip", (1e-5, 1e-4, 1e-3), "bit error rate (BER)", ["1e-05", "1e-04", "1e-03"]),
    ("conductance-levels", (64.0, 16.0, 8.0), "conductance levels per device", ["8", "16", "64"]),
])
def test_figures_use_the_models_axis(model, strengths, xlabel, ticks):
    trials = _frame(model, strengths)
    ax = plot_accuracy_vs_noise(summarize_trials(trials)).axes[0]
    assert ax.get_xlabel() == xlabel
    assert ax.get_xscale() == "log"
    assert sorted((t.get_position()[0], t.get_text()) for t in ax.get_xticklabels()) == \
        sorted(zip(sorted(strengths), ticks))
    line = plot_compare(average_normalized_accuracy(trials), kind="line").axes[0]
    assert line.get_xscale() == "log" and line.get_xlabel() == xlabel
    bar = plot_compare(average_normalized_accuracy(trials)).axes[0]  # one bar group per strength, least noise first
    expected = ticks if NOISE_MODELS[model].more_noise_when == "higher" else ticks[::-1]
    assert [t.get_text() for t in bar.get_xticklabels()] == expected


def test_gaussian_db_figure_stays_linear():
    ax = plot_accuracy_vs_noise(summarize_trials(_frame("gaussian-global-db", (30.0, 10.0)))).axes[0]
    assert ax.get_xscale() == "linear" and ax.get_xlabel() == "SNR over the whole model (dB)"


def test_console_table_prints_units():
    text = _table_text(summarize_trials(_frame("bit-flip", (1e-4, 1e-3))))
    assert "BER 1e-04" in text and "BER 1e-03" in text and "bit error rate" in text
    text = _table_text(summarize_trials(_frame("stuck-at", (0.001,))))
    assert "p = 0.1% faulty devices" in text


def _table_text(summary: pl.DataFrame) -> str:
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(summary_table(summary))
    return console.export_text()


def test_config_rejects_another_models_keyword_without_the_cli():
    with pytest.raises(ConfigError, match=r"^`--ber` is the strength of bit-flip, not of pcm; "):
        NoiseConfig.from_options(noise="pcm", flags={"ber": "1e-3"})
    assert NoiseConfig.from_options(noise="pcm", flags={"t": ["1h"]}).strengths == (3600.0,)
