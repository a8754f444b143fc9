"""The analog tile's input/output stages in a run: calibrated once, kept with the run, applied per trial.

When a stage is on (``--dac-bits``, ``--adc-bits``, ``--read-noise``; :class:`onnxnoise.tile_config.TileConfig`),
:func:`prepare_stages` calibrates the DAC/ADC ranges of the selected layers once per run, on the clean
model and the first ``--calibration-images`` images of the evaluation data
(:func:`onnxnoise.tile.calibrate.calibrate`), and keeps the result next to the run's store
(:data:`CALIBRATION_FILE`, one entry per calibration input: model, data, preprocessing, layers,
tile settings), so a resumed run reuses it instead of measuring again; its fingerprint enters every
trial key (:meth:`onnxnoise.engine.context.RunContext.key_fields`). The field calibrates on a small
clean subset of the evaluation images; CrossSim calibrates on 500 training images. With a fixed DAC
range (``--dac-bound``) and no calibrated ADC range (:attr:`TileSettings.measures
<onnxnoise.tile.settings.TileSettings.measures>` False) the ranges follow from the settings and the
weights: no calibration run, nothing kept, ``images = 0``; the fingerprint still enters the keys.

Every noisy trial then applies the stages to the layers it noises (the clean baseline stays the
float model: the reference of normalized accuracy and of the paired counts): :func:`stage_edit`
gives the :class:`~onnxnoise.engine.graph_edit.GraphEdit` of a trial, keyed by (layers, seed), that
the session factories (full model and prefix-reuse suffix alike) apply to their skeleton
(:func:`onnxnoise.tile.rewrite.insert_stages`, read-noise seed from the trial's seed).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxnoise.engine.evaluate import EvalSet
from onnxnoise.engine.graph_edit import GraphEdit
from onnxnoise.errors import ConfigError, DataError
from onnxnoise.files import write_text
from onnxnoise.model import Layer
from onnxnoise.strict_json import parse_json
from onnxnoise.tile.calibrate import Calibration, calibrate
from onnxnoise.tile.rewrite import insert_stages
from onnxnoise.tile.settings import TileSettings

__all__ = ["CALIBRATION_FILE", "STAGE_COUNTERS", "RunStages", "prepare_stages", "stage_edit", "calibration_batches"]

#: File of a run folder holding the calibrations of its runs with stages (JSON, by calibration input).
CALIBRATION_FILE = "calibration.json"

#: The counters a staged graph reports (graph outputs summed per trial; trial columns of source ``stages``).
STAGE_COUNTERS: tuple[str, ...] = ("dac_clipped", "dac_values", "adc_clipped", "adc_values")


@dataclass
class RunStages:
    """The stages of one run: settings, the calibration every trial reuses, and the rewrite.

    Attributes:
        settings: The tile settings (:meth:`onnxnoise.tile_config.TileConfig.settings`).
        calibration: The calibrated ranges of the selected layers; ``None`` when no stage needs
            ranges (a tile split alone, :attr:`TileSettings.needs_calibration`).
        layers: Selected layers by name (the layers a trial may stage).
        weights: Clean initializers ``name -> array`` (shapes and values of the weights the
            skeleton lacks).
        reused: Whether the calibration was read from :data:`CALIBRATION_FILE` (not measured now).
        images: Images the calibration used (``calibration_images``, or all when the data has fewer;
            0 when nothing was measured).
        rewrite: ``insert_stages`` (:func:`onnxnoise.tile.rewrite.insert_stages`); a test may
            give its own with the same signature.
    """

    settings: TileSettings
    calibration: Calibration | None
    layers: dict[str, Layer]
    weights: Mapping[str, np.ndarray] = field(repr=False)
    reused: bool = False
    images: int = 0
    rewrite: Callable[..., Any] = insert_stages

    @property
    def fingerprint(self) -> str | None:
        """The calibration's fingerprint (it enters every trial key); ``None`` without a calibration."""
        return None if self.calibration is None else self.calibration.fingerprint()

    def facts(self) -> dict[str, Any]:
        """What summaries and reports say about the stages."""
        return {**self.settings.to_dict(), "calibrated_on": self.images, "calibration_fingerprint": self.fingerprint,
                "calibration_reused": self.reused}


def stage_edit(stages: RunStages | None, layers: Sequence[str], seed: int | None) -> GraphEdit | None:
    """The graph edit of a trial that noises ``layers`` with ``seed``: the stages in those layers only.

    Args:
        stages: The run's stages (``None``: off).
        layers: Names of the trial's noised layers (per-layer: one; whole model: every selected one).
        seed: The trial's seed (gives the read-noise seed); ``None`` (the clean baseline): no edit.

    Returns:
        A :class:`~onnxnoise.engine.graph_edit.GraphEdit` keyed by ``(layers, seed)`` whose ``tally``
        starts at 0 for every counter of :data:`STAGE_COUNTERS`, or ``None`` (stages off, baseline).
    """
    if stages is None or seed is None or not layers:
        return None
    chosen = [stages.layers[name] for name in layers]
    return GraphEdit(key=(tuple(layers), int(seed)), apply=partial(_apply, stages, chosen, int(seed)),
                     tally=dict.fromkeys(STAGE_COUNTERS, 0))


def _apply(stages: RunStages, layers: list[Layer], seed: int,
           model: onnx.ModelProto) -> tuple[onnx.ModelProto, Mapping[str, str]]:
    staged = stages.rewrite(model, layers, stages.settings, stages.calibration, seed=seed, weights=stages.weights)
    return staged.model, staged.counters


def calibration_batches(data: EvalSet, images: int) -> Iterator[np.ndarray]:
    """The model inputs of the first ``images`` images of ``data`` (all of them when fewer), batch by batch.

    Batched as ``data`` (its batch size; a fixed-batch model's last batch zero-padded).
    """
    subset = EvalSet(data.images[:images], data.labels[:images], data.config, batch_size=data.batch_size,
                     fixed_batch=data.fixed_batch, input_dtype=data.input_dtype, label_offset=data.label_offset)
    return (x for x, _ in subset.batches())


def prepare_stages(settings: TileSettings, *, model: onnx.ModelProto, selected: Sequence[Layer], data: EvalSet,
                   weights: Mapping[str, np.ndarray], input_name: str, identity: Mapping[str, Any],
                   folder: Path | None = None) -> RunStages | None:
    """Calibrate the stages of a run once, or reuse the calibration kept in ``folder``.

    Args:
        settings: The run's tile settings; ``None`` is returned when no stage is on.
        model: The clean model.
        selected: The layers trials may noise (and so stage).
        data: The evaluation set; its first ``settings.calibration_images`` images calibrate.
        weights: Clean initializers.
        input_name: The model's image input.
        identity: Everything besides ``settings`` the calibration depends on (model sha256,
            dataset fingerprint, preprocessing, layers): with ``settings`` it names the entry of
            :data:`CALIBRATION_FILE`.
        folder: The run folder holding :data:`CALIBRATION_FILE`; ``None``: kept in memory only.

    Returns:
        The :class:`RunStages`, or ``None`` when every stage is off.

    Raises:
        DataError: :data:`CALIBRATION_FILE` exists but is not a calibration file.
        ConfigError: The stages cannot be put on a selected layer (an op the rewrite cannot split,
            an opset too old): one line, before any trial runs.
    """
    if not settings.active:
        return None
    by_name = {layer.name: layer for layer in selected}
    images = min(settings.calibration_images, len(data))
    try:
        if not settings.needs_calibration:  # a tile split alone: no ranges
            stages = RunStages(settings, None, by_name, weights, images=0)
        elif not settings.measures:  # --dac-bound and no calibrated ADC: ranges from settings and weights
            calibration = calibrate(model, list(selected), (), input_name=input_name, settings=settings,
                                    weights=weights)
            stages = RunStages(settings, calibration, by_name, weights, images=0)
        else:
            stages = _calibrated(settings, model=model, selected=selected, data=data, weights=weights,
                                 input_name=input_name, identity=identity, folder=folder, images=images)
        _apply(stages, list(selected), 0, model)  # a layer the rewrite refuses: refused now, not in every trial
    except ValueError as exc:
        msg = f"the tile stages cannot run on the selected layers: {exc}; select other layers (--layer-regex)"
        raise ConfigError(msg) from None
    return stages


def _calibrated(settings: TileSettings, *, model: onnx.ModelProto, selected: Sequence[Layer], data: EvalSet,
                weights: Mapping[str, np.ndarray], input_name: str, identity: Mapping[str, Any],
                folder: Path | None, images: int) -> RunStages:
    """The stages with the calibration kept in ``folder`` for these inputs, else measured now (and kept)."""
    entry_id = _entry_id({**identity, "tile": settings.to_dict()})
    path = None if folder is None else Path(folder) / CALIBRATION_FILE
    stored = _read(path)
    by_name = {layer.name: layer for layer in selected}
    if entry_id in stored:
        calibration = Calibration.from_dict(stored[entry_id]["calibration"])
        return RunStages(settings, calibration, by_name, weights, reused=True, images=images)
    calibration = calibrate(model, list(selected), calibration_batches(data, settings.calibration_images),
                            input_name=input_name, settings=settings, weights=weights)
    if path is not None:
        stored[entry_id] = {"identity": {**identity, "tile": settings.to_dict()},
                            "fingerprint": calibration.fingerprint(), "calibration": calibration.to_dict()}
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(stored, indent=1, sort_keys=True) + "\n")
    return RunStages(settings, calibration, by_name, weights, images=images)


def _entry_id(identity: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read(path: Path | None) -> dict[str, Any]:
    if path is None or not path.exists():
        return {}
    try:
        stored = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        msg = f"{path} is not a calibration file ({exc}); remove it and run again to calibrate anew"
        raise DataError(msg) from None
    if not isinstance(stored, dict) or not all(isinstance(v, dict) and "calibration" in v for v in stored.values()):
        msg = f"{path} is not a calibration file; remove it and run again to calibrate anew"
        raise DataError(msg)
    return stored
