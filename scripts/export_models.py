#!/usr/bin/env python
"""Export pretrained PyTorch image classifiers to ONNX files that onnxnoise can measure.

Needs the ``export`` extra (torch, onnxscript, torchvision, timm); the ``onnxnoise`` package itself
never imports torch.

Subcommands:
    cifar-resnet  CIFAR-10 ResNet20/32/44/56 from the akamaster/pytorch_resnet_cifar10 checkpoints
                  (``../shared/models/cifar10-resnet/resnet{20,32,44,56}.th``).
    crosssim-resnet
                  CIFAR-10 ResNet14/20/32/56 of Sandia's CrossSim (1x1-conv + BN projection
                  shortcuts; ``../shared/models/crosssim-cifar10-resnet/resnet{14,20,32,56}_cifar10.pth``,
                  architecture in ``scripts/_crosssim_resnet.py``), same input, output and metadata.
    torchvision   ImageNet ResNet18..152, VGG11..19 (and _bn), ShuffleNetV2 0.5x..2.0x from
                  torchvision: ``--weights default|NAME|FILE``, none = random weights (layer tables
                  only); see ``scripts/_torchvision.py`` and ``models/README.md``.
    timm          ImageNet SE-ResNet50 (``legacy_seresnet50``, ``seresnet50``) from timm, same options.

Example::

    python scripts/export_models.py cifar-resnet --depth 20 \\
        --checkpoint ../shared/models/cifar10-resnet/resnet20.th --out resnet20.onnx
    python scripts/export_models.py cifar-resnet --depth 20 --keep-batchnorm \\
        --checkpoint ../shared/models/cifar10-resnet/resnet20.th --out resnet20_bn.onnx
    python scripts/export_models.py crosssim-resnet --depth 14 \\
        --checkpoint ../shared/models/crosssim-cifar10-resnet/resnet14_cifar10.pth --out resnet14.onnx
    python scripts/export_models.py torchvision --arch vgg16 --weights default --out models/vgg16.onnx

The ONNX file has input ``input`` ``(N, 3, 32, 32) float32 NCHW`` (RGB, ``(x / 255 - mean) / std`` with
ImageNet mean/std) and output ``logits`` ``(N, 10) float32``; ``N`` is dynamic. By default every
BatchNormalization is folded into the conv before it (ResNet20: 19 Conv with weight and bias + 1 Gemm
= 20 parameter layers); ``--keep-batchnorm`` keeps them as separate ops (19 Conv without bias +
19 BatchNormalization + 1 Gemm = 39 parameter layers). ``metadata_props`` carry
``onnxnoise.preprocess`` (JSON ``DataConfig`` fields) and ``onnxnoise.source`` (JSON: checkpoint
file name and SHA-256, upstream, BatchNorm handling). The ImageNet exports are described in
``scripts/_torchvision.py`` (``export_imagenet``).

Exit codes: 0 success, 2 bad arguments or unusable checkpoint (one ``error:`` line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

_SCRIPTS_DIR = Path(__file__).resolve().parent
if str(_SCRIPTS_DIR) not in sys.path:
    sys.path.insert(0, str(_SCRIPTS_DIR))

import torch  # noqa: E402
from _cifar_resnet import DEPTHS, CifarResNet, build_cifar_resnet, fold_batchnorm  # noqa: E402
from _crosssim_resnet import (  # noqa: E402
    CROSSSIM_DEPTHS,
    CrossSimResNet,
    build_crosssim_resnet,
    fold_crosssim_batchnorm,
)
from _onnx_export import (  # noqa: E402
    DEFAULT_OPSET,
    ExportError,
    ExportSummary,
    count_ops,
    export_onnx,
    load_state_dict_strict,
    ort_max_abs_diff,
    parameter_count,
    read_state_dict,
    save_model,
    sha256_file,
)
from _torchvision import FAMILIES, export_imagenet  # noqa: E402

__all__ = [
    "CIFAR_PREPROCESS",
    "CROSSSIM_DEPTHS",
    "DEPTHS",
    "ExportError",
    "ExportSummary",
    "build_cifar_resnet",
    "export_cifar_resnet",
    "export_crosssim_resnet",
    "export_imagenet",
    "load_cifar_resnet",
    "load_crosssim_resnet",
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
_CROSSSIM_UPSTREAM = "github.com/sandialabs/cross-sim@0a2eb1e (3.2.0), applications/dnn/torch/cifar10_resnet"

#: Largest |ONNX Runtime - torch| logit difference accepted by the post-export check.
_MAX_ABS_DIFF = 1e-4


def _checkpoint_depth(state: dict[str, torch.Tensor], stage: str) -> int | None:
    """Depth ``6n + 2`` implied by the number of ``<stage>.<i>.`` blocks of ``state``, or ``None``."""
    blocks = {key.split(".")[1] for key in state if key.startswith(f"{stage}.") and key.count(".") >= 2}
    return 6 * len(blocks) + 2 if blocks else None


def _load_resnet(
    depth: int, depths: tuple[int, ...], checkpoint: str | Path, stage: str,
    build: Callable[[int], torch.nn.Module], name: str,
) -> torch.nn.Module:
    """``build(depth)`` with the state dict of ``checkpoint`` loaded strictly (both CIFAR ResNet exports).

    ``stage`` is the attribute of the first stage, whose block count tells the checkpoint's depth.

    Raises:
        ExportError: ``depth`` not in ``depths``; the file missing or not a state dict; a checkpoint
            of another depth; tensors that do not match ``build(depth)``.
    """
    if depth not in depths:
        msg = f"unsupported `--depth` {depth}; expected one of {', '.join(map(str, depths))}"
        raise ExportError(msg)
    state = read_state_dict(checkpoint, "checkpoint")
    found = _checkpoint_depth(state, stage)
    if found is not None and found != depth:
        msg = f"checkpoint {str(checkpoint)!r} is a ResNet{found}, but `--depth` is {depth}"
        raise ExportError(msg)
    return load_state_dict_strict(build(depth), state, f"checkpoint {str(checkpoint)!r}", f"{name}{depth}")


def load_cifar_resnet(depth: int, checkpoint: str | Path) -> CifarResNet:
    """Build a CIFAR ResNet of ``depth`` and load an akamaster checkpoint into it (eval mode).

    The file is read with ``torch.load(weights_only=True)`` (no arbitrary pickles). It may be
    ``{'state_dict': ...}`` (upstream format) or a bare state dict; a ``module.`` prefix
    (DataParallel) is stripped, and the keys must match the model exactly.

    Raises:
        ExportError: if ``depth`` is unsupported, the file is missing or not a checkpoint, or its
            tensors do not match the architecture (e.g. a ResNet32 checkpoint with ``depth=20``).
    """
    return _load_resnet(depth, DEPTHS, checkpoint, "layer1", build_cifar_resnet, "CIFAR ResNet")


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
    intro = (
        f"CIFAR-10 ResNet{depth} (He et al. 2016, option-A shortcuts), pretrained weights from "
        f"{_UPSTREAM} ({Path(checkpoint).name})"
    )
    return _export_cifar10(
        model, fold_batchnorm, (Path(checkpoint), _UPSTREAM, f"cifar-resnet{depth}"), intro, out,
        keep_batchnorm=keep_batchnorm, opset=opset,
    )


def load_crosssim_resnet(depth: int, checkpoint: str | Path) -> CrossSimResNet:
    """Build a CrossSim CIFAR ResNet of ``depth`` and load its state dict into it (eval mode).

    The file (``resnet<depth>_cifar10.pth``, a bare state dict) is read with
    ``torch.load(weights_only=True)``; the keys must match the model exactly.

    Raises:
        ExportError: if ``depth`` is unsupported, the file is missing or not a state dict, or its
            tensors do not match the architecture (e.g. a ResNet20 file with ``depth=14``).
    """
    return _load_resnet(depth, CROSSSIM_DEPTHS, checkpoint, "res1", build_crosssim_resnet, "CrossSim ResNet")


def export_crosssim_resnet(
    depth: int,
    checkpoint: str | Path,
    out: str | Path,
    *,
    keep_batchnorm: bool = False,
    opset: int = DEFAULT_OPSET,
) -> ExportSummary:
    """Export one of CrossSim's CIFAR-10 ResNet state dicts to ONNX (``scripts/_crosssim_resnet.py``).

    Same file layout, preprocessing metadata (ImageNet mean/std on x / 255, as CrossSim's own
    inference scripts) and checks as :func:`export_cifar_resnet`; folded, ResNet14 has 15 Conv
    (13 + 2 ``downsample`` 1x1) with weight and bias + 1 Gemm.

    Args:
        depth: 14, 20, 32 or 56; must match the checkpoint.
        checkpoint: ``resnet<depth>_cifar10.pth`` (torch.save of a plain state dict).
        out: Destination ``.onnx`` file (written atomically; parent folders are created).
        keep_batchnorm: Keep BatchNormalization as separate ops instead of folding them.
        opset: ONNX opset (18 or newer).

    Returns:
        An ``ExportSummary``.

    Raises:
        ExportError: as :func:`export_cifar_resnet`.
    """
    model = load_crosssim_resnet(depth, checkpoint)
    intro = (
        f"CIFAR-10 ResNet{depth} of CrossSim (ResNet v1, 1x1-conv + BN projection shortcuts), "
        f"pretrained weights from {_CROSSSIM_UPSTREAM} ({Path(checkpoint).name}, BSD-3-Clause)"
    )
    return _export_cifar10(
        model, fold_crosssim_batchnorm, (Path(checkpoint), _CROSSSIM_UPSTREAM, f"crosssim-resnet{depth}"), intro,
        out, keep_batchnorm=keep_batchnorm, opset=opset,
    )


def _export_cifar10(
    model: torch.nn.Module,
    fold: Callable[[torch.nn.Module], torch.nn.Module],
    origin: tuple[Path, str, str],
    intro: str,
    out: str | Path,
    *,
    keep_batchnorm: bool,
    opset: int,
) -> ExportSummary:
    """The shared tail of the CIFAR-10 exports: export, metadata, ORT-vs-torch check, atomic write.

    ``origin`` is ``(checkpoint, upstream, architecture)``: the ``onnxnoise.source`` metadata records the
    checkpoint's name and sha256, the upstream, the architecture and whether BatchNorm was kept or folded.
    """
    checkpoint, upstream, architecture = origin
    source = {
        "checkpoint": checkpoint.name,
        "sha256": sha256_file(checkpoint),
        "upstream": upstream,
        "architecture": architecture,
        "batchnorm": "kept" if keep_batchnorm else "folded",
    }
    export_model = model if keep_batchnorm else fold(model)
    bn_text = (
        "BatchNormalization kept as separate ops"
        if keep_batchnorm
        else "BatchNormalization folded into the conv weights and biases"
    )
    doc = (
        f"{intro}; {bn_text}. Input 'input' (N, 3, 32, 32) float32 NCHW, RGB, "
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
    max_abs_diff, _ = ort_max_abs_diff(proto, model, (4, 3, 32, 32))
    if not max_abs_diff <= _MAX_ABS_DIFF:
        msg = f"ONNX Runtime logits differ from torch by {max_abs_diff:.3g} (> {_MAX_ABS_DIFF:g})"
        raise ExportError(msg)
    try:
        path = save_model(proto, out)
    except OSError as exc:
        msg = f"cannot write {str(out)!r}: {exc.strerror or exc}"
        raise ExportError(msg) from exc
    return ExportSummary(path, count_ops(proto), parameter_count(proto), max_abs_diff)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="export_models.py",
        description="Export pretrained PyTorch classifiers to ONNX for onnxnoise.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, depths, what, file in (
        ("cifar-resnet", DEPTHS, "akamaster/pytorch_resnet_cifar10 checkpoints", "resnet<depth>.th"),
        ("crosssim-resnet", CROSSSIM_DEPTHS, "CrossSim's own state dicts", "resnet<depth>_cifar10.pth"),
    ):
        cifar = sub.add_parser(
            name,
            help=f"CIFAR-10 ResNet{'/'.join(map(str, depths))} ({what})",
            description=f"Export a CIFAR-10 ResNet ({what}) to ONNX.",
        )
        cifar.add_argument("--depth", type=int, required=True, choices=depths, help="ResNet depth")
        cifar.add_argument("--checkpoint", type=Path, required=True, help=f"{file} file")
        cifar.add_argument("--out", type=Path, required=True, help="output .onnx file")
        cifar.add_argument(
            "--keep-batchnorm",
            action="store_true",
            help="keep BatchNormalization as separate ops (default: fold into conv weights)",
        )
        cifar.add_argument(
            "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})"
        )
    for family, what in (("torchvision", "ResNet, VGG, ShuffleNetV2"), ("timm", "SE-ResNet50")):
        imagenet = sub.add_parser(
            family,
            help=f"ImageNet {what} from {family} (published, local or random weights)",
            description=f"Export an ImageNet {what} from {family} to ONNX, preprocessing in its metadata.",
        )
        imagenet.add_argument("--arch", required=True, choices=FAMILIES[family], metavar="ARCH",
                              help=f"architecture: {', '.join(FAMILIES[family])}")
        imagenet.add_argument(
            "--weights",
            help="`default` (the published weights, downloaded into torch.hub's cache), a published "
            "weights name (torchvision IMAGENET1K_V1, timm in1k) or a state_dict FILE; "
            "none: random weights, for layer tables only",
        )
        imagenet.add_argument("--out", type=Path, required=True, help="output .onnx file")
        imagenet.add_argument(
            "--keep-batchnorm",
            action="store_true",
            help="keep BatchNormalization as separate ops (the paper's layer tables count them; "
            "default: fold into the conv weights, as deployed)",
        )
        imagenet.add_argument(
            "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})"
        )
    return parser


def _export(args: argparse.Namespace) -> ExportSummary:
    cifar_exports = {"cifar-resnet": export_cifar_resnet, "crosssim-resnet": export_crosssim_resnet}
    if args.command in cifar_exports:
        return cifar_exports[args.command](
            args.depth, args.checkpoint, args.out, keep_batchnorm=args.keep_batchnorm, opset=args.opset
        )
    if args.weights is None:
        print(
            f"note: no --weights: {args.arch} is exported with random weights, for layer tables only "
            "(accuracy is chance; the metadata says weights=random); pass --weights default or "
            "--weights FILE for a trained model",
            file=sys.stderr,
        )
    return export_imagenet(
        args.command, args.arch, args.out, weights=args.weights,
        keep_batchnorm=args.keep_batchnorm, opset=args.opset,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 usage or checkpoint error)."""
    args = _build_parser().parse_args(argv)
    if args.opset < DEFAULT_OPSET:
        print(f"error: `--opset` must be >= {DEFAULT_OPSET}, got {args.opset}", file=sys.stderr)
        return 2
    try:
        summary = _export(args)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    layers = {op: n for op, n in summary.ops.items() if op in ("Conv", "BatchNormalization", "Gemm")}
    print(
        f"wrote {summary.path}: {sum(layers.values())} parameter layers "
        f"({', '.join(f'{n} {op}' for op, n in layers.items())}), "
        f"{summary.parameters:,} parameters, max |ORT - torch| = {summary.max_abs_diff:.2e}"
        + (f", weights: {summary.weights}" if summary.weights else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
