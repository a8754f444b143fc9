"""One line for an ONNX Runtime error raised while running a batch (not while loading).

Loading errors are caught where sessions are made (:class:`~onnxnoise.engine.runtime.SessionFactory`);
an error raised by ``InferenceSession.run`` reaches the trial row as
``"<onnxruntime exception class>: <first line of its message>"``
(:func:`onnxnoise.engine.trial.run_trial`). When the clean baseline fails that way,
:func:`describe_run_error` turns the row's error into what the user needs to fix it:
ONNX Runtime's message without its status code and source locations, the node it
names (and the model node behind an optimizer-renamed one), the input shape, dtype and
layout actually fed, whether that layout was read from the model's input shape or
assumed, and the likely flag (``--layout``, ``--crop``).
"""

from __future__ import annotations

import re

import numpy as np
import onnx

from onnxnoise.errors import BaselineError

__all__ = ["ORT_ERROR_CLASSES", "baseline_failure", "describe_run_error"]

#: Exception classes of ``onnxruntime.capi.onnxruntime_pybind11_state`` (none derives from RuntimeError).
ORT_ERROR_CLASSES: frozenset[str] = frozenset({
    "Fail", "InvalidArgument", "NoSuchFile", "NoModel", "EngineError", "RuntimeException", "InvalidProtobuf",
    "ModelLoaded", "NotImplemented", "InvalidGraph", "EPFail", "ModelLoadCanceled", "ModelRequiresCompilation",
    "NotFound",
})

_RUNNING = re.compile(r"while running (?P<op>\w+) node\.(?: Name:'(?P<name>[^']*)')?(?: Status Message: (?P<status>.*))?")
_SOURCE = re.compile(r"(?:/\S+|\b[\w.-]+\.(?:h|cc|cpp|cu)):\d+ (?:\w+ (?=[A-Z]))?")
_SHAPE_WORDS = ("dimension", "shape", "reshape", "broadcast", "mismatch", "num_dims", "size", "index")
_MAX_MESSAGE = 240


def _model_node(model: onnx.ModelProto, name: str | None, op: str | None) -> onnx.NodeProto | None:
    """The model's node ``name``; else the ``op`` node whose output starts the optimizer's new name."""
    if not name:
        return None
    nodes = list(model.graph.node)
    exact = next((node for node in nodes if node.name == name), None)
    if exact is not None:
        return exact
    candidates = [(len(out), node) for node in nodes if node.op_type == op for out in node.output
                  if out and name.startswith(out)]
    return max(candidates, key=lambda pair: pair[0])[1] if candidates else None


def _declared_shape(model: onnx.ModelProto, input_name: str) -> str:
    """The input's declared shape, symbolic dims by name (``[N, H, W, C]``), unknown ones as ``?``."""
    value = next((v for v in model.graph.input if v.name == input_name), None)
    if value is None or not value.type.tensor_type.HasField("shape"):
        return "[unknown]"
    dims = [str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?")
            for d in value.type.tensor_type.shape.dim]
    return "[" + ", ".join(dims) + "]"


def _layout_origin(context) -> tuple[str, bool]:
    """``(where the fed layout came from, whether it was assumed)``."""
    if "layout" in dict(context.config.preprocess):
        return "given by --layout", False
    shape = context.io.input_shape
    if len(shape) == 4 and (shape[1] in (1, 3) or shape[3] in (1, 3)):
        return "read from the model's input shape", False
    declared = _declared_shape(context.model, context.io.input_name)
    source = {"--preprocess": f"the --preprocess {context.config.preset} preset",
              "model metadata": "the preprocessing stored in the model"}.get(context.preprocess_source, "the default")
    return (f"assumed: the model's input shape {declared} does not say where the channels are, so the layout "
            f"comes from {source}", True)


def _likely_fix(text: str, node: onnx.NodeProto | None, layout: str, assumed: bool, size: tuple[int, int]) -> str:
    other = "NHWC" if layout == "NCHW" else "NCHW"
    low = text.lower()
    if node is not None and node.op_type == "BatchNormalization":
        spatial = next((a.i for a in node.attribute if a.name == "spatial"), 1)
        if spatial == 0:
            return (f"none of --layout/--crop: BatchNormalization '{node.name}' has spatial=0, which onnxruntime runs "
                    "only with per-activation (C x H x W) parameters, and this model has per-channel ones; re-export "
                    "it with spatial=1 (opset 9 or later)")
    crop = f"`--crop` (and `--resize`) if the model expects other than {size[0]}x{size[1]} images"
    if "channel" in low:
        return f"`--layout {other}`"
    if any(word in low for word in _SHAPE_WORDS):
        return f"`--layout {other}`, or {crop}" if assumed else crop
    return (f"`--layout {other}` or {crop}; if neither, the model cannot run as exported"
            if assumed else f"{crop}; otherwise the model cannot run as exported")


def describe_run_error(context, error: str) -> str | None:
    """One line for a trial row's ``error`` that ONNX Runtime raised while running a batch.

    Args:
        context: The :class:`~onnxnoise.engine.context.RunContext` the trial ran in
            (model, input, preprocessing, evaluation set).
        error: The row's ``error``: ``"<exception class>: <message>"``.

    Returns:
        ``"onnxruntime <class> in <op> node '<name>' (...): <message>; fed input '<name>'
        <dtype> (N, C, H, W) as NCHW (<where the layout came from>); likely fix: <flag>"``,
        or None when ``error`` is not an ONNX Runtime error (the caller shows it as is).
    """
    kind, _, text = error.partition(": ")
    match = _RUNNING.search(text)
    if kind not in ORT_ERROR_CLASSES and match is None:
        return None
    op = name = status = None
    if match:
        op, name, status = match.group("op"), match.group("name"), match.group("status")
    message = _SOURCE.sub("", status or text).strip()
    if len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE - 3] + "..."
    node = _model_node(context.model, name, op)
    if name:
        where = f" in {op} node '{name}'"
        if node is not None and node.name != name:
            where += f" (the optimized graph's name for model node '{node.name or node.output[0]}')"
    elif op and status:
        where = f" in an unnamed {op} node"
    else:
        where = ""
    data = context.data
    height, width, channels = data.images.shape[1:4]
    layout = data.config.layout
    batch = data.fixed_batch or min(data.batch_size, len(data))  # a fixed-batch model gets padded batches
    fed = (batch, channels, height, width) if layout == "NCHW" else (batch, height, width, channels)
    origin, assumed = _layout_origin(context)
    dtype = np.dtype(data.input_dtype).name
    return (f"onnxruntime {kind}{where}: {message}; fed input '{context.io.input_name}' {dtype} "
            f"({', '.join(map(str, fed))}) as {layout} ({origin}); likely fix: "
            f"{_likely_fix(message, node, layout, assumed, (height, width))}")


def baseline_failure(context, error: str) -> BaselineError:
    """The error every executor raises when the clean baseline trial ended with ``error``.

    One line: no noisy trial was run, what failed (:func:`describe_run_error` for an
    ONNX Runtime run error, else ``error`` as is), and that the failed row is recorded.
    """
    detail = describe_run_error(context, error) or error
    return BaselineError(f"the clean baseline trial failed, so no noisy trial was run: {detail} "
                         "(the failed row is recorded)")
