"""The results table in timm's style: one row per model and noise strength.

timm's ``validate.py`` writes one row per model (``model, top1, top1_err, top5, top5_err, param_count,
img_size, crop_pct, interpolation``); onnxnoise writes the same columns, one row for each model's clean
baseline and one for each whole-model noise strength, with the noise, the strength and the interval
beside them. ``report`` and ``bench`` write it as ``results.parquet`` / ``results.csv`` next to the full
tables (docs/outputs.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from onnxnoise import __version__
from onnxnoise.lazy import lazy_module
from onnxnoise.report.nested import json_rows
from onnxnoise.report.strength import series_settings_text

pl = lazy_module("polars")

__all__ = ["RESULT_COLUMNS", "result_schema", "results_table", "facts_by_model", "report_json"]

#: Columns of :func:`results_table`, in order, with their Polars dtypes by name (names, so that importing
#: this module does not import Polars; :func:`result_schema` gives the dtypes).
RESULT_COLUMNS: dict[str, str] = {
    "model": "String", "top1": "Float64", "top1_err": "Float64", "top5": "Float64", "top5_err": "Float64",
    "param_count": "Float64", "img_size": "Int64", "crop_pct": "Float64", "interpolation": "String",
    "noise": "String", "strength": "Float64", "strength_text": "String", "top1_ci_half": "Float64",
    "top5_ci_half": "Float64", "ci_level": "Float64", "seeds": "Int64", "images": "Int64", "dataset": "String",
}


def result_schema() -> pl.Schema:
    """The Polars schema of :func:`results_table` (:data:`RESULT_COLUMNS` with their dtypes)."""
    return pl.Schema({name: getattr(pl, dtype) for name, dtype in RESULT_COLUMNS.items()})


def facts_by_model(records: list[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``model_sha256 -> {"params_total", "input_size"}`` from run facts (bench's meta, a sweep run's config).

    Args:
        records: Dicts with ``model_sha256`` and, when known, ``params_total`` (int) and ``input_size``
            (``[height, width]`` of a static image input); later records fill what earlier ones lack.
    """
    out: dict[str, dict[str, Any]] = {}
    for record in records:
        seen = out.setdefault(record.get("model_sha256"), {})
        for key in ("params_total", "input_size"):
            if seen.get(key) is None and record.get(key) is not None:
                seen[key] = record[key]
    return out


def results_table(summary: pl.DataFrame, facts: Mapping[str, Mapping[str, Any]]) -> pl.DataFrame:
    """One row per model's clean baseline and per whole-model strength, in timm's ``validate.py`` columns.

    Args:
        summary: :func:`onnxnoise.report.stats.summarize_trials` of the trials (``preprocess`` and ``noise`` as
            JSON text); rows of mode ``baseline`` and ``all`` are used, per-layer and cumulative rows are not
            (their per-model number is ``A_avr``, ``a_avr.parquet``).
        facts: :func:`facts_by_model` of the runs.

    Returns:
        :data:`RESULT_COLUMNS`, in the summary's order, one baseline row per model whatever the noise: ``top1`` /
        ``top5`` the mean accuracy over seeds (percent), ``top1_err = 100 - top1`` and ``top5_err = 100 - top5``
        (percent; these four rounded to 4 decimals as timm does), ``param_count`` the parameters of the model's
        weight layers in millions (timm rounds to 2 decimals; this is not rounded), ``img_size`` the side of the
        image fed (the crop, else the resize, else the model's static input height when square; null when none is
        known), ``crop_pct`` (the preprocessing's, else crop / resize of square sides; null: no crop) and
        ``interpolation``, ``noise`` the noise model
        with its settings that differ from their defaults (``pcm:compensation=global``; ``clean`` for the clean
        baseline), ``strength`` (null for the baseline) and ``strength_text``, ``top1_ci_half`` / ``top5_ci_half``
        the Student t half-widths over seeds at ``ci_level`` (null with one seed), ``seeds`` (successful draws),
        ``images`` and ``dataset``.
    """
    rows = summary.filter(pl.col("mode").is_in(["baseline", "all"]))
    if rows.is_empty():
        return pl.DataFrame(schema=result_schema())
    settings = series_settings_text(rows["noise"], rows["noise_model"]) if "noise" in rows.columns else \
        [""] * rows.height
    out = []
    for row, own in zip(rows.iter_rows(named=True), settings):
        clean = row["mode"] == "baseline"
        pre = _object(row.get("preprocess"))
        fact = facts.get(row.get("model_sha256"), {})
        top1, top5 = row["top1_acc_mean"], row["top5_acc_mean"]
        params = fact.get("params_total")
        out.append({
            "model": row["model"], "top1": _round(top1), "top1_err": _round(None if top1 is None else 100.0 - top1),
            "top5": _round(top5), "top5_err": _round(None if top5 is None else 100.0 - top5),
            "param_count": None if params is None else params / 1e6,
            "img_size": _img_size(pre, fact.get("input_size")),
            "crop_pct": _crop_pct(pre), "interpolation": pre.get("interpolation"),
            "noise": "clean" if clean else str(row["noise_model"]) + (f":{own.replace(', ', ',')}" if own else ""),
            "strength": None if clean else row["strength"],
            "strength_text": "clean" if clean else row["strength_text"],
            "top1_ci_half": row["top1_acc_ci_half"], "top5_ci_half": row["top5_acc_ci_half"],
            "ci_level": row["ci_level"], "seeds": row["seeds"], "images": row["images"], "dataset": row["dataset"],
        })
    return pl.DataFrame(out, schema=result_schema(), orient="row").unique(maintain_order=True)


def _round(value: float | None) -> float | None:
    """To 4 decimals, as timm's ``validate.py`` rounds its accuracies."""
    return None if value is None else round(value, 4)


def _object(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return json.loads(value)
    return dict(value) if isinstance(value, Mapping) else {}


def _side(value: Any) -> int | None:
    """A square size (``224`` or ``[224, 224]``) as one side; ``None`` otherwise."""
    if isinstance(value, int):
        return value
    if isinstance(value, list) and len(value) == 2 and value[0] == value[1]:
        return int(value[0])
    return None


def _crop_pct(pre: Mapping[str, Any]) -> float | None:
    """timm's ``crop_pct``: the preprocessing's own, else ``crop / resize`` when both are square sides (resize 256,
    crop 224: 0.875); ``None`` without a crop."""
    if pre.get("crop_pct") is not None:
        return float(pre["crop_pct"])
    crop, resize = _side(pre.get("crop")), _side(pre.get("resize"))
    return crop / resize if crop and resize else None


def _img_size(pre: Mapping[str, Any], input_size: list[int] | None) -> int | None:
    for key in ("crop", "resize"):
        side = _side(pre.get(key))
        if side is not None:
            return side
    if input_size and len(input_size) == 2 and input_size[0] == input_size[1]:
        return int(input_size[0])
    return None


def report_json(results: pl.DataFrame, a_avr: pl.DataFrame | None, warnings: Sequence[str], out: Path,
                files: Sequence[Path]) -> dict[str, Any]:
    """What ``report --json`` prints: the results table, ``A_avr``, the warnings and the files written.

    Keys: ``tool``, ``version``, ``out_dir``, ``results`` (:func:`results_table`'s rows), ``a_avr`` (the
    per-layer sweeps' ``A_avr`` rows, settings as objects; ``[]`` without per-layer trials), ``warnings``
    (one line each) and ``files`` (paths written, relative to ``out_dir``). Non-finite numbers are written
    as ``null`` by :func:`onnxnoise.strict_json.json_text`.
    """
    return {"tool": "onnxnoise report", "version": __version__, "out_dir": str(out),
            "results": results.to_dicts(), "a_avr": [] if a_avr is None else json_rows(a_avr),
            "warnings": list(warnings), "files": sorted(str(p.relative_to(out)) for p in files)}
