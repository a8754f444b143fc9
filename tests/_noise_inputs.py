"""Inputs for noise-model tests: a hand-made :class:`~onnxnoise.model.Layer`, its :class:`~onnxnoise.noise.TensorInfo`,
a random conv weight and bias, and :data:`KS_P` (the significance level of their statistical checks)."""

from __future__ import annotations

import numpy as np

from onnxnoise.model import Layer
from onnxnoise.noise import TensorInfo

#: A correct model fails a KS / binomial test this rarely; seeds are fixed, so it is deterministic.
KS_P = 1e-3


def make_layer(name, tensors, shapes, roles, op_type="Conv", axes=(), index=0) -> Layer:
    """A :class:`Layer` ``index``/``name`` of ``op_type`` holding ``tensors`` (with ``shapes``, ``roles``, channel ``axes``)."""
    return Layer(index, name, op_type, tuple(tensors), tuple(roles), tuple(tuple(s) for s in shapes),
                 int(sum(np.prod(s) for s in shapes)), 0.0, channel_axes=tuple(axes))


def tensor_info(name, layer: Layer, w, layers=(), values=None) -> TensorInfo:
    """The :class:`TensorInfo` a noise model sees for tensor ``name`` of ``layer`` holding ``w``."""
    i = layer.tensors.index(name)
    return TensorInfo(name=name, role=layer.roles[i], op_type=layer.op_type, layer=layer.name,
                      stored_dtype=w.dtype, layer_values=values, model_layers=tuple(layers))


def conv_weight(rng, shape=(64, 32, 10, 10), scale=0.2):
    """``(layer, {name: array})``: a float32 conv weight N(0, scale) of ``shape`` and its bias N(0, 1)."""
    w = rng.normal(0.0, scale, size=shape).astype(np.float32)
    b = rng.normal(0.0, 1.0, size=(shape[0],)).astype(np.float32)
    layer = make_layer("conv", ("conv.w", "conv.b"), (w.shape, b.shape), ("weight", "bias"), axes=(0, None))
    return layer, {"conv.w": w, "conv.b": b}
