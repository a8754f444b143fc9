"""Load an ONNX model safely and enumerate its parameter layers.

A *layer* is the parameter group of one op, as in Fagbohungbe & Qian (arXiv
2011.11840, Sec. III): a Conv/ConvTranspose/Gemm/MatMul weight with its bias, or one
BatchNormalization's scale, bias, running mean and running variance together. Every
float initializer that an op consumes as a parameter belongs to exactly one layer
(the first op that consumes it, in graph order), so tied weights are one layer.

Functions here are pure: they read a ``ModelProto`` and return new objects, never
changing the model they are given (except :func:`load_model`, which builds it).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from onnxnoise.errors import GraphError
from onnxnoise.model.quant import INT_DTYPES, QUANT_POLICY, QuantParams, dequantize

__all__ = [
    "FLOAT_DTYPES",
    "Layer",
    "ModelIO",
    "load_model",
    "list_layers",
    "select_layers",
    "get_initializers",
    "get_model_io",
    "get_metadata",
]

#: ONNX tensor element types that hold weights (noise applies to these only).
FLOAT_DTYPES: frozenset[int] = frozenset(
    {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.BFLOAT16,
        onnx.TensorProto.DOUBLE,
    }
)

#: Input positions that are never parameters even when fed by a float initializer
#: (scales, pads, bounds, shapes). Positions are 0-based.
_NON_PARAMETER_INPUTS: dict[str, frozenset[int]] = {
    "Resize": frozenset({1, 2, 3}),
    "Upsample": frozenset({1}),
    "Pad": frozenset({1, 2, 3}),
    "Clip": frozenset({1, 2}),
    "Reshape": frozenset({1}),
    "Expand": frozenset({1}),
    "Tile": frozenset({1}),
    "Slice": frozenset({1, 2, 3, 4}),
    "Range": frozenset({0, 1, 2}),
    "ConstantOfShape": frozenset({0}),
    "Dropout": frozenset({1, 2}),
    "QuantizeLinear": frozenset({1, 2}),
    "DequantizeLinear": frozenset({1, 2}),
}

#: Role names of parameter inputs, by op type and input position.
_ROLES: dict[str, tuple[str, ...]] = {
    "Conv": ("input", "weight", "bias"),
    "ConvTranspose": ("input", "weight", "bias"),
    "Gemm": ("a", "weight", "bias"),
    "MatMul": ("a", "b"),
    "BatchNormalization": ("input", "scale", "bias", "mean", "var"),
    "InstanceNormalization": ("input", "scale", "bias"),
    "LayerNormalization": ("input", "scale", "bias"),
    "GroupNormalization": ("input", "scale", "bias"),
    "PRelu": ("input", "slope"),
}


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
        quant: Per tensor, its :class:`onnxnoise.model.quant.QuantParams` when the tensor is
            an integer-quantized weight (QDQ or QLinear op), else ``None``; empty for
            a layer built without it (all float).
        quantization_policy: :data:`onnxnoise.model.quant.QUANT_POLICY` when the layer holds
            a quantized tensor, else ``None``.
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

    def to_dict(self) -> dict:
        """Return the layer as a JSON-ready dict."""
        d = asdict(self)
        d["tensors"] = list(self.tensors)
        d["roles"] = list(self.roles)
        d["shapes"] = [list(s) for s in self.shapes]
        d["quant"] = [None if q is None else q.to_dict() for q in self.quant]
        return d


@dataclass(frozen=True)
class ModelIO:
    """The classifier's image input and score output.

    Attributes:
        input_name: Name of the image input.
        input_shape: Its shape; symbolic or unknown dimensions are ``None``.
        input_dtype: numpy dtype of the input (``float32``, ``uint8``, ...).
        output_name: Name of the score output (logits or probabilities).
        num_classes: Size of the output's last dimension, or ``None`` if symbolic.
        batch_size: The fixed batch dimension, or ``None`` when it is dynamic.
    """

    input_name: str
    input_shape: tuple[int | None, ...]
    input_dtype: np.dtype
    output_name: str
    num_classes: int | None
    batch_size: int | None


def load_model(path: str | os.PathLike) -> onnx.ModelProto:
    """Load an ONNX file, resolving external data safely relative to the model's folder.

    Weights stored in float ``Constant`` nodes (older converters) are lifted into
    initializers so they are found, listed and perturbed like any other weight.

    Args:
        path: Path to a ``.onnx`` file.

    Returns:
        The model with all tensor data in memory.

    Raises:
        GraphError: If the file is missing, is not an ONNX model, has no graph, or
            refers to external data outside the model's folder or missing on disk.
    """
    path = Path(path)
    if not path.exists():
        msg = f"model file not found: {path} (give the path to an .onnx file)"
        raise GraphError(msg)
    if not path.is_file():
        msg = f"model path is not a file: {path} (give the path to an .onnx file)"
        raise GraphError(msg)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        msg = f"{path} is not an ONNX model: protobuf parsing failed ({type(exc).__name__})"
        raise GraphError(msg) from exc
    if not model.HasField("graph") or len(model.graph.node) == 0 or not model.opset_import:
        msg = f"{path} is not an ONNX model: it has no graph nodes or no opset (is it an ONNX file?)"
        raise GraphError(msg)
    _load_external_data(model, path.parent)
    _lift_constants(model)
    return model


def _load_external_data(model: onnx.ModelProto, base_dir: Path) -> None:
    """Read external tensor data, refusing locations that escape ``base_dir``."""
    base = base_dir.resolve()
    external = [t for t in _all_tensors(model) if t.data_location == onnx.TensorProto.EXTERNAL]
    for tensor in external:
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        if not location or os.path.isabs(location) or Path(location).is_absolute():
            msg = (
                f"external data location {location!r} of tensor {tensor.name!r} is absolute or empty; "
                "only paths relative to the model's folder are accepted"
            )
            raise GraphError(msg)
        target = (base / location).resolve()
        if base != target and base not in target.parents:
            msg = (
                f"external data location {location!r} of tensor {tensor.name!r} escapes the model's "
                f"folder {base}; refusing to read it"
            )
            raise GraphError(msg)
        if not target.is_file():
            msg = f"external data file {target} of tensor {tensor.name!r} not found next to the model"
            raise GraphError(msg)
        if (base / location).is_symlink():
            msg = (
                f"external data file {base / location} of tensor {tensor.name!r} is a symbolic link; "
                "copy the data file next to the model"
            )
            raise GraphError(msg)
    if external:
        try:
            onnx.external_data_helper.load_external_data_for_model(model, str(base))
        except Exception as exc:  # onnx's checker errors, short files
            msg = f"cannot read external data of the model in {base}: {exc}"
            raise GraphError(msg) from exc


def _all_tensors(model: onnx.ModelProto):
    yield from model.graph.initializer
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t


def _lift_constants(model: onnx.ModelProto) -> None:
    """Turn float ``Constant`` nodes holding a non-scalar tensor into initializers."""
    keep = []
    lifted = []
    for node in model.graph.node:
        value = None
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.attribute) == 1:
            attr = node.attribute[0]
            if attr.name == "value" and attr.t.data_type in FLOAT_DTYPES:
                value = attr.t
        if value is not None and int(np.prod(value.dims, dtype=np.int64)) > 1:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(value)
            tensor.name = node.output[0]
            lifted.append(tensor)
        else:
            keep.append(node)
    if lifted:
        del model.graph.node[:]
        model.graph.node.extend(keep)
        model.graph.initializer.extend(lifted)


def get_initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Return every initializer as a numpy array, keyed by name.

    Args:
        model: A model from :func:`load_model`.

    Returns:
        ``name -> array`` with the initializer's own dtype and shape (read-only copies).
    """
    arrays = {}
    for tensor in model.graph.initializer:
        array = numpy_helper.to_array(tensor)
        array.setflags(write=False)
        arrays[tensor.name] = array
    return arrays


#: QLinear ops: op type -> ((weight slot, scale slot, zero-point slot, per-axis axis), bias slot or None).
#: The per-axis axis is relative to the weight (``-1``: last axis).
_QLINEAR: dict[str, tuple[tuple[int, int, int, int], int | None]] = {
    "QLinearConv": ((3, 4, 5, 0), 8),
    "QLinearMatMul": ((3, 4, 5, -1), None),
}

_ONNX_DOMAINS = ("", "ai.onnx", "com.microsoft")


def _numel(tensor: onnx.TensorProto) -> int:
    return int(np.prod(tensor.dims, dtype=np.int64))


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    for attr in node.attribute:
        if attr.name == name:
            return int(attr.i)
    return default


def _quant_ok(tensors: dict, q: str, scale: str, zero: str | None, axis: int) -> QuantParams | None:
    """QuantParams for an integer weight ``q`` with scale/zero point initializers, else None."""
    if q not in tensors or tensors[q].data_type not in INT_DTYPES or _numel(tensors[q]) <= 1:
        return None
    if scale not in tensors or (zero and zero not in tensors):
        return None
    scale_t = tensors[scale]
    n = _numel(scale_t)
    rank = len(tensors[q].dims)
    if n == 1:
        return QuantParams(scale=(scale,), zero_point=zero or None, axis=None, format="")
    axis = axis + rank if axis < 0 else axis
    if len(scale_t.dims) != 1 or not 0 <= axis < rank or tensors[q].dims[axis] != n:
        return None  # blocked or malformed quantization: not supported
    return QuantParams(scale=(scale,), zero_point=zero or None, axis=axis, format="")


def _weight_paths(nodes, tensors: dict) -> tuple[dict[str, tuple[str, QuantParams | None]], set[int]]:
    """Map the float outputs of weight-dequantizing nodes to the initializer behind them.

    Returns ``(alias, path_nodes)``: ``alias[output] = (initializer, QuantParams or None)``
    for ``DequantizeLinear(int initializer)`` (QDQ, params set), for
    ``DequantizeLinear(QuantizeLinear(float initializer))`` (params ``None``: the float
    weight is noised and the graph quantizes it) and for ``Cast(float initializer)``
    to a float type (fp16/bf16 weights cast to float32); ``path_nodes`` are those
    nodes' positions, which are not layers themselves.
    """
    alias: dict[str, tuple[str, QuantParams | None]] = {}
    path_nodes: set[int] = set()
    quantized_float: dict[str, tuple[str, int]] = {}
    for position, node in enumerate(nodes):
        if node.domain not in _ONNX_DOMAINS or not node.input:
            continue
        source = node.input[0]
        if node.op_type == "Cast" and source in tensors and tensors[source].data_type in FLOAT_DTYPES:
            if _numel(tensors[source]) > 1 and _attr(node, "to", 0) in FLOAT_DTYPES:
                alias[node.output[0]] = (source, None)  # fp16/bf16 weight cast to float32
                path_nodes.add(position)
        elif node.op_type == "QuantizeLinear":
            if source in tensors and tensors[source].data_type in FLOAT_DTYPES and _numel(tensors[source]) > 1:
                quantized_float[node.output[0]] = (source, position)
        elif node.op_type == "DequantizeLinear" and len(node.input) >= 2:
            if source in quantized_float:
                name, q_position = quantized_float[source]
                alias[node.output[0]] = (name, None)
                path_nodes.update({position, q_position})
            elif _attr(node, "block_size", 0) == 0:
                zero = node.input[2] if len(node.input) > 2 else None
                params = _quant_ok(tensors, source, node.input[1], zero, _attr(node, "axis", 1))
                if params is not None:
                    alias[node.output[0]] = (source, QuantParams(params.scale, params.zero_point, params.axis, "QDQ"))
                    path_nodes.add(position)
    return alias, path_nodes


def _qlinear_params(node: onnx.NodeProto, tensors: dict) -> list[tuple[str, str, QuantParams]]:
    """``(tensor, role, params)`` of a QLinearConv / QLinearMatMul node's weight and bias."""
    (w_slot, s_slot, z_slot, axis), bias_slot = _QLINEAR[node.op_type]
    inputs = list(node.input)
    if len(inputs) <= z_slot:
        return []
    params = _quant_ok(tensors, inputs[w_slot], inputs[s_slot], inputs[z_slot], axis)
    if params is None:
        return []
    found = [(inputs[w_slot], "weight", QuantParams(params.scale, params.zero_point, params.axis, "QLinear"))]
    if bias_slot is not None and len(inputs) > bias_slot and inputs[bias_slot]:
        bias, x_scale = inputs[bias_slot], inputs[1]
        ok = (
            bias in tensors
            and tensors[bias].data_type == onnx.TensorProto.INT32
            and x_scale in tensors
            and _numel(tensors[x_scale]) == 1
        )
        if ok:
            axis_b = None if params.axis is None else 0
            found.append((bias, "bias", QuantParams((x_scale, inputs[s_slot]), None, axis_b, "QLinear")))
    return found


def list_layers(model: onnx.ModelProto) -> list[Layer]:
    """List the model's parameter layers in graph order.

    A node input counts as a parameter when it is a float initializer (float32,
    float16, bfloat16, float64) with more than one element, and its position is not a
    known non-parameter slot (Resize scales, Pad pads, Clip bounds, ...). Integer
    tensors, shape tensors and scalars are never parameters, except integer-quantized
    weights: an integer initializer behind a ``DequantizeLinear`` (QDQ; the layer is
    the op consuming the dequantized value), or the weight and bias of a
    ``QLinearConv`` / ``QLinearMatMul``; see :mod:`onnxnoise.model.quant`. An ``Add`` that
    adds a float (or dequantized) initializer to the output of a ``MatMul`` layer
    joins that layer as its bias. A float weight reached through ``Cast`` (fp16/bf16
    weights cast to float32) or ``QuantizeLinear -> DequantizeLinear`` belongs to the
    op consuming the cast / dequantized value.

    Args:
        model: A model from :func:`load_model`.

    Returns:
        Layers sorted by ``index``; an empty list when nothing is perturbable.
    """
    tensors = {t.name: t for t in model.graph.initializer}
    alias, path_nodes = _weight_paths(model.graph.node, tensors)
    owned: set[str] = set()
    groups: list[dict] = []
    by_output: dict[str, dict] = {}
    for position, node in enumerate(model.graph.node):
        if position in path_nodes:
            continue
        skip = _NON_PARAMETER_INPUTS.get(node.op_type, frozenset())
        names: list[str] = []
        roles: list[str] = []
        quant: list[QuantParams | None] = []
        role_names = _ROLES.get(node.op_type, ())
        if node.op_type in _QLINEAR and node.domain in _ONNX_DOMAINS:
            for name, role, params in _qlinear_params(node, tensors):
                if name not in owned:
                    names.append(name)
                    roles.append(role)
                    quant.append(params)
        else:
            for slot, name in enumerate(node.input):
                if slot in skip:
                    continue
                params = None
                if name in alias:
                    name, params = alias[name]
                if name in owned or name in names or name not in tensors:
                    continue
                if params is None:
                    tensor = tensors[name]
                    if tensor.data_type not in FLOAT_DTYPES or _numel(tensor) <= 1:
                        continue
                names.append(name)
                roles.append(role_names[slot] if slot < len(role_names) else f"input{slot}")
                quant.append(params)
        if not names:
            continue
        owned.update(names)
        matmul = next((by_output[i] for i in node.input if i in by_output), None)
        if node.op_type == "Add" and matmul is not None and matmul["op_type"] == "MatMul":
            matmul["tensors"] += names
            matmul["roles"] += ["bias"] * len(names)
            matmul["quant"] += quant
            continue
        group = {
            "name": node.name or f"{node.op_type}_{position}",
            "op_type": node.op_type,
            "tensors": names,
            "roles": roles,
            "quant": quant,
        }
        if node.op_type == "MatMul":
            group["roles"] = ["weight"] * len(names)
        groups.append(group)
        for out in node.output:
            by_output[out] = group
    layers = []
    arrays_by_name: dict[str, np.ndarray] = {}

    def array(name: str) -> np.ndarray:
        if name not in arrays_by_name:
            arrays_by_name[name] = numpy_helper.to_array(tensors[name])
        return arrays_by_name[name]

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
            )
        )
    return layers


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
        msg = f"`--layers` {pattern!r} is not a valid regular expression: {exc}"
        raise GraphError(msg) from exc
    chosen = [layer for layer in layers if regex.search(layer.name) or regex.search(layer.op_type)]
    if not chosen:
        examples = ", ".join(layer.name for layer in layers[:3])
        msg = f"`--layers` {pattern!r} matches no layer (names look like: {examples}); see `onnxnoise layers MODEL`"
        raise GraphError(msg)
    return chosen


def _dims(value_info: onnx.ValueInfoProto) -> tuple[int | None, ...]:
    shape = value_info.type.tensor_type.shape
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in shape.dim)


def get_model_io(model: onnx.ModelProto, *, output: str | None = None) -> ModelIO:
    """Find the image input and the class-score output of a classifier.

    Args:
        model: A model from :func:`load_model`.
        output: Name of the score output; default the first graph output.

    Returns:
        The :class:`ModelIO` description.

    Raises:
        GraphError: If the model has no non-initializer input, or ``output`` is unknown.
    """
    init_names = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init_names]
    if not inputs:
        msg = "the model has no image input (every graph input is an initializer)"
        raise GraphError(msg)
    image = inputs[0]
    outputs = {o.name: o for o in model.graph.output}
    if output is None:
        out = model.graph.output[0]
    elif output in outputs:
        out = outputs[output]
    else:
        msg = f"`--output` {output!r} is not a graph output; choose one of {sorted(outputs)}"
        raise GraphError(msg)
    in_shape = _dims(image)
    out_shape = _dims(out)
    elem = image.type.tensor_type.elem_type
    return ModelIO(
        input_name=image.name,
        input_shape=in_shape,
        input_dtype=np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)),
        output_name=out.name,
        num_classes=out_shape[-1] if out_shape else None,
        batch_size=in_shape[0] if in_shape else None,
    )


def get_metadata(model: onnx.ModelProto) -> dict[str, str]:
    """Return the model's ``metadata_props`` as a dict."""
    return {p.key: p.value for p in model.metadata_props}
