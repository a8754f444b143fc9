"""Synthetic trial frames for report tests: :func:`trial_frame` builds baseline, all-layer and per-layer rows
with known counts (baseline 900/1000 top-1, noisy 700, per-layer 800) for one noise model."""

from __future__ import annotations

import json

import polars as pl

from tests._checks import with_accuracy


NOISE = {"bn_variance": "clamp", "keep_zeros": False}


def trial_frame(noise_model: str, params: dict, strengths, *, baselines: int = 1, per_layer: bool = False,
            top5_base: int = 990) -> pl.DataFrame:
    noise = json.dumps({**NOISE, "params": params}, sort_keys=True)
    common = {"model": "net", "model_sha256": "sha", "dataset": "d", "dataset_fingerprint": "fp",
              "preprocess": "{}", "noise_model": noise_model, "noise": noise, "images": 1000, "nan_count": 0,
              "error": None, "provider": "CPUExecutionProvider", "layers": "[]"}
    rows = [{**common, "mode": "baseline", "layer_index": None, "strength": None, "seed": None,
             "top1_correct": 900, "top5_correct": top5_base} for _ in range(baselines)]
    for strength in strengths:
        rows.append({**common, "mode": "all", "layer_index": None, "strength": strength, "seed": 0,
                     "top1_correct": 700, "top5_correct": top5_base})
        if per_layer:
            rows += [{**common, "mode": "per-layer", "layer_index": i, "strength": strength, "seed": 0,
                      "top1_correct": 800, "top5_correct": top5_base} for i in (0, 1)]
    frame = pl.DataFrame(rows, schema_overrides={"layer_index": pl.Int64, "seed": pl.Int64, "error": pl.String,
                                                 "strength": pl.Float64})
    return with_accuracy(frame)
