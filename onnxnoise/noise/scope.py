"""Over what set of weights a model takes its statistics: tensor, layer, channel, whole model.

The seed paper (Fagbohungbe & Qian, arXiv 2011.11840, eq. 1) sets ``sigma_noise =
sigma_w / SNR`` with ``sigma_w`` "of the layer". Scopes read that ``sigma_w`` as:

- ``tensor``: the std of the initializer being perturbed (one sigma per tensor; the
  project's reading since v1, and the default).
- ``layer``: the std of all of the layer's tensors pooled (weight and bias together;
  a BatchNormalization's scale, bias, mean and variance together).
- ``channel``: one std per output channel, over every other axis of the tensor, along
  the axis given by :attr:`onnxnoise.model.Layer.channel_axes` (Conv weight axis 0,
  ConvTranspose 1, Gemm 0 with ``transB=1`` and 1 with ``transB=0``, MatMul ``B``
  ``[K, N]`` its last axis). Tensors with no channel axis (1-D tensors: biases,
  BatchNormalization parameters; other ops) fall back to ``tensor`` scope: a 1-D
  bias has one element per channel, whose own std would be 0.

The whole-model scope of NoisyNN (one sigma for every weight from an SNR in dB over
mean squares) has its own model, ``gaussian-global-db``
(:class:`onnxnoise.noise.gaussian.GaussianGlobalDb`), because its strength is a
different quantity (a power ratio in dB, not a linear ratio of standard deviations).
"""

from __future__ import annotations

import numpy as np

from onnxnoise.errors import NoiseConfigError
from onnxnoise.noise.base import TensorInfo

__all__ = ["SCOPES", "find_layer", "channel_axis", "scoped_std"]

#: Scopes of ``sigma_w`` accepted by the sigma-taking models (see the module docstring).
SCOPES: tuple[str, ...] = ("tensor", "layer", "channel")


def find_layer(tensor: TensorInfo):
    """The :class:`~onnxnoise.model.Layer` of ``tensor`` among ``tensor.model_layers``, or ``None``."""
    for layer in tensor.model_layers:
        if layer.name == tensor.layer and tensor.name in layer.tensors:
            return layer
    return None


def channel_axis(tensor: TensorInfo, ndim: int, *, strict: bool = True) -> int | None:
    """Output-channel axis of a tensor with ``ndim`` dimensions, or ``None`` when it has none.

    Read from the layer's :attr:`~onnxnoise.model.Layer.channel_axes` (found in
    ``tensor.model_layers``). Without that fact (``draw_noise`` called without
    ``model_layers``, or a hand-built layer), a Conv / QLinearConv weight has axis 0
    and a ConvTranspose weight axis 1; for any other op it cannot be known (Gemm
    depends on ``transB``).

    Args:
        tensor: Facts about the tensor.
        ndim: Its number of dimensions; tensors with fewer than 2 have no channel axis.
        strict: Raise when the axis cannot be known; else return ``None``.

    Raises:
        NoiseConfigError: If ``strict`` and the axis of a tensor of 2 or more
            dimensions cannot be known.
    """
    if ndim < 2:
        return None
    layer = find_layer(tensor)
    if layer is not None and layer.channel_axes:
        return layer.channel_axes[layer.tensors.index(tensor.name)]
    if tensor.role == "weight" and tensor.op_type in ("Conv", "QLinearConv"):
        return 0
    if tensor.role == "weight" and tensor.op_type == "ConvTranspose":
        return 1
    if tensor.role != "weight" or not strict:
        return None
    msg = (f"channel scope needs the output-channel axis of {tensor.name!r} ({tensor.op_type}); "
           f"pass the layers from list_layers to draw_noise(model_layers=...)")
    raise NoiseConfigError(msg)


def _pooled_std(arrays) -> float:
    """Std of all elements of ``arrays`` together (two passes, float64, no concatenation)."""
    count = sum(a.size for a in arrays)
    if count == 0:
        return 0.0
    mean = sum(float(np.sum(a, dtype=np.float64)) for a in arrays) / count
    ss = sum(float(np.sum(np.square(a.astype(np.float64) - mean))) for a in arrays)
    return float(np.sqrt(ss / count))


def scoped_std(w: np.ndarray, tensor: TensorInfo, scope: str) -> float | np.ndarray:
    """``sigma_w`` of ``w`` under ``scope`` (one of :data:`SCOPES`).

    Computed once per run when ``w`` is the tensor's clean values and the draw has the run's
    statistics (:meth:`~onnxnoise.noise.base.TensorInfo.clean_statistic`); the same value either way.

    Returns:
        A float for ``tensor`` and ``layer`` scope (and for ``channel`` scope on a
        tensor without a channel axis); for ``channel`` scope a float64 array of
        ``w.ndim`` dimensions, the channel axis full and every other axis 1
        (broadcasts against ``w``), read-only when kept for the run.

    Raises:
        NoiseConfigError: ``channel`` scope on a weight whose channel axis cannot be known.
    """
    if scope not in SCOPES:
        msg = f"unknown scope {scope!r}; choose from {', '.join(SCOPES)}"
        raise NoiseConfigError(msg)
    return tensor.clean_statistic(("std", scope), w, lambda: _scoped_std(w, tensor, scope))


def _scoped_std(w: np.ndarray, tensor: TensorInfo, scope: str) -> float | np.ndarray:
    if scope == "layer":
        values = tensor.layer_values
        if not values:
            return float(np.std(w, dtype=np.float64))
        return _pooled_std([np.asarray(v) for v in values.values()])
    if scope == "channel":
        axis = channel_axis(tensor, w.ndim)
        if axis is None:
            return float(np.std(w, dtype=np.float64))
        others = tuple(i for i in range(w.ndim) if i != axis)
        std = np.std(w, axis=others, dtype=np.float64, keepdims=True)
        std.setflags(write=False)
        return std
    return float(np.std(w, dtype=np.float64))
