"""store: schema checks, row round-trip (inf SNR), duplicate keys, and crash safety under SIGKILL."""

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

from onnxnoise.errors import StoreError
from onnxnoise.store.store import SCHEMA_VERSION, TRIAL_COLUMNS, open_store

REPO_ROOT = Path(__file__).resolve().parent.parent

#: A writer that records ``n`` trials whose values are a pure function of the key,
#: skipping keys already stored (what a resumed sweep does).
WORKER = textwrap.dedent(
    """
    import hashlib, math, sys, time
    from onnxnoise.store.store import open_store

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
            "noise_model": "gaussian-snr", "noise": {"bn_variance": "clamp"},
            "snr": math.inf if i == 0 else [100.0, 10.0, 2.5][i % 3],
            "seed": None if i == 0 else i // 17,
            "images": 1000, "top1_correct": top1, "top5_correct": top1 + (h >> 20) % (1001 - top1),
            "nan_count": (h >> 30) % 3, "bn_variance_changed": (h >> 40) % 5,
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
                store.record(r)
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
        store.record({"key": "kept", "mode": "baseline", "snr": math.inf})
    script = tmp_path / "half_write.py"
    script.write_text(textwrap.dedent(
        f"""
        import os, signal, sqlite3
        conn = sqlite3.connect({str(db)!r}, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO trials (key, mode, snr, finished_at) VALUES ('lost', 'all', 1.0, 'x')")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    ))
    proc = subprocess.run([sys.executable, str(script)], check=False)
    assert proc.returncode == -signal.SIGKILL
    with open_store(db) as store:
        assert store.done_keys() == {"kept"}
        store.record({"key": "next", "mode": "all", "snr": 1.0})
        assert store.done_keys() == {"kept", "next"}


def test_round_trip_inf_snr_json_and_derived_columns(tmp_path):
    with open_store(tmp_path / "s.sqlite") as store:
        store.record({
            "key": "k0", "mode": "baseline", "snr": math.inf, "layers": [], "images": 1000,
            "top1_correct": 900, "top5_correct": 990, "preprocess": {"b": 1, "a": [0.5]},
        })
        store.record({"key": "k1", "mode": "all", "snr": 10, "seed": 3, "layers": '["conv1"]', "images": 8,
                      "top1_correct": 2, "top5_correct": 8, "error": None})
        store.record({"key": "k2", "mode": "all", "snr": 5.0, "seed": 0, "error": "SessionError: boom"})
        frame = store.to_frame()
    assert frame["key"].to_list() == ["k0", "k1", "k2"]
    assert frame["snr"][0] == math.inf
    assert frame["noise_pct"].to_list() == [0.0, 10.0, 20.0]
    assert frame["top1_acc"].to_list() == [90.0, 25.0, None]
    assert frame["top5_acc"].to_list() == [99.0, 100.0, None]
    assert frame["preprocess"][0] == '{"a":[0.5],"b":1}'
    assert frame["layers"][1] == '["conv1"]'
    assert frame["seed"].dtype == pl.Int64 and frame["seed"][0] is None
    assert set(TRIAL_COLUMNS) <= set(frame.columns)
    assert frame["finished_at"][0].endswith("+00:00")


def test_duplicate_key_raises_but_failed_trial_may_be_retried(tmp_path):
    with open_store(tmp_path / "s.sqlite") as store:
        counts = {"images": 10, "top1_correct": 5, "top5_correct": 9}
        store.record({"key": "a", "mode": "all", "snr": 10.0, "seed": 0, **counts})
        with pytest.raises(StoreError, match="already recorded"):
            store.record({"key": "a", "mode": "all", "snr": 10.0, "seed": 0})
        store.record({"key": "b", "mode": "all", "snr": 10.0, "seed": 1, "error": "out of memory"})
        assert store.done_keys() == {"a", "b"}
        assert store.done_keys(include_errors=False) == {"a"}
        store.record({"key": "b", "mode": "all", "snr": 10.0, "seed": 1, **counts, "top1_correct": 4})
        frame = store.to_frame()
    assert frame.height == 2
    assert frame.filter(pl.col("key") == "b").select("error", "top1_correct", "top5_correct").row(0) == (None, 4, 9)


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({"key": "a", "mode": "all"}, "needs `snr`"),
        ({"mode": "all", "snr": 1.0}, "needs `key`"),
        ({"key": "a", "mode": "all", "snr": math.nan}, "column `snr`"),
        ({"key": "a", "mode": "all", "snr": 1.0, "images": 1.5}, "column `images` must be an integer"),
        ({"key": "a", "mode": "all", "snr": 1.0, "layers": "not json"}, "column `layers` must be JSON"),
        ({"key": "a", "mode": "all", "snr": 1.0, "top1": 3}, "unknown trials column"),
    ],
)
def test_record_rejects_bad_rows(tmp_path, row, match):
    with open_store(tmp_path / "s.sqlite") as store, pytest.raises(StoreError, match=match):
        store.record(row)


def test_runs_table(tmp_path):
    with open_store(tmp_path / "s.sqlite") as store:
        run = store.record_run({"model": "m", "model_sha256": "s", "preprocess": {"crop": 32}, "config": {"seeds": 2}})
        store.record({"key": "a", "mode": "baseline", "snr": math.inf, "run_id": run})
        runs = store.runs()
    assert runs["run_id"].to_list() == [run]
    assert runs["preprocess"][0] == '{"crop":32}'


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
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}"):
        open_store(newer)

    with pytest.raises(StoreError, match="is a folder"):
        open_store(tmp_path)
    with pytest.raises(StoreError, match="not found"):
        open_store(tmp_path / "missing.sqlite", create=False)


def test_store_settings_and_close(tmp_path):
    path = tmp_path / "nested" / "s.sqlite"
    store = open_store(path)
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.done_keys()
    with open_store(path) as again:  # reopening an existing store works
        assert again.done_keys() == set()
