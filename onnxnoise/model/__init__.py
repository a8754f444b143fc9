"""The model: loading an ONNX file safely, its input/output, and its parameter layers.

Typical use::

    from onnxnoise.model import get_model_io, list_layers, load_model

    model = load_model("resnet20.onnx")       # external data read safely, Constants lifted
    io = get_model_io(model)                  # image input, score output, num_classes
    layers = list_layers(model)               # one Layer per weight-owning op, graph order

Modules: :mod:`~onnxnoise.model.loading` (file, tensors, input/output, metadata),
:mod:`~onnxnoise.model.lifting` (sparse, Constant and subgraph weights moved to the main graph),
:mod:`~onnxnoise.model.layers` (layer discovery and selection, what was set aside),
:mod:`~onnxnoise.model.graph_view` (nodes, consumers, constants),
:mod:`~onnxnoise.model.tensor_roles` (which float tensors are parameters, input preprocessing),
:mod:`~onnxnoise.model.layer_groups` (which op owns which tensors),
:mod:`~onnxnoise.model.weight_chains` (weights behind Transpose / Reshape / ... chains, Einsum weights),
:mod:`~onnxnoise.model.quant` (integer weights: parameters, dequantize/requantize),
:mod:`~onnxnoise.model.quant_patterns` (the QDQ / QLinear / Cast weight patterns) and
:mod:`~onnxnoise.model.integer_ops` (dynamic quantization, QGemm; refusals).
"""

from __future__ import annotations

from onnxnoise.model.layers import Layer, LayerReport, SetAside, layer_report, list_layers, select_layers
from onnxnoise.model.loading import (
    FLOAT_DTYPES,
    ModelIO,
    get_initializers,
    get_metadata,
    get_model_io,
    load_model,
    score_width,
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
    "LayerReport",
    "ModelIO",
    "QuantParams",
    "dequantize",
    "describe_quantization",
    "get_initializers",
    "get_metadata",
    "get_model_io",
    "layer_report",
    "list_layers",
    "load_model",
    "requantize",
    "score_width",
    "select_layers",
    "SetAside",
    "tensor_array",
    "tensor_numel",
]
