"""The time limit of prefix reuse: its ideal speed-up from measured per-node costs, with the runs' spread.

The MAC ideal (:func:`onnxnoise.model.macs.prefix_reuse_ideal` on :func:`~onnxnoise.model.macs.node_macs`)
counts multiply-accumulates only. Ops outside Conv/Gemm/MatMul (BatchNormalization, Relu, Add,
pooling, ONNX Runtime's layout reorders) take time but no MACs, and in a CIFAR ResNet their time per
MAC is largest in the early, high-resolution layers, which the suffixes of later layers skip: the
real limit of prefix reuse can sit above the MAC ideal. Issue 24 defines the limit as "cost of the
full model over the mean cost of the suffixes"; here the cost of a node is its measured time (e.g.
the kernel time ONNX Runtime's profiler gives it on a clean run, ``scripts/_bench_node_time.py``),
and the formula is the MAC ideal's, unchanged: each group's clean prefix pass once, each trial's
suffix, over the full model per trial.

Measured times vary from run to run: the ideal is computed for each run's costs and for the mean
costs; its upper end (:attr:`IdealSpread.high`) is the most a measured speed-up can be.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from onnxnoise.model.macs import prefix_reuse_ideal

__all__ = ["IdealSpread", "measured_ideal"]


@dataclass(frozen=True)
class IdealSpread:
    """The ideal speed-up of prefix reuse from measured per-node costs, and its spread over the runs.

    Attributes:
        mean: The ideal of the per-node costs averaged over the runs (dimensionless, >= 1).
        low: The smallest ideal of a single run's costs.
        high: The largest of ``mean`` and every single run's ideal: the limit a measured speed-up
            is checked against (the upper end of the ideal's spread).
        per_run: The ideal of each run's costs, in run order.
    """

    mean: float
    low: float
    high: float
    per_run: tuple[float, ...]


def measured_ideal(runs: Sequence[Sequence[float]], groups: Sequence[Sequence[int]]) -> IdealSpread:
    """The ideal of prefix reuse for ``groups`` with measured node costs, per run and for the mean costs.

    Each run's ideal is :func:`~onnxnoise.model.macs.prefix_reuse_ideal` (``N * sum(c) / sum over
    groups of (sum(c[:max(g)]) + sum over p in g of sum(c[p:]))``, issue 24) with that run's costs
    ``c``; ``mean`` is the same formula on the costs averaged node by node.

    Args:
        runs: Per run, the cost of every node in graph order (any unit, e.g. seconds; >= 0), all
            of the same length.
        groups: Per group of trials, each trial's split position (node index, as for
            :func:`~onnxnoise.model.macs.prefix_reuse_ideal`).

    Returns:
        An :class:`IdealSpread`. E.g. nodes costing 1, 2, 3 s in one run and 3, 2, 1 s in another,
        one group with positions 0, 1, 2: run ideals ``3 * 6 / (3 + 6 + 5 + 3) = 1.0588`` and
        ``3 * 6 / (5 + 6 + 3 + 1) = 1.2``, mean costs 2, 2, 2: ``3 * 6 / (4 + 6 + 4 + 2) = 1.125``;
        ``low`` 1.0588, ``high`` 1.2.

    Raises:
        ValueError: No run, runs of different lengths, a negative cost, or what
            :func:`~onnxnoise.model.macs.prefix_reuse_ideal` refuses (no trial, a position outside the
            graph, costs summing to 0).
    """
    if not runs:
        raise ValueError("no measured run: the time ideal needs the node costs of at least one run")
    costs = [np.asarray(run, dtype=np.float64) for run in runs]
    if len({c.shape for c in costs}) != 1 or costs[0].ndim != 1:
        raise ValueError(f"runs of different lengths {sorted({len(c) for c in costs})}: one cost per node in each")
    if any((c < 0).any() for c in costs):
        raise ValueError("a negative node cost: measured times are >= 0")
    per_run = tuple(prefix_reuse_ideal(c.tolist(), groups) for c in costs)
    mean = prefix_reuse_ideal(np.mean(costs, axis=0).tolist(), groups)
    return IdealSpread(mean=mean, low=min(per_run), high=max(mean, *per_run), per_run=per_run)
