"""CrossSim's own CIFAR-10 ResNet14/20/32/56 (ResNet v1 with 1x1-conv + BN projection shortcuts).

Written from the architecture facts in ``../shared/models/crosssim-cifar10-resnet/MANIFEST.txt``
(Sandia's sandialabs/cross-sim at 0a2eb1e, ``applications/dnn/torch/cifar10_resnet``, BSD-3-Clause)
so that its state dicts load with ``strict=True``:

- ``conv1`` 3x3 3->16 (no bias), ``bn1`` = ``BatchNorm2d(16, eps=0.001)``, ReLU
- ``res1`` / ``res2`` / ``res3``: ``n = (depth - 2) / 6`` BasicBlocks of 16 / 32 / 64 channels;
  the first block of ``res2`` and ``res3`` has stride 2
- BasicBlock: conv3x3(stride) -> BN -> ReLU -> conv3x3 -> BN, + shortcut, ReLU (BN eps 1e-5)
- shortcut: identity, or ``downsample`` = Conv 1x1 (stride, no bias) + BN when the stride or the
  channel count changes (unlike the akamaster models' parameter-free option A)
- ``classifier`` = AdaptiveAvgPool2d(1), Flatten, Linear(64, 10)

Only ``scripts/`` and ``tests/`` import this module (torch is not a dependency of ``onnxnoise``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from _cifar_resnet import blocks_per_stage, fold_resnet_batchnorm

__all__ = [
    "CROSSSIM_DEPTHS",
    "CrossSimBlock",
    "CrossSimResNet",
    "build_crosssim_resnet",
    "fold_crosssim_batchnorm",
]

CROSSSIM_DEPTHS = (14, 20, 32, 56)

#: BatchNorm eps of the stem's ``bn1`` (MANIFEST); the blocks use torch's default 1e-5.
STEM_BN_EPS = 1e-3


class CrossSimBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and an identity or 1x1-conv + BN (``downsample``) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class CrossSimResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs: input ``(N, 3, 32, 32) float32 NCHW``, output ``(N, 10)`` logits."""

    def __init__(self, num_blocks: int, num_classes: int = 10) -> None:
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16, eps=STEM_BN_EPS)
        self.res1 = self._make_stage(16, num_blocks, stride=1)
        self.res2 = self._make_stage(32, num_blocks, stride=2)
        self.res3 = self._make_stage(64, num_blocks, stride=2)
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))

    def _make_stage(self, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        blocks = []
        for s in [stride] + [1] * (num_blocks - 1):
            blocks.append(CrossSimBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return self.classifier(self.res3(self.res2(self.res1(out))))


def build_crosssim_resnet(depth: int) -> CrossSimResNet:
    """Build an untrained CrossSim CIFAR ResNet of ``depth`` (14, 20, 32 or 56) layers.

    Raises:
        ValueError: if ``depth`` is not one of ``CROSSSIM_DEPTHS``.
    """
    return CrossSimResNet(blocks_per_stage(depth, CROSSSIM_DEPTHS))


def fold_crosssim_batchnorm(model: CrossSimResNet) -> CrossSimResNet:
    """:func:`_cifar_resnet.fold_resnet_batchnorm` of a CrossSim ResNet (stages ``res1`` to ``res3``).

    The same folding as the akamaster export's, also for the ``downsample`` conv + BN pairs
    (``downsample.1`` stays in place as ``nn.Identity``, so the conv keeps its name ``downsample.0``).
    """
    return fold_resnet_batchnorm(model, ("res1", "res2", "res3"))
