"""Shared ONNX export steps for the scripts in ``scripts/`` (torch side only).

``export_onnx`` turns an eval-mode ``torch.nn.Module`` into a clean, deterministic ``onnx.ModelProto``:

1. ``torch.onnx.export(..., dynamo=True, optimize=False)`` with a dynamic batch axis ``N``;
2. constant folding plus a fixed list of public onnxscript rewrite rules (collapse no-op slices,
   materialize static reshape shapes), and the all-zero Conv/Gemm biases the exporter adds for
   ``bias=False`` modules dropped; a bias that is one of the module's own parameters is kept even
   when it is all zeros (a randomly initialized VGG16 has zero biases, and they are still
   parameters: the paper counts them, and noise perturbs them). The exporter's own default
   optimizer is *not* used because it also fuses BatchNormalization into Conv, and the set of rules
   it applies changes between onnxscript releases; BatchNorm folding is done by the caller in torch
   instead, where it is explicit;
3. every ``Constant`` node lifted to an initializer, node metadata (stack traces with local paths)
   and doc strings cleared (also the exporter's metadata on graph inputs/outputs), Identity and
   unused nodes/opsets removed;
4. parameter-owning nodes renamed after their torch module (``layer1.0.conv1``), so per-layer reports
   read like the PyTorch model;
5. model ``doc_string`` and sorted ``metadata_props`` set; ``onnx.checker`` (full check) passes.

The result depends only on the module's weights, the example input's shape and the library
versions, so exporting the same checkpoint twice gives byte-identical files.

Also here, for every export script: :class:`ExportError` (a problem the user can fix, printed as one
line), :class:`ExportSummary`, reading a ``torch.save`` state dict (:func:`read_state_dict`,
:func:`load_state_dict_strict`) and the ONNX Runtime vs torch check (:func:`ort_max_abs_diff`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as common_passes
import torch
from onnxscript import optimizer as onnxscript_optimizer
from onnxscript import rewriter as onnxscript_rewriter
from onnxscript.rewriter.rules import common as rules

__all__ = [
    "DEFAULT_OPSET",
    "PARAMETER_OPS",
    "ExportError",
    "ExportSummary",
    "count_ops",
    "export_onnx",
    "load_state_dict_strict",
    "ort_max_abs_diff",
    "parameter_count",
    "read_state_dict",
    "save_model",
    "sha256_file",
    "state_dict_mismatch",
]

#: torchlib's native opset: no version conversion, and ONNX Runtime >= 1.14 runs it.
DEFAULT_OPSET = 18

#: ONNX op types that own weight initializers in the models these scripts export.
PARAMETER_OPS = ("Conv", "BatchNormalization", "Gemm", "MatMul")

_CLEANUP_RULES = (
    rules.collapse_slice_rule,
    rules.collapse_slice2_rule,
    rules.materialize_reshape_shape_rule,
    rules.reshape_reshape_rule,
    rules.no_op_cast_rule,
    rules.no_op_expand_rule,
    rules.no_op_transpose_rule,
)


class _DropUnnamedZeroBias(onnxscript_rewriter.RewriteRuleClassBase):
    """Drop the all-zero constant bias of a Conv/Gemm unless it is one of the module's parameters.

    torchlib gives a ``bias=False`` convolution an unnamed all-zero bias (``val_6``): not a
    parameter of the model. A bias named after a module parameter or buffer (in ``keep``) stays,
    whatever its value (onnxscript's ``remove_optional_bias_from_*_rule`` would drop it too).
    """

    def __init__(self, op_type: str, keep: frozenset[str]) -> None:
        super().__init__(f"DropUnnamedZeroBiasFrom{op_type}")
        self.op_type = op_type
        self.keep = keep

    def pattern(self, op, x, w, b):
        return getattr(op, self.op_type)(x, w, b, _outputs=["out"])

    def check(self, context, b: ir.Value, **_) -> onnxscript_rewriter.MatchResult:
        del context
        result = onnxscript_rewriter.MatchResult()
        if b.name in self.keep:
            return result.fail("the bias is a parameter of the module")
        tensor = ir.convenience.get_const_tensor(b)
        if tensor is None or tensor.numpy().any():
            return result.fail("the bias is not an all-zero constant")
        return result

    def rewrite(self, op, out: ir.Value, **_) -> ir.Value:
        node = out.producer()
        return op.op(self.op_type, *node.inputs[:-1], **node.attributes)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's progress prints, torchvision-missing log lines and FutureWarnings."""
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        onnx_logger.setLevel(level)


def _name_parameter_nodes(graph: ir.Graph) -> None:
    """Name each node whose input 1 is an initializer ``<module>.weight`` after ``<module>``."""
    taken = {node.name for node in graph}
    for node in graph:
        if node.op_type not in PARAMETER_OPS or len(node.inputs) < 2 or node.inputs[1] is None:
            continue
        weight = node.inputs[1]
        if not weight.is_initializer() or not weight.name or not weight.name.endswith(".weight"):
            continue
        name = weight.name.removesuffix(".weight")
        if name not in taken:
            taken.discard(node.name)
            node.name = name
            taken.add(name)


def export_onnx(
    module: torch.nn.Module,
    example: torch.Tensor,
    *,
    input_name: str = "input",
    output_name: str = "logits",
    opset: int = DEFAULT_OPSET,
    doc_string: str = "",
    metadata: Mapping[str, str] | None = None,
) -> onnx.ModelProto:
    """Export an eval-mode classifier with one input and one output to a clean ONNX model.

    Args:
        module: The model, already in eval mode (BatchNorm uses its running statistics).
        example: Example input, e.g. ``(2, 3, 32, 32) float32 NCHW``; axis 0 is exported as the
            dynamic batch axis ``N``, all other axes keep their example size.
        input_name: Graph input name.
        output_name: Graph output name.
        opset: ONNX opset of the default domain (18 or newer).
        doc_string: Model ``doc_string``.
        metadata: ``metadata_props`` entries, written sorted by key.

    Returns:
        The checked ``ModelProto``; every weight is an initializer and there are no ``Constant`` nodes.

    Raises:
        ValueError: if the exported graph does not pass ``onnx.checker``.
    """
    if module.training:
        msg = "`module` must be in eval mode before export"
        raise ValueError(msg)
    batch = torch.export.Dim("N")
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            module,
            (example,),
            input_names=[input_name],
            output_names=[output_name],
            dynamic_shapes=({0: batch},),
            opset_version=opset,
            dynamo=True,
            optimize=False,
            verbose=False,
        )
        model: ir.Model = program.model
        onnxscript_optimizer.fold_constants_ir(model)
        keep = frozenset(module.state_dict())
        bias_rules = [_DropUnnamedZeroBias.rule(op_type, keep) for op_type in ("Conv", "Gemm")]
        onnxscript_rewriter.rewrite(model, pattern_rewrite_rules=[*_CLEANUP_RULES, *bias_rules])
        ir.passes.Sequential(
            common_passes.IdentityEliminationPass(),
            common_passes.RemoveUnusedNodesPass(),
            common_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
            common_passes.ClearMetadataAndDocStringPass(),
            common_passes.RemoveUnusedFunctionsPass(),
            common_passes.RemoveUnusedOpsetsPass(),
            common_passes.NameFixPass(),
        )(model)
        _name_parameter_nodes(model.graph)
        proto = ir.serde.serialize_model(model)
    graph = proto.graph
    for value in [*graph.input, *graph.output, *graph.value_info, *graph.initializer]:
        del value.metadata_props[:]
    proto.doc_string = doc_string
    del proto.metadata_props[:]
    if metadata:
        onnx.helper.set_model_props(proto, dict(sorted(metadata.items())))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        msg = f"exported graph fails onnx.checker: {exc}"
        raise ValueError(msg) from exc
    return proto


def count_ops(model: onnx.ModelProto) -> dict[str, int]:
    """Count the graph's nodes by op type, sorted by op type."""
    return dict(sorted(Counter(node.op_type for node in model.graph.node).items()))


def save_model(model: onnx.ModelProto, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` to ``path`` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ExportError(Exception):
    """A checkpoint or argument problem the user can fix; the scripts print it as one line, exit 2."""


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote.

    Attributes:
        path: The ONNX file.
        ops: Node count by op type, e.g. ``{"Conv": 19, "Gemm": 1, ...}``.
        parameters: Number of float weights in Conv/BatchNormalization/Gemm initializers.
        max_abs_diff: Largest |ONNX Runtime - torch| logit difference on a fixed random batch.
        weights: Where the weights came from (``random``, a published weights name, a file name);
            empty for the CIFAR ResNet export (its source is the checkpoint).
    """

    path: Path
    ops: dict[str, int]
    parameters: int
    max_abs_diff: float
    weights: str = ""


def read_state_dict(path: str | os.PathLike[str], what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Read a ``torch.save`` file of tensors as a state dict (``torch.load(weights_only=True)``).

    The file may hold the state dict itself or ``{'state_dict': ...}``; a ``module.`` key prefix
    (DataParallel) is stripped.

    Args:
        path: The file.
        what: How messages name the file (``checkpoint``, ``weights file``).

    Raises:
        ExportError: if the file is missing, is not a ``torch.save`` file of plain tensors (no
            arbitrary pickles are loaded), or holds no dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"{what} not found: {str(path)!r}"
        raise ExportError(msg)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        reason = (str(exc).strip().splitlines() or [""])[0]
        if not reason or reason.startswith("Weights only load failed"):
            reason = "not a torch.save file of plain tensors"
        msg = f"cannot read {what} {str(path)!r}: {reason[:160]} ({type(exc).__name__})"
        raise ExportError(msg) from exc
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        msg = f"{what} {str(path)!r} holds no state dict of tensors"
        raise ExportError(msg)
    return {key.removeprefix("module."): value for key, value in state.items()}


def state_dict_mismatch(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> str:
    """Describe missing, unexpected and wrongly shaped keys in one short phrase ('' if none).

    A missing ``num_batches_tracked`` is fine: older checkpoints predate that buffer, and
    ``BatchNorm`` fills it in when loading an old-version state dict.
    """
    missing = [
        key for key in expected if key not in state and not key.endswith(".num_batches_tracked")
    ]
    unexpected = [key for key in state if key not in expected]
    shapes = [
        f"{key} {tuple(state[key].shape)} != {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    found = (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes))
    parts = [f"{len(items)} {what} (first: {items[0]})" for what, items in found if items]
    return "; ".join(parts)


def load_state_dict_strict(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], label: str, architecture: str
) -> torch.nn.Module:
    """Load ``state`` into ``model`` with ``strict=True`` and return it in eval mode.

    Raises:
        ExportError: ``"<label> does not fit a <architecture>: <what differs>"`` when keys or
            shapes differ.
    """
    problem = state_dict_mismatch(model.state_dict(), state)
    if problem:
        msg = f"{label} does not fit a {architecture}: {problem}"
        raise ExportError(msg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        msg = f"{label} does not fit a {architecture}: {detail[:200]}"
        raise ExportError(msg) from exc
    return model.eval()


def ort_max_abs_diff(
    model: onnx.ModelProto, torch_model: torch.nn.Module, shape: tuple[int, ...]
) -> tuple[float, float]:
    """Run ONNX Runtime and torch on one fixed random batch; compare the logits.

    Args:
        model: The exported model (input ``input``, output ``logits``).
        torch_model: The eval-mode module it was exported from (or its unfolded original).
        shape: Input shape, e.g. ``(4, 3, 32, 32)``; the batch is ``N(0, 1)`` float32, seed 0.

    Returns:
        ``(max |ORT - torch|, max |torch logit|)``.
    """
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    (ort_logits,) = session.run(["logits"], {"input": x})
    with torch.no_grad():
        torch_logits = torch_model(torch.from_numpy(x)).numpy()
    return float(np.abs(ort_logits - torch_logits).max()), float(np.abs(torch_logits).max())


def parameter_count(model: onnx.ModelProto) -> int:
    """Elements of the initializers that Conv/BatchNormalization/Gemm nodes take after their input."""
    inits = {init.name: init for init in model.graph.initializer}
    return sum(
        int(np.prod(inits[name].dims))
        for node in model.graph.node
        if node.op_type in ("Conv", "BatchNormalization", "Gemm")
        for name in node.input[1:]
        if name in inits
    )
