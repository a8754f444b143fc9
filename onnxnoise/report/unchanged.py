"""Noised layers the noise left exactly as they were: one warning line per model and noise model.

Every finished noisy trial records, per noised layer holding a tensor its noise model acts on,
how many stored values the draw changed (the ``changed_values`` column,
:attr:`onnxnoise.noise.NoiseDraw.changed_values`). A layer with 0 changed values ran with its
clean values in that trial, while the run counts it as noised. That can be right (a strength
that changes nothing by definition: a fault rate of 0, a levels grid the weights already sit
on; an all-zero or constant tensor) or a sign that the layer is not noised as the run says; the
line says what was seen and lets the reader tell which. ``bench`` (console, ``bench.json``),
``sweep`` and ``report`` (console, report.md) show it where their other warnings go.

A per-layer trial whose layer holds no tensor its noise model acts on (``changed_values``
is ``{}``: a BatchNormalization layer under a device model's ``analog=weights``, digital by
design, :data:`onnxnoise.noise.device.DIGITAL_OPS`) ran the clean model: one more line names
those layers and how to leave them out or treat them as analog.
"""

from __future__ import annotations

import json

from onnxnoise.errors import OnnxNoiseError
from onnxnoise.lazy import lazy_module
from onnxnoise.noise.base import get_noise_model
from onnxnoise.noise.device import DeviceModel
from onnxnoise.report.strength import add_strength_text

pl = lazy_module("polars")

__all__ = ["unchanged_layers_warnings"]

#: Layer names shown in one line; the rest are counted.
SHOWN = 5


def unchanged_layers_warnings(trials: pl.DataFrame) -> list[str]:
    """One line per (model, noise model) in whose finished noisy trials a noised layer kept every value.

    Args:
        trials: Trial rows (the store's columns: ``model``, ``noise_model``, ``noise``,
            ``mode``, ``strength``, ``error``, ``changed_values``); rows without
            ``changed_values`` (stored before it existed, failed trials) are not read.

    Returns:
        Lines such as ``"m.onnx: stuck-at changed no stored value of 1 noised layer ('fc') in 3
        of 3 noisy trials, at p = 0% faulty devices: those trials ran its clean values; ..."``;
        empty when every noised layer changed in every trial.
    """
    if "changed_values" not in trials.columns or trials.is_empty():
        return []
    rows = trials.filter((pl.col("mode") != "baseline") & pl.col("error").is_null()
                         & pl.col("changed_values").is_not_null())
    if rows.is_empty():
        return []
    rows = add_strength_text(rows)
    lines = _digital_layer_lines(rows)
    groups: dict[tuple[str, str], dict] = {}
    for row in rows.iter_rows(named=True):
        group = groups.setdefault((row["model"], row["noise_model"]), {"trials": 0, "hit": 0, "layers": {},
                                                                       "at": {}})
        group["trials"] += 1
        zero = [name for name, count in json.loads(row["changed_values"]).items() if count == 0]
        if zero:
            group["hit"] += 1
            group["layers"].update(dict.fromkeys(zero))
            group["at"][row["strength_text"]] = None
    return [_line(model, noise, group) for (model, noise), group in groups.items() if group["hit"]] + lines


def _digital_layer_lines(rows: pl.DataFrame) -> list[str]:
    """Per (model, noise model): the per-layer trials whose layer held nothing the noise acts on."""
    empty = rows.filter((pl.col("mode") == "per-layer") & (pl.col("changed_values") == "{}"))
    lines = []
    for (model, noise), group in empty.group_by(["model", "noise_model"], maintain_order=True):
        names = list(dict.fromkeys(name for text in group["layers"] for name in json.loads(text)))
        shown = _shown(names)
        fix = (f"leave them out (--op-types Conv,ConvTranspose,Gemm,MatMul,Einsum: normalization layers stay "
               f"digital under analog=weights) or treat every tensor as analog (--noise {noise}:analog=all)"
               if _is_device_model(noise) else "leave them out (--op-types or --layer-regex)")
        line = (f"{model}: {noise} acts on no tensor of {len(names)} layer(s) ({shown}): their {group.height} "
                f"per-layer trial(s) ran the clean model; {fix}")
        lines.append(line)
    return lines


def _is_device_model(name: str) -> bool:
    try:
        return issubclass(get_noise_model(name), DeviceModel)
    except OnnxNoiseError:  # a store may hold a noise model not registered here
        return False


def _line(model: str, noise: str, group: dict) -> str:
    names = list(group["layers"])
    shown = _shown(names)
    return (f"{model}: {noise} changed no stored value of {len(names)} noised layer(s) ({shown}) in {group['hit']} of "
            f"{group['trials']} noisy trial(s), at {'; '.join(group['at'])}: those trials ran those layers' clean "
            "values (column changed_values). A strength that changes nothing by definition (a fault rate of 0, "
            "a levels grid the weights already sit on) or an all-zero tensor does that; otherwise the layer is "
            "not noised as the run says")


def _shown(names: list[str]) -> str:
    """The first :data:`SHOWN` names, quoted, and how many more."""
    return ", ".join(repr(n) for n in names[:SHOWN]) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")
