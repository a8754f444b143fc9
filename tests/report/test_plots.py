"""report.plots: figures built from synthetic sweep summaries (labels, legends, lines, PNG output)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from onnxnoise.report.plots import (
    plot_accuracy_vs_noise,
    plot_compare,
    plot_cumulative,
    plot_layer_sensitivity,
)
from onnxnoise.report.stats import average_normalized_accuracy, summarize_trials

from tests._frames import trial_frame
import tests._noise_models  # noqa: F401  (registers test-drift-labeled)

SNRS = (100.0, 10.0, 2.5)
#: Strengths of the test drift model (more noise = higher), deliberately not sorted.
TIMES = (60.0, 1.0, 3600.0)
N_LAYERS = 12
SEEDS = 3


def _synthetic_trials(model: str, robustness: float, noise_model: str = "gaussian-snr") -> list[dict]:
    """Accuracy falls with noise and is worse for early layers (paper findings 1 and 2)."""
    rng = np.random.default_rng(abs(hash(model)) % 2**32)
    base = {"model": model, "model_sha256": f"sha-{model}", "dataset": "cifar10-test", "dataset_fingerprint": "fp",
            "preprocess": "{}", "images": 1000, "nan_count": 0, "error": None, "noise_model": noise_model,
            "noise": '{"bn_variance":"clamp","keep_zeros":false,"params":{}}'}
    rows = [{**base, "mode": "baseline", "layer_index": None, "strength": None, "seed": None,
             "top1_correct": 920, "top5_correct": 995}]
    gaussian = noise_model == "gaussian-snr"
    for strength in SNRS if gaussian else TIMES:
        for seed in range(SEEDS):
            level = 1 / strength if gaussian else strength / 36000
            drop = min(1.0, level ** 1.5 / robustness)
            noise = rng.normal(0, 10)
            rows.append({**base, "mode": "all", "layer_index": None, "strength": strength, "seed": seed,
                         "top1_correct": int(max(0, 920 * (1 - drop) + noise)), "top5_correct": 990})
            for layer in range(N_LAYERS):
                weight = (N_LAYERS - layer) / N_LAYERS
                local = drop * weight
                rows.append({**base, "mode": "per-layer", "layer_index": layer, "strength": strength, "seed": seed,
                             "top1_correct": int(max(0, 920 * (1 - local) + rng.normal(0, 15))), "top5_correct": 990})
                cum = min(1.0, drop * (layer + 1) / N_LAYERS * 1.5)
                rows.append({**base, "mode": "cumulative", "layer_index": layer + 1, "strength": strength,
                             "seed": seed, "top1_correct": int(max(0, 920 * (1 - cum) + rng.normal(0, 15))),
                             "top5_correct": 990})
    return rows


def _to_frame(rows: list[dict]) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema_overrides={"layer_index": pl.Int64, "seed": pl.Int64, "error": pl.String,
                                                 "strength": pl.Float64})
    return frame.with_columns(
        (100.0 * pl.col("top1_correct") / pl.col("images")).alias("top1_acc"),
        (100.0 * pl.col("top5_correct") / pl.col("images")).alias("top5_acc"),
    )


@pytest.fixture(scope="module")
def trials() -> pl.DataFrame:
    return _to_frame(_synthetic_trials("resnet20", 1.0) + _synthetic_trials("resnet56", 3.0))


@pytest.fixture(scope="module")
def drift() -> pl.DataFrame:
    return _to_frame(_synthetic_trials("resnet20", 1.0, "test-drift-labeled")
                     + _synthetic_trials("resnet56", 3.0, "test-drift-labeled"))


@pytest.fixture(scope="module")
def summary(trials) -> pl.DataFrame:
    return summarize_trials(trials)


def _legend_texts(fig: Figure) -> list[str]:
    legend = fig.axes[0].get_legend()
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


def test_layer_sensitivity(summary, tmp_path):
    one = summary.filter(pl.col("model") == "resnet20")
    fig = plot_layer_sensitivity(one)
    ax = fig.axes[0]
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    assert ax.get_xlabel() == "noised layer index (graph order, 0-based)"
    assert ax.get_ylabel() == "normalized top-1 accuracy $a_i/a_0$"
    assert _legend_texts(fig) == ["1% (SNR 100)", "10% (SNR 10)", "40% (SNR 2.5)"]
    data_lines = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert len(data_lines) == len(SNRS)
    assert all(len(line.get_xdata()) == N_LAYERS for line in data_lines)
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == len(SNRS)  # CI bands
    title = ax.get_title()
    assert "resnet20" in title and "cifar10-test" in title and f"{SEEDS} seeds" in title
    path = tmp_path / "layers.png"
    fig.savefig(path, dpi=80)
    assert path.stat().st_size > 5000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_layer_sensitivity_refuses_several_models_and_bad_metric(summary):
    with pytest.raises(ValueError, match="several values of `model`"):
        plot_layer_sensitivity(summary)
    with pytest.raises(ValueError, match="`metric`"):
        plot_layer_sensitivity(summary.filter(pl.col("model") == "resnet20"), metric="top3")
    with pytest.raises(ValueError, match="no 'per-layer' rows"):
        plot_layer_sensitivity(summary.filter(pl.col("mode") == "all"))


def test_cumulative(summary):
    fig = plot_cumulative(summary.filter(pl.col("model") == "resnet56"), metric="top1_acc", title="custom")
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("number of noised layers L")
    assert ax.get_ylabel() == "top-1 accuracy (%)"
    assert ax.get_title() == "custom"
    lines = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert len(lines) == len(SNRS)
    assert list(lines[0].get_xdata()) == list(range(1, N_LAYERS + 1))


def test_accuracy_vs_noise(summary, tmp_path):
    fig = plot_accuracy_vs_noise(summary)
    ax = fig.axes[0]
    assert ax.get_xlabel() == r"noise std (% of $\sigma_w$) = 100 / SNR"
    assert ax.get_ylabel() == "top-1 accuracy (%)"
    assert _legend_texts(fig) == ["resnet20", "resnet56"]
    lines = [container.lines[0] for container in ax.containers]  # one errorbar line per model
    assert len(lines) == 2
    assert list(lines[0].get_xdata()) == [0.0, 1.0, 10.0, 40.0]  # baseline, then increasing noise
    assert lines[0].get_ydata()[0] == 92.0
    assert "resnet20, resnet56" in ax.get_title()
    fig.savefig(tmp_path / "fig2.png", dpi=80)
    assert (tmp_path / "fig2.png").stat().st_size > 5000


@pytest.mark.parametrize("kind", ["bar", "line"])
def test_compare(trials, kind, tmp_path):
    a_avr = average_normalized_accuracy(trials)
    fig = plot_compare(a_avr, kind=kind)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "top-1 degradation $100\\,(1 - A_{avr})$ (%)"
    assert ax.get_xlabel().startswith("noise std")
    assert _legend_texts(fig) == ["resnet20", "resnet56"]
    if kind == "bar":
        assert len(ax.patches) == 2 * len(SNRS)
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1%", "10%", "40%"]
    else:
        assert len(ax.containers) == 2  # one errorbar line per model
    assert f"resnet20: {N_LAYERS} layers" in ax.get_title()
    fig.savefig(tmp_path / f"compare_{kind}.png", dpi=80)
    fig2 = plot_compare(a_avr, metric="top5", value="a_avr")
    assert fig2.axes[0].get_ylabel() == "average normalized top-5 accuracy $A_{avr}$"
    with pytest.raises(ValueError, match="`kind`"):
        plot_compare(a_avr, kind="pie")


def test_higher_noise_model_axes_and_order(drift, trials):
    """A model whose noise grows with its strength: its own label, ascending order, baseline as a line."""
    summary = summarize_trials(drift)
    fig = plot_layer_sensitivity(summary.filter(pl.col("model") == "resnet20"))
    ax = fig.axes[0]
    assert _legend_texts(fig) == ["t = 1 s", "t = 60 s", "t = 3600 s"]  # least noise first
    assert ax.get_legend().get_title().get_text() == "time (s)"
    fig = plot_accuracy_vs_noise(summary)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "time (s)" and not ax.xaxis_inverted()
    line = ax.containers[0].lines[0]
    assert list(line.get_xdata()) == [1.0, 60.0, 3600.0]  # no position for the clean model on a time axis ...
    baselines = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    assert [list(ln.get_ydata()) for ln in baselines] == [[92.0, 92.0], [92.0, 92.0]]  # ... so a line per model
    a_avr = average_normalized_accuracy(drift)
    assert a_avr["strength"].to_list() == [1.0, 60.0, 3600.0] * 2
    bar = plot_compare(a_avr)
    assert bar.axes[0].get_xlabel() == "time (s)"
    assert [t.get_text() for t in bar.axes[0].get_xticklabels()] == ["1", "60", "3600"]
    both = summarize_trials(pl.concat([trials, drift]))
    with pytest.raises(ValueError, match="several values of `noise_model`"):
        plot_accuracy_vs_noise(both)
    with pytest.raises(ValueError, match="several values of `noise_model`"):
        plot_layer_sensitivity(both.filter(pl.col("model") == "resnet20"))


def test_figures_say_seed_not_seeds_and_name_settings_for_one_run_as_for_several():
    one = summarize_trials(trial_frame("pcm", {"compensation": "global"}, (1.0, 86400.0), per_layer=True))
    fig = plot_compare(average_normalized_accuracy(trial_frame("pcm", {"compensation": "global"}, (1.0,),
                                                           per_layer=True)))
    title = fig.axes[0].get_title()
    assert "; 1 seed, error bars" in title and "1 seeds" not in title
    legend = [t.get_text() for t in plot_accuracy_vs_noise(one).axes[0].get_legend().get_texts()]
    assert legend == ["net [compensation=global]"]
    both = summarize_trials(pl.concat([trial_frame("pcm", {"compensation": "global"}, (1.0,)),
                                       trial_frame("pcm", {"compensation": "none"}, (1.0,))]))
    legend = [t.get_text() for t in plot_accuracy_vs_noise(both).axes[0].get_legend().get_texts()]
    assert legend == ["net [compensation=global]", "net [compensation=none]"]
    default = summarize_trials(trial_frame("gaussian-snr", {}, (10.0,)))
    assert [t.get_text() for t in plot_accuracy_vs_noise(default).axes[0].get_legend().get_texts()] == ["net"]
