"""Weight-to-conductance mapping: over what set of weights one full-scale weight ``w_max`` is taken.

An analog tile stores ``w / w_max`` as a fraction of its conductance range, so ``w_max``
(the weight that maps to the full conductance ``g_max``) sets how close small weights sit to
the devices' noise floor. The device models (:mod:`onnxnoise.noise.device`, parameter
``mapping``) and ``gaussian-max`` (its ``scope``) take it over one of:

- ``tensor`` (the default, onnxnoise's mapping since the device models exist): one
  ``w_max = max|w|`` for the whole tensor.
- ``channel``: one ``w_max`` per output channel, ``max|w|`` over every other axis (aihwkit's
  channel-wise symmetric weight remap, ``WeightRemapType.CHANNELWISE_SYMMETRIC``, as set by
  its ``StandardHWATrainingPreset``; ../shared/PARITY.md sec. 1). The output-channel axis is
  the layer's (:attr:`onnxnoise.model.Layer.channel_axes`, :func:`onnxnoise.noise.scope.channel_axis`).
- ``tile-column``: one ``w_max`` per output column of each tile of ``R`` input rows
  (``R = TensorInfo.tile_rows``, the run's ``--tile-rows``): the weight matrix is cut into
  tiles of at most ``R`` input rows, and each tile's column has its own full scale. Input rows
  as the tile stages define them: a Conv weight ``[C_out, C_in/g, kh, kw]`` has ``C_in/g * kh *
  kw`` rows per group, cut into the fewest tiles of at most ``floor(R / (kh * kw))`` (at least 1)
  whole kernels, spread evenly (:func:`onnxnoise.model.tiles.tile_chunks`; ConvTranspose
  ``[C_in, C_out/g, kh, kw]`` the same along its input axis 0); a Gemm / MatMul weight has ``K``
  rows (the axis other than the output one), cut the same way into tiles of at most ``R``. (A
  grouped ConvTranspose is cut along its stored input axis as a whole: the same tiles as the
  stages' only when each group's channels fall on tile boundaries.)

A channel (or tile column) whose weights are all 0 gets ``w_max = 0``: it maps to no
conductance and reads back exactly 0 whatever its devices do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from onnxnoise.errors import NoiseConfigError
from onnxnoise.noise.base import TensorInfo
from onnxnoise.model.tiles import tile_chunks
from onnxnoise.noise.scope import channel_axis

__all__ = ["MAPPINGS", "CONV_OPS", "check_mapping_layers", "full_scale", "input_axes", "weight_max"]

#: Values of the ``mapping`` parameter (see the module docstring).
MAPPINGS: tuple[str, ...] = ("tensor", "channel", "tile-column")

#: Ops whose weight is ``[out or in, in or out, kernel...]``: a tile holds whole kernels.
CONV_OPS: frozenset[str] = frozenset({"Conv", "QLinearConv", "ConvTranspose", "ConvInteger"})


def weight_max(w: np.ndarray) -> float:
    """``max|w|``, the full-scale weight of ``mapping=tensor``; 0 for an empty, all-zero or non-finite tensor."""
    w_max = float(np.max(np.abs(w))) if w.size else 0.0
    return w_max if np.isfinite(w_max) else 0.0


def _no_axis(tensor_name: str, layer: str, op_type: str, spelled: tuple[str, str]) -> NoiseConfigError:
    return NoiseConfigError(
        f"{spelled[0]} needs the output-channel axis of tensor {tensor_name!r} (layer {layer!r}, {op_type}), "
        f"which is not known; use {spelled[1]}, or leave the layer out (--layer-regex / --op-types)")


def input_axes(shape: tuple[int, ...], op_type: str, out_axis: int) -> tuple[int, tuple[int, ...]]:
    """``(input-row axis, kernel axes)`` of a weight whose output-channel axis is ``out_axis``.

    Conv-like ops (:data:`CONV_OPS`, 3 or more dimensions): the other of axes 0 and 1, and the
    kernel axes ``2..``; otherwise (Gemm, MatMul, Einsum operands) the axis next to the output one
    among the last two (``K`` of ``[K, N]`` / ``[N, K]``; batch axes stay separate matrices), no kernel axes.

    Raises:
        ValueError: When the input axis cannot be told (a tensor of fewer than 2 dimensions, or an
            output axis that is neither of the last two of a non-conv weight).
    """
    ndim = len(shape)
    if ndim >= 3 and op_type in CONV_OPS and out_axis in (0, 1):
        return 1 - out_axis, tuple(range(2, ndim))
    if ndim >= 2 and out_axis == ndim - 1:
        return ndim - 2, ()
    if ndim >= 2 and out_axis == ndim - 2:
        return ndim - 1, ()
    raise ValueError(f"no input-row axis for a weight of shape {shape} with output axis {out_axis}")


def _tile_column_max(a: np.ndarray, in_axis: int, kernel_axes: tuple[int, ...], rows: int) -> np.ndarray:
    """``max`` of ``a`` over each tile's input rows (and kernel axes), broadcast back to ``a``'s shape."""
    kernel = int(np.prod([a.shape[i] for i in kernel_axes])) if kernel_axes else 1
    out = np.empty_like(a)
    for start, stop in tile_chunks(a.shape[in_axis], kernel, rows):
        where = [slice(None)] * a.ndim
        where[in_axis] = slice(start, stop)
        block = a[tuple(where)]
        out[tuple(where)] = np.max(block, axis=(in_axis, *kernel_axes), keepdims=True)
    return out


def full_scale(w: np.ndarray, tensor: TensorInfo, mapping: str, *,
               spelled: tuple[str, str] | None = None) -> float | np.ndarray:
    """``w_max`` of ``w`` under ``mapping`` (:data:`MAPPINGS`).

    Args:
        w: The tensor's clean values (float64 for exact maxima; any float dtype works).
        tensor: Facts about it (its layer's channel axes, ``tile_rows``).
        mapping: ``tensor``, ``channel`` or ``tile-column``.
        spelled: How the user spelled the setting and its per-tensor fix, for messages
            (default ``("mapping=<mapping>", "mapping=tensor")``; gaussian-max: ``scope=row``...).

    Returns:
        ``tensor``: a float, ``max|w|`` (0 for an empty, all-zero or non-finite tensor).
        ``channel``: a float64 array of ``w.ndim`` dimensions, the channel axis full and the others 1.
        ``tile-column``: a float64 array of ``w``'s shape. Entries are ``>= 0``; non-finite ones are 0.

    Raises:
        NoiseConfigError: ``channel`` / ``tile-column`` on a tensor without a known output-channel
            axis (one line naming it), or ``tile-column`` with ``tensor.tile_rows`` 0.
    """
    if mapping == "tensor":
        return weight_max(w)
    if mapping not in MAPPINGS:
        raise NoiseConfigError(f"unknown mapping {mapping!r}; choose from {', '.join(MAPPINGS)}")
    spelled = spelled or (f"mapping={mapping}", "mapping=tensor")
    if mapping == "tile-column" and tensor.tile_rows <= 0:
        raise NoiseConfigError(f"{spelled[0]} needs the tile size: set --tile-rows R (input rows per tile; "
                               f"tensor {tensor.name!r})")
    axis = channel_axis(tensor, w.ndim, strict=False)
    if axis is None:
        raise _no_axis(tensor.name, tensor.layer, tensor.op_type, spelled)
    a = np.abs(w.astype(np.float64, copy=False))
    if mapping == "channel":
        others = tuple(i for i in range(w.ndim) if i != axis)
        out = np.max(a, axis=others, keepdims=True) if w.size else np.zeros([1] * w.ndim)
    else:
        try:
            in_axis, kernel_axes = input_axes(w.shape, tensor.op_type, axis)
        except ValueError:
            raise _no_axis(tensor.name, tensor.layer, tensor.op_type, spelled) from None
        out = _tile_column_max(a, in_axis, kernel_axes, tensor.tile_rows)
    return np.where(np.isfinite(out), out, 0.0)


def check_mapping_layers(name: str, mapping: str, layers: Sequence[Any],
                         acts_on: Callable[[str, str, bool], bool], *, spelled: tuple[str, str] | None = None) -> None:
    """Refuse, before any trial, a ``channel`` / ``tile-column`` mapping of a tensor without a channel axis.

    Only layers that know their axes (:attr:`~onnxnoise.model.Layer.channel_axes` not empty) are
    checked here; a hand-built layer without them is refused by :func:`full_scale` at draw time.

    Args:
        name: The model's name (for the message).
        mapping: The mapping asked for.
        layers: The selected layers.
        acts_on: The model's :meth:`~onnxnoise.noise.base.NoiseModel.acts_on`.
        spelled: As for :func:`full_scale`.

    Raises:
        NoiseConfigError: One line naming the first such tensor and how to avoid it.
    """
    if mapping == "tensor":
        return
    for layer in layers:
        axes = tuple(getattr(layer, "channel_axes", ()) or ())
        if not axes:
            continue
        for tensor, role, axis in zip(layer.tensors, layer.roles, axes):
            if acts_on(role, layer.op_type, False) and axis is None:
                spelled = spelled or (f"mapping={mapping}", "mapping=tensor")
                raise NoiseConfigError(f"{name}: {_no_axis(tensor, layer.name, layer.op_type, spelled)}")
