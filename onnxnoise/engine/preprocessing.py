"""A run's preprocessing, resolved once: single settings, a preset, the model's metadata, torchvision.

:func:`resolve_preprocessing` is what :func:`onnxnoise.engine.context.prepare_context` calls;
the precedence is documented in docs/architecture.md ("Preprocessing").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from onnxnoise.config import RunConfig
from onnxnoise.data import (
    DataConfig, assumed_warning, config_differences, input_geometry, layout_conflict, resolve_data_config,
    unit_mismatch,
)
from onnxnoise.data.assumed import stated_settings
from onnxnoise.errors import DataError
from onnxnoise.model import ModelIO, get_metadata
from onnxnoise.strict_json import parse_json

__all__ = ["resolve_preprocessing"]


def _with_input_shape(defaults: dict[str, Any], io: ModelIO) -> dict[str, Any]:
    """The model's input shape decides channels and layout over any preset."""
    shape = io.input_shape
    if len(shape) == 4 and "channels" not in defaults:
        nchw = shape[1] in (1, 3)
        channels = shape[1] if nchw else shape[3]
        if channels in (1, 3):
            defaults = {**defaults, "channels": channels}
            defaults.setdefault("layout", "NCHW" if nchw else "NHWC")
    return defaults


def resolve_preprocessing(config: RunConfig, model: onnx.ModelProto, io: ModelIO) -> tuple[DataConfig, str, list[str]]:
    """Precedence: single settings > a named preset > the model's metadata > torchvision.

    The model's input shape decides channels and layout over any preset; with neither
    metadata nor a preset, a square static input also decides the geometry
    (:func:`onnxnoise.data.input_geometry`). Returns the config, where it came from, and
    warnings: a named preset that overrides different preprocessing stored in the model's
    metadata is named with the settings that differ; preprocessing assumed because the
    model states none is named with how to set it (:func:`onnxnoise.data.assumed_warning`).

    Raises:
        DataError: Unreadable metadata, an invalid setting, or mean/std in other units
            than the scale gives (:func:`_check_units`).
    """
    metadata_props = get_metadata(model)
    defaults: dict[str, Any] = {}
    source = "default"
    stored = None
    if "onnxnoise.preprocess" in metadata_props:
        try:
            stored = parse_json(metadata_props["onnxnoise.preprocess"])
        except ValueError:  # not JSON, or nested too deep
            stored = None
        if config.preset is None:
            if not isinstance(stored, dict):
                msg = ("the model's `onnxnoise.preprocess` metadata is not a JSON object of preprocessing settings; "
                       "name a preset with `--preprocess` to ignore it")
                raise DataError(msg)
            defaults = stored
            source = "model metadata"
    if config.preset is not None:
        source = "--preprocess"
    given = {key: value for key, value in dict(config.preprocess).items() if value is not None}
    conflict = layout_conflict(given["layout"], io.input_shape) if given.get("layout") else None
    if conflict:
        raise DataError(conflict)
    size = None
    partial = source == "model metadata" and not defaults.get("preset")  # the rest comes from torchvision
    stated = {**(stated_settings(defaults) if partial else {}), **given}
    if source == "default" or partial:  # geometry not stated: from a static input, as timm takes it
        geometry, size = input_geometry(io.input_shape, stated)
        defaults = {**defaults, **geometry}
    data_config = resolve_data_config(config.preset, model_defaults=_with_input_shape(defaults, io),
                                      **dict(config.preprocess))
    assumed = assumed_warning(data_config, stated, normalized=io.input_dtype != np.uint8, size=size, partial=partial)
    warnings = [assumed] if (source == "default" or partial) and assumed else []
    if config.preset is not None and isinstance(stored, dict):
        try:
            own = resolve_data_config(None, model_defaults=_with_input_shape(stored, io), **dict(config.preprocess))
        except DataError:
            own = None
        differences = [] if own is None else config_differences(own, data_config)
        if differences:  # the metadata's own preset name may equal config.preset (CIFAR exports): not named
            warnings.append(f"--preprocess {config.preset} replaces the preprocessing stored in the model's metadata "
                            f"(the model's metadata -> preset {config.preset}): {'; '.join(differences)}")
    _check_units(config, data_config, io)
    return data_config, source, warnings


def _check_units(config: RunConfig, data_config: DataConfig, io: ModelIO) -> None:
    """Mean/std in other units than the scale gives the pixels (0..1 vs 0..255) cannot be right.

    Skipped for uint8-input models (no normalization runs) and with ``force_preprocess``.
    """
    if config.force_preprocess or io.input_dtype == np.uint8:
        return
    problem = unit_mismatch(data_config)
    if problem:
        raise DataError(problem)


