"""Paired statistics: per-trial counts against the clean model on the same images, McNemar's test,
flip rate, collapsed draws, the store columns for them, and their place in summaries.

Built models only (no ../shared): :func:`_builders.conv_bn_resnet` on a labeled set whose clean
predictions are known (:func:`_builders.labeled_npz`).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import onnx
import polars as pl
import pytest
from scipy import stats as sps

from onnxnoise.bench import run_bench
from onnxnoise.config import NoiseConfig, RunConfig, SweepConfig
from onnxnoise.engine.context import prepare_context
from onnxnoise.engine.evaluate import Outcomes, paired_counts
from onnxnoise.engine.metrics import count_correct, image_results
from onnxnoise.engine.plan import Trial, plan_trials
from onnxnoise.engine.trial import clean_outcomes, run_trial
from onnxnoise.errors import BaselineError
from onnxnoise.noise import NoiseModel, register
from onnxnoise.report.console import paired_table, summary_table
from onnxnoise.check.gate import collapse_flags
from onnxnoise.report.paired import collapse_hints, collapsed, flip_rate, mcnemar_p
from onnxnoise.report.stats import summarize_trials
from onnxnoise.report.study import collect_runs, collect_trials, write_report
from onnxnoise.report.written import read_table, trial_table
from onnxnoise.store import TRIAL_COLUMNS, open_store
from onnxnoise.store.schema import APPLICATION_ID, PAIRED, RUN_COLUMNS, column_names, create_sql
from onnxnoise.sweep import recheck_sweep, run_sweep

from tests._builders import _run, conv_bn_resnet, labeled_npz, raw_input
from tests._checks import needs_committed_reports
from tests._frames import PCM_GLOBAL, PCM_NONE, draws_frame
import tests._noise_models  # noqa: F401  (registers test-zero-every-k)
from tests._noise_models import ZERO_ALL_HINT, zeroing_model  # noqa: F401  (a fixture)

IMAGES = 200
ID = ["mode", "layer_index", "strength", "seed"]
#: The paired-count columns (role ``paired``), in table order.
PAIRED_COUNTERS = column_names(PAIRED)


@register
@dataclass(frozen=True)
class SwapFirstTwo(NoiseModel):
    """Test plug-in: swap rows 0 and 1 of every tensor (in ``fc``: the scores of classes 0 and 1)."""

    name: ClassVar[str] = "test-swap-first-two"
    strength_label: ClassVar[str] = "swap"
    more_noise_when: ClassVar[str] = "higher"
    default_strengths: ClassVar[tuple[float, ...]] = (1.0,)

    def perturb(self, w, strength, rng, tensor):
        out = w.copy()
        out[[0, 1]] = w[[1, 0]]
        return out


@pytest.fixture(scope="module")
def labeled(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("paired")
    model = conv_bn_resnet()
    path = tmp / "resnet.onnx"
    onnx.save(model, path)
    data = labeled_npz(model, tmp / "data.npz", n=IMAGES)
    (logits,) = _run(model, raw_input(data.images), ["logits"])
    return path, data, logits


def _config(path, data, noise: NoiseConfig, **kwargs) -> RunConfig:
    return RunConfig(model=path, data=data.path, noise=noise, preset="raw", device="cpu", batch_size=64, **kwargs)


def _expected(clean_logits: np.ndarray, noisy_logits: np.ndarray, labels: np.ndarray) -> dict[str, int]:
    """Paired counts computed here from the two logit matrices (argmax, ranks), independently of the engine."""
    def hits(logits):
        rank = (logits >= logits[np.arange(len(labels)), labels][:, None]).sum(axis=1) - 1
        return rank < 1, rank < 5
    c1, c5 = hits(clean_logits)
    n1, n5 = hits(noisy_logits)
    return {"flips": int((clean_logits.argmax(1) != noisy_logits.argmax(1)).sum()),
            "lost_top1": int((c1 & ~n1).sum()), "gained_top1": int((~c1 & n1).sum()),
            "lost_top5": int((c5 & ~n5).sum()), "gained_top5": int((~c5 & n5).sum())}


def test_image_results_and_paired_counts_by_hand():
    logits = np.array([[3, 1, 0], [0, 5, 1], [2, 2, 0], [np.nan, 0, 0], [0, 1, 4]], dtype=np.float32)
    labels = np.array([0, 0, 0, 1, 2])
    top1_class, top1, top5, finite = image_results(logits, labels)
    assert top1_class.tolist() == [0, 1, -1, -1, 2]  # a tie and a NaN row have no prediction
    assert top1.tolist() == [True, False, False, False, True] and finite.tolist() == [True] * 3 + [False, True]
    assert count_correct(logits, labels).top1_correct == 2
    clean = Outcomes(5, 2, 4, 1, top1_class, top1, top5)
    noisy_class = np.array([0, 0, 1, -1, 1], dtype=np.int32)
    noisy = Outcomes(5, 2, 4, 1, noisy_class, noisy_class == labels, np.ones(5, bool))
    assert paired_counts(clean, noisy) == {"flips": 3, "lost_top1": 1, "gained_top1": 1,
                                           "lost_top5": 0, "gained_top5": 1}
    assert clean == noisy  # Outcomes compare as counts
    with pytest.raises(ValueError, match="same images"):
        paired_counts(clean, Outcomes(4, 2, 4, 1, noisy_class[:4], noisy_class[:4] == 0, top5[:4]))


def test_swapped_classes_give_the_known_paired_counts_on_both_paths(labeled, tmp_path):
    path, data, logits = labeled
    swapped = logits.copy()
    swapped[:, [0, 1]] = logits[:, [1, 0]]
    expected = _expected(logits, swapped, data.labels)
    # The construction: images predicted 0 or 1 flip; some correct ones are lost, some relabeled ones gained.
    assert expected["flips"] == int(np.isin(data.predictions, [0, 1]).sum()) > 0
    assert expected["lost_top1"] > 0 and expected["gained_top1"] > 0
    noise = NoiseConfig(model="test-swap-first-two", strengths=(1.0,), seeds=1)
    config = _config(path, data, noise, layer_regex="^fc$")
    rows = {}
    for prefix in (False, True):
        with open_store(tmp_path / f"p{prefix}.sqlite") as store:
            run_sweep(SweepConfig(config, modes=("all", "per-layer"), prefix_reuse=prefix), store)
            rows[prefix] = store.to_frame().sort(ID, nulls_last=False)
    assert rows[True].select(*ID, *PAIRED_COUNTERS).equals(rows[False].select(*ID, *PAIRED_COUNTERS))
    frame = rows[True]
    base = frame.filter(pl.col("mode") == "baseline").row(0, named=True)
    assert [base[c] for c in PAIRED_COUNTERS] == [0] * 5 and base["top1_correct"] == 140
    for mode in ("all", "per-layer"):
        row = frame.filter(pl.col("mode") == mode).row(0, named=True)
        assert {c: row[c] for c in PAIRED_COUNTERS} == expected, mode
        assert row["top1_correct"] - base["top1_correct"] == row["gained_top1"] - row["lost_top1"]


def test_a_faint_noise_flips_nothing_on_both_paths_and_a_zeroed_head_loses_every_hit(labeled, tmp_path):
    path, data, _ = labeled
    config = _config(path, data, NoiseConfig(strengths=(1e6,), seeds=2))
    for prefix in (False, True):
        with open_store(tmp_path / f"faint{prefix}.sqlite") as store:
            run_sweep(SweepConfig(config, modes=("all", "per-layer"), prefix_reuse=prefix), store)
            noisy = store.to_frame().filter(pl.col("mode") != "baseline")
        assert noisy.height == 2 * (1 + 13)
        assert noisy.select(PAIRED_COUNTERS).sum().row(0) == (0,) * 5
    # Every fc weight and bias zeroed: constant scores, no prediction anywhere, every hit lost.
    zero = NoiseConfig(model="test-zero-every-k", strengths=(1.0,), seeds=1)
    trials = run_bench(_config(path, data, zero, layer_regex="^fc$")).trials
    row = trials.filter(pl.col("mode") == "all").row(0, named=True)
    assert (row["flips"], row["lost_top1"], row["gained_top1"]) == (IMAGES, data.top1_correct, 0)
    assert (row["lost_top5"], row["gained_top5"], row["top5_correct"]) == (data.top5_correct, 0, 0)


def test_a_failed_trial_has_null_paired_counts_and_a_resumed_sweep_pairs_against_a_clean_pass(labeled, tmp_path):
    path, data, logits = labeled
    noise = NoiseConfig(model="test-swap-first-two", strengths=(1.0, 2.0), seeds=1)
    config = _config(path, data, noise, layer_regex="^fc$")
    db = tmp_path / "resume.sqlite"
    first = SweepConfig(_config(path, data, NoiseConfig(model="test-swap-first-two", strengths=(1.0,), seeds=1),
                                layer_regex="^fc$"), modes=("all",))
    with open_store(db) as store:
        run_sweep(first, store)
    context = prepare_context(config)
    assert context.clean_outcomes is None
    with open_store(db) as store:
        result = run_sweep(SweepConfig(config, modes=("all",)), store, context=context)
        frame = store.to_frame()
    assert (result.done, result.ran) == (2, 1)  # the baseline is not re-run: a clean pass gives the reference
    assert context.clean_outcomes is not None and context.clean_outcomes.top1_correct == data.top1_correct
    swapped = logits.copy()
    swapped[:, [0, 1]] = logits[:, [1, 0]]
    new = frame.filter(pl.col("strength") == 2.0).row(0, named=True)
    assert {c: new[c] for c in PAIRED_COUNTERS} == _expected(logits, swapped, data.labels)
    # A failed trial: null paired counts.
    bad = run_trial(context, Trial("all", None, ("missing",), 1.0, 0))
    assert bad["error"] is not None and all(bad[c] is None for c in PAIRED_COUNTERS)


def test_a_stored_baseline_that_the_clean_model_no_longer_gives_stops_the_sweep(labeled, tmp_path):
    path, data, _ = labeled
    config = _config(path, data, NoiseConfig(strengths=(10.0,), seeds=1))
    db = tmp_path / "changed.sqlite"
    context = prepare_context(config)
    baseline = plan_trials(context, ("all",))[0]
    with open_store(db) as store:
        row = run_trial(context, baseline.trial)
        store.record({**row, "key": baseline.key, "top1_correct": row["top1_correct"] - 1})
    with pytest.raises(BaselineError, match=r"top1_correct 139 stored, 140 now"):
        clean_outcomes(prepare_context(config), stored=open_store(db).row(baseline.key))
    with open_store(db) as store, pytest.raises(BaselineError, match="new folder"):
        run_sweep(SweepConfig(config, modes=("all",)), store, context=prepare_context(config))


def _v2_store_without_paired_columns(db) -> None:
    """A version 2 file as written before the paired columns existed (same CREATE TABLE minus them)."""
    old = {k: v for k, v in TRIAL_COLUMNS.items() if k not in PAIRED_COUNTERS}
    conn = sqlite3.connect(db)
    conn.execute(create_sql("trials", old))
    conn.execute(create_sql("runs", RUN_COLUMNS))
    conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()


def test_an_older_v2_store_gets_the_paired_columns_and_resumes_without_rerunning(labeled, tmp_path):
    path, data, _ = labeled
    noise = NoiseConfig(model="test-swap-first-two", strengths=(1.0,), seeds=1)
    config = SweepConfig(_config(path, data, noise, layer_regex="^fc$"), modes=("all",))
    db = tmp_path / "old.sqlite"
    _v2_store_without_paired_columns(db)
    # Rows written by the code of that time: the same keys, no paired counts.
    conn = sqlite3.connect(db)
    context = prepare_context(config.run)
    old_names = [k for k in TRIAL_COLUMNS if k not in PAIRED_COUNTERS]
    for item in plan_trials(context, ("all",)):
        row = run_trial(context, item.trial)
        values = {**{k: row.get(k) for k in old_names}, "key": item.key, "key_version": 2,
                  "finished_at": "2024-01-01T00:00:00+00:00"}
        values = {k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in values.items()}
        conn.execute(f"INSERT INTO trials ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                     list(values.values()))
    conn.commit()
    conn.close()
    with open_store(db) as store:
        columns = [r[1] for r in sqlite3.connect(db).execute("PRAGMA table_info(trials)")]
        assert columns[-5:] == PAIRED_COUNTERS and store.pragma("user_version") == 2
        result = run_sweep(config, store, context=prepare_context(config.run))
        frame = store.to_frame()
    assert (result.done, result.ran) == (2, 0)
    assert frame.height == 2 and frame.select(PAIRED_COUNTERS).null_count().row(0) == (2,) * 5
    with open_store(db) as store:  # opening again adds nothing
        assert store.to_frame().height == 2


# ---------------------------------------------------------------- statistics


def test_mcnemar_exact_p_is_the_two_sided_binomial():
    assert mcnemar_p(0, 10) == pytest.approx(2 * 0.5**10)  # 0.001953125
    assert mcnemar_p(3, 5) == pytest.approx(1 - 70 / 256)  # all but P(X = 4) of Binomial(8, 1/2)
    assert mcnemar_p(9, 2) == pytest.approx(2 * (1 + 11 + 55) / 2048)  # 0.0654
    assert mcnemar_p(0, 0) == 1.0 and mcnemar_p(40, 40) == 1.0
    assert mcnemar_p(120, 80) == pytest.approx(sps.binomtest(120, 200, 0.5).pvalue)
    with pytest.raises(ValueError, match="integers >= 0"):
        mcnemar_p(-1, 3)
    assert flip_rate(25, 200) == 0.125
    with pytest.raises(ValueError, match="flips"):
        flip_rate(201, 200)


def test_collapse_rule_on_synthetic_draws():
    # ResNet20 with BN kept at 10% noise: two of three seeds near chance.
    assert collapsed([11.0, 13.0, 86.0], clean=91.7, chance=10.0).tolist() == [True, True, False]
    # All draws at chance (a BN layer at 14%, pcm without compensation at 11%): every one collapsed (the chance
    # band: less than a tenth of 91.7 - 10 above chance, i.e. below 18.17%), though none is far below the best.
    assert collapsed([11.0, 13.0, 10.5], clean=91.7, chance=10.0).all()
    assert collapsed([14.0], clean=91.7, chance=10.0).tolist() == [True]  # a single draw at chance too
    assert collapsed([18.1, 18.2], clean=91.7, chance=10.0).tolist() == [True, False]  # the band's edge: 18.17
    # All near the top, or falling together (20-35%: degraded, not at chance): not collapse.
    assert not collapsed([88.2, 88.9, 88.5], clean=91.7, chance=10.0).any()
    assert not collapsed([20.0, 35.0, 25.0], clean=91.7, chance=10.0).any()
    # One draw of five far below the rest; a failed draw (NaN) is never collapsed.
    assert collapsed([85, 86, 40, 84, 86, float("nan")], clean=91.7, chance=10.0).tolist() == \
        [False, False, True, False, False, False]
    # Chance 0 (unknown classes) flags no more than the true chance: 52% is collapsed at chance 50 only.
    assert collapsed([52.0, 95.0, 94.0], clean=96.0, chance=50.0).tolist() == [True, False, False]
    assert not collapsed([52.0, 95.0, 94.0], clean=96.0).any()
    # A clean model at chance (random weights: 0% on 1000 classes) has nothing to collapse from,
    # and a single draw, or draws all equal, never collapse relative to themselves.
    assert not collapsed([0.0], clean=0.0, chance=0.1).any()
    assert not collapsed([0.0, 0.0, 0.0], clean=0.0, chance=0.1).any()
    assert not collapsed([0.1, 0.0, 0.2], clean=0.1, chance=0.1).any()
    # Equal draws never collapse relative to each other, but equal draws below chance are at chance.
    assert not collapsed([50.0, 50.0], clean=90.0, chance=10.0).any()
    assert collapsed([5.0, 5.0], clean=90.0, chance=10.0).all()
    # Chance 0 (unknown classes) flags no more than the true chance here either: 9% is at chance 10 only.
    assert collapsed([9.0, 9.5], clean=91.7, chance=10.0).all() and not collapsed([9.5], clean=91.7).any()
    assert collapsed([9.0], clean=91.7).all()  # below 0.1 x 91.7 = 9.17 without a chance level


def test_summary_counts_every_draw_at_chance_as_collapsed():
    """Exact counts (tests._frames.draws_frame: clean 900/1000, 10 classes, so chance 10% and the chance band
    ends at 10 + 0.1 x 80 = 18%): a group at chance is all collapsed, the relative rule still flags one low
    draw among good ones, smooth degradation and good groups flag nothing."""
    frame = draws_frame({10.0: [100, 110, 140], 5.0: [95, 60, 130], 20.0: [880, 120, 870], 100.0: [890, 880, 895],
                         3.0: [300, 350, 250], 2.0: [179, 181]})
    summary = summarize_trials(frame, chance=10.0).filter(pl.col("mode") == "all")
    counts = dict(zip(summary["strength"].to_list(), summary["collapsed"].to_list()))
    assert counts == {10.0: 3, 5.0: 3, 20.0: 1, 100.0: 0, 3.0: 0, 2.0: 1}
    assert summary.filter(pl.col("strength") == 10.0)["collapse_rate"].item() == 1.0
    # Without the chance level (unknown classes) the band ends at 0.1 x 90 = 9%: only draws below it.
    unknown = summarize_trials(frame).filter(pl.col("mode") == "all")
    assert dict(zip(unknown["strength"].to_list(), unknown["collapsed"].to_list())) == \
        {10.0: 0, 5.0: 1, 20.0: 1, 100.0: 0, 3.0: 0, 2.0: 0}
    # The check gate uses the same rule on its draws.
    assert collapse_flags([10.0, 11.0, 14.0], clean=90.0, chance=10.0) == [True, True, True]


def test_pcm_without_compensation_that_collapses_gets_the_compensation_hint():
    at_chance = {31536000.0: [100, 105, 98], 3600.0: [880, 870, 875]}
    summary = summarize_trials(draws_frame(at_chance, noise_model="pcm", noise=PCM_NONE), chance=10.0)
    (line,) = collapse_hints(summary)
    assert line.startswith("pcm: 3 of 6 draws collapsed to chance or far below the others; pcm without drift "
                           "compensation (compensation=none)")
    assert "`--noise pcm:compensation=global`" in line
    # Compensated pcm and a model without advice still warn that draws collapsed, with no advice after it;
    # pcm that did not collapse gives no line.
    assert collapse_hints(summarize_trials(draws_frame(at_chance, noise_model="pcm", noise=PCM_GLOBAL),
                                           chance=10.0)) == ["pcm: 3 of 6 draws collapsed to chance or far below "
                                                             "the others"]
    assert collapse_hints(summarize_trials(draws_frame({3600.0: [880, 870]}, noise_model="pcm", noise=PCM_NONE),
                                           chance=10.0)) == []
    assert collapse_hints(summarize_trials(draws_frame(at_chance), chance=10.0)) == [
        "gaussian-snr: 3 of 6 draws collapsed to chance or far below the others"]


def test_bench_and_report_warn_with_the_models_advice_when_its_draws_collapse(labeled, tmp_path, zeroing_model):
    """A zeroed head predicts nothing (0% top-1, below chance): both draws collapse and the model's advice is a
    warning of the bench run and of report.md."""
    path, data, _ = labeled
    config = _config(path, data, NoiseConfig(model="test-zero-all", strengths=(1.0,), seeds=2), layer_regex="^fc$")
    result = run_bench(config)
    row = result.summary.filter(pl.col("mode") == "all").row(0, named=True)
    assert (row["top1_acc_mean"], row["collapsed"], row["seeds"]) == (0.0, 2, 2)
    expected = f"test-zero-all: 2 of 2 draws collapsed to chance or far below the others; {ZERO_ALL_HINT}"
    assert expected in result.meta["warnings"]
    run_dir = tmp_path / "run"
    with open_store(run_dir / "trials.sqlite") as store:
        run_sweep(SweepConfig(config, modes=("all",)), store)
    files = write_report(collect_trials([run_dir]), collect_runs([run_dir]), tmp_path / "report")
    assert expected in files.warnings
    assert f"- **WARNING**: {expected}" in files.markdown.read_text()


@needs_committed_reports
def test_committed_collapse_counts_of_correct_groups_do_not_move():
    """reports/cifar10-resnet-seeds (10 draws per group, every group had a draw that escaped or none collapsed):
    the counts recomputed from its results.parquet equal its committed summary.parquet, e.g. ResNet56 5/10 at
    SNR 10 (the chance band adds nothing there: no draw below 18% went unflagged)."""
    folder = Path(__file__).resolve().parents[2] / "reports" / "cifar10-resnet-seeds"
    committed = read_table(folder / "summary.parquet").filter(pl.col("mode") != "baseline")
    now = summarize_trials(read_table(trial_table(folder)), chance=10.0)
    now = now.filter(pl.col("mode") != "baseline")
    key = ["model", "strength"]
    joined = committed.select(*key, "collapsed").join(now.select(*key, pl.col("collapsed").alias("now")), on=key)
    assert joined.height == committed.height == 20
    assert joined["collapsed"].to_list() == joined["now"].to_list()
    resnet56 = joined.filter(pl.col("model").str.contains("resnet56") & (pl.col("strength") == 10.0))
    assert resnet56["now"].to_list() == [5]


@needs_committed_reports
@pytest.mark.parametrize(("report", "chance", "total", "whole_model"), [("analog-devices", 10.0, 32, 32),
                                                                      ("imagenet-paper", 0.0, 425, 10)])
def test_restated_committed_collapse_counts_equal_a_recomputation(report, chance, total, whole_model):
    """reports/analog-devices and imagenet-paper were restated under issue 20's rule (a draw at chance is collapsed):
    their committed summary.parquet holds today's counts (analog-devices: 0 before, every fallen group fell whole;
    stuck-at at 1% is 3 of 5 draws, pcm without compensation at 1 h 4 of 5)."""
    folder = Path(__file__).resolve().parents[2] / "reports" / report
    committed = read_table(folder / "summary.parquet")
    now = summarize_trials(read_table(trial_table(folder)), chance=chance)
    assert committed["collapsed"].to_list() == now["collapsed"].to_list()
    assert committed["collapsed"].sum() == total
    assert committed.filter(pl.col("mode") == "all")["collapsed"].sum() == whole_model
    if report == "analog-devices":
        rows = {(r["noise_model"], r["strength"]): r["collapsed"] for r in committed.iter_rows(named=True)
                if r["mode"] == "all" and "compensation\":\"global" not in r["noise"]}
        assert rows[("stuck-at", 0.01)] == 3 and rows[("pcm", 3600.0)] == 4


def _synthetic_trials() -> pl.DataFrame:
    """Baseline 90% and three draws at two strengths (100 images), one store-era row without paired counts."""
    rows = [("baseline", None, None, 90, 0, 0, 0)]
    rows += [("all", 10.0, s, c, f, b, g) for s, c, f, b, g in
             [(0, 11, 85, 80, 1), (1, 13, 83, 78, 1), (2, 86, 9, 6, 2)]]
    rows += [("all", 100.0, s, c, f, b, g) for s, c, f, b, g in [(0, 89, 2, 1, 0), (1, 90, 0, 0, 0)]]
    rows += [("all", 100.0, 2, 88, None, None, None)]
    frame = pl.DataFrame(rows, schema=["mode", "strength", "seed", "top1_correct", "flips", "lost_top1", "gained_top1"],
                         orient="row")
    return frame.with_columns(
        pl.lit("m").alias("model"), pl.lit("sha").alias("model_sha256"), pl.lit(100).alias("images"),
        pl.col("top1_correct").alias("top5_correct"), pl.lit(None, dtype=pl.String).alias("error"),
        pl.lit(None, dtype=pl.Int64).alias("layer_index"), pl.lit("gaussian-snr").alias("noise_model"),
        pl.col("top1_correct").cast(pl.Float64).alias("top1_acc"), pl.col("top1_correct").cast(pl.Float64).alias("top5_acc"),
        pl.lit(None, dtype=pl.Int64).alias("lost_top5"), pl.lit(None, dtype=pl.Int64).alias("gained_top5"))


def test_summary_has_flip_rate_mcnemar_and_collapse_rate_per_group():
    summary = summarize_trials(_synthetic_trials(), chance=10.0)
    by = {r["strength"]: r for r in summary.iter_rows(named=True)}
    snr10, snr100, base = by[10.0], by[100.0], by[None]
    assert (snr10["seeds"], snr10["collapsed"], snr10["collapse_rate"]) == (3, 2, pytest.approx(2 / 3))
    assert snr10["flip_pct_mean"] == pytest.approx((85 + 83 + 9) / 3)
    assert (snr10["lost_top1_mean"], snr10["gained_top1_mean"]) == (pytest.approx(164 / 3), pytest.approx(4 / 3))
    # McNemar per draw: 80 vs 1, 78 vs 1, 6 vs 2 -> p < 0.05, < 0.05, 0.29.
    assert (snr10["paired_draws"], snr10["mcnemar_significant"]) == (3, 2)
    # The row recorded before paired counts existed counts as a draw, not as a paired draw.
    assert (snr100["seeds"], snr100["paired_draws"], snr100["mcnemar_significant"], snr100["collapsed"]) == (3, 2, 0, 0)
    assert snr100["flip_pct_mean"] == pytest.approx(1.0)
    assert base["collapse_rate"] is None and base["collapsed"] == 0
    table = paired_table(summary)
    text = _render(table)
    assert "59.00" in text and "2/3" in text and "0/2" in text
    assert "collapsed" in _render(summary_table(summary))


def _render(table) -> str:
    from rich.console import Console

    console = Console(width=100, record=True)
    console.print(table)
    return console.export_text()


def test_report_md_and_console_show_paired_stats_for_a_sweep_and_none_for_old_rows(labeled, tmp_path):
    path, data, _ = labeled
    config = _config(path, data, NoiseConfig(strengths=(10.0, 3.0), seeds=3))
    run_dir = tmp_path / "run"
    with open_store(run_dir / "trials.sqlite") as store:
        run_sweep(SweepConfig(config, modes=("all",)), store)
    files = write_report(collect_trials([run_dir]), collect_runs([run_dir]), tmp_path / "report")
    text = files.markdown.read_text()
    assert "| flips % | lost | gained | p<.05 | collapsed |" in text and "McNemar 1947" in text
    row = files.summary.filter((pl.col("mode") == "all") & (pl.col("strength") == 3.0)).row(0, named=True)
    assert row["paired_draws"] == 3 and row["flip_pct_mean"] > 0
    # Rows from before the paired columns: no paired table at all.
    old = summarize_trials(collect_trials([run_dir]).with_columns(
        *(pl.lit(None, dtype=pl.Int64).alias(c) for c in PAIRED_COUNTERS)))
    assert paired_table(old) is None


def test_recheck_compares_paired_counts_too(labeled, tmp_path):
    path, data, _ = labeled
    noise = NoiseConfig(model="test-swap-first-two", strengths=(1.0,), seeds=1)
    config = SweepConfig(_config(path, data, noise, layer_regex="^fc$"), modes=("all",))
    db = tmp_path / "recheck.sqlite"
    with open_store(db) as store:
        run_sweep(config, store)
        assert recheck_sweep(config, store, sample=2) == (2, [])
    conn = sqlite3.connect(db)
    conn.execute("UPDATE trials SET flips = flips + 1 WHERE mode = 'all'")
    conn.commit()
    conn.close()
    with open_store(db) as store:
        checked, mismatches = recheck_sweep(config, store, sample=2)
    flips = _expected(*_swapped(labeled), data.labels)["flips"]
    assert checked == 2 and mismatches == [f"all layer None strength 1.0 seed 0: flips stored {flips + 1}, now {flips}"]


def _swapped(labeled):
    _, _, logits = labeled
    swapped = logits.copy()
    swapped[:, [0, 1]] = logits[:, [1, 0]]
    return logits, swapped
