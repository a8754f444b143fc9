"""A store written by onnxnoise before schema 2 (commit 57a93dd) opens, is migrated in place, and resumes.

``tests/store/fixtures/demo_sweep_v1.sqlite`` was written by that version's own CLI::

    onnxnoise sweep models/demo/fashion_mnist_cnn.onnx --data models/demo/fashion_mnist_test1000.npz \\
        --mode all,per-layer --snr 5 --seeds 1 --limit 300

(onnxruntime 1.32.0, CPU execution provider). Resuming the same sweep adopts every stored trial when
the facts the v1 key left out agree (provider, onnxruntime version, label offset 0), and re-runs them
otherwise; either way the counts are the ones this engine computes.
"""

from __future__ import annotations

import json
import shutil

import onnxruntime as ort
import polars as pl

from onnxnoise.config import NoiseConfig, RunConfig, SweepConfig
from onnxnoise.store import SCHEMA_VERSION, open_store
from onnxnoise.sweep import run_sweep

COUNTS = ["mode", "layer_index", "strength", "seed", "top1_correct", "top5_correct", "nan_count"]


def test_v1_store_migrates_and_resumes(tmp_path, repo_root, demo_files):
    model, data = demo_files
    path = tmp_path / "trials.sqlite"
    shutil.copy(repo_root / "tests/store/fixtures/demo_sweep_v1.sqlite", path)
    config = SweepConfig(RunConfig(model=model, data=data, noise=NoiseConfig(strengths=(5.0,), seeds=1),
                                   limit=300, device="cpu"), modes=("all", "per-layer"))
    with open_store(path) as store:
        stored = store.to_frame()
        assert store.pragma("user_version") == SCHEMA_VERSION
        result = run_sweep(config, store)
        after = store.to_frame()
    assert stored.height == 8 and stored["key_version"].to_list() == [1] * 8
    v1_ort = json.loads(stored["versions"][0])["onnxruntime"]
    if v1_ort == ort.__version__:
        assert (result.adopted, result.done, result.ran) == (8, 8, 0)
        assert after["key_version"].to_list() == [2] * 8
    else:  # another onnxruntime may count differently: the old rows are not reused
        assert (result.adopted, result.ran) == (0, 8)
    # What is stored now equals a fresh run of the same sweep by this engine.
    with open_store(tmp_path / "fresh.sqlite") as fresh:
        run_sweep(config, fresh)
        expected = fresh.to_frame()
    current = after.filter(pl.col("key_version") == 2).select(COUNTS).sort(COUNTS[:4], nulls_last=False)
    assert current.equals(expected.select(COUNTS).sort(COUNTS[:4], nulls_last=False))
    base = current.filter(pl.col("mode") == "baseline")["top1_correct"].to_list()
    assert base == [280]  # the demo CNN on its 300-image stratified subset (93.3%)
