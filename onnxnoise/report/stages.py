"""The analog tile's input/output stages in words: which are on, and what fraction each clipped.

One line for bench's and sweep's terminal summary and for report.md, e.g. ``input/output stages:
8-bit DAC, 8-bit ADC (one range per tile); ranges calibrated (max) on the first 500 evaluation images,
clean model; clipped: DAC 0.12% of 1,000,000 inputs, ADC 0.0312% of 922,600 outputs``. The fractions are
the trial columns ``dac_clipped / dac_values`` and ``adc_clipped / adc_values`` summed over the trials with
stages.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from onnxnoise.lazy import lazy_module
from onnxnoise.settings import declared
from onnxnoise.tile_config import TileConfig

pl = lazy_module("polars")

__all__ = ["stages_text", "clipped_text", "stages_line", "stages_lines", "add_clipped_fractions"]


def stages_text(tile: Mapping[str, Any]) -> str:
    """The stages that are on, in words, from the tile settings (``TileSettings.to_dict()``); ``""`` when none."""
    parts = []
    if tile.get("dac_bits"):
        parts.append(f"{tile['dac_bits']}-bit DAC")
    if tile.get("adc_bits"):
        column = tile.get("adc_scope") == "column"
        scope = "per tile and output column" if column else "one range per tile"
        fixed = f"fixed range +-{tile.get('adc_bound') or 0:g} x_max*w_max per tile" + (" and output column" if column
                                                                                        else "")
        bound = fixed if tile.get("adc_bound") else scope
        parts.append(f"{tile['adc_bits']}-bit ADC ({bound})")
    if tile.get("read_noise"):
        parts.append(f"read noise {tile['read_noise']:g} x_max*w_max")
    if tile.get("tile_rows"):
        parts.append(f"tiles of {tile['tile_rows']} rows")
    if not parts:
        return ""
    if len(parts) == 1 and tile.get("tile_rows"):  # a split alone: partial sums added in float, no ranges
        return parts[0] + " (partial sums added in float, no converters)"
    if tile.get("dac_bound"):
        parts.append(f"DAC range fixed +-{tile['dac_bound']:g}")
        if not tile.get("adc_bits") or tile.get("adc_bound"):  # no range measured (TileSettings.measures)
            return ", ".join(parts) + "; no range calibrated"
    how = "max" if tile.get("calibration", "max") == "max" else f"{tile.get('percentile', 99.99):g}th percentile"
    images = tile.get("calibrated_on")
    images = f"the first {images:,}" if images else f"up to the first {tile.get('calibration_images', 500):,}"
    return ", ".join(parts) + f"; ranges calibrated ({how}) on {images} evaluation images, clean model"


def clipped_text(totals: Mapping[str, Any]) -> str:
    """``DAC 0.12% of 1,000,000 inputs, ADC 0.0312% of 922,600 outputs`` from counter totals (``""``: none)."""
    parts = []
    for kind, what in (("dac", "inputs"), ("adc", "outputs")):
        values, clipped = totals.get(f"{kind}_values") or 0, totals.get(f"{kind}_clipped") or 0
        if values:
            parts.append(f"{kind.upper()} {100.0 * clipped / values:.3g}% of {values:,} {what}")
    return ", ".join(parts)


def stages_line(tile: Mapping[str, Any] | None, totals: Mapping[str, Any]) -> str | None:
    """One line: the stages that are on and the clipped fractions; ``None`` when no stage is on."""
    text = stages_text(tile or {})
    if not text:
        return None
    clipped = clipped_text(totals)
    return f"input/output stages: {text}" + (f"; clipped: {clipped}" if clipped else "")


def _tile_from_settings(settings: str | None) -> dict[str, Any]:
    """The tile settings of a row's ``settings`` JSON (the keys not given take their defaults)."""
    given = json.loads(settings) if settings else {}
    keys = {s.key: f.name for s, f in zip(declared(TileConfig), fields(TileConfig))}
    tile = TileConfig().to_dict()
    tile.update({keys[k]: v for k, v in given.items() if k in keys})
    return tile


def stages_lines(trials: pl.DataFrame) -> list[str]:
    """One :func:`stages_line` per distinct tile setting among ``trials`` rows that ran with stages."""
    if "dac_values" not in trials.columns or "settings" not in trials.columns:
        return []
    staged = trials.filter(pl.col("dac_values").is_not_null())
    lines = []
    for (settings,), part in staged.group_by(["settings"], maintain_order=True):
        totals = {c: int(part[c].fill_null(0).sum()) for c in ("dac_clipped", "dac_values", "adc_clipped",
                                                               "adc_values")}
        line = stages_line(_tile_from_settings(settings), totals)
        if line:
            lines.append(line)
    return lines


def add_clipped_fractions(summary: pl.DataFrame) -> pl.DataFrame:
    """``summary`` with ``dac_clipped_pct`` and ``adc_clipped_pct`` (percent of the values through each
    converter, summed over the group's draws; null where none went through), when it has the counters."""
    out = summary
    for kind in ("dac", "adc"):
        values, clipped = f"{kind}_values", f"{kind}_clipped"
        if values in out.columns and clipped in out.columns:
            out = out.with_columns(pl.when(pl.col(values) > 0).then(100.0 * pl.col(clipped) / pl.col(values))
                                   .otherwise(None).alias(f"{kind}_clipped_pct"))
    return out
