"""Load an ONNX model safely and read its tensors, input/output and metadata.

Functions here are pure: they read a ``ModelProto`` and return new objects, never
changing the model they are given (except :func:`load_model`, which builds it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import Message

from onnxnoise.errors import GraphError
from onnxnoise.model.lifting import lift_weights
from onnxnoise.model.sizes import all_tensors, check_tensor_sizes
from onnxnoise.model.tensors import FLOAT_DTYPES, tensor_array, tensor_numel

__all__ = [
    "FLOAT_DTYPES",
    "ModelIO",
    "load_model",
    "get_initializers",
    "get_model_io",
    "get_metadata",
    "tensor_array",
    "tensor_numel",
]

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

    Weights stored where layer discovery does not look are moved into the main graph's
    initializers so they are found, listed and perturbed like any other weight: float
    ``Constant`` nodes (``value``, ``value_floats``, ``sparse_value``; older converters),
    ``sparse_initializer`` entries (densified) and initializers inside ``If`` / ``Loop`` /
    ``Scan`` bodies (see :mod:`onnxnoise.model.lifting`).

    Args:
        path: Path to a ``.onnx`` file.

    Returns:
        The model with all tensor data in memory.

    Raises:
        GraphError: If the file is missing, is not an ONNX model, has no graph, holds
            a name or text that is not valid UTF-8 (a tensor, node or metadata name),
            refers to external data outside the model's folder or missing on disk, or
            declares tensor sizes its data cannot back (negative dimensions, a shape
            that disagrees with the stored values, sparse tensors too large to densify:
            :func:`onnxnoise.model.sizes.check_tensor_sizes`), before building any tensor.
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
    _check_text(model, path)
    _load_external_data(model, path.parent)
    check_tensor_sizes(model)
    lift_weights(model)
    return model


def _check_text(model: onnx.ModelProto, path: Path) -> None:
    """Refuse a string field (tensor, node, graph or metadata name, op type, doc string...) that is not valid
    UTF-8: protobuf hands it over as ``bytes``, which every name lookup and report downstream would trip on."""
    stack: list[Message] = [model]
    while stack:
        message = stack.pop()
        for field, value in message.ListFields():
            if field.type == field.TYPE_MESSAGE:
                stack.extend([value] if isinstance(value, Message) else value)
            elif field.type == field.TYPE_STRING:
                items = [value] if isinstance(value, (str, bytes)) else value
                bad = next((item for item in items if isinstance(item, bytes)), None)
                if bad is not None:
                    msg = (f"{path} holds a {type(message).__name__}.{field.name} that is not valid UTF-8 ({bad!r}); "
                           "ONNX names and text are UTF-8: rename it where the model is exported and save it again")
                    raise GraphError(msg)


def _load_external_data(model: onnx.ModelProto, base_dir: Path) -> None:
    """Read external tensor data, refusing locations that escape ``base_dir``."""
    base = base_dir.resolve()
    external = [t for t in all_tensors(model) if t.data_location == onnx.TensorProto.EXTERNAL]
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


def get_initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Return every initializer as a numpy array, keyed by name.

    Args:
        model: A model from :func:`load_model`.

    Returns:
        ``name -> array`` with the initializer's own dtype and shape (read-only copies).

    Raises:
        GraphError: If an initializer's data does not match its dtype and shape.
    """
    arrays = {}
    for tensor in model.graph.initializer:
        array = tensor_array(tensor)
        array.setflags(write=False)
        arrays[tensor.name] = array
    return arrays


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
        GraphError: If the model has no non-initializer input, no graph output, an
            image input without a tensor element type, or ``output`` is unknown.
    """
    init_names = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init_names]
    if not inputs:
        msg = "the model has no image input (every graph input is an initializer)"
        raise GraphError(msg)
    image = inputs[0]
    outputs = {o.name: o for o in model.graph.output}
    if not outputs:
        msg = "the model has no graph output, so it has no class scores; export it with its logits as an output"
        raise GraphError(msg)
    if output is None:
        out = model.graph.output[0]
    elif output in outputs:
        out = outputs[output]
    else:
        msg = f"`--score-output` {output!r} is not a graph output; choose one of {sorted(outputs)}"
        raise GraphError(msg)
    in_shape = _dims(image)
    out_shape = _dims(out)
    elem = image.type.tensor_type.elem_type
    try:
        input_dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem))
    except (KeyError, TypeError, ValueError):
        msg = (
            f"the model's image input {image.name!r} has no usable tensor element type ({elem}); "
            "export the model with a typed input (e.g. float32)"
        )
        raise GraphError(msg) from None
    return ModelIO(
        input_name=image.name,
        input_shape=in_shape,
        input_dtype=input_dtype,
        output_name=out.name,
        num_classes=out_shape[-1] if out_shape else None,
        batch_size=in_shape[0] if in_shape else None,
    )


def get_metadata(model: onnx.ModelProto) -> dict[str, str]:
    """Return the model's ``metadata_props`` as a dict."""
    return {p.key: p.value for p in model.metadata_props}
