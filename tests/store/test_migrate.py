"""store migration: a real schema v1 file (written by the frozen v1 writer) is migrated in place to v2."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import sqlite3
import sys
from pathlib import Path
from types import ModuleType

import pytest

from onnxnoise.errors import StoreError
from onnxnoise.store import SCHEMA_VERSION, open_store
from onnxnoise.store.migrate import convert_v1_noise, v1_make_context, v1_trial_key

V1_WRITER = Path(__file__).resolve().parent / "fixtures" / "store_v1.py"

#: The v1 sweep's context for a CIFAR-10 run (``sweep._context`` of version 1).
CONTEXT_ARGS = {
    "model_sha256": "ab" * 32,
    "dataset_fingerprint": "fp-cifar10-test",
    "preprocess": {"crop": 32, "mean": [0.4914, 0.4822, 0.4465], "name": "cifar10"},
    "noise": {"noise_model": "gaussian-snr", "bn_variance": "clamp", "keep_zeros": False},
    "images": 2000,
    "limit": None,
    "output": "logits",
}

#: Trials and the keys that the v1 engine (``onnxnoise.engine.plan`` at commit 20c2449,
#: ``Trial(...).key(make_context(**CONTEXT_ARGS))``) gave them, computed with that code.
V1_TRIALS = [
    ({"mode": "baseline", "layer_index": None, "layers": [], "snr": math.inf, "seed": None},
     "dcf42d8c2e93890fd5c42e0af54fa279c76b756ba54a0b8b77f4a560a7b00a8d"),
    ({"mode": "all", "layer_index": None, "layers": ["conv1", "layer1.0.conv1", "fc"], "snr": 100.0, "seed": 0},
     "a1b7080f16d9d8b1f9f4bf6ad7ef91994013582c85758dded1d547e9fc6d1ae5"),
    ({"mode": "per-layer", "layer_index": 4, "layers": ["layer1.0.conv1"], "snr": 2.5, "seed": 40},
     "5c985386f22cc8b0469d80b95313305968809759f0dd4a6503fd1c2da14cc97a"),
    ({"mode": "cumulative", "layer_index": 2, "layers": ["conv1", "layer1.0.conv1"], "snr": 10, "seed": 1},
     "8e44a023c1d7243360ef73b755d5333b3c54fd2995480fea3ba09aa6ab24147a"),
    ({"mode": "per-layer", "layer_index": 0, "layers": ["conv1é"], "snr": 1e-3, "seed": 7},
     "82dfbec6e7526579b5a1ef9827ac3442cc049ae1eb153b6c9b5b36549e7b71b3"),
]

V1_NOISE = {"noise_model": "gaussian-snr", "bn_variance": "clamp", "keep_zeros": False}
V2_NOISE = '{"bn_variance":"clamp","keep_zeros":false,"params":{}}'


def _load_v1_writer() -> ModuleType:
    name = "_onnxnoise_store_v1"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, V1_WRITER)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def _v1_rows() -> list[dict]:
    """Rows as the v1 sweep recorded them: the five trials above, then a failed trial and two odd ones."""
    rows = []
    for n, (trial, key) in enumerate(V1_TRIALS):
        rows.append({
            "key": key, "model": "resnet20.onnx", "model_sha256": "ab" * 32, "dataset": "cifar10-test",
            "dataset_fingerprint": "fp-cifar10-test", "preprocess": CONTEXT_ARGS["preprocess"], **trial,
            "noise_model": "gaussian-snr", "noise": V1_NOISE, "images": 2000, "top1_correct": 1800 - 100 * n,
            "top5_correct": 1990 - n, "nan_count": n % 2, "bn_variance_changed": n, "seconds": 1.5 + n,
            "provider": "CPUExecutionProvider", "versions": {"onnxnoise": "0.1.0"}, "error": None,
        })
    rows.append({"key": "failed-1", "mode": "all", "layer_index": None, "layers": ["conv1"], "snr": 5.0, "seed": 2,
                 "noise_model": "gaussian-snr", "noise": V1_NOISE, "seconds": 0.25, "error": "SessionError: boom"})
    rows.append({"key": "no-model", "mode": "all", "layers": ["fc"], "snr": 3.0, "seed": 0, "noise_model": None,
                 "noise": {"noise_model": "gaussian-snr", "bn_variance": "keep", "keep_zeros": True, "extra": 1},
                 "images": 10, "top1_correct": 9, "top5_correct": 10})
    rows.append({"key": "bare", "mode": "all", "snr": 4.0, "seed": 0, "images": 10, "top1_correct": 1,
                 "top5_correct": 2})
    return rows


def _write_v1_store(path: Path) -> list[dict]:
    v1 = _load_v1_writer()
    with v1.open_store(path) as store:
        runs = [store.record_run({"model": "resnet20.onnx", "noise_model": "gaussian-snr", "noise": V1_NOISE,
                                  "preprocess": CONTEXT_ARGS["preprocess"], "config": {"seeds": k + 1}})
                for k in range(3)]
        rows = _v1_rows()
        for row in rows:
            store.record({**row, "run_id": runs[1]})
    with sqlite3.connect(path) as conn:  # a deleted run: AUTOINCREMENT must not reuse its id
        conn.execute("DELETE FROM runs WHERE run_id = ?", (runs[2],))
    return rows


def _dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        pragmas = [conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("user_version", "application_id")]
        return [*map(str, pragmas), *conn.iterdump()]


def _meta(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT name, value FROM meta"))


@pytest.fixture
def v1_store(tmp_path) -> tuple[Path, list[dict]]:
    path = tmp_path / "trials.sqlite"
    rows = _write_v1_store(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        assert "snr" in [r[1] for r in conn.execute("PRAGMA table_info(trials)")]
    return path, rows


def test_v1_trial_key_reproduces_the_v1_engine():
    context = v1_make_context(**CONTEXT_ARGS)
    assert context["noise"] == '{"bn_variance":"clamp","keep_zeros":false,"noise_model":"gaussian-snr"}'
    assert (context["images"], context["limit"]) == ("2000", "null")
    for trial, key in V1_TRIALS:
        assert v1_trial_key(trial, context) == key
        # The same trial given as v2 fields (strength None for the baseline; tuple of layers) gives the same key.
        strength = None if trial["mode"] == "baseline" else trial["snr"]
        as_v2 = {**{k: v for k, v in trial.items() if k != "snr"}, "strength": strength,
                 "layers": tuple(trial["layers"])}
        assert v1_trial_key(as_v2, context) == key
    with pytest.raises(StoreError, match="v1 trial key needs"):
        v1_trial_key({"mode": "all"}, context)


def test_v1_store_is_migrated_in_place(v1_store):
    path, rows = v1_store
    with open_store(path) as store:
        frame = store.to_frame()
        runs = store.runs()
        new_run = store.record_run({"model": "resnet20.onnx"})
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
        assert {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} == {
            "trials", "runs", "meta", "sqlite_sequence"}
    meta = _meta(path)
    assert (meta["schema_version"], meta["migrated_from"]) == ("2", "1")
    assert meta["migrated_at"].endswith("+00:00") and meta["created_by"].startswith("onnxnoise ")

    assert frame["key"].to_list() == [r["key"] for r in rows]  # same rows, same order
    for got, old in zip(frame.iter_rows(named=True), rows):
        for column in ("mode", "layer_index", "seed", "images", "top1_correct", "top5_correct", "nan_count",
                       "bn_variance_changed", "seconds", "provider", "error", "model", "model_sha256"):
            assert got[column] == old.get(column), (old["key"], column)
        assert got["strength"] == (None if math.isinf(old["snr"]) else old["snr"])
        assert got["key_version"] == 1 and got["run_id"] == 2
        assert got["layers_noised"] == (len(old["layers"]) if "layers" in old else None)
        for column in ("label_offset", "batch_size", "overflow_count", "clipped_count", "zeros_kept", "context"):
            assert got[column] is None
    by_key = {r["key"]: r for r in frame.iter_rows(named=True)}
    baseline = by_key[V1_TRIALS[0][1]]
    assert (baseline["strength"], baseline["layers"], baseline["layers_noised"]) == (None, "[]", 0)
    assert baseline["top1_acc"] == 90.0
    assert by_key[V1_TRIALS[3][1]]["strength"] == 10.0
    assert by_key["failed-1"]["top1_acc"] is None and by_key["failed-1"]["error"] == "SessionError: boom"
    assert {r["noise"] for k, r in by_key.items() if k not in ("no-model", "bare")} == {V2_NOISE}
    assert by_key["no-model"]["noise"] == '{"bn_variance":"keep","extra":1,"keep_zeros":true,"params":{}}'
    assert by_key["no-model"]["noise_model"] == "gaussian-snr"
    assert (by_key["bare"]["noise_model"], by_key["bare"]["noise"]) == ("gaussian-snr", None)

    assert runs["run_id"].to_list() == [1, 2]
    assert runs["noise"].to_list() == [V2_NOISE, V2_NOISE]
    assert runs["config"].to_list() == ['{"seeds":1}', '{"seeds":2}']
    assert runs["context"].to_list() == [None, None]
    assert new_run == 4  # run 3 was deleted; its id is not reused

    context = v1_make_context(**CONTEXT_ARGS)  # a stored row gives back its own v1 key
    for trial, key in V1_TRIALS:
        assert v1_trial_key(by_key[key], context) == key


def test_second_open_does_nothing(v1_store):
    path, _ = v1_store
    open_store(path).close()
    before = _dump(path)
    meta = _meta(path)
    with open_store(path) as store:  # a writer finds version 2 and migrates nothing
        assert store.to_frame().height == 8
    with open_store(path, create=False) as store:  # nor does a reader
        assert store.to_frame().height == 8
    assert _dump(path) == before
    assert _meta(path) == meta


def test_failed_migration_leaves_the_v1_file_untouched(v1_store):
    path, rows = v1_store
    # SQLite itself fails the migration at its last step, after the v1 tables were renamed, every row
    # was copied and the v1 tables were dropped: recording `migrated_from` in `meta` hits this trigger.
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TRIGGER refuse_migration BEFORE INSERT ON meta WHEN NEW.name = 'migrated_from' "
                     "BEGIN SELECT RAISE(ABORT, 'refused by a trigger\nsecond line'); END")
    conn.close()
    before = _dump(path)
    with pytest.raises(StoreError, match=r"cannot migrate trial store .* from schema version 1 to 2 \(the file is "
                                         r"unchanged\): IntegrityError: refused by a trigger second line") as info:
        open_store(path)
    assert "\n" not in str(info.value)
    assert _dump(path) == before
    with _load_v1_writer().open_store(path) as v1:  # still a working v1 store
        assert v1.done_keys() == {r["key"] for r in rows}

    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER refuse_migration")
    conn.close()
    with open_store(path) as store:
        assert store.to_frame()["key"].to_list() == [r["key"] for r in rows]
    assert _meta(path)["migrated_from"] == "1"


def test_corrupt_v1_row_is_refused_without_change(v1_store):
    path, _ = v1_store
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE trials SET noise = '[1, 2]' WHERE key = 'bare'")
    before = _dump(path)
    with pytest.raises(StoreError, match="the file is unchanged.*ValueError: v1 `noise` must be a JSON object"):
        open_store(path)
    assert _dump(path) == before


def test_adopt_v1_rekeys_the_rows_it_may(v1_store):
    path, _ = v1_store
    baseline, all_, per_layer, cumulative, tiny = (key for _, key in V1_TRIALS)
    planned = {
        baseline: "v2-baseline",
        all_: "v2-all",
        per_layer: "v2-per-layer",      # refused by ok()
        cumulative: "v2-cumulative",    # a finished row already holds this v2 key
        tiny: "v2-tiny",                # a failed row holds this v2 key: the finished v1 row replaces it
        "failed-1": "v2-failed",        # failed rows are offered too
        "not-stored": "v2-missing",
    }
    seen = []

    def ok(row: dict) -> bool:
        seen.append(row["key"])
        assert row["key_version"] == 1 and isinstance(row["noise"], (str, type(None)))
        return row["mode"] != "per-layer" or row["layer_index"] == 0

    with open_store(path) as store:
        assert store.record({"key": "v2-cumulative", "mode": "cumulative", "noise_model": "gaussian-snr",
                             "strength": 10.0, "seed": 1, "images": 2000, "top1_correct": 1, "top5_correct": 2})
        assert store.record({"key": "v2-tiny", "mode": "per-layer", "noise_model": "gaussian-snr",
                             "strength": 0.001, "seed": 7, "error": "killed"})
        assert store.adopt_v1(planned, ok) == 4
        assert sorted(seen) == sorted([baseline, all_, per_layer, cumulative, tiny, "failed-1"])
        frame = store.to_frame()
        by_key = {r["key"]: r for r in frame.iter_rows(named=True)}
        assert store.adopt_v1(planned, ok) == 0  # nothing left to adopt
        assert store.adopt_v1({}, ok) == 0
        with pytest.raises(StoreError, match="`planned` maps v1 keys to v2 keys"):
            store.adopt_v1({"bare": 5}, ok)
    assert set(by_key) == {"v2-baseline", "v2-all", per_layer, cumulative, "v2-cumulative", "v2-tiny", "v2-failed",
                           "no-model", "bare"}
    assert frame.height == 9
    for key in ("v2-baseline", "v2-all", "v2-tiny", "v2-failed"):
        assert by_key[key]["key_version"] == 2
    for key in (per_layer, cumulative, "no-model", "bare"):
        assert by_key[key]["key_version"] == 1
    assert (by_key["v2-baseline"]["strength"], by_key["v2-baseline"]["top1_correct"]) == (None, 1800)
    assert (by_key["v2-tiny"]["error"], by_key["v2-tiny"]["top1_correct"], by_key["v2-tiny"]["seed"]) == (None, 1400, 7)
    assert by_key["v2-failed"]["error"] == "SessionError: boom"
    assert by_key["v2-cumulative"]["top1_correct"] == 1  # the v2 row was kept
    assert by_key[cumulative]["top1_correct"] == 1500


def test_adopt_v1_keeps_everything_when_ok_raises(v1_store):
    path, _ = v1_store

    def ok(row: dict) -> bool:
        raise RuntimeError("engine bug")

    with open_store(path) as store:
        before = store.to_frame()
        with pytest.raises(RuntimeError, match="engine bug"):
            store.adopt_v1({V1_TRIALS[0][1]: "v2"}, ok)
        assert store.to_frame().equals(before)


def test_convert_v1_noise():
    assert convert_v1_noise(json.dumps(V1_NOISE)) == V2_NOISE
    assert convert_v1_noise(None) is None
    assert convert_v1_noise('{"params":{"a":1},"noise_model":"x"}') == '{"params":{"a":1}}'


def test_reader_open_migrates_too(v1_store, tmp_path):
    path, _ = v1_store
    copy = tmp_path / "copy" / "trials.sqlite"
    copy.parent.mkdir()
    shutil.copy(path, copy)
    with open_store(copy, create=False) as store:  # readers (reports) migrate too
        assert store.to_frame()["strength"].null_count() == 1
    with sqlite3.connect(copy) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2


def _open_and_record(name: str, path: str, barrier, results) -> None:
    try:
        barrier.wait(timeout=60)
        with open_store(path) as store:
            stored = store.record({"key": f"new-{name}", "mode": "all", "noise_model": "gaussian-snr",
                                   "strength": 10.0, "seed": 0, "images": 1, "top1_correct": 1, "top5_correct": 1})
        results.put((name, stored, None))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put((name, False, f"{type(exc).__name__}: {exc}"))


def test_two_processes_open_a_v1_store_at_once(v1_store):
    import multiprocessing

    path, rows = v1_store
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_open_and_record, args=(name, str(path), barrier, results)) for name in "abc"]
    for proc in procs:
        proc.start()
    reports = sorted(results.get(timeout=120) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
    assert reports == [("a", True, None), ("b", True, None), ("c", True, None)]
    with open_store(path) as store:
        frame = store.to_frame()
    assert frame.height == len(rows) + 3
    assert frame["key_version"].to_list() == [1] * len(rows) + [2] * 3
    assert _meta(path)["migrated_from"] == "1"
