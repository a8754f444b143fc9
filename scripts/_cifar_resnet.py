"""CIFAR-10 ResNet (He et al. 2016, section 4.2) in the akamaster/pytorch_resnet_cifar10 layout.

Written from the architecture facts in ``../shared/models/cifar10-resnet/MANIFEST.txt`` so that the
state_dict keys of the akamaster checkpoints (after stripping ``module.``) load with ``strict=True``:

- ``conv1`` 3x3 3->16 (no bias), ``bn1``, ReLU
- ``layer1`` / ``layer2`` / ``layer3``: ``n = (depth - 2) / 6`` BasicBlocks of 16 / 32 / 64 channels;
  the first block of ``layer2`` and ``layer3`` has stride 2
- BasicBlock: conv3x3(stride) -> BN -> ReLU -> conv3x3 -> BN, + shortcut, ReLU
- shortcut "option A" (parameter-free): ``x[:, :, ::2, ::2]`` then zero-pad the channel axis by
  ``planes // 4`` on each side
- global average pool, ``linear`` 64->10 (with bias)

Only ``scripts/`` and ``tests/`` import this module (torch is not a dependency of ``onnxnoise``).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = [
    "DEPTHS", "BasicBlock", "CifarResNet", "blocks_per_stage", "build_cifar_resnet", "fold_batchnorm",
    "fold_resnet_batchnorm",
]

DEPTHS = (20, 32, 44, 56)


class _OptionAShortcut(nn.Module):
    """Parameter-free shortcut: subsample by 2 and zero-pad ``pad`` channels on each side."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad), "constant", 0.0)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and an identity or option-A shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut: nn.Module = _OptionAShortcut(planes // 4)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs: input ``(N, 3, 32, 32) float32 NCHW``, output ``(N, 10)`` logits."""

    def __init__(self, num_blocks: int, num_classes: int = 10) -> None:
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, num_blocks, stride=1)
        self.layer2 = self._make_layer(32, num_blocks, stride=2)
        self.layer3 = self._make_layer(64, num_blocks, stride=2)
        self.linear = nn.Linear(64, num_classes)

    def _make_layer(self, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        blocks = []
        for s in [stride] + [1] * (num_blocks - 1):
            blocks.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.linear(out)


def blocks_per_stage(depth: int, depths: tuple[int, ...]) -> int:
    """Blocks per stage ``n`` of a ``6n + 2``-layer CIFAR ResNet of ``depth``, one of ``depths``.

    Raises:
        ValueError: if ``depth`` is not one of ``depths``.
    """
    if depth not in depths:
        msg = f"unsupported `depth` {depth!r}; expected one of {list(depths)}"
        raise ValueError(msg)
    return (depth - 2) // 6


def build_cifar_resnet(depth: int) -> CifarResNet:
    """Build an untrained CIFAR ResNet of ``depth`` (20, 32, 44 or 56) layers.

    Raises:
        ValueError: if ``depth`` is not one of ``DEPTHS``.
    """
    return CifarResNet(blocks_per_stage(depth, DEPTHS))


def fold_resnet_batchnorm(model: nn.Module, stages: tuple[str, ...]) -> nn.Module:
    """Return an eval-mode copy of a CIFAR ResNet with every BatchNorm folded into the conv before it.

    ``conv(x) * gamma / sqrt(var + eps) + (beta - mean * gamma / sqrt(var + eps))`` becomes one conv
    with weight and bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``, float32, each BN's own eps):
    the stem ``conv1``/``bn1``, then in every block of the attributes ``stages`` its ``conv1``/``bn1``,
    ``conv2``/``bn2`` and, where the block has one, its ``downsample`` conv + BN pair. Each folded
    BatchNorm is replaced by ``nn.Identity`` in place (``downsample.1`` stays, so the conv keeps its
    name ``downsample.0``). ``model`` itself is not changed.
    """
    folded = copy.deepcopy(model).eval()
    folded.conv1 = fuse_conv_bn_eval(folded.conv1, folded.bn1)
    folded.bn1 = nn.Identity()
    for stage in stages:
        for block in getattr(folded, stage):
            block.conv1 = fuse_conv_bn_eval(block.conv1, block.bn1)
            block.bn1 = nn.Identity()
            block.conv2 = fuse_conv_bn_eval(block.conv2, block.bn2)
            block.bn2 = nn.Identity()
            if getattr(block, "downsample", None) is not None:
                block.downsample[0] = fuse_conv_bn_eval(block.downsample[0], block.downsample[1])
                block.downsample[1] = nn.Identity()
    return folded


def fold_batchnorm(model: CifarResNet) -> CifarResNet:
    """:func:`fold_resnet_batchnorm` of an akamaster CIFAR ResNet (stages ``layer1`` to ``layer3``)."""
    return fold_resnet_batchnorm(model, ("layer1", "layer2", "layer3"))
