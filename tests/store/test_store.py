"""store (schema v2): schema checks, row round-trip, duplicate keys, concurrent writers, crash safety under SIGKILL."""

from __future__ import annotations

import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest

import onnxnoise.store
from onnxnoise.errors import StoreError
from onnxnoise.store import (
    APPLICATION_ID,
    RUN_COLUMNS,
    SCHEMA_VERSION,
    STORE_NAME,
    TRIAL_COLUMNS,
    TrialStore,
    open_store,
    run_store,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

#: A writer that records ``n`` trials whose values are a pure function of the key,
#: skipping keys already stored (what a resumed sweep does).
WORKER = textwrap.dedent(
    """
    import hashlib, sys, time
    from onnxnoise.store import open_store

    def row(i):
        key = hashlib.sha256(f"trial-{i}".encode()).hexdigest()
        h = int(key[:12], 16)
        top1 = h % 1001
        return {
            "key": key, "model": "m", "model_sha256": "s" * 64, "dataset": "d",
            "dataset_fingerprint": "fp", "preprocess": {"crop": 32},
            "mode": "baseline" if i == 0 else "per-layer",
            "layer_index": None if i == 0 else i % 17,
            "layers": [] if i == 0 else [f"layer{i % 17}"],
            "layers_noised": 0 if i == 0 else 1, "key_version": 2,
            "noise_model": "gaussian-snr", "noise": {"params": {}, "bn_variance": "clamp", "keep_zeros": False},
            "strength": None if i == 0 else [100.0, 10.0, 2.5][i % 3],
            "label_offset": 0, "batch_size": 64,
            "seed": None if i == 0 else i // 17,
            "images": 1000, "top1_correct": top1, "top5_correct": top1 + (h >> 20) % (1001 - top1),
            "nan_count": (h >> 30) % 3, "bn_variance_changed": (h >> 40) % 5,
            "overflow_count": 0, "clipped_count": (h >> 8) % 7, "zeros_kept": 0,
            "context": {"model_sha256": "s" * 64, "i": i},
            "seconds": (h % 997) / 100.0, "provider": "CPUExecutionProvider",
            "versions": {"onnxnoise": "0.1.0"}, "error": None,
        }

    path, n = sys.argv[1], int(sys.argv[2])
    with open_store(path) as store:
        done = store.done_keys()
        print("ready", flush=True)
        start = time.perf_counter()
        for i in range(n):
            r = row(i)
            if r["key"] not in done:
                assert store.record(r)
                print(i, flush=True)  # committed
        print("finished", time.perf_counter() - start, flush=True)
    """
)

N_ROWS = 200


def _start(script: Path, db: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db), str(N_ROWS)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("ready"), line
    return proc


def _comparable(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.drop("finished_at").sort("key")


def _row_counts(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*), count(DISTINCT key) FROM trials").fetchone()


def test_sigkill_at_random_moments_loses_nothing_committed(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    reference_db = tmp_path / "reference.sqlite"
    proc = _start(script, reference_db)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    seconds_per_row = float(out.split()[-1]) / N_ROWS
    with open_store(reference_db) as store:
        reference = store.to_frame()
    assert reference.height == N_ROWS

    rng = random.Random(1234)
    db = tmp_path / "killed.sqlite"
    killed_mid_run = 0
    previous = 0
    for _ in range(6):
        proc = _start(script, db)
        # Let a random number of rows commit, then kill at a random phase of the next
        # ones (mostly inside record(): the commit's fsync dominates a row's time).
        for _ in range(rng.randint(0, 25)):
            proc.stdout.readline()
        time.sleep(rng.uniform(0.0, 2.0 * seconds_per_row))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        killed_mid_run += proc.returncode == -signal.SIGKILL
        # Every kill leaves a readable store with unique keys and no lost commits.
        total, distinct = _row_counts(db)
        assert total == distinct
        assert total >= previous
        previous = total
    assert killed_mid_run == 6, "the writer finished before a kill; the test did not exercise crashes"
    assert previous < N_ROWS

    proc = _start(script, db)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    with open_store(db) as store:
        resumed = store.to_frame()
        assert len(store.done_keys()) == N_ROWS
    assert _row_counts(db) == (N_ROWS, N_ROWS)
    assert _comparable(resumed).equals(_comparable(reference))


def test_kill_inside_an_open_write_transaction_rolls_it_back(tmp_path):
    db = tmp_path / "t.sqlite"
    with open_store(db) as store:
        assert store.record({"key": "kept", "mode": "baseline", "noise_model": "gaussian-snr"})
    script = tmp_path / "half_write.py"
    script.write_text(textwrap.dedent(
        f"""
        import os, signal, sqlite3
        conn = sqlite3.connect({str(db)!r}, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO trials (key, mode, noise_model, strength, finished_at) "
                     "VALUES ('lost', 'all', 'gaussian-snr', 1.0, 'x')")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    ))
    proc = subprocess.run([sys.executable, str(script)], check=False)
    assert proc.returncode == -signal.SIGKILL
    with open_store(db) as store:
        assert store.done_keys() == {"kept"}
        assert store.record({"key": "next", "mode": "all", "noise_model": "gaussian-snr", "strength": 1.0})
        assert store.done_keys() == {"kept", "next"}


def test_public_names_and_schema_v2_columns():
    assert onnxnoise.store.__all__ == [
        "SCHEMA_VERSION", "APPLICATION_ID", "TRIAL_COLUMNS", "RUN_COLUMNS", "STORE_NAME", "TrialStore", "open_store",
        "run_store",
    ]
    assert (SCHEMA_VERSION, APPLICATION_ID, STORE_NAME) == (2, 0x6F6E6E78, "trials.sqlite")
    assert list(TRIAL_COLUMNS) == [
        "key", "key_version", "run_id", "model", "model_sha256", "dataset", "dataset_fingerprint", "preprocess",
        "mode", "layer_index", "layers", "layers_noised", "noise_model", "noise", "strength", "seed",
        "label_offset", "batch_size", "provider", "settings", "images", "top1_correct", "top5_correct", "nan_count",
        "bn_variance_changed", "overflow_count", "clipped_count", "zeros_kept", "dac_clipped", "dac_values",
        "adc_clipped", "adc_values", "changed_values", "flips", "lost_top1", "gained_top1", "lost_top5", "gained_top5", "seconds", "context", "versions",
        "error", "finished_at",
    ]
    assert (TRIAL_COLUMNS["strength"].sql, TRIAL_COLUMNS["strength"].polars_dtype) == ("REAL", pl.Float64)
    assert TRIAL_COLUMNS["noise_model"].sql == TRIAL_COLUMNS["mode"].sql == "TEXT NOT NULL"
    assert list(RUN_COLUMNS) == [
        "run_id", "started_at", "model", "model_sha256", "dataset", "dataset_fingerprint", "preprocess",
        "noise_model", "noise", "config", "context", "versions",
    ]
    assert "snr" not in TRIAL_COLUMNS and "noise_pct" not in TRIAL_COLUMNS
    for module in ("schema", "store", "migrate"):
        assert len((REPO_ROOT / "onnxnoise" / "store" / f"{module}.py").read_text().splitlines()) < 400


def test_round_trip_json_null_baseline_strength_and_derived_columns(tmp_path):
    path = tmp_path / "s.sqlite"
    with open_store(path) as store:
        assert store.record({
            "key": "k0", "mode": "baseline", "noise_model": "gaussian-snr", "layers": [], "layers_noised": 0,
            "images": 1000, "top1_correct": 900, "top5_correct": 990, "preprocess": {"b": 1, "a": [0.5]},
            "noise": {"params": {}, "bn_variance": "clamp", "keep_zeros": False}, "label_offset": 1,
            "batch_size": 256, "context": {"z": "1", "a": "2"},
        })
        assert store.record({"key": "k1", "mode": "all", "noise_model": "gaussian-snr", "strength": 10, "seed": 3,
                             "layers": '["conv1"]', "layers_noised": 1, "images": 8, "top1_correct": 2,
                             "top5_correct": 8, "overflow_count": 5, "clipped_count": 6, "zeros_kept": 7,
                             "error": None})
        assert store.record({"key": "k2", "mode": "all", "noise_model": "gaussian-snr", "strength": 5.0, "seed": 0,
                             "images": 8, "top1_correct": 1, "top5_correct": 2, "error": "SessionError: boom"})
        assert store.record({"key": "k3", "mode": "per-layer", "noise_model": "uniform", "strength": 0.25,
                             "seed": 1, "key_version": 1, "images": 0, "top1_correct": 0, "top5_correct": 0})
        frame = store.to_frame()
    assert frame.columns == [*TRIAL_COLUMNS, "top1_acc", "top5_acc"]
    assert frame["key"].to_list() == ["k0", "k1", "k2", "k3"]
    assert frame["strength"].to_list() == [None, 10.0, 5.0, 0.25]
    assert frame["strength"].dtype == pl.Float64
    assert frame["key_version"].to_list() == [2, 2, 2, 1]
    assert frame["noise_model"].to_list() == ["gaussian-snr", "gaussian-snr", "gaussian-snr", "uniform"]
    assert frame["top1_acc"].to_list() == [90.0, 25.0, None, None]  # failed and zero-image trials: null
    assert frame["top5_acc"].to_list() == [99.0, 100.0, None, None]
    assert frame["preprocess"][0] == '{"a":[0.5],"b":1}'
    assert frame["noise"][0] == '{"bn_variance":"clamp","keep_zeros":false,"params":{}}'
    assert frame["context"][0] == '{"a":"2","z":"1"}'
    assert frame["layers"].to_list() == ["[]", '["conv1"]', None, None]
    assert frame["layers_noised"].to_list() == [0, 1, None, None]
    assert (frame["label_offset"][0], frame["batch_size"][0]) == (1, 256)
    assert frame.select("overflow_count", "clipped_count", "zeros_kept").row(1) == (5, 6, 7)
    assert frame["seed"].dtype == pl.Int64 and frame["seed"][0] is None
    assert frame["finished_at"][0].endswith("+00:00")
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()[0] == "2"
        assert conn.execute("SELECT strength FROM trials WHERE key = 'k0'").fetchone()[0] is None


def test_duplicate_key_returns_false_and_failed_trial_may_be_retried(tmp_path):
    with open_store(tmp_path / "s.sqlite") as store:
        counts = {"images": 10, "top1_correct": 5, "top5_correct": 9}
        base = {"mode": "all", "noise_model": "gaussian-snr", "strength": 10.0}
        assert not store.has("a")
        assert store.record({"key": "a", **base, "seed": 0, **counts}) is True
        assert store.has("a")
        assert store.record({"key": "a", **base, "seed": 0, **counts, "top1_correct": 1}) is False
        assert store.record({"key": "a", **base, "seed": 0, "error": "late failure"}) is False
        assert store.record({"key": "b", **base, "seed": 1, "error": "out of memory"}) is True
        assert not store.has("b")
        assert store.record({"key": "b", **base, "seed": 1, "error": "out of memory again"}) is True
        assert store.done_keys() == {"a", "b"}
        assert store.done_keys(include_errors=False) == {"a"}
        assert store.record({"key": "b", **base, "seed": 1, **counts, "top1_correct": 4}) is True
        assert store.has("b")
        frame = store.to_frame()
    assert frame.height == 2
    assert frame.filter(pl.col("key") == "a").select("error", "top1_correct").row(0) == (None, 5)
    assert frame.filter(pl.col("key") == "b").select("error", "top1_correct", "top5_correct").row(0) == (None, 4, 9)


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({"mode": "all", "noise_model": "g", "strength": 1.0}, "trial row needs `key`"),
        ({"key": "a", "noise_model": "g", "strength": 1.0}, "trial row needs `mode`"),
        ({"key": "a", "mode": "all", "strength": 1.0}, "trial row needs `noise_model`"),
        ({"key": "a", "mode": "all", "noise_model": "g"}, "'all' trial needs `strength`"),
        ({"key": "a", "mode": "per-layer", "noise_model": "g", "strength": None}, "'per-layer' trial needs `strength`"),
        ({"key": "a", "mode": "all", "noise_model": "g", "strength": math.nan}, "`strength` must be a finite number"),
        ({"key": "a", "mode": "all", "noise_model": "g", "strength": math.inf}, "`strength` must be a finite number"),
        ({"key": "a", "mode": "baseline", "noise_model": "g", "strength": -math.inf}, "`strength` must be a finite"),
        ({"key": "a", "mode": "baseline", "noise_model": "g", "strength": 100.0}, "'baseline' trial has no `strength`"),
        ({"key": "a", "mode": "sideways", "noise_model": "g", "strength": 1.0}, "`mode` must be one of baseline, all"),
        ({"key": "a", "mode": "all", "noise_model": "g", "strength": 1.0, "images": 1.5}, "`images` must be an int"),
        ({"key": "a", "mode": "all", "noise_model": "g", "strength": 1.0, "layers": "not json"}, "`layers` must be"),
        ({"key": "a", "mode": "all", "noise_model": "g", "strength": 1.0, "snr": 3}, "unknown trials column.*'snr'"),
    ],
)
def test_record_rejects_bad_rows(tmp_path, row, match):
    with open_store(tmp_path / "s.sqlite") as store:
        with pytest.raises(StoreError, match=match) as info:
            store.record(row)
        assert "\n" not in str(info.value)
        assert store.done_keys() == set()


def test_runs_table(tmp_path):
    with open_store(tmp_path / "s.sqlite") as store:
        run = store.record_run({"model": "m", "model_sha256": "s", "preprocess": {"crop": 32}, "config": {"seeds": 2},
                                "noise_model": "gaussian-snr", "noise": {"params": {}, "keep_zeros": True},
                                "context": {"images": "2000"}})
        assert store.record({"key": "a", "mode": "baseline", "noise_model": "gaussian-snr", "run_id": run})
        runs = store.runs()
    assert runs.columns == list(RUN_COLUMNS)
    assert runs["run_id"].to_list() == [run]
    assert runs["preprocess"][0] == '{"crop":32}'
    assert runs["noise"][0] == '{"keep_zeros":true,"params":{}}'
    assert runs["context"][0] == '{"images":"2000"}'


def test_open_rejects_foreign_files(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a trial store"):
        open_store(junk)

    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE foo (x)")
    with pytest.raises(StoreError, match="another program"):
        open_store(other)
    with sqlite3.connect(other) as conn:  # refused without being modified
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"

    newer = tmp_path / "newer.sqlite"
    open_store(newer).close()
    with sqlite3.connect(newer) as conn:
        conn.execute("PRAGMA user_version = 3")
    with pytest.raises(StoreError, match="has schema version 3, newer than version 2") as info:
        open_store(newer)
    assert "\n" not in str(info.value)
    with sqlite3.connect(newer) as conn:
        conn.execute("PRAGMA user_version = 0")
    with pytest.raises(StoreError, match="has schema version 0; this onnxnoise reads version 2"):
        open_store(newer)

    with pytest.raises(StoreError, match="is a folder"):
        open_store(tmp_path)
    with pytest.raises(StoreError, match="not found"):
        open_store(tmp_path / "missing.sqlite", create=False)


def test_store_settings_and_close(tmp_path):
    path = tmp_path / "nested" / STORE_NAME
    store = open_store(path)
    assert isinstance(store, TrialStore)
    assert store.pragma("synchronous") == 2  # FULL: a setting of the store's own connection
    assert (store.pragma("journal_mode"), store.pragma("application_id")) == ("wal", APPLICATION_ID)
    with pytest.raises(StoreError, match="unknown store setting 'optimize'"):
        store.pragma("optimize")
    with sqlite3.connect(path) as conn:  # the file's own settings, as any other reader sees them
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    conn.close()
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.done_keys()
    with open_store(path) as again:  # reopening an existing store works
        assert again.done_keys() == set()


N_CONCURRENT = 120


def _concurrent_row(i: int, *, error: str | None = None) -> dict:
    return {
        "key": f"trial-{i:04d}", "mode": "per-layer", "layer_index": i % 9, "layers": [f"l{i % 9}"],
        "noise_model": "gaussian-snr", "strength": 10.0, "seed": i, "images": 100,
        "top1_correct": i % 101, "top5_correct": 100, "error": error,
    }


def _concurrent_writer(name: str, path: str, indices: list[int], fail: set[int], use_has: bool, barrier,
                       results) -> None:
    """Record ``indices`` into the store at ``path``; report (stored, refused, skipped) or the exception."""
    try:
        with open_store(path) as store:
            barrier.wait(timeout=60)
            stored, refused, skipped = [], [], []
            for i in indices:
                row = _concurrent_row(i, error="injected failure" if i in fail else None)
                if use_has and i % 2 and store.has(row["key"]):
                    skipped.append(i)
                elif store.record(row):
                    stored.append(i)
                else:
                    refused.append(i)
                time.sleep(0.005)  # let the other writer take the lock now and then
        results.put((name, stored, refused, skipped, None))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put((name, [], [], [], f"{type(exc).__name__}: {exc}"))


def test_two_processes_write_overlapping_keys(tmp_path):
    import multiprocessing

    path = tmp_path / STORE_NAME
    open_store(path).close()
    overlap = list(range(20, 100))
    # Both race through the shared keys in the same order, then write their own.
    work_a = overlap + list(range(0, 20))
    work_b = overlap + list(range(100, N_CONCURRENT))
    fail_a = {i for i in overlap if i % 10 == 0}  # A's row fails; B's finished row must win
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=_concurrent_writer, args=("a", str(path), work_a, fail_a, False, barrier, results)),
        ctx.Process(target=_concurrent_writer, args=("b", str(path), work_b, set(), True, barrier, results)),
    ]
    for proc in procs:
        proc.start()
    reports = sorted(results.get(timeout=120) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    assert [error for *_, error in reports] == [None, None]
    assert [name for name, *_ in reports] == ["a", "b"]
    stored = [set(r[1]) for r in reports]
    refused = [set(r[2]) for r in reports]
    skipped = [set(r[3]) for r in reports]
    # Every key was handled by each writer that had it: stored, refused (another finished it) or skipped.
    for work, st, rf, sk in zip((work_a, work_b), stored, refused, skipped):
        assert st | rf | sk == set(work) and not (st & rf) and not (st & sk)
    # A finished key is stored by exactly one writer; a failed row may be replaced by the finished one.
    for i in overlap:
        if i not in fail_a:
            assert (i in stored[0]) + (i in stored[1]) == 1, i
    assert fail_a <= stored[1]  # B's finished row either came first or replaced A's failed one
    with open_store(path) as store:
        frame = store.to_frame()
        assert all(store.has(f"trial-{i:04d}") for i in range(N_CONCURRENT))
    assert frame.height == N_CONCURRENT
    assert frame["key"].n_unique() == N_CONCURRENT
    assert frame["error"].null_count() == N_CONCURRENT  # every failed row of A was replaced or refused
    assert sorted(frame["top1_correct"].to_list()) == sorted(i % 101 for i in range(N_CONCURRENT))
    assert sum(len(r) for r in refused) + sum(len(k) for k in skipped) >= len(overlap) - len(fail_a)


_RUN = {"model": "m", "model_sha256": "s", "noise_model": "gaussian-snr"}


@pytest.mark.parametrize(("rows", "kept"), [
    ((), False),  # only the failed run's own record: removed (an unreachable Ray --address left it)
    (("baseline",), True),  # a trial row: kept, the same command resumes
])
def test_a_store_created_by_a_run_that_failed_is_removed_only_while_it_holds_no_trial(tmp_path, rows, kept):
    path = tmp_path / STORE_NAME
    with pytest.raises(RuntimeError, match="^cannot reach Ray$"), run_store(path) as store:
        run = store.record_run(_RUN)
        for key in rows:
            store.record({"key": key, "mode": "baseline", "noise_model": "gaussian-snr", "run_id": run})
        raise RuntimeError("cannot reach Ray")
    assert sorted(p.name for p in tmp_path.iterdir()) == ([STORE_NAME] if kept else [])
    if kept:
        with open_store(path) as store:
            assert store.done_keys() == {"baseline"}


def test_a_store_that_existed_or_that_another_run_joined_is_kept_after_a_failure(tmp_path):
    existing = tmp_path / "old" / STORE_NAME
    open_store(existing).close()
    with pytest.raises(RuntimeError), run_store(existing) as store:
        store.record_run(_RUN)
        raise RuntimeError("failed")
    assert existing.exists()
    joined = tmp_path / "joined" / STORE_NAME
    with pytest.raises(RuntimeError), run_store(joined) as store:
        store.record_run(_RUN)
        with open_store(joined) as other:  # a concurrent sweep of the same folder recorded its run
            other.record_run(_RUN)
        raise RuntimeError("failed")
    assert joined.exists()
    with run_store(tmp_path / "ok" / STORE_NAME) as store:  # no failure: an empty new store stays
        pass
    assert (tmp_path / "ok" / STORE_NAME).exists()
