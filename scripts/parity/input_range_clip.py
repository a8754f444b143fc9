#!/usr/bin/env python
"""How much aihwkit's untrained input ranges (every tile clips its input to [-3, 3]) cost our ResNet32.

StandardHWATrainingPreset starts each tile's learned input range at 3.0 and, in eval mode without
calibration, keeps it (reports/parity/aihwkit/*.settings.json, ``input_range_note``), also with a
perfect forward pass. This script measures that clamp alone on the FP model: the BN-folded akamaster
ResNet32 (``scripts/_cifar_resnet.py``, as export_models.py's default ONNX export), the first N
CIFAR-10 test images with the ONNX export's preprocessing; for every Conv2d / Linear the share of
input values outside [-R, R] and their largest |x|, then the top-1 with every such input clamped to
[-R, R] (no noise, no quantization). torch only (onnxnoise's ``export`` extra).

Usage: python scripts/parity/input_range_clip.py [--images 1000] [--range 3.0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "scripts" / "parity")]
from _cifar10_first import load_first, normalize  # noqa: E402
from export_models import load_cifar_resnet  # noqa: E402
from _cifar_resnet import fold_batchnorm  # noqa: E402

CHECKPOINT = ROOT / ".." / "shared" / "models" / "cifar10-resnet" / "resnet32.th"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--range", type=float, default=3.0, dest="bound")
    args = parser.parse_args()
    images, labels = load_first(args.images)
    x, y = torch.from_numpy(normalize(images)), torch.from_numpy(labels)
    model = fold_batchnorm(load_cifar_resnet(32, CHECKPOINT))
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    stats = {n: [0, 0, 0.0] for n, _ in layers}  # outside, total, max |x|
    clamp = {"on": False}

    def hook(name):
        def pre(module, inputs):
            (inp,) = inputs
            s = stats[name]
            if not clamp["on"]:
                s[0] += int((inp.abs() > args.bound).sum())
                s[1] += inp.numel()
                s[2] = max(s[2], float(inp.abs().max()))
                return None
            return (inp.clamp(-args.bound, args.bound),)
        return pre

    for name, module in layers:
        module.register_forward_pre_hook(hook(name))
    with torch.no_grad():
        fp = int((model(x).argmax(1) == y).sum())
        clamp["on"] = True
        clipped = int((model(x).argmax(1) == y).sum())
    print(f"BN-folded akamaster ResNet32, first {args.images} CIFAR-10 test images, inputs of every Conv2d/Linear")
    print(f"{'layer':<18} {'outside [-R, R] %':>18} {'max |x|':>8}")
    for name, (outside, total, peak) in stats.items():
        print(f"{name:<18} {100 * outside / total:>18.3f} {peak:>8.2f}")
    total_out = sum(s[0] for s in stats.values())
    total = sum(s[1] for s in stats.values())
    print(f"all layers: {100 * total_out / total:.3f}% of input values outside [-{args.bound:g}, {args.bound:g}]")
    print(f"top-1 FP {fp}/{args.images}; with every layer input clamped to [-{args.bound:g}, {args.bound:g}]: "
          f"{clipped}/{args.images}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
