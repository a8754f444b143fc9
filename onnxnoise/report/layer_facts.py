"""What a report says about each layer besides its trials: op type, parameters, and its channels' spread.

The trial store holds the noised layers' names (``layers``) and index; op type, parameter
count and the weight's values live in the model file. :func:`facts_of_runs` reads the
model file each run recorded (``runs.config.model``) when it is still there and its
sha256 is the one the trials were measured on; otherwise a report shows names alone.

The channel diagnostic (issue 21, item 4): with one sigma per tensor (``scope=tensor``,
the default of ``gaussian-snr``; ../shared/NOISE-MODELS.md), the noise of paper eq. 1
(Fagbohungbe & Qian, arXiv 2011.11840) has ``sigma_n = sigma_w / SNR`` for every element
of the tensor. An output channel ``c`` whose own weights have std ``s_c`` then sees the
effective SNR ``s_c / sigma_n = SNR * s_c / sigma_w``: a channel 10x narrower than the
tensor gets a tenth of the nominal SNR. BatchNorm folded into a convolution scales each
output channel by ``gamma_c / sqrt(var_c + eps)``, so folded models can have channels of
very different scales (the MobileNetV2 case of issue 21: 21.4% top-1 per tensor vs 65.6%
per channel at 1% noise). With ``scope=channel`` every channel gets its nominal SNR.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from onnxnoise.lazy import lazy_module
from onnxnoise.model import Layer, get_initializers, list_layers, load_model

pl = lazy_module("polars")

__all__ = ["NARROW_SNR_FRACTION", "channel_stds", "channel_spread", "layer_facts", "facts_of_runs",
           "narrow_note"]

#: A layer's narrowest output channel is flagged when its effective SNR under one sigma per tensor is below this
#: fraction of the nominal SNR (``min_c s_c / sigma_w < 0.25``: the narrowest channel's SNR is under a quarter of it).
NARROW_SNR_FRACTION: float = 0.25


def channel_stds(weight: np.ndarray, axis: int) -> np.ndarray:
    """Std of each output channel of ``weight``: over every axis but ``axis`` (population std, ``ddof = 0``).

    Args:
        weight: A float tensor of at least 2 dimensions, e.g. a Conv weight ``[C_out, C_in, kH, kW]``.
        axis: Its output-channel axis (:attr:`onnxnoise.model.Layer.channel_axes`).

    Returns:
        ``(C,)`` float64 stds, in the weight's units.

    Raises:
        ValueError: If ``weight`` has fewer than 2 dimensions or ``axis`` is out of range.
    """
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim < 2 or not -w.ndim <= axis < w.ndim:
        msg = f"channel stds need a tensor of 2+ dimensions and an axis in it, got shape {w.shape}, axis {axis}"
        raise ValueError(msg)
    return np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1).std(axis=1)


class ChannelSpread(NamedTuple):
    """The output-channel stds ``s_c`` of one weight against its tensor std ``sigma_w`` (:func:`channel_spread`).

    Attributes:
        ratio: ``max_c s_c / min_c s_c`` (1 when all channels are alike).
        narrowest: ``min_c s_c / sigma_w``: the narrowest channel's effective SNR as a fraction of the nominal
            one under one sigma per tensor (module docstring).
        narrow: Channels with ``s_c / sigma_w < NARROW_SNR_FRACTION``.
        channels: Channels with a positive std (those counted).
    """

    ratio: float
    narrowest: float
    narrow: int
    channels: int


def channel_spread(weight: np.ndarray, axis: int) -> ChannelSpread:
    """The spread of a weight's output-channel stds and its narrow channels (:class:`ChannelSpread`).

    ``sigma_w`` is the whole tensor's population std. Channels whose std is 0 (all-equal or
    pruned channels: no signal, and no noise in channel scope) are left out; channels with a
    tiny positive std count (BatchNorm folded with a near-zero ``gamma``: per-tensor noise
    swamps what they carry).

    Returns:
        The :class:`ChannelSpread`; ``ratio`` and ``narrowest`` NaN and the counts 0 when no
        channel has a positive std.
    """
    stds = channel_stds(weight, axis)
    positive = stds[stds > 0]
    sigma = float(np.asarray(weight, dtype=np.float64).std())
    if positive.size == 0 or sigma == 0:
        return ChannelSpread(float("nan"), float("nan"), 0, 0)
    return ChannelSpread(float(positive.max() / positive.min()), float(positive.min() / sigma),
                         int((positive / sigma < NARROW_SNR_FRACTION).sum()), int(positive.size))


def layer_facts(layers: list[Layer], initializers: dict[str, np.ndarray]) -> pl.DataFrame:
    """One row per layer: ``layer_index``, ``layer_name``, ``op_type``, ``parameters``, ``params_share``,
    ``channel_std_ratio``, ``narrow_snr_fraction``, ``narrow_channels`` and ``channels``.

    ``params_share`` is the layer's share of all layers' parameters (0..1). The channel columns
    are :func:`channel_spread` of the layer's first tensor that has an output-channel axis (its
    weight): ``ratio``, ``narrowest``, ``narrow``, ``channels``; null for layers without one
    (BatchNormalization, biases only).

    Args:
        layers: :func:`onnxnoise.model.list_layers` of the model.
        initializers: :func:`onnxnoise.model.get_initializers` of the same model.
    """
    total = sum(layer.num_params for layer in layers) or 1
    rows = []
    for layer in layers:
        spread = ChannelSpread(None, None, None, None)
        for name, axis in zip(layer.tensors, layer.channel_axes or (None,) * len(layer.tensors)):
            if axis is not None and name in initializers and np.issubdtype(initializers[name].dtype, np.floating):
                spread = channel_spread(initializers[name], axis)
                break
        rows.append({"layer_index": layer.index, "layer_name": layer.name, "op_type": layer.op_type,
                     "parameters": layer.num_params, "params_share": layer.num_params / total,
                     "channel_std_ratio": spread.ratio, "narrow_snr_fraction": spread.narrowest,
                     "narrow_channels": spread.narrow, "channels": spread.channels})
    return pl.DataFrame(rows, schema=FACT_SCHEMA)


#: Columns and dtypes of :func:`layer_facts` (and, with ``model_sha256``, :func:`facts_of_runs`), as the
#: Python types Polars reads as Int64, String and Float64 (so importing this module does not import Polars).
FACT_SCHEMA = {"layer_index": int, "layer_name": str, "op_type": str, "parameters": int, "params_share": float,
               "channel_std_ratio": float, "narrow_snr_fraction": float, "narrow_channels": int, "channels": int}


def facts_of_runs(runs: pl.DataFrame) -> pl.DataFrame:
    """:func:`layer_facts` of every model the runs recorded whose file is still there, with ``model_sha256``.

    The path is the run's ``config.model`` as given to the sweep (relative to the folder it ran
    in); a file that is missing, unreadable or whose sha256 differs from the run's is skipped, so
    its layers get no op type, parameters or channel facts. Layers are listed as the sweep did when
    it noised preprocessing constants (``config.include_preprocessing``).

    Returns:
        The rows of :func:`layer_facts` plus ``model_sha256``; empty (same columns) when no model file is found.
    """
    frames, seen = [], set()
    for row in runs.iter_rows(named=True):
        config = json.loads(row.get("config") or "{}")
        path, sha = config.get("model"), row.get("model_sha256")
        if not path or sha in seen or not Path(path).is_file() or _sha(path) != sha:
            continue
        seen.add(sha)
        model = load_model(path)
        layers = list_layers(model, include_preprocessing=bool(config.get("include_preprocessing")))
        frames.append(layer_facts(layers, get_initializers(model)).with_columns(pl.lit(sha).alias("model_sha256")))
    if not frames:
        return pl.DataFrame(schema={**FACT_SCHEMA, "model_sha256": pl.String})
    return pl.concat(frames)


def _sha(path: str | os.PathLike) -> str | None:
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None


def narrow_note(fraction: float | None, narrow: int | None = None, channels: int | None = None,
                strength: float | None = None, unit: str | None = None) -> str | None:
    """The table's words for a layer whose narrowest channel is far below the nominal SNR, else ``None``.

    ``fraction`` is :attr:`ChannelSpread.narrowest`; below :data:`NARROW_SNR_FRACTION` the note reads
    ``"2/16 channels below 0.25x SNR (min 0.08x)"``, and with a linear SNR strength (``unit``
    ``"ratio"``, gaussian-snr) the narrowest channel's effective SNR, ``"... (min SNR 0.4)"``.
    """
    if fraction is None or fraction != fraction or fraction >= NARROW_SNR_FRACTION:
        return None
    count = f"{narrow}/{channels} channels" if narrow is not None and channels else "channels"
    at = (f"min SNR {strength * fraction:.2g}" if strength is not None and unit == "ratio"
          else f"min {fraction:.2g}x")
    return f"{count} below {NARROW_SNR_FRACTION:g}x SNR ({at})"
