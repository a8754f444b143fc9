"""Noised layers the noise left exactly as they were: one warning line per model and noise model.

Every finished noisy trial records, per noised layer holding a tensor its noise model acts on,
how many stored values the draw changed (the ``changed_values`` column,
:attr:`onnxnoise.noise.NoiseDraw.changed_values`). A layer with 0 changed values ran with its
clean values in that trial, while the run counts it as noised. That can be right (a strength
that changes nothing by definition: a fault rate of 0, a levels grid the weights already sit
on; an all-zero or constant tensor) or a sign that the layer is not noised as the run says; the
line says what was seen and lets the reader tell which. ``bench`` (console, ``bench.json``),
``sweep`` and ``report`` (console, report.md) show it where their other warnings go.
"""

from __future__ import annotations

import json

import polars as pl

from onnxnoise.report.strength import add_strength_text

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
    return [_line(model, noise, group) for (model, noise), group in groups.items() if group["hit"]]


def _line(model: str, noise: str, group: dict) -> str:
    names = list(group["layers"])
    shown = ", ".join(repr(n) for n in names[:SHOWN]) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")
    return (f"{model}: {noise} changed no stored value of {len(names)} noised layer(s) ({shown}) in {group['hit']} of "
            f"{group['trials']} noisy trial(s), at {'; '.join(group['at'])}: those trials ran those layers' clean "
            "values (column changed_values). A strength that changes nothing by definition (a fault rate of 0, "
            "a levels grid the weights already sit on) or an all-zero tensor does that; otherwise the layer is "
            "not noised as the run says")
