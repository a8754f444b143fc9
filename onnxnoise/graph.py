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
    """

    index: int
    name: str
    op_type: str
    tensors: tuple[str, ...]
    roles: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    num_params: int
    sigma_w: float

    def to_dict(self) -> dict:
        """Return the layer as a JSON-ready dict."""
        d = asdict(self)
        d["tensors"] = list(self.tensors)
        d["roles"] = list(self.roles)
        d["shapes"] = [list(s) for s in self.shapes]
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
    if external:
        onnx.external_data_helper.load_external_data_for_model(model, str(base))


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


def list_layers(model: onnx.ModelProto) -> list[Layer]:
    """List the model's parameter layers in graph order.

    A node input counts as a parameter when it is a float initializer (float32,
    float16, bfloat16, float64) with more than one element, and its position is not a
    known non-parameter slot (Resize scales, Pad pads, Clip bounds, ...). Integer
    tensors, shape tensors and scalars are never parameters. An ``Add`` that adds a
    float initializer to the output of a ``MatMul`` layer joins that layer as its bias.

    Args:
        model: A model from :func:`load_model`.

    Returns:
        Layers sorted by ``index``; an empty list when nothing is perturbable.
    """
    tensors = {t.name: t for t in model.graph.initializer}
    owned: set[str] = set()
    groups: list[dict] = []
    by_output: dict[str, dict] = {}
    for position, node in enumerate(model.graph.node):
        skip = _NON_PARAMETER_INPUTS.get(node.op_type, frozenset())
        names: list[str] = []
        roles: list[str] = []
        role_names = _ROLES.get(node.op_type, ())
        for slot, name in enumerate(node.input):
            if slot in skip or name in owned or name not in tensors:
                continue
            tensor = tensors[name]
            if tensor.data_type not in FLOAT_DTYPES or int(np.prod(tensor.dims, dtype=np.int64)) <= 1:
                continue
            names.append(name)
            roles.append(role_names[slot] if slot < len(role_names) else f"input{slot}")
        if not names:
            continue
        owned.update(names)
        matmul = next((by_output[i] for i in node.input if i in by_output), None)
        if node.op_type == "Add" and matmul is not None and matmul["op_type"] == "MatMul":
            matmul["tensors"] += names
            matmul["roles"] += ["bias"] * len(names)
            continue
        group = {
            "name": node.name or f"{node.op_type}_{position}",
            "op_type": node.op_type,
            "tensors": names,
            "roles": roles,
        }
        if node.op_type == "MatMul":
            group["roles"] = ["weight"] * len(names)
        groups.append(group)
        for out in node.output:
            by_output[out] = group
    layers = []
    for index, group in enumerate(groups):
        arrays = [numpy_helper.to_array(tensors[n]) for n in group["tensors"]]
        layers.append(
            Layer(
                index=index,
                name=group["name"],
                op_type=group["op_type"],
                tensors=tuple(group["tensors"]),
                roles=tuple(group["roles"]),
                shapes=tuple(tuple(int(d) for d in a.shape) for a in arrays),
                num_params=int(sum(a.size for a in arrays)),
                sigma_w=float(np.std(arrays[0], dtype=np.float64)),
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
