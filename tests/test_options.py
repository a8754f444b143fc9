"""options.py: `--noise MODEL[:key=value,...]`, time units for time strengths, negative strengths, `noise-models`,
log axis for time strengths."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from onnxnoise.config import NoiseConfig, parse_noise, parse_strengths, parse_time
from onnxnoise.errors import ConfigError
from onnxnoise.experiment import load_experiment
from onnxnoise.noise import NOISE_MODELS, PCM, StuckAt
from onnxnoise.report.strength import noise_axis

from tests._checks import one_line, run_cli

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = ROOT / "models" / "demo" / "fashion_mnist_cnn.onnx"
DEMO_DATA = ROOT / "models" / "demo" / "fashion_mnist_test1000.npz"


@pytest.mark.parametrize("spec, expected", [
    ("pcm", ("pcm", None)),
    ("pcm:compensation=global", ("pcm", {"compensation": "global"})),
    ("stuck-at:sa1_fraction=0.3", ("stuck-at", {"sa1_fraction": 0.3})),
    ("gaussian-snr:scope=channel", ("gaussian-snr", {"scope": "channel"})),
    (" pcm : compensation = global , g_max=25,programming=false", ("pcm", {"compensation": "global", "g_max": 25,
                                                                           "programming": False})),
    ("x:levels=[1,2],a=b", ("x", {"levels": [1, 2], "a": "b"})),
])
def test_parse_noise(spec, expected):
    assert parse_noise(spec) == expected


def test_parse_noise_older_spelling_passes_through():
    assert parse_noise(None, model="pcm", params=["compensation=global"]) == ("pcm", {"compensation": "global"})
    assert parse_noise(None) == (None, None)


@pytest.mark.parametrize("text, seconds", [
    ("1s", 1.0), ("90min", 5400.0), ("1h", 3600.0), ("1d", 86400.0), ("2w", 1209600.0), ("1y", 31536000.0),
    ("30d", 2592000.0), ("0.5h", 1800.0), ("1e3s", 1000.0), ("7", 7.0), (12, 12.0), ("1 d", 86400.0),
])
def test_parse_time(text, seconds):
    assert parse_time(text) == seconds


def test_time_strengths_for_pcm_only():
    assert parse_strengths(strength="1s,1h,1d,30d,1y", noise_model=PCM) == (1.0, 3600.0, 86400.0, 2592000.0,
                                                                            31536000.0)
    assert parse_strengths(strength=["1s", 60, "1d"], noise_model=PCM) == (1.0, 60.0, 86400.0)
    assert parse_strengths(strength="0.01,0.1", noise_model=StuckAt) == (0.01, 0.1)
    config = NoiseConfig.from_options(noise="pcm:compensation=global", strength="1d,1s")
    assert config.strengths == (1.0, 86400.0)
    assert config.params["compensation"] == "global"
    with pytest.raises(ConfigError, match="has a time unit, but the stuck-at strength"):
        parse_strengths(strength="1h", noise_model=StuckAt)


def _bench_args(tmp_path, *argv):
    return ("bench", DEMO_MODEL, "--data", DEMO_DATA, "--device", "cpu", "--limit", "20", "--seeds", "1",
            "--out", tmp_path / "out", *argv)


@pytest.mark.parametrize("argv, expected", [
    (["--noise", "stuck-at", "--strength", "1h"],
     "onnxnoise: error: `--strength` value '1h' has a time unit, but the stuck-at strength `p` (fault rate) "
     "is not a time; give plain numbers"),
    (["--noise", "pcm", "--strength", "1s,3x"],
     "onnxnoise: error: `--strength` value '3x' has an unknown time unit 'x'; use one of s, min, h, d, w, y "
     "(e.g. 1s,1h,1d,30d,1y)"),
    (["--noise", "pcm", "--strength", "1s,soon"],
     "onnxnoise: error: `--strength` value 'soon' is not a number; give comma-separated numbers, e.g. 100,10,5"),
    (["--noise", "pcm:compensation"],
     "onnxnoise: error: `--noise` parameter 'compensation' must look like key=value, as in pcm:compensation=global"),
    (["--noise", ":compensation=global"],
     "onnxnoise: error: `--noise` ':compensation=global' names no model; give MODEL[:key=value,...], "
     "e.g. pcm:compensation=global"),
    (["--noise", "pcm:g_max=1,g_max=2"], "onnxnoise: error: `--noise` parameter 'g_max' is given twice in "
                                         "'pcm:g_max=1,g_max=2'"),
    (["--noise", "pcm", "--noise-model", "pcm"],
     "onnxnoise: error: give the noise model either as --noise MODEL[:key=value,...] or with "
     "--noise-model/--noise-param, not both"),
])
def test_noise_option_errors_one_line_exit_2(argv, expected, tmp_path, capsys):
    code, out, err = run_cli(capsys, *_bench_args(tmp_path, *argv))
    assert code == 2
    assert err.strip() == expected
    assert out == "" and not (tmp_path / "out").exists()


def test_unknown_noise_model_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, *_bench_args(tmp_path, "--noise", "nope:a=1"))
    assert code == 2
    assert err.strip() == f"onnxnoise: error: unknown noise model 'nope'; choose from {', '.join(sorted(NOISE_MODELS))}"


def test_bench_demo_pcm_time_units(tmp_path, capsys):
    out_dir = tmp_path / "pcm"
    code, out, err = run_cli(capsys, "bench", DEMO_MODEL, "--data", DEMO_DATA, "--noise", "pcm:compensation=global",
                          "--strength", "1s,1d", "--seeds", "1", "--limit", "100", "--device", "cpu",
                          "--out", out_dir, "--json")
    assert code == 0, err
    trials = pl.read_parquet(out_dir / "trials.parquet")
    noisy = trials.filter(pl.col("mode") == "all").sort("strength")
    assert noisy["strength"].to_list() == [1.0, 86400.0]
    assert set(noisy["noise_model"].to_list()) == {"pcm"}
    params = [n["params"] for n in noisy["noise"].to_list()]  # a typed Struct column (issue 22)
    defaults = PCM().params()
    assert params == [{**defaults, "compensation": "global"}] * 2
    assert params[0]["compensation"] == "global"
    summary = json.loads(out)
    assert (summary["strengths"], summary["strength_unit"]) == ([1.0, 86400.0], "s")  # JSON keeps seconds
    assert [r["strength_text"] for r in summary["results"] if r["mode"] == "all"] == ["t = 1 s", "t = 1 d"]


def test_experiment_noise_key(tmp_path):
    toml = tmp_path / "exp.toml"
    toml.write_text(f'''
[data]
path = "{DEMO_DATA}"
[models.demo]
path = "{DEMO_MODEL}"
[[sweeps]]
noise = "pcm:compensation=global"
strength = ["1s", "1h", 86400]
seeds = 1
[[sweeps]]
noise_model = "stuck-at"
noise_params = {{ sa1_fraction = 0.3 }}
strength = [0.01]
''')
    exp = load_experiment(toml)
    first, second = (config.run.noise for _, config in exp.sweeps)
    assert (first.model, first.params["compensation"], first.strengths) == ("pcm", "global", (1.0, 3600.0, 86400.0))
    assert (second.model, second.params["sa1_fraction"], second.strengths) == ("stuck-at", 0.3, (0.01,))


def test_noise_models_listing(capsys):
    code, out, _ = run_cli(capsys, "noise-models", "--json")
    assert code == 0
    listing = {m["name"]: m for m in json.loads(out)["noise_models"]}
    assert set(listing) == set(NOISE_MODELS)
    for name in ("gaussian-snr", "gaussian-global-db", "multiplicative", "pcm", "stuck-at", "conductance-levels",
                 "bit-flip"):
        assert name in listing
    pcm = listing["pcm"]
    assert pcm["strength"] == {"name": "t_inf", "label": "time (s)", "more_noise_when": "higher", "time": True,
                               "long_name": "time after programming t_inf", "options": ["--t", "--strength"],
                               "unit": "s", "log": True}
    assert pcm["example"] == "--t 1s,1h,1d,30d,1y"
    assert pcm["default_strengths"] == list(PCM.default_strengths)
    assert pcm["params"]["compensation"] == "none"
    assert pcm["source"] == PCM.__doc__.strip().splitlines()[0]
    assert listing["gaussian-snr"]["params"] == {"scope": "tensor"}
    code, out, _ = run_cli(capsys, "noise-models")
    assert code == 0
    for name in NOISE_MODELS:
        assert name in out


def test_plot_axis_log_where_the_model_says():
    assert noise_axis("pcm").log is True
    assert noise_axis("stuck-at").log is True
    assert noise_axis("bit-flip").log is True
    assert noise_axis("gaussian-snr").log is False
    assert noise_axis("gaussian-global-db").log is False


def test_pcm_plot_draws_log_axis():
    from onnxnoise.report.plots import plot_accuracy_vs_noise
    from onnxnoise.report.stats import summarize_trials

    base = {"model": "m", "model_sha256": "s", "dataset": "d", "dataset_fingerprint": "fp", "preprocess": "{}",
            "images": 100, "nan_count": 0, "error": None, "noise_model": "pcm",
            "noise": '{"bn_variance":"clamp","keep_zeros":false,"params":{"compensation":"global"}}',
            "top5_correct": 99, "layer_index": None}
    rows = [{**base, "mode": "baseline", "strength": None, "seed": None, "top1_correct": 90}]
    rows += [{**base, "mode": "all", "strength": t, "seed": s, "top1_correct": 90 - i - s}
             for i, t in enumerate((1.0, 3600.0, 86400.0)) for s in range(2)]
    frame = pl.DataFrame(rows, schema_overrides={"layer_index": pl.Int64, "seed": pl.Int64, "error": pl.String,
                                                 "strength": pl.Float64}).with_columns(
        (100.0 * pl.col("top1_correct") / pl.col("images")).alias("top1_acc"),
        (100.0 * pl.col("top5_correct") / pl.col("images")).alias("top5_acc"))
    fig = plot_accuracy_vs_noise(summarize_trials(frame))
    assert fig.axes[0].get_xscale() == "log"


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


def test_seed_counts_and_lists_are_bounded():
    from onnxnoise.options import MAX_SEEDS, check_auto_seeds, parse_seeds, resolve_seeds

    assert MAX_SEEDS == 10_000 and len(resolve_seeds(MAX_SEEDS)) == MAX_SEEDS
    with pytest.raises(ConfigError, match=r"^seeds count must be at most 10000 \(noise draws per strength and layer\), "
                       r"got 1000000000$"):
        parse_seeds("1000000000")
    with pytest.raises(ConfigError, match=r"^seeds list must hold at most 10000 seeds .*, got 10001$"):
        resolve_seeds(list(range(MAX_SEEDS + 1)))
    with pytest.raises(ConfigError, match=r"^`--max-seeds` must be at most 10000 draws per group, got 1000000000$"):
        check_auto_seeds(0.5, 1_000_000_000)
    with pytest.raises(ConfigError, match=r"seeds must be a count N"):
        parse_seeds("1e9")
    # Seeds beyond the store's signed 64-bit column (a Polars i128 traceback once): refused at parse time.
    assert parse_seeds("9223372036854775807,0") == (2**63 - 1, 0)
    with pytest.raises(ConfigError) as info:
        parse_seeds("99999999999999999999999,1")
    assert str(info.value) == ("`--seeds` (`seeds`): seed 99999999999999999999999 is above 2**63 - 1 = "
                               "9223372036854775807, the largest seed the trial store holds; use smaller seeds")
    with pytest.raises(ConfigError, match=r"^`--seeds` \(`seeds`\): seed 9223372036854775808 is above"):
        resolve_seeds([2**63])


def test_a_seed_range_is_refused_with_what_to_write():
    """`--seeds 0-4` is no form the tool takes (fresh22 finding 1): the message says to write the count 5, or the
    seeds themselves when the range does not start at 0."""
    from onnxnoise.options import parse_seeds

    with pytest.raises(ConfigError) as info:
        parse_seeds("0-4")
    assert str(info.value) == ("seeds must be a count N, seeds like 40,30, or auto (with --ci-halfwidth), got '0-4'; "
                               "ranges are not taken: for seeds 0 to 4 write 5")
    with pytest.raises(ConfigError, match=r"; ranges are not taken: for seeds 40 to 42 write 40,41,42$"):
        parse_seeds("40-42")
    with pytest.raises(ConfigError, match=r"got 'x'$"):
        parse_seeds("x")
