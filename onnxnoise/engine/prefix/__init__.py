"""Prefix reuse: run only the part of the graph that the noise can change.

When the noised layers of a trial start at node ``p`` (graph order), everything the
nodes before ``p`` compute is the clean model's. The graph is split at ``p``; the *cut* is
the set of tensors produced before ``p`` (or graph inputs) that nodes at or after ``p``
consume, e.g. a residual branch that lives across the split. Each trial runs only the
*suffix* model (cut tensors as inputs, scores as output) with its noisy weights, on clean
cut values. Modules, one concept each:

- :mod:`~onnxnoise.engine.prefix.graph_split`: split positions, cuts and sub-models (:class:`GraphSplitter`);
- :mod:`~onnxnoise.engine.prefix.sessions`: the suffix and clean segment sessions both
  strategies share, built once and cached, on the host or the GPU (:class:`SplitSessions`);
- :mod:`~onnxnoise.engine.prefix.kept_cut`: one trial at a time on a clean cut kept between
  trials, moved forward incrementally, bounded by ``--prefix-memory`` (:class:`KeptCut`);
- :mod:`~onnxnoise.engine.prefix.cut_store`: where a kept cut's batches live (memory, disk,
  recomputed; :class:`CutStore`);
- :mod:`~onnxnoise.engine.prefix.lockstep`: a group of trials batch by batch, sharing the
  clean prefix, keeping no cut (:func:`run_lockstep`), and how many trials a group may hold
  (:func:`lockstep_group_limit`, bounded by the memory of its suffix sessions);
- :mod:`~onnxnoise.engine.prefix.runner`: :class:`PrefixRunner`, both strategies behind one
  object per run; :mod:`~onnxnoise.engine.prefix.stats`: :class:`PrefixStats`.

Exactness: a split changes what ONNX Runtime can fuse only across the split. The one
fusion a split would break is a noised ``BatchNormalization`` folded into the Conv or
Gemm that feeds it; the split is then placed before that producer, so the suffix
holds the same fused pattern as the full model. Spilled batches are read back
bit-identical. Tests compare predictions and logits with full-model evaluation
(ResNet20, every layer, BN kept and folded; a memory bound forcing many spilled batches)
and lockstep, kept cut and full model trial by trial.
"""

from onnxnoise.engine.prefix.cut_store import CutStore
from onnxnoise.engine.prefix.graph_split import GraphSplitter
from onnxnoise.engine.prefix.kept_cut import Cut, KeptCut
from onnxnoise.engine.prefix.lockstep import (
    DEFAULT_LOCKSTEP_MEMORY, MAX_LOCKSTEP, SESSION_BYTES, lockstep_group_limit, run_lockstep,
)
from onnxnoise.engine.prefix.runner import DEFAULT_MEMORY_BYTES, PrefixRunner
from onnxnoise.engine.prefix.sessions import SplitSessions
from onnxnoise.engine.prefix.stats import PrefixStats

__all__ = [
    "PrefixRunner", "PrefixStats", "GraphSplitter", "SplitSessions", "KeptCut", "Cut", "CutStore",
    "run_lockstep", "lockstep_group_limit", "MAX_LOCKSTEP", "SESSION_BYTES", "DEFAULT_LOCKSTEP_MEMORY",
    "DEFAULT_MEMORY_BYTES",
]
