"""Calibrated ranges of the tile stages, kept with a run: per layer the DAC range and each tile's ADC range.

A :class:`Calibration` is made once per run by :func:`onnxnoise.tile.calibrate` and reused by every
trial; :meth:`Calibration.fingerprint` goes in the trial keys, so a trial measured with other
ranges is never taken for this one. ``to_dict`` / ``from_dict`` round-trip every float bit for
bit (JSON numbers written with Python's shortest round-tripping ``repr``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Calibration", "LayerRanges"]


@dataclass(frozen=True)
class LayerRanges:
    """The ranges of one layer's stages.

    Attributes:
        x_max: DAC range: inputs are clipped to ``[-x_max, x_max]`` (activation units); 0 = a dead
            input, left exact.
        adc: Per tile, the ADC range(s) of its partial sum (output units): one value under
            ``adc_scope = "layer"``, one per output column under ``"column"``; 0 = exact there.
    """

    x_max: float
    adc: tuple[tuple[float, ...], ...]

    def to_dict(self) -> dict:
        """JSON-ready dict: ``{"x_max": float, "adc": [[float, ...], ...]}``."""
        return {"x_max": float(self.x_max), "adc": [[float(v) for v in tile] for tile in self.adc]}

    @classmethod
    def from_dict(cls, d: Mapping) -> LayerRanges:
        """Inverse of :meth:`to_dict`."""
        return cls(float(d["x_max"]), tuple(tuple(float(v) for v in tile) for tile in d["adc"]))


@dataclass(frozen=True)
class Calibration:
    """The ranges of every analog layer and how they were made.

    Attributes:
        method: ``"max"`` or ``"percentile"`` (of |value| over the calibration images).
        percentile: The percentile (used with ``"percentile"``).
        adc_scope: ``"layer"`` or ``"column"``.
        tile_rows: The ``R`` the tiles were cut with (0: one tile per layer).
        adc_bound: 0 when the ADC ranges were calibrated, else the fixed bound they were
            computed from (``adc_bound * x_max * w_max``).
        images: Calibration images seen (0: nothing was measured, every range fixed by the settings).
        layers: Ranges by layer name, in graph order.
        dac_bound: 0 when each layer's ``x_max`` was calibrated, else the fixed ``x_max`` of every
            layer (:attr:`onnxnoise.tile.TileSettings.dac_bound`); in :meth:`to_dict` (and so in
            the fingerprint) only when set, so the fingerprints of earlier calibrations stay valid.
    """

    method: str
    percentile: float
    adc_scope: str
    tile_rows: int
    adc_bound: float
    images: int
    layers: Mapping[str, LayerRanges] = field(default_factory=dict)
    dac_bound: float = 0.0

    @property
    def dead(self) -> tuple[str, ...]:
        """One line per range that came out 0 (the stage is left exact there), e.g. ``"fc: DAC input"``."""
        lines = []
        for name, ranges in self.layers.items():
            if ranges.x_max <= 0:
                lines.append(f"{name}: DAC input")
            for t, tile in enumerate(ranges.adc):
                zeros = sum(v <= 0 for v in tile)
                if zeros == len(tile):
                    lines.append(f"{name}: tile {t} ADC")
                elif zeros:
                    lines.append(f"{name}: tile {t} ADC, {zeros} of {len(tile)} columns")
        return tuple(lines)

    def check(self, settings) -> None:
        """Refuse stages whose settings differ from the ones these ranges were made with.

        Args:
            settings: A :class:`onnxnoise.tile.TileSettings`.

        Raises:
            ValueError: One line naming the first setting that differs.
        """
        made = {"tile_rows": self.tile_rows, "adc_scope": self.adc_scope, "adc_bound": self.adc_bound,
                "dac_bound": self.dac_bound, "calibration": self.method}
        if self.method == "percentile":
            made["percentile"] = self.percentile
        for name, value in made.items():
            if getattr(settings, name) != value:
                msg = (f"the calibration was made with {name} = {value!r}, the stages have "
                       f"{getattr(settings, name)!r}; recalibrate with the stages' settings")
                raise ValueError(msg)

    def ranges(self, layer: str, tiles: int, width: int) -> LayerRanges:
        """The ranges of ``layer``, checked against its tiling (``tiles`` tiles of ``width`` values each).

        Raises:
            ValueError: The layer is missing or was calibrated with other tile settings.
        """
        if layer not in self.layers:
            msg = f"the calibration has no ranges for layer {layer!r}; calibrate with the same layers"
            raise ValueError(msg)
        ranges = self.layers[layer]
        if len(ranges.adc) != tiles or any(len(tile) != width for tile in ranges.adc):
            msg = (f"the calibration of layer {layer!r} has {len(ranges.adc)} tile(s) of "
                   f"{len(ranges.adc[0]) if ranges.adc else 0} range(s), the stages need {tiles} of {width}; "
                   "recalibrate with the same tile_rows and adc_scope")
            raise ValueError(msg)
        return ranges

    def to_dict(self) -> dict:
        """JSON-ready dict (floats as JSON numbers, lossless; ``dac_bound`` only when set)."""
        d = {"method": self.method, "percentile": float(self.percentile), "adc_scope": self.adc_scope,
             "tile_rows": int(self.tile_rows), "adc_bound": float(self.adc_bound), "images": int(self.images),
             "layers": {name: r.to_dict() for name, r in self.layers.items()}}
        if self.dac_bound:
            d["dac_bound"] = float(self.dac_bound)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> Calibration:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: A field is missing or of the wrong type.
        """
        try:
            return cls(str(d["method"]), float(d["percentile"]), str(d["adc_scope"]), int(d["tile_rows"]),
                       float(d["adc_bound"]), int(d["images"]),
                       {str(k): LayerRanges.from_dict(v) for k, v in d["layers"].items()},
                       float(d.get("dac_bound", 0.0)))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            msg = f"not a tile calibration (to_dict of onnxnoise.tile.Calibration): {exc!r}"
            raise ValueError(msg) from exc

    def fingerprint(self) -> str:
        """sha256 (hex) of the canonical JSON of :meth:`to_dict` (sorted keys, no spaces)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
