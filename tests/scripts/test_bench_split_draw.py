"""scripts/bench_split_draw.py: the version-3 split it times against, and one small run of every comparison."""

from __future__ import annotations

import json

import numpy as np
import pytest

import onnxnoise.noise.rng as rng_module


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("bench_split_draw")


def test_the_ziggurat_side_is_the_chunk_generators_standard_normal(bench, monkeypatch):
    """Chunks of 1,000: 2,500 values are chunk 0, 1 and half of 2's ziggurat draws, whatever the thread count."""
    monkeypatch.setattr(bench, "SPLIT_CHUNK_ELEMENTS", 1000)
    expected = np.concatenate([rng_module.chunk_rng(4, "w", i).standard_normal(n, dtype=np.float32)
                               for i, n in enumerate((1000, 1000, 500))])
    for threads in (1, 2):
        got = bench.ziggurat_split(4, "w", 2500, threads)
        assert got.dtype == np.float32 and np.array_equal(got, expected)


def test_interleaved_min_keeps_each_sides_fastest_round_per_value(bench, monkeypatch):
    """Fake clock: box_muller rounds take 2, 1, 3 s and ziggurat 6, 9, 4 s over 1e9 values: minimums 1 and 4 ns."""
    ticks = iter([0, 2, 10, 16, 20, 29, 30, 31, 40, 43, 50, 54])  # rounds alternate: bm, zg; zg, bm; bm, zg
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(ticks))
    calls = []
    got = bench.interleaved_min({"box_muller": lambda r: calls.append(("bm", r)),
                                 "ziggurat": lambda r: calls.append(("zg", r))}, 3, 10**9)
    assert calls == [("bm", 0), ("zg", 0), ("zg", 1), ("bm", 1), ("bm", 2), ("zg", 2)]
    assert got == pytest.approx({"box_muller": 1.0, "ziggurat": 4.0, "ratio": 4.0})


def test_one_small_run_reports_every_comparison(bench, capsys):
    assert bench.main(["--chunk-log2", "12", "--split-log2", "13", "--repeats", "2", "--threads", "1", "2",
                       "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert sorted(out) == ["chunk float32", "chunk float64", "split float32, 1 thread(s)", "split float32, 2 thread(s)"]
    for row in out.values():
        assert row["box_muller"] > 0 and row["ziggurat"] > 0
        assert row["ratio"] == pytest.approx(row["ziggurat"] / row["box_muller"])
