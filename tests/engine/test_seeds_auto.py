"""``--seeds auto --ci-halfwidth X --max-seeds N``: draws per group until the 95% t interval of the mean
top-1 is narrower than X; the stopping rule on synthetic streams, the executor on a real tiny sweep
(fresh, resumed, per layer), bench's report of groups short of the target, and the option errors.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import polars as pl
import pytest
from scipy import stats as sps

from onnxnoise.bench import run_bench
from onnxnoise.cli.app import main
from onnxnoise.config import NoiseConfig, RunConfig, SweepConfig
from onnxnoise.engine.context import prepare_context
from onnxnoise.engine.plan import SeedRule, enough_draws, plan_trials
from onnxnoise.errors import ConfigError
from onnxnoise.store import open_store
from onnxnoise.sweep import run_sweep

from tests._builders import conv_bn_resnet, labeled_npz


def _stop(stream, half_width, max_seeds=20) -> int:
    """Draws a group gets: the first n at which the rule says enough (or the stream's length)."""
    for n in range(len(stream) + 1):
        if enough_draws(stream[:n], half_width, max_seeds=max_seeds):
            return n
    return len(stream)


def test_rule_on_a_hand_computed_stream():
    # 70, 74, then 72s: s^2 = 8 / (n - 1); h = t_{.975, n-1} * s / sqrt(n):
    # n=3: 4.30 * 2 / 1.73 = 4.97; n=4: 2.60; n=5: 1.76; n=6: 1.33; n=7: 1.07; n=8: 0.894.
    stream = [70.0, 74.0] + [72.0] * 20
    assert _stop(stream, 1.0) == 8
    assert _stop(stream, 1.1) == 7
    assert _stop(stream, 5.0) == 3  # 4.97 < 5 at the minimum of 3 draws
    assert _stop(stream, 0.01, max_seeds=12) == 12  # the max stops it short of the target
    assert not enough_draws([72.0, 72.0], 100.0)  # never fewer than 3 draws, even with no spread
    assert enough_draws([72.0] * 3, 1e-9)  # no spread: the interval has width 0
    assert SeedRule(1.0, max_seeds=20).enough(stream[:8]) and not SeedRule(1.0).enough(stream[:7])


def test_rule_on_random_streams_matches_scipy_t_intervals():
    rng = np.random.default_rng(0)
    for _ in range(50):
        stream = list(rng.normal(80.0, rng.uniform(0.2, 3.0), size=20))
        n = _stop(stream, 1.0)
        low, high = sps.t.interval(0.95, n - 1, loc=np.mean(stream[:n]), scale=sps.sem(stream[:n]))
        if n < 20:
            assert (high - low) / 2 < 1.0
        for m in range(3, n):  # no earlier count was narrow enough
            low, high = sps.t.interval(0.95, m - 1, loc=np.mean(stream[:m]), scale=sps.sem(stream[:m]))
            assert (high - low) / 2 >= 1.0


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("auto")
    model = conv_bn_resnet()
    path = tmp / "resnet.onnx"
    onnx.save(model, path)
    return path, labeled_npz(model, tmp / "data.npz", n=200)


def _run(path, data, **noise) -> RunConfig:
    return RunConfig(model=path, data=data.path, noise=NoiseConfig(**noise), preset="raw", device="cpu",
                     batch_size=100)


def _draws(frame: pl.DataFrame) -> dict:
    """(mode, strength, layer_index) -> top-1 accuracies in seed order."""
    noisy = frame.filter(pl.col("mode") != "baseline").sort("seed")
    return {k: g["top1_acc"].to_list() for k, g in noisy.group_by(["mode", "strength", "layer_index"],
                                                                   maintain_order=True)}


def test_a_tiny_sweep_stops_each_group_where_the_rule_says_and_resumes_the_same(setup, tmp_path):
    path, data = setup
    strengths = (100.0, 8.0)
    # Reference: every seed 0..7, to know each group's stream.
    with open_store(tmp_path / "fixed.sqlite") as store:
        run_sweep(SweepConfig(_run(path, data, strengths=strengths, seeds=8), modes=("all",)), store)
        streams = _draws(store.to_frame())
    half_width = 3.0
    expected = {k: _stop(v, half_width, max_seeds=8) for k, v in streams.items()}
    assert expected == {("all", 100.0, None): 5, ("all", 8.0, None): 3}  # this model's draws: two stopping counts
    auto = SweepConfig(_run(path, data, strengths=strengths, seeds="auto", ci_halfwidth=half_width, max_seeds=8),
                       modes=("all",))
    with open_store(tmp_path / "auto.sqlite") as store:
        result = run_sweep(auto, store)
        fresh = _draws(store.to_frame())
    assert {k: len(v) for k, v in fresh.items()} == expected
    assert {k: v for k, v in fresh.items()} == {k: streams[k][:n] for k, n in expected.items()}  # same keys, values
    assert result.ran == 1 + sum(expected.values()) and result.settled == 2 * 8 - sum(expected.values())
    assert result.short_of_target == ()
    # Resumed: two seeds already stored by a fixed-count run; the auto run continues from seed 2.
    with open_store(tmp_path / "resume.sqlite") as store:
        run_sweep(SweepConfig(_run(path, data, strengths=strengths, seeds=2), modes=("all",)), store)
        again = run_sweep(auto, store)
        resumed = _draws(store.to_frame())
        assert resumed == fresh and again.ran == sum(expected.values()) - 2 * 2
        assert run_sweep(auto, store).ran == 0  # nothing left: settled or done


def test_auto_seeds_per_layer_with_prefix_reuse_and_the_same_keys_as_a_count(setup, tmp_path):
    path, data = setup
    config = _run(path, data, strengths=(3.0,), seeds="auto", ci_halfwidth=50.0, max_seeds=5)
    fixed = _run(path, data, strengths=(3.0,), seeds=5)
    context = prepare_context(config)
    assert [p.key for p in plan_trials(context, ("per-layer",))] == \
        [p.key for p in plan_trials(prepare_context(fixed), ("per-layer",))]
    with open_store(tmp_path / "layers.sqlite") as store:
        result = run_sweep(SweepConfig(config, modes=("per-layer",), prefix_reuse=True), store, context=context)
        draws = _draws(store.to_frame())
    # A 50-point half-width is reached at the minimum: 3 draws in each of the 13 layers, none at seeds 3, 4.
    assert len(draws) == 13 and {len(v) for v in draws.values()} == {3}
    assert (result.ran, result.settled) == (1 + 13 * 3, 13 * 2)


def test_bench_auto_reports_groups_short_of_the_target(setup):
    path, data = setup
    result = run_bench(_run(path, data, strengths=(2.0,), seeds="auto", ci_halfwidth=1e-6, max_seeds=4))
    noisy = result.trials.filter(pl.col("mode") == "all")
    assert noisy["seed"].to_list() == [0, 1, 2, 3]  # never narrow enough: stops at --max-seeds
    auto = result.meta["seeds_auto"]
    assert (auto["ci_halfwidth"], auto["max_seeds"], auto["min_seeds"]) == (1e-6, 4, 3)
    (line,) = auto["short_of_target"]
    ci = result.summary.filter(pl.col("mode") == "all")["top1_acc_ci_half"][0]
    assert line == f"all, SNR 2 (50% noise): 4 draws, 95% half-width {ci:.2f} points (target 1e-06)"
    assert result.meta["seeds"] == "auto"


def test_auto_seeds_options_and_errors(setup, tmp_path, capsys):
    assert NoiseConfig(seeds="auto", ci_halfwidth=0.5).seed_list == list(range(20))
    assert NoiseConfig.from_options(seeds="auto", ci_halfwidth="0.5", max_seeds=5).to_dict()["max_seeds"] == 5
    for kwargs, message in [
        ({"seeds": "auto"}, "`--seeds auto` needs `--ci-halfwidth X`"),
        ({"seeds": "auto", "ci_halfwidth": 0.0}, "must be a number of accuracy points > 0"),
        ({"seeds": "auto", "ci_halfwidth": 1.0, "max_seeds": 2}, "must be an integer >= 3"),
        ({"seeds": 3, "ci_halfwidth": 1.0}, "only apply with `--seeds auto`"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            NoiseConfig(**kwargs)
    path, data = setup
    code = main(["bench", str(path), "--data", str(data.path), "--preprocess", "raw", "--seeds", "auto",
                 "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 2 and "needs `--ci-halfwidth X`" in err and len(err.strip().splitlines()) == 1
    code = main(["bench", str(path), "--data", str(data.path), "--preprocess", "raw", "--snr", "100",
                 "--seeds", "auto", "--ci-halfwidth", "50", "--max-seeds", "4", "--json", "--out", str(tmp_path / "b")])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["seeds_auto"]["short_of_target"] == []
    row = next(r for r in out["results"] if r["mode"] == "all")
    assert row["seeds"] == 3 and row["flip_pct_mean"] is not None and row["collapse_rate"] == 0.0
