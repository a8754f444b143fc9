"""Whole-model trials side by side: the layout rule, and rows that do not depend on the layout."""

from __future__ import annotations

import pytest

import onnxnoise.engine.executor as executor_module
import onnxnoise.engine.layout as layout_module
from onnxnoise.config import NoiseConfig, RunConfig
from onnxnoise.engine.context import prepare_context
from onnxnoise.engine.executor import LocalExecutor, MemoryRecorder
from onnxnoise.engine.layout import TrialLayout, run_side_by_side, whole_model_layout
from onnxnoise.engine.plan import Trial, plan_trials
from onnxnoise.engine.trial import clean_outcomes

CPU = "CPUExecutionProvider"
MIB = 2**20


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"threads": 0, "cpus": 2}, (2, 1)),                  # the default on a 2-core machine: two 1-thread sessions
    ({"threads": 4, "cpus": 2}, (4, 1)),                  # --threads 4: four side by side
    ({"threads": 1, "cpus": 8}, (1, 1)),                  # --threads 1: one at a time, one thread
    ({"threads": 0, "cpus": 1}, (1, 0)),                  # one CPU: onnxruntime's default threads
    ({"threads": 0, "cpus": 8, "weight_bytes": 600 * MIB, "cache_bytes": 2 << 30}, (3, 2)),  # 4 GiB // 1,216 MiB
    ({"threads": 0, "cpus": 2, "weight_bytes": 3000 * MIB}, (1, 0)),  # two sessions do not fit in 4 GiB
    ({"threads": 0, "cpus": 2, "provider": "CUDAExecutionProvider"}, (1, 0)),
    ({"threads": 0, "cpus": 2, "weight_bytes": 553 * MIB}, (1, 0)),   # VGG16: two copies exceed a 32 MiB cache
    ({"threads": 0, "cpus": 2, "weight_bytes": 16 * MIB}, (2, 1)),    # two copies fill it exactly
    ({"threads": 0, "cpus": 2, "weight_bytes": 16 * MIB + 1}, (1, 0)),
    ({"threads": 0, "cpus": 8, "weight_bytes": 10 * MIB}, (3, 2)),    # 32 // 10 = 3 copies, 8 // 3 = 2 threads each
])
def test_the_documented_rule(kwargs, expected):
    args = {"provider": CPU, "weight_bytes": 1 * MIB, "memory_bytes": 4 << 30, "cache_bytes": 32 * MIB, **kwargs}
    layout = whole_model_layout(**args)
    assert (layout.sessions, layout.threads) == expected
    assert layout.describe().startswith("whole-model trials: " + ("one at a time" if expected[0] == 1
                                                                 else f"{expected[0]} side by side"))


def test_the_reasons_name_what_decided(tmp_path):
    vgg = whole_model_layout(provider=CPU, threads=0, cpus=2, weight_bytes=553 * MIB, memory_bytes=4 << 30,
                             cache_bytes=32 * MIB)
    assert vgg.reason == "two copies of 553 MiB of weights exceed the 32 MiB last-level cache"
    big = whole_model_layout(provider=CPU, threads=0, cpus=2, weight_bytes=3000 * MIB, memory_bytes=4 << 30,
                             cache_bytes=32 * MIB)
    assert big.reason == "--lockstep-memory holds one session of 3000 MiB of weights"
    some = whole_model_layout(provider=CPU, threads=0, cpus=8, weight_bytes=10 * MIB, memory_bytes=4 << 30,
                              cache_bytes=32 * MIB)
    assert some.reason == "8 threads, the 32 MiB cache holds 3 copies of the weights"


def _cache_entry(root, name, level, kind, size):
    entry = root / name
    entry.mkdir()
    for field, value in (("level", level), ("type", kind), ("size", size)):
        (entry / field).write_text(f"{value}\n")


def test_the_last_level_cache_is_read_from_sysfs(tmp_path):
    _cache_entry(tmp_path, "index0", 1, "Data", "48K")
    _cache_entry(tmp_path, "index1", 1, "Instruction", "32K")
    _cache_entry(tmp_path, "index2", 2, "Unified", "1024K")
    _cache_entry(tmp_path, "index3", 3, "Unified", "32768K")
    assert layout_module.last_level_cache_bytes(str(tmp_path)) == 32 * MIB
    (tmp_path / "index3" / "size").write_text("garbage\n")  # unreadable: the next level down
    assert layout_module.last_level_cache_bytes(str(tmp_path)) == MIB
    assert layout_module.last_level_cache_bytes(str(tmp_path / "missing")) == layout_module.DEFAULT_CACHE_BYTES == 16 * MIB


@pytest.fixture(scope="module")
def context(resnet_npz):
    model, data = resnet_npz
    config = RunConfig(model=model, data=data, preset="raw", device="cpu", batch_size=16,
                       noise=NoiseConfig(strengths=(3.0, 30.0), seeds=3))
    return prepare_context(config)


def _rows(context, layout: TrialLayout, modes) -> list[dict]:
    context.clean_outcomes = None
    recorder = MemoryRecorder()
    executor = LocalExecutor(prefix_reuse=False, layout=layout)
    result = executor.run(context, plan_trials(context, modes), recorder)
    assert result.failed == 0 and executor.last_layout == layout
    return [{k: v for k, v in row.items() if k != "seconds"} for row in recorder.rows]


def test_trials_side_by_side_give_the_rows_of_one_at_a_time(context):
    one = _rows(context, TrialLayout(1, 2, "test"), ("all", "per-layer"))
    # 1 baseline + 2 strengths x 3 seeds x (1 all + 13 per-layer) trials, every key distinct
    assert len(one) == 1 + 2 * 3 * 14 and len({r["key"] for r in one}) == len(one)
    assert len({r["top1_correct"] for r in one}) > 3  # the noise changes the counts: the comparison can fail
    for layout in (TrialLayout(2, 1, "test"), TrialLayout(3, 1, "test"), TrialLayout(1, 2, "test", draw_ahead=True)):
        assert _rows(context, layout, ("all", "per-layer")) == one  # keys, counts, paired counts, flips...


def test_side_by_side_seconds_are_each_trials_share_of_the_wall_time(context, monkeypatch):
    own = iter([1.0, 3.0])
    monkeypatch.setattr(layout_module, "run_trial", lambda *a, **k: {"seconds": next(own), "threads": k["threads"]})
    clock = iter([10.0, 12.0])  # the call took 2 s of wall time
    monkeypatch.setattr(layout_module.time, "perf_counter", lambda: next(clock))
    trials = [Trial("all", None, ("a",), 3.0, seed) for seed in (0, 1)]
    rows = run_side_by_side(context, trials, TrialLayout(2, 1, "test"))
    assert rows == [{"seconds": 0.5, "threads": 1}, {"seconds": 1.5, "threads": 1}]  # 1 and 3 s scaled by 2 / 4


def test_a_trial_alone_gets_every_thread(context, monkeypatch):
    monkeypatch.setattr(layout_module, "run_trial", lambda *a, **k: {"seconds": 1.0, "threads": k["threads"]})
    trial = Trial("all", None, ("a",), 3.0, 0)
    assert run_side_by_side(context, [trial], TrialLayout(2, 1, "test")) == [{"seconds": 1.0, "threads": None}]
    assert run_side_by_side(context, [trial, trial], TrialLayout(1, 2, "test")) == [{"seconds": 1.0, "threads": 2}] * 2


@pytest.mark.parametrize(("kwargs", "ahead"), [
    ({"weight_bytes": 553 * MIB}, True),                          # VGG16 one at a time: draws made ahead
    ({"weight_bytes": 1 * MIB}, False),                           # side by side: each trial draws its own
    ({"weight_bytes": 3000 * MIB}, False),                        # no room for a second set of noisy weights
    ({"weight_bytes": 1 * MIB, "provider": "CUDAExecutionProvider", "cpus": 1}, True),  # the GPU runs, a CPU draws
    ({"weight_bytes": 1 * MIB, "cpus": 1}, False),                # one CPU: nothing to overlap with
])
def test_draws_are_made_ahead_one_at_a_time_when_memory_and_a_core_allow(kwargs, ahead):
    args = {"provider": CPU, "threads": 0, "cpus": 2, "memory_bytes": 4 << 30, "cache_bytes": 32 * MIB, **kwargs}
    layout = whole_model_layout(**args)
    assert layout.draw_ahead is ahead and layout.to_dict()["draw_ahead"] is ahead
    assert layout.describe().endswith("; each draw made while the trial before runs") is ahead


def test_the_next_draw_starts_when_a_trial_has_taken_its_own(context, monkeypatch):
    events = []

    def draw(context, trial):
        events.append(f"draw {trial.seed}")
        return f"noise {trial.seed}"

    def run(context, trial, *, on_batch, threads, drawn):
        events.append(f"start {trial.seed}")
        got = drawn()
        events.append(f"end {trial.seed} with {got}")
        return {"seed": trial.seed, "threads": threads}

    monkeypatch.setattr(layout_module, "draw_trial", draw)
    monkeypatch.setattr(layout_module, "run_trial", run)
    trials = [Trial("all", None, ("a",), 3.0, seed) for seed in range(3)]
    rows = run_side_by_side(context, trials, TrialLayout(1, 2, "test", draw_ahead=True))
    assert rows == [{"seed": s, "threads": 2} for s in range(3)]
    for seed in range(3):  # draw i+1 is asked for only after trial i took draw i, and at most one draw is pending
        assert events.index(f"draw {seed}") < events.index(f"end {seed} with noise {seed}")
        if seed:
            assert events.index(f"start {seed - 1}") < events.index(f"draw {seed}")
    assert events.count("draw 0") == 1 and len([e for e in events if e.startswith("draw")]) == 3


def test_a_draw_made_ahead_that_fails_is_its_trials_error_row(context, monkeypatch):
    real = layout_module.draw_trial

    def draw(context, trial):
        if trial.seed == 1:
            raise MemoryError("no room for the noisy weights")
        return real(context, trial)

    monkeypatch.setattr(layout_module, "draw_trial", draw)
    context.clean_outcomes = None
    trials = [Trial("all", None, tuple(context.layers_by_name), 3.0, seed) for seed in range(3)]
    clean_outcomes(context)
    rows = run_side_by_side(context, trials, TrialLayout(1, 2, "test", draw_ahead=True))
    assert [r["error"] is None for r in rows] == [True, False, True]
    assert "no room for the noisy weights" in rows[1]["error"] and rows[1]["top1_correct"] is None


@pytest.mark.parametrize("draw_ahead", [False, True])
def test_one_at_a_time_each_row_is_handed_over_as_its_trial_ends(context, monkeypatch, draw_ahead):
    events = []
    monkeypatch.setattr(layout_module, "draw_trial", lambda context, trial: None)

    def run(context, trial, *, on_batch, threads, drawn=None):
        events.append(f"run {trial.seed}")
        return {"seed": trial.seed}

    monkeypatch.setattr(layout_module, "run_trial", run)
    trials = [Trial("all", None, ("a",), 3.0, seed) for seed in range(3)]
    rows = run_side_by_side(context, trials, TrialLayout(1, 2, "test", draw_ahead=draw_ahead),
                            on_row=lambda i, row: events.append(f"row {i} {row['seed']}"))
    assert events == ["run 0", "row 0 0", "run 1", "row 1 1", "run 2", "row 2 2"] and len(rows) == 3


def test_side_by_side_rows_are_handed_over_when_all_have_ended(context, monkeypatch):
    events = []

    def run(context, trial, *, on_batch, threads):
        events.append(f"run {trial.seed}")
        return {"seconds": 1.0}

    monkeypatch.setattr(layout_module, "run_trial", run)
    trials = [Trial("all", None, ("a",), 3.0, seed) for seed in range(2)]
    run_side_by_side(context, trials, TrialLayout(2, 1, "test"), on_row=lambda i, row: events.append(f"row {i}"))
    assert sorted(events[:2]) == ["run 0", "run 1"] and events[2:] == ["row 0", "row 1"]


def test_one_at_a_time_every_consecutive_whole_model_trial_runs_in_one_group(context, monkeypatch):
    sizes = []
    real = executor_module.run_side_by_side

    def spy(context, trials, layout, **kwargs):
        sizes.append(len(trials))
        return real(context, trials, layout, **kwargs)

    monkeypatch.setattr(executor_module, "run_side_by_side", spy)
    one = _rows(context, TrialLayout(1, 2, "test", draw_ahead=True), ("all",))
    assert sizes == [6] and len(one) == 7  # 2 strengths x 3 seeds after the baseline, in one group (was 4 + 2)
    sizes.clear()
    _rows(context, TrialLayout(2, 1, "test"), ("all",))
    assert sizes == [6]  # side by side: groups of up to 4 x 2

