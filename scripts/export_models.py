#!/usr/bin/env python
"""Export pretrained PyTorch image classifiers to ONNX files that onnxnoise can measure.

Needs the ``export`` extra (torch, onnxscript); the ``onnxnoise`` package itself never imports torch.

Subcommands:
    cifar-resnet  CIFAR-10 ResNet20/32/44/56 from the akamaster/pytorch_resnet_cifar10 checkpoints
                  (``../shared/models/cifar10-resnet/resnet{20,32,44,56}.th``).

Example::

    python scripts/export_models.py cifar-resnet --depth 20 \\
        --checkpoint ../shared/models/cifar10-resnet/resnet20.th --out resnet20.onnx
    python scripts/export_models.py cifar-resnet --depth 20 --keep-batchnorm \\
        --checkpoint ../shared/models/cifar10-resnet/resnet20.th --out resnet20_bn.onnx

The ONNX file has input ``input`` ``(N, 3, 32, 32) float32 NCHW`` (RGB, ``(x / 255 - mean) / std`` with
ImageNet mean/std) and output ``logits`` ``(N, 10) float32``; ``N`` is dynamic. By default every
BatchNormalization is folded into the conv before it (ResNet20: 19 Conv with weight and bias + 1 Gemm
= 20 parameter layers); ``--keep-batchnorm`` keeps them as separate ops (19 Conv without bias +
19 BatchNormalization + 1 Gemm = 39 parameter layers). ``metadata_props`` carry
``onnxnoise.preprocess`` (JSON ``DataConfig`` fields) and ``onnxnoise.source`` (JSON: checkpoint
file name and SHA-256, upstream, BatchNorm handling).

Exit codes: 0 success, 2 bad arguments or unusable checkpoint (one ``error:`` line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

_SCRIPTS_DIR = Path(__file__).resolve().parent
if str(_SCRIPTS_DIR) not in sys.path:
    sys.path.insert(0, str(_SCRIPTS_DIR))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
from _cifar_resnet import DEPTHS, CifarResNet, build_cifar_resnet, fold_batchnorm  # noqa: E402
from _onnx_export import DEFAULT_OPSET, count_ops, export_onnx, save_model, sha256_file  # noqa: E402

__all__ = [
    "CIFAR_PREPROCESS",
    "DEPTHS",
    "ExportError",
    "ExportSummary",
    "build_cifar_resnet",
    "export_cifar_resnet",
    "load_cifar_resnet",
    "main",
]

#: ``onnxnoise.preprocess`` of the akamaster CIFAR ResNets (they normalize with ImageNet statistics).
CIFAR_PREPROCESS: dict[str, object] = {
    "preset": "cifar",
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "scale": 1 / 255,
}

_UPSTREAM = "github.com/akamaster/pytorch_resnet_cifar10@d5489e8995e81e91ce6b1d69dcc98ad579b0b153"

#: Largest |ONNX Runtime - torch| logit difference accepted by the post-export check.
_MAX_ABS_DIFF = 1e-4


class ExportError(Exception):
    """A checkpoint or argument problem the user can fix; ``main`` prints it as one line, exit 2."""


@dataclass(frozen=True)
class ExportSummary:
    """What ``export_cifar_resnet`` wrote.

    Attributes:
        path: The ONNX file.
        ops: Node count by op type, e.g. ``{"Conv": 19, "Gemm": 1, ...}``.
        parameters: Number of float weights in Conv/BatchNormalization/Gemm initializers.
        max_abs_diff: Largest |ONNX Runtime - torch| logit difference on a fixed random batch.
    """

    path: Path
    ops: dict[str, int]
    parameters: int
    max_abs_diff: float


def _checkpoint_depth(state: dict[str, torch.Tensor]) -> int | None:
    """Depth ``6n + 2`` implied by the number of ``layer1.<i>.`` blocks, or ``None``."""
    blocks = {key.split(".")[1] for key in state if key.startswith("layer1.") and key.count(".") >= 2}
    return 6 * len(blocks) + 2 if blocks else None


def _state_dict_mismatch(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> str:
    """Describe missing, unexpected and wrongly shaped keys in one short phrase ('' if none).

    A missing ``num_batches_tracked`` is fine: the akamaster checkpoints predate that buffer, and
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


def load_cifar_resnet(depth: int, checkpoint: str | Path) -> CifarResNet:
    """Build a CIFAR ResNet of ``depth`` and load an akamaster checkpoint into it (eval mode).

    The file is read with ``torch.load(weights_only=True)`` (no arbitrary pickles). It may be
    ``{'state_dict': ...}`` (upstream format) or a bare state dict; a ``module.`` prefix
    (DataParallel) is stripped, and the keys must match the model exactly.

    Raises:
        ExportError: if ``depth`` is unsupported, the file is missing or not a checkpoint, or its
            tensors do not match the architecture (e.g. a ResNet32 checkpoint with ``depth=20``).
    """
    if depth not in DEPTHS:
        msg = f"unsupported `--depth` {depth}; expected one of {', '.join(map(str, DEPTHS))}"
        raise ExportError(msg)
    path = Path(checkpoint)
    if not path.is_file():
        msg = f"checkpoint not found: {str(path)!r}"
        raise ExportError(msg)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        reason = (str(exc).strip().splitlines() or [""])[0]
        if not reason or reason.startswith("Weights only load failed"):
            reason = "not a torch.save file of plain tensors"
        msg = f"cannot read checkpoint {str(path)!r}: {reason[:160]} ({type(exc).__name__})"
        raise ExportError(msg) from exc
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        msg = f"checkpoint {str(path)!r} holds no state dict of tensors"
        raise ExportError(msg)
    state = {key.removeprefix("module."): value for key, value in state.items()}
    found = _checkpoint_depth(state)
    if found is not None and found != depth:
        msg = f"checkpoint {str(path)!r} is a ResNet{found}, but `--depth` is {depth}"
        raise ExportError(msg)
    model = build_cifar_resnet(depth)
    problem = _state_dict_mismatch(model.state_dict(), state)
    if problem:
        msg = f"checkpoint {str(path)!r} does not fit a CIFAR ResNet{depth}: {problem}"
        raise ExportError(msg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        msg = f"checkpoint {str(path)!r} does not fit a CIFAR ResNet{depth}: {detail[:200]}"
        raise ExportError(msg) from exc
    return model.eval()


def _ort_max_abs_diff(model: onnx.ModelProto, torch_model: torch.nn.Module) -> float:
    """Largest |ONNX Runtime - torch| logit difference on a fixed random ``(4, 3, 32, 32)`` batch."""
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32), dtype=np.float32)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    (ort_logits,) = session.run(["logits"], {"input": x})
    with torch.no_grad():
        torch_logits = torch_model(torch.from_numpy(x)).numpy()
    return float(np.abs(ort_logits - torch_logits).max())


def export_cifar_resnet(
    depth: int,
    checkpoint: str | Path,
    out: str | Path,
    *,
    keep_batchnorm: bool = False,
    opset: int = DEFAULT_OPSET,
) -> ExportSummary:
    """Export an akamaster CIFAR-10 ResNet checkpoint to ONNX.

    Args:
        depth: 20, 32, 44 or 56; must match the checkpoint.
        checkpoint: ``resnet<depth>.th`` (torch.save of ``{'best_prec1', 'state_dict'}``).
        out: Destination ``.onnx`` file (written atomically; parent folders are created).
        keep_batchnorm: Keep BatchNormalization as separate ops instead of folding them into the
            conv weights and biases.
        opset: ONNX opset (18 or newer).

    Returns:
        An ``ExportSummary``.

    Raises:
        ExportError: for an unusable checkpoint or depth mismatch, an unwritable ``out``, or when
            ONNX Runtime's logits differ from torch's by more than 1e-4.
    """
    model = load_cifar_resnet(depth, checkpoint)
    export_model = model if keep_batchnorm else fold_batchnorm(model)
    checkpoint = Path(checkpoint)
    source = {
        "checkpoint": checkpoint.name,
        "sha256": sha256_file(checkpoint),
        "upstream": _UPSTREAM,
        "architecture": f"cifar-resnet{depth}",
        "batchnorm": "kept" if keep_batchnorm else "folded",
    }
    bn_text = (
        "BatchNormalization kept as separate ops"
        if keep_batchnorm
        else "BatchNormalization folded into the conv weights and biases"
    )
    doc = (
        f"CIFAR-10 ResNet{depth} (He et al. 2016, option-A shortcuts), pretrained weights from "
        f"{_UPSTREAM} ({checkpoint.name}); {bn_text}. Input 'input' (N, 3, 32, 32) float32 NCHW, RGB, "
        "(x / 255 - mean) / std with ImageNet mean/std; output 'logits' (N, 10) float32, classes in "
        "CIFAR-10 order (airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck)."
    )
    proto = export_onnx(
        export_model,
        torch.zeros(2, 3, 32, 32),
        opset=opset,
        doc_string=doc,
        metadata={
            "onnxnoise.preprocess": json.dumps(CIFAR_PREPROCESS, sort_keys=True),
            "onnxnoise.source": json.dumps(source, sort_keys=True),
        },
    )
    max_abs_diff = _ort_max_abs_diff(proto, model)
    if not max_abs_diff <= _MAX_ABS_DIFF:
        msg = f"ONNX Runtime logits differ from torch by {max_abs_diff:.3g} (> {_MAX_ABS_DIFF:g})"
        raise ExportError(msg)
    try:
        path = save_model(proto, out)
    except OSError as exc:
        msg = f"cannot write {str(out)!r}: {exc.strerror or exc}"
        raise ExportError(msg) from exc
    inits = {init.name: init for init in proto.graph.initializer}
    parameters = sum(
        int(np.prod(inits[name].dims))
        for node in proto.graph.node
        if node.op_type in ("Conv", "BatchNormalization", "Gemm")
        for name in node.input[1:]
        if name in inits
    )
    return ExportSummary(path, count_ops(proto), parameters, max_abs_diff)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="export_models.py",
        description="Export pretrained PyTorch classifiers to ONNX for onnxnoise.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cifar = sub.add_parser(
        "cifar-resnet",
        help="CIFAR-10 ResNet20/32/44/56 (akamaster/pytorch_resnet_cifar10 checkpoints)",
        description="Export an akamaster CIFAR-10 ResNet checkpoint to ONNX.",
    )
    cifar.add_argument("--depth", type=int, required=True, choices=DEPTHS, help="ResNet depth")
    cifar.add_argument("--checkpoint", type=Path, required=True, help="resnet<depth>.th file")
    cifar.add_argument("--out", type=Path, required=True, help="output .onnx file")
    cifar.add_argument(
        "--keep-batchnorm",
        action="store_true",
        help="keep BatchNormalization as separate ops (default: fold into conv weights)",
    )
    cifar.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 usage or checkpoint error)."""
    args = _build_parser().parse_args(argv)
    if args.opset < DEFAULT_OPSET:
        print(f"error: `--opset` must be >= {DEFAULT_OPSET}, got {args.opset}", file=sys.stderr)
        return 2
    try:
        summary = export_cifar_resnet(
            args.depth,
            args.checkpoint,
            args.out,
            keep_batchnorm=args.keep_batchnorm,
            opset=args.opset,
        )
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    layers = {op: n for op, n in summary.ops.items() if op in ("Conv", "BatchNormalization", "Gemm")}
    print(
        f"wrote {summary.path}: {sum(layers.values())} parameter layers "
        f"({', '.join(f'{n} {op}' for op, n in layers.items())}), "
        f"{summary.parameters:,} parameters, max |ORT - torch| = {summary.max_abs_diff:.2e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
