"""The model: loading an ONNX file safely, its input/output, and its parameter layers.

Typical use::

    from onnxnoise.model import get_model_io, list_layers, load_model

    model = load_model("resnet20.onnx")       # external data read safely, Constants lifted
    io = get_model_io(model)                  # image input, score output, num_classes
    layers = list_layers(model)               # one Layer per weight-owning op, graph order

Modules: :mod:`~onnxnoise.model.loading` (file, tensors, input/output, metadata),
:mod:`~onnxnoise.model.layers` (layer discovery and selection),
:mod:`~onnxnoise.model.quant` (integer weights: parameters, dequantize/requantize) and
:mod:`~onnxnoise.model.quant_patterns` (the QDQ / QLinear / Cast weight patterns).
"""

from __future__ import annotations

from onnxnoise.model.layers import Layer, list_layers, select_layers
from onnxnoise.model.loading import (
    FLOAT_DTYPES,
    ModelIO,
    get_initializers,
    get_metadata,
    get_model_io,
    load_model,
    tensor_array,
    tensor_numel,
)
from onnxnoise.model.quant import (
    INT_DTYPES,
    QUANT_POLICY,
    QuantParams,
    dequantize,
    describe_quantization,
    requantize,
)

__all__ = [
    "FLOAT_DTYPES",
    "INT_DTYPES",
    "QUANT_POLICY",
    "Layer",
    "ModelIO",
    "QuantParams",
    "dequantize",
    "describe_quantization",
    "get_initializers",
    "get_metadata",
    "get_model_io",
    "list_layers",
    "load_model",
    "requantize",
    "select_layers",
    "tensor_array",
    "tensor_numel",
]
