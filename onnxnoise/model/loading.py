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
    "score_width",
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
        num_classes: Number of class scores per image: the one non-batch dimension above 1
            (``[N, C]``, ``[N, C, 1, 1]`` and ``[N, 1, 1, C]`` all give ``C``; ``[N]`` and
            ``[N, 1]`` give 1), or ``None`` when it is symbolic.
        batch_size: The fixed batch dimension, or ``None`` when it is dynamic.
        score_outputs: The model's float outputs (the ones that can hold class scores), each
            as ``name [dims]`` text, graph order: for messages that offer ``--score-output``.
    """

    input_name: str
    input_shape: tuple[int | None, ...]
    input_dtype: np.dtype
    output_name: str
    num_classes: int | None
    batch_size: int | None
    score_outputs: tuple[str, ...] = ()

    def other_outputs(self) -> str:
        """``"; other float outputs: b [N, 4]; choose one with --score-output NAME"``, or ``""`` when none."""
        others = [text for text in self.score_outputs if text.split(" ", 1)[0] != self.output_name]
        return f"; other float outputs: {', '.join(others)}; choose one with --score-output NAME" if others else ""


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


#: Element types of an output that can hold class scores (logits or probabilities); an output
#: whose type the graph leaves undefined is given the benefit of the doubt.
_SCORE_TYPES = frozenset({onnx.TensorProto.UNDEFINED, onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                          onnx.TensorProto.BFLOAT16})


def _describe(value_info: onnx.ValueInfoProto) -> str:
    """``name [N, 1000]`` (symbolic dimensions by their name, unknown ones as ``?``)."""
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in value_info.type.tensor_type.shape.dim]
    return f"{value_info.name} [{', '.join(map(str, dims))}]"


def _type_name(value_info: onnx.ValueInfoProto) -> str:
    elem = value_info.type.tensor_type.elem_type
    try:
        return onnx.TensorProto.DataType.Name(elem).lower()
    except ValueError:
        return f"type {elem}"


def _class_count(out: onnx.ValueInfoProto, floats: list[str]) -> int | None:
    """Class scores per image of a score output: its one non-batch dimension above 1.

    Raises:
        GraphError: Two or more static non-batch dimensions above 1 (a feature map, not scores).
    """
    dims = _dims(out)
    if not dims:
        return None
    wide = [d for d in dims[1:] if d != 1]
    if not wide:
        return 1
    if len(wide) == 1:
        return wide[0]
    if all(d is not None for d in wide):
        msg = (f"score output {_describe(out)} has more than one dimension above 1 besides the batch, so it is not "
               f"one score per class ([N, C], [N, C, 1, 1] or [N, 1, 1, C]); choose the class-score output with "
               f"--score-output NAME (float outputs: {', '.join(floats)})")
        raise GraphError(msg)
    return None


def get_model_io(model: onnx.ModelProto, *, output: str | None = None) -> ModelIO:
    """Find the image input and the class-score output of a classifier.

    The score output is ``output``, else the first float graph output: integer outputs
    (class ids, as TensorFlow serving signatures put first) are skipped. Its class count
    squeezes dimensions of size 1 (``[N, C, 1, 1]``, ``[N, 1, 1, C]``: the runtime flattens
    every score row, see :meth:`onnxnoise.engine.evaluate.EvalSet.count`).

    Args:
        model: A model from :func:`load_model`.
        output: Name of the score output; default the first float graph output.

    Returns:
        The :class:`ModelIO` description.

    Raises:
        GraphError: If the model has no non-initializer input, no graph output, no float
            output (the message names the outputs), an image input without a tensor
            element type, ``output`` is unknown or not float, or the score output has two
            static dimensions above 1 besides the batch.
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
    floats = [o for o in model.graph.output if o.type.tensor_type.elem_type in _SCORE_TYPES]
    float_text = [_describe(o) for o in floats]
    if output is not None and output not in outputs:
        msg = f"`--score-output` {output!r} is not a graph output; choose one of {sorted(outputs)}"
        raise GraphError(msg)
    if not floats:
        listed = ", ".join(f"{_describe(o)} ({_type_name(o)})" for o in model.graph.output)
        msg = (f"the model has no float output to read class scores from (its outputs: {listed}); "
               "export it with its logits or probabilities as an output")
        raise GraphError(msg)
    out = outputs[output] if output is not None else floats[0]
    if out.type.tensor_type.elem_type not in _SCORE_TYPES:
        msg = (f"`--score-output` {_describe(out)} is {_type_name(out)}, not class scores (class ids?); "
               f"choose a float output: {', '.join(float_text)}")
        raise GraphError(msg)
    in_shape = _dims(image)
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
        num_classes=_class_count(out, float_text),
        batch_size=in_shape[0] if in_shape else None,
        score_outputs=tuple(float_text),
    )


def score_width(model: onnx.ModelProto, io: ModelIO) -> int | None:
    """Class scores per image of ``io``'s score output, by ONNX shape inference where the graph leaves it symbolic.

    Args:
        model: The model ``io`` describes (not changed: inference works on a copy).
        io: From :func:`get_model_io`.

    Returns:
        ``io.num_classes`` when known, else the inferred count, else None (inference is
        best effort: a model it cannot handle, e.g. over 2 GiB, gives None).
    """
    if io.num_classes is not None:
        return io.num_classes
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        return get_model_io(inferred, output=io.output_name).num_classes
    except Exception:  # onnx raises many kinds; unknown stays unknown
        return None


def get_metadata(model: onnx.ModelProto) -> dict[str, str]:
    """Return the model's ``metadata_props`` as a dict."""
    return {p.key: p.value for p in model.metadata_props}
