"""Synthetic trial frames for report tests, with known counts.

:func:`trial_frame`: one seed, baseline 900/1000 top-1, noisy 700, per-layer 800, for any noise model and
parameters. :func:`seeded_trial_frame`: baseline 90 %, mode ``all`` and per-layer over 2 layers with 2 seeds.
:func:`layer_frame`: per-layer (and mode ``all``) draws with given hits and paired counts, for blame tables and
comparisons.
"""

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


#: The ``noise`` column of a gaussian-snr trial (default policies, no parameters).
GAUSS = json.dumps({"bn_variance": "clamp", "keep_zeros": False, "params": {}}, sort_keys=True)
#: The ``noise`` column of a ``test-drift`` trial (tests/_noise_models.py) with ``nu = 0.1``.
DRIFT = json.dumps({"bn_variance": "clamp", "keep_zeros": False, "params": {"nu": 0.1}}, sort_keys=True)


def seeded_trial_frame(noise_model: str = "gaussian-snr", noise: str = GAUSS, strengths=(10.0, 100.0), *,
            clipped: int = 0, model: str = "net") -> pl.DataFrame:
    """Baseline 90 %; mode 'all' with 2 seeds; per-layer over 2 layers with 2 seeds."""
    common = {"model": model, "model_sha256": f"sha-{model}", "dataset": "d", "dataset_fingerprint": "fp",
              "preprocess": '{"crop":32}', "noise_model": noise_model, "noise": noise, "images": 1000,
              "nan_count": 0, "bn_variance_changed": 0, "overflow_count": 0, "clipped_count": clipped,
              "zeros_kept": 0, "error": None, "provider": "CPUExecutionProvider", "layers": "[]"}
    rows = [{**common, "mode": "baseline", "layer_index": None, "strength": None, "seed": None,
             "top1_correct": 900, "top5_correct": 990, "clipped_count": 0}]
    for i, strength in enumerate(strengths):
        for seed in (0, 1):
            rows.append({**common, "mode": "all", "layer_index": None, "strength": strength, "seed": seed,
                         "top1_correct": 600 + 100 * i + 20 * seed, "top5_correct": 980})
            for layer in (0, 1):
                rows.append({**common, "mode": "per-layer", "layer_index": layer, "strength": strength,
                             "seed": seed, "top1_correct": 700 + 50 * layer + 10 * i, "top5_correct": 990})
    frame = pl.DataFrame(rows, schema_overrides={"layer_index": pl.Int64, "seed": pl.Int64, "error": pl.String,
                                                 "strength": pl.Float64})
    return with_accuracy(frame)


#: The ``noise`` column of pcm trials without and with drift compensation (the other parameters default).
PCM_NONE = json.dumps({"bn_variance": "clamp", "keep_zeros": False, "params": {"compensation": "none"}},
                      sort_keys=True)
PCM_GLOBAL = json.dumps({"bn_variance": "clamp", "keep_zeros": False, "params": {"compensation": "global"}},
                        sort_keys=True)


def draws_frame(groups: dict[float, list[int]], *, noise_model: str = "gaussian-snr", noise: str = GAUSS,
                clean: int = 900, images: int = 1000) -> pl.DataFrame:
    """A baseline of ``clean`` top-1 hits of ``images`` and, per strength, one mode-``all`` draw per count.

    ``groups`` maps a strength to the top-1 hits of its draws (seeds 0, 1, ...), so every accuracy is known
    exactly: with 10 classes, chance is 10% and ``100`` hits of 1000 is a draw at chance.
    """
    common = {"model": "net", "model_sha256": "sha", "dataset": "d", "dataset_fingerprint": "fp",
              "preprocess": "{}", "noise_model": noise_model, "noise": noise, "images": images, "nan_count": 0,
              "error": None, "provider": "CPUExecutionProvider", "layers": "[]", "top5_correct": images}
    rows = [{**common, "mode": "baseline", "layer_index": None, "strength": None, "seed": None, "top1_correct": clean}]
    rows += [{**common, "mode": "all", "layer_index": None, "strength": strength, "seed": seed, "top1_correct": hits}
             for strength, draws in groups.items() for seed, hits in enumerate(draws)]
    frame = pl.DataFrame(rows, schema_overrides={"layer_index": pl.Int64, "seed": pl.Int64, "error": pl.String,
                                                 "strength": pl.Float64})
    return with_accuracy(frame)


def layer_frame(per_layer: dict[tuple[float, int], list[int]], *, whole: dict[float, list[int]] | None = None,
                clean: int = 900, images: int = 1000, model: str = "net", gained: int = 0,
                names: dict[int, str] | None = None, counters: dict[tuple[float, int], dict] | None = None,
                noise: str = GAUSS) -> pl.DataFrame:
    """A baseline of ``clean`` top-1 hits, per-layer draws and optionally mode-``all`` draws, with paired counts.

    ``per_layer`` maps ``(strength, layer index)`` to the top-1 hits of its draws (seeds 0, 1, ...);
    ``whole`` maps a strength to its mode-``all`` draws. Every draw gains ``gained`` images and loses
    ``clean - hits + gained`` (so ``lost - gained`` is the drop in images). ``names`` names the layers
    (default ``conv<i>``); ``counters`` adds per-row values (e.g. ``bn_variance_changed``, ``nan_count``)
    to the draws of a ``(strength, layer)``.
    """
    common = {"model": model, "model_sha256": f"sha-{model}", "dataset": "d", "dataset_fingerprint": "fp",
              "preprocess": "{}", "noise_model": "gaussian-snr", "noise": noise, "images": images,
              "nan_count": 0, "bn_variance_changed": 0, "error": None, "provider": "CPUExecutionProvider",
              "top5_correct": images, "flips": 0, "gained_top1": 0, "lost_top1": 0}
    rows = [{**common, "mode": "baseline", "layer_index": None, "strength": None, "seed": None,
             "top1_correct": clean, "layers": "[]"}]
    for (strength, layer), draws in per_layer.items():
        name = (names or {}).get(layer, f"conv{layer}")
        for seed, hits in enumerate(draws):
            rows.append({**common, "mode": "per-layer", "layer_index": layer, "strength": strength, "seed": seed,
                         "top1_correct": hits, "layers": json.dumps([name]), "gained_top1": gained,
                         "lost_top1": clean - hits + gained, "flips": clean - hits + 2 * gained,
                         **(counters or {}).get((strength, layer), {})})
    for strength, draws in (whole or {}).items():
        rows += [{**common, "mode": "all", "layer_index": None, "strength": strength, "seed": seed,
                  "top1_correct": hits, "layers": "[]", "gained_top1": gained, "lost_top1": clean - hits + gained,
                  "flips": clean - hits + 2 * gained} for seed, hits in enumerate(draws)]
    frame = pl.DataFrame(rows, schema_overrides={"layer_index": pl.Int64, "seed": pl.Int64, "error": pl.String,
                                                 "strength": pl.Float64})
    return with_accuracy(frame)
