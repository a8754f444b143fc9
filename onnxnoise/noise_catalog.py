"""The registered noise models and analog presets as data: what ``onnxnoise noise-models [--presets] --json``
prints and the Python API's :func:`onnxnoise.noise_models` returns."""

from __future__ import annotations

import dataclasses

from onnxnoise.config import is_time_strength
from onnxnoise.errors import OnnxNoiseError
from onnxnoise.noise import NOISE_MODELS, axis_of, make_noise_model
from onnxnoise.noise.presets import PRESETS, expand_preset
from onnxnoise.options import strength_example
from onnxnoise.settings import declared
from onnxnoise.tile_config import TileConfig

__all__ = ["noise_model_list", "preset_list", "tile_stages", "TILE_STAGES_NOTE"]

#: What ``noise-models`` says about the analog tile's input/output stages.
TILE_STAGES_NOTE = ("the analog tile's input/output stages (DAC, ADC, read noise, tiles of R input rows) compose "
                    "with every model above: each noisy trial applies them to the layers it noises, with ranges "
                    "calibrated once on clean activations")



def noise_model_list() -> list[dict]:
    """Every registered noise model: name, strength axis, default strengths, parameters with defaults, source.

    ``source`` is the first line of the class docstring (formula family and source).
    """
    out = []
    for name in sorted(NOISE_MODELS):
        cls = NOISE_MODELS[name]
        try:
            instance = make_noise_model(name)
        except OnnxNoiseError:
            instance = None
        params = {}
        for f in dataclasses.fields(cls):
            if instance is not None:
                value = getattr(instance, f.name)
            elif f.default is not dataclasses.MISSING:
                value = f.default
            elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                value = f.default_factory()  # type: ignore[misc]
            else:
                value = None
            params[f.name] = list(value) if isinstance(value, tuple) else value
        doc = (cls.__doc__ or "").strip().splitlines()
        strengths = list(cls.default_strengths)
        axis = axis_of(cls)
        out.append({
            "name": name,
            "strength": {"name": cls.strength_name, "label": cls.strength_label,
                         "more_noise_when": cls.more_noise_when, "time": is_time_strength(cls),
                         "long_name": axis.name or cls.strength_label,
                         "options": [f"--{f}" for f in axis.flags] + ["--strength"], "unit": axis.unit,
                         "log": axis.log},
            "example": strength_example(cls, strengths) if strengths else "",
            "default_strengths": strengths,
            "default_strengths_text": [instance.format_strength(v) for v in strengths] if instance else [],
            "params": params,
            "source": doc[0].strip() if doc else "",
        })
    return out


def preset_list() -> list[dict]:
    """Every ``--analog-preset``: name, summary, source, its expansion (flags) and each parameter's citation."""
    return [{**expand_preset(name).to_dict(), "summary": preset.summary, "source": preset.source,
             "cites": dict(preset.cites)} for name, preset in PRESETS.items()]


def tile_stages() -> dict:
    """The analog tile's input/output stages as ``noise-models --json`` gives them: ``flags`` (their options),
    ``alone`` (a command line measuring them with the weights exact) and ``note`` (:data:`TILE_STAGES_NOTE`)."""
    return {"flags": [s.flag for s in declared(TileConfig)], "alone": "--noise none --dac-bits 8 --adc-bits 8",
            "note": TILE_STAGES_NOTE}
