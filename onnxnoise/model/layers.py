"""Enumerate and select a model's parameter layers.

A *layer* is the parameter group of one op, as in Fagbohungbe & Qian (arXiv
2011.11840, Sec. III): a Conv/ConvTranspose/Gemm/MatMul weight with its bias, or one
BatchNormalization's scale, bias, running mean and running variance together. Every
float initializer that an op consumes as a parameter belongs to exactly one layer
(the first op that consumes it, in graph order), so tied weights are one layer.

Functions here are pure: they read a ``ModelProto`` and return new objects, never
changing the model they are given.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx

from onnxnoise.errors import GraphError
from onnxnoise.model.graph_view import graph_view
from onnxnoise.model.integer_ops import integer_layers
from onnxnoise.model.layer_groups import parameter_groups
from onnxnoise.model.lifting import left_out
from onnxnoise.model.tensors import FLOAT_DTYPES, tensor_array, tensor_numel
from onnxnoise.model.quant import QUANT_POLICY, QuantParams, dequantize
from onnxnoise.model.quant_patterns import is_qlinear, qlinear_params
from onnxnoise.model.tensor_roles import tensor_roles

__all__ = ["Layer", "LayerReport", "SetAside", "layer_report", "list_layers", "select_layers"]

logger = logging.getLogger("onnxnoise.model")


@dataclass(frozen=True)
class Layer:
    """One parameter layer: the float initializers one op owns.

    Attributes:
        index: 0-based position among the model's layers, in graph order.
        name: The node's name, or ``<op_type>_<node position>`` when it has none.
        op_type: ONNX op type of the owning node (e.g. ``Conv``, ``BatchNormalization``).
        tensors: Initializer names owned by the layer, in input order.
        roles: Role of each tensor (``weight``, ``bias``, ``scale``, ``mean``, ``var``, ...).
        shapes: Shape of each tensor.
        num_params: Total number of elements over ``tensors``.
        sigma_w: Standard deviation of the layer's first tensor (the weight or BN
            scale), the ``sigma_w`` of paper eq. 1; noise uses each tensor's own std.
            For an integer-quantized tensor it is the std of the dequantized values.
        quant: Per tensor, its :class:`onnxnoise.model.QuantParams` when the tensor is
            an integer-quantized weight (QDQ or QLinear op), else ``None``; empty for
            a layer built without it (all float).
        quantization_policy: :data:`onnxnoise.model.QUANT_POLICY` when the layer holds
            a quantized tensor, else ``None``.
        channel_axes: Per tensor, the axis that runs along the op's output channels
            (non-negative), or ``None`` where the tensor has none; empty for a layer
            built without it. Conv / QLinearConv weight ``[C_out, C_in/g, k...]``: 0;
            ConvTranspose weight ``[C_in, C_out/g, k...]``: 1; Gemm ``B``: 0 with
            ``transB=1`` (``[N, K]``), 1 with ``transB=0`` (``[K, N]``); MatMul /
            QLinearMatMul ``B`` ``[..., K, N]``: its last axis, a MatMul ``A`` initializer
            ``[..., M, K]``: its second-to-last. A weight read through layout ops
            (``Transpose``, ``Reshape``, ``Flatten``, ``Squeeze``, ``Unsqueeze``) gets the
            stored tensor's axis that becomes that axis (``None`` when a reshape merges it
            with others); an ``Einsum`` weight the one index only it brings to the output.
            Biases, 1-D tensors, normalization parameters and other ops: ``None``.
    """

    index: int
    name: str
    op_type: str
    tensors: tuple[str, ...]
    roles: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    num_params: int
    sigma_w: float
    quant: tuple[QuantParams | None, ...] = ()
    quantization_policy: str | None = None
    channel_axes: tuple[int | None, ...] = ()

    def to_dict(self) -> dict:
        """Return the layer as a JSON-ready dict."""
        d = asdict(self)
        d["tensors"] = list(self.tensors)
        d["roles"] = list(self.roles)
        d["shapes"] = [list(s) for s in self.shapes]
        d["quant"] = [None if q is None else q.to_dict() for q in self.quant]
        d["channel_axes"] = list(self.channel_axes)
        return d


@dataclass(frozen=True)
class SetAside:
    """A float tensor of more than one value that is not listed as (part of) a layer, and why.

    Attributes:
        tensor: Initializer name.
        shape: Its shape.
        reason: Why it is not noised (a shape or index, input preprocessing, ...).
        preprocessing: True for an input-preprocessing constant (listed and noised only
            with ``include_preprocessing``).
    """

    tensor: str
    shape: tuple[int, ...]
    reason: str
    preprocessing: bool = False

    def to_dict(self) -> dict:
        """Return the entry as a JSON-ready dict."""
        return {"tensor": self.tensor, "shape": list(self.shape), "reason": self.reason,
                "preprocessing": self.preprocessing}


@dataclass(frozen=True)
class LayerReport:
    """Everything layer discovery found: the layers, what it set aside, what it cannot see.

    Attributes:
        layers: As :func:`list_layers` returns them.
        set_aside: Float initializers that are not parameters (:class:`SetAside`).
        left_out: One line per weight stored where discovery does not look, or whose
            quantization is not supported (not listed, not noised).
    """

    layers: list[Layer]
    set_aside: list[SetAside] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)

    def set_aside_lines(self, shown: int = 20) -> list[str]:
        """Lines saying what was set aside and why (for ``onnxnoise layers``); empty if nothing."""
        if not self.set_aside:
            return []
        lines = [f"set aside, not noised ({len(self.set_aside)} float tensor(s)):"]
        lines += [f"  {entry.tensor} {list(entry.shape)}: {entry.reason}" for entry in self.set_aside[:shown]]
        if len(self.set_aside) > shown:
            lines.append(f"  ... and {len(self.set_aside) - shown} more (see `onnxnoise layers --json`)")
        if any(entry.preprocessing for entry in self.set_aside):
            lines.append("  input-preprocessing constants are left out of the layers and of A_avr; "
                         "list_layers(model, include_preprocessing=True) includes them")
        return lines


def list_layers(model: onnx.ModelProto, *, include_preprocessing: bool = False) -> list[Layer]:
    """List the model's parameter layers in graph order.

    A float initializer (float32, float16, bfloat16, float64) with more than one
    element is a parameter when its value, followed through ops on constants
    (``Cast``, ``Identity``, ``Reshape``, ...), reaches an op that applies it to the
    data as a value. It is not one when it only becomes a shape or an index (``Reshape``
    shape, ``Slice`` starts, a ``Cast`` to int64, ...), and input-preprocessing
    constants (``Sub(mean)`` / ``Div(std)`` applied to the graph input before the first
    weight op) are set aside unless ``include_preprocessing``; see
    :mod:`onnxnoise.model.tensor_roles`. Integer tensors and scalars are never
    parameters, except integer-quantized weights: an integer initializer behind a
    ``DequantizeLinear`` (QDQ; the layer is the op consuming the dequantized value), the
    weight and bias of a ``QLinearConv`` / ``QLinearMatMul`` (see
    :mod:`onnxnoise.model.quant`), and the weight of a dynamically quantized
    ``MatMulInteger`` / ``ConvInteger`` and of ``QGemm`` (see
    :mod:`onnxnoise.model.integer_ops`). An ``Add`` that adds a float (or dequantized)
    initializer to the output of a ``MatMul`` layer joins that layer as its bias. A
    float weight reached through ``Cast`` (fp16/bf16 weights cast to float32),
    ``Identity`` or ``QuantizeLinear -> DequantizeLinear`` belongs to the op consuming
    it; so does a weight reaching a Conv / ConvTranspose / Gemm / MatMul / Einsum weight
    slot through ``Transpose`` / ``Reshape`` / ``Flatten`` / ``Squeeze`` / ``Unsqueeze``
    (role ``weight``; see :mod:`onnxnoise.model.weight_chains`). Weights inside ``If`` / ``Loop`` / ``Scan`` bodies are listed when
    :func:`onnxnoise.model.load_model` could move them to the main graph; anything left
    where discovery does not look is logged as a warning (see :func:`layer_report`).

    Args:
        model: A model from :func:`onnxnoise.model.load_model`.
        include_preprocessing: Also list input-preprocessing constants as layers.

    Returns:
        Layers sorted by ``index``; an empty list when nothing is perturbable.

    Raises:
        GraphError: If a parameter initializer's data does not match its dtype and shape,
            or the model holds integer weights onnxnoise cannot noise.
    """
    report = layer_report(model, include_preprocessing=include_preprocessing)
    for line in report.left_out:
        logger.warning("weight left out (not listed, not noised): %s", line)
    return report.layers


def layer_report(model: onnx.ModelProto, *, include_preprocessing: bool = False) -> LayerReport:
    """The layers of :func:`list_layers`, what was set aside and why, and what was left out.

    Raises:
        GraphError: As :func:`list_layers`.
    """
    view = graph_view(model)
    tensors = view.tensors
    integer = integer_layers(view)
    quant_names = frozenset(n for found in integer.values() for n in found.quant_names)
    roles = tensor_roles(view, exclude=quant_names, include_preprocessing=include_preprocessing)
    groups, alias = parameter_groups(view, roles.parameters, integer)
    arrays_by_name: dict[str, np.ndarray] = {}

    def array(name: str) -> np.ndarray:
        if name not in arrays_by_name:
            arrays_by_name[name] = tensor_array(tensors[name])
        return arrays_by_name[name]

    layers = []
    for index, group in enumerate(groups):
        arrays = [array(n) for n in group["tensors"]]
        first, first_params = arrays[0], group["quant"][0]
        if first_params is not None:
            needed = [*first_params.scale, *([first_params.zero_point] if first_params.zero_point else [])]
            first = dequantize(first, first_params, {n: array(n) for n in needed})
        quantized = any(q is not None for q in group["quant"])
        layers.append(
            Layer(
                index=index,
                name=group["name"],
                op_type=group["op_type"],
                tensors=tuple(group["tensors"]),
                roles=tuple(group["roles"]),
                shapes=tuple(tuple(int(d) for d in a.shape) for a in arrays),
                num_params=int(sum(a.size for a in arrays)),
                sigma_w=float(np.std(first.astype(np.float64))),
                quant=tuple(group["quant"]),
                quantization_policy=QUANT_POLICY if quantized else None,
                channel_axes=tuple(group["axes"]),
            )
        )
    listed = {t for layer in layers for t in layer.tensors}
    listed |= {n for layer in layers for p in layer.quant if p is not None
               for n in (*p.scale, *([p.zero_point] if p.zero_point else []))}  # shown with their weights
    set_aside = [SetAside(name, tuple(int(d) for d in tensors[name].dims), reason, name in roles.preprocessing)
                 for name, reason in roles.set_aside.items() if name not in listed]
    lines = left_out(model) + _unmatched_dequantize(view, alias)
    return LayerReport(layers, set_aside, lines)


def _unmatched_dequantize(view, alias) -> list[str]:
    """Integer weights behind a ``DequantizeLinear`` or in a QLinear op that no supported pattern matched."""
    lines = []
    for node in view.nodes:
        if node.op_type == "DequantizeLinear" and node.input and node.output[0] not in alias:
            weight, what = node.input[0], "blocked, 4-bit or malformed quantization is not supported"
        elif is_qlinear(node) and len(node.input) > 3 and not qlinear_params(node, view.tensors):
            weight, what = node.input[3], "its scale or zero point is not a supported constant"
        else:
            continue
        tensor = view.tensors.get(weight)
        if tensor is not None and tensor.data_type not in FLOAT_DTYPES and tensor_numel(tensor) > 1:
            dtype = onnx.TensorProto.DataType.Name(tensor.data_type)
            lines.append(f"{dtype} weight {tensor.name!r} of {node.op_type} {node.name or node.output[0]!r} ({what})")
    return lines


def select_layers(layers: list[Layer], pattern: str | None = None) -> list[Layer]:
    """Keep the layers whose name or op type matches a regular expression.

    Args:
        layers: Output of :func:`list_layers`.
        pattern: ``None`` or ``"all"`` keeps every layer; otherwise a Python regular
            expression searched (``re.search``) in each layer's name and op type.

    Returns:
        The matching layers, in their original order (indices unchanged).

    Raises:
        GraphError: If the pattern is not a valid regular expression or matches nothing.
    """
    if pattern is None or pattern == "all":
        return list(layers)
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        msg = f"`--layer-regex` {pattern!r} is not a valid regular expression: {exc}"
        raise GraphError(msg) from exc
    chosen = [layer for layer in layers if regex.search(layer.name) or regex.search(layer.op_type)]
    if not chosen:
        examples = ", ".join(layer.name for layer in layers[:3])
        msg = f"`--layer-regex` {pattern!r} matches no layer (names look like: {examples}); see `onnxnoise layers MODEL`"
        raise GraphError(msg)
    return chosen
