"""Per-node time of a clean run from ONNX Runtime's own profiler, mapped back to the graph's nodes.

The time ideal of prefix reuse (:func:`onnxnoise.model.node_cost.measured_ideal`) needs the cost of
every node of the ONNX graph. :func:`profile_node_seconds` measures it: a clean session of the model
with ``SessionOptions.enable_profiling``, the engine's graph optimization level (``ORT_ENABLE_ALL``,
as :class:`onnxnoise.engine.runtime.SessionFactory` builds every session) and ``threads`` intra-op
threads (default 1: prefix reuse runs its suffix sessions side by side with one thread each), run
``warmup + runs`` times on one batch; the first ``warmup`` runs are dropped.

The profile is Chrome-trace JSON: one event per ``model_run`` (``cat`` "Session") and, inside its
``[ts, ts + dur]`` (microseconds), one ``cat`` "Node" event ``<node name>_kernel_time`` per executed
kernel (``_fence_before`` / ``_fence_after`` events are ignored). ONNX Runtime runs the *optimized*
graph, whose nodes are not the ONNX graph's: BatchNormalization is folded into the Conv before it,
Conv + activation (+ Add) run as one fused kernel, and at ``ORT_ENABLE_ALL`` the NCHWc transformer
replaces Convs by blocked-layout kernels named ``<output tensor>_nchwc`` and inserts
``ReorderInput`` / ``ReorderOutput`` layout conversions. The mapping (:func:`node_seconds`):

1. The profiled copy of the model has every node renamed ``node#<index>#``, so a kernel whose name
   carries such a token (the node itself, or a fused node named after it) is that node's (the
   smallest index when it carries several).
2. A kernel named ``<tensor>_nchwc`` (a Conv and what ONNX Runtime fused into it) is the Conv that
   starts its fused group: from the node producing ``<tensor>`` in the ONNX graph (the group's last
   node, e.g. the Relu after Conv + BatchNormalization, or the BatchNormalization itself when an Add
   + Relu followed), back through BatchNormalization, activations and an Add whose one input comes
   from a Conv or BatchNormalization, to the Conv/Gemm/MatMul (:func:`fused_root`); the producer
   itself when that walk does not reach one.
3. Any other kernel (the layout reorders, or a node ONNX Runtime generated) is attributed to the
   next mapped kernel of the same run (the previous one at the end of a run): a reorder converts
   the layout for the kernel that follows it.

A fused group's time thus lands on its first node, the Conv; the other nodes of the group cost 0. A
split at a Conv weight (the usual per-layer split) includes the whole group in the suffix, as the
suffix session runs it; a split inside a group (e.g. at a BatchNormalization weight) is attributed
approximately (the suffix session cannot fuse across the cut).
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from onnxnoise.model.macs import MAC_OPS
from onnxnoise.model.node_cost import IdealSpread, measured_ideal

_TOKEN = re.compile(r"node#(\d+)#")
_KERNEL = "_kernel_time"
#: Ops ONNX Runtime fuses into the Conv before them (folded BatchNormalization, activations, a residual Add).
_FUSIBLE = frozenset({"BatchNormalization", "Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "Tanh", "Add",
                      "Sum"})


@dataclass
class NodeTimes:
    """Per-node kernel seconds of profiled clean runs.

    Attributes:
        runs: Per measured run, seconds per node of the ONNX graph, in graph order.
        reattributed_s: Per run, the seconds of kernels mapped by rule 3 (module doc).
        reattributed: Names of the kernels mapped by rule 3 (e.g. ``ReorderInput``), sorted.
    """

    runs: list[list[float]]
    reattributed_s: list[float]
    reattributed: list[str]


def renamed(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose node ``i`` is named ``node#i#`` (unique, so fused names map back)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for i, node in enumerate(copy.graph.node):
        node.name = f"node#{i}#"
    return copy


def fused_root(model: onnx.ModelProto, index: int, producers: dict[str, int]) -> int:
    """The Conv/Gemm/MatMul that starts the fused group ending at node ``index`` (rule 2, module doc).

    Walks back from node ``index`` through BatchNormalization, activations and Add (to the input made
    by a Conv or BatchNormalization, when exactly one is), at most 4 steps; ``index`` when the walk
    does not end at a Conv/Gemm/MatMul.
    """
    nodes = model.graph.node
    at = index
    for _ in range(4):
        node = nodes[at]
        if node.op_type in MAC_OPS:
            return at
        if node.op_type not in _FUSIBLE:
            return index
        preds = [producers[x] for x in node.input if x in producers]
        if node.op_type in ("Add", "Sum"):
            preds = [p for p in preds if nodes[p].op_type in ("Conv", "BatchNormalization")]
        else:
            preds = preds[:1]
        if len(preds) != 1:
            return index
        at = preds[0]
    return at if nodes[at].op_type in MAC_OPS else index


def _index(name: str, model: onnx.ModelProto, producers: dict[str, int]) -> int | None:
    tokens = _TOKEN.findall(name)
    if tokens:
        return min(int(t) for t in tokens)
    if name.endswith("_nchwc") and name[: -len("_nchwc")] in producers:
        return fused_root(model, producers[name[: -len("_nchwc")]], producers)
    return None


def node_seconds(events: list[dict], model: onnx.ModelProto, *, skip: int = 0) -> NodeTimes:
    """Map a profile's kernel events to the nodes of ``model`` (as :func:`renamed` names them), per run.

    Args:
        events: The profile's events (the JSON list ``end_profiling`` writes).
        model: The graph the profiled session was built from, nodes named by :func:`renamed`.
        skip: Leading ``model_run`` events to drop (warm-up runs).

    Returns:
        :class:`NodeTimes` with one run per ``model_run`` event after ``skip``.

    Raises:
        ValueError: No ``model_run`` event after ``skip``, or a run none of whose kernels maps to a node.
    """
    producers = {out: i for i, node in enumerate(model.graph.node) for out in node.output}
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])[skip:]
    if not runs:
        raise ValueError(f"the profile holds no model_run event after the {skip} warm-up run(s)")
    kernels = sorted((e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith(_KERNEL)),
                     key=lambda e: e["ts"])
    out, moved_s, moved = [], [], set()
    for run in runs:
        inside = [e for e in kernels if run["ts"] <= e["ts"] <= run["ts"] + run["dur"]]
        mapped = [(_index(e["name"][: -len(_KERNEL)], model, producers), e["dur"] * 1e-6, e["name"]) for e in inside]
        known = [i for i, (index, _, _) in enumerate(mapped) if index is not None]
        if not known:
            raise ValueError(f"no kernel of the run at ts {run['ts']} maps to a node of the graph")
        seconds, other = np.zeros(len(model.graph.node)), 0.0
        for k, (index, dur, name) in enumerate(mapped):
            if index is None:  # rule 3: the next mapped kernel's node, else the previous one's
                target = next((i for i in known if i > k), known[-1])
                index = mapped[target][0]
                other += dur
                moved.add(name[: -len(_KERNEL)])
            seconds[index] += dur
        out.append(seconds.tolist())
        moved_s.append(other)
    return NodeTimes(out, moved_s, sorted(moved))


def profile_node_seconds(model: onnx.ModelProto, feeds: dict[str, np.ndarray], *, runs: int = 10,
                         warmup: int = 3, threads: int = 1) -> NodeTimes:
    """Profile ``warmup + runs`` clean runs of ``model`` on ``feeds`` (CPU execution provider); module doc.

    ``model`` must be loadable from bytes (under 2 GiB). The profile file is written to a temporary
    folder and removed.
    """
    named = renamed(model)
    with tempfile.TemporaryDirectory(prefix="onnxnoise-profile-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(named.SerializeToString(), options, providers=["CPUExecutionProvider"])
        for _ in range(warmup + runs):
            session.run(None, feeds)
        with open(session.end_profiling()) as fh:
            events = json.load(fh)
    events = events.get("traceEvents", []) if isinstance(events, dict) else events
    return node_seconds(events, named, skip=warmup)


def time_ideal(context, groups: list[list[int]], runs: int, warmup: int) -> tuple[IdealSpread, dict]:
    """The time ideal of prefix reuse for ``groups``: node costs from ONNX Runtime's profile of clean runs.

    ``context``: a :class:`~onnxnoise.engine.context.RunContext` (its ``model``, ``io.input_name`` and
    ``data``). A one-thread clean session of ``context.model`` on the first batch of the data
    (:func:`profile_node_seconds`, ``warmup`` + ``runs`` runs); ``groups`` as for
    :func:`onnxnoise.model.node_cost.measured_ideal`. Returns the ideal's spread and a dict to print and
    store: ``mean``, ``low``, ``high``, ``per_run``, ``runs``, ``warmup``, ``threads``, ``batch_images``,
    ``kernel_s_per_run`` (seconds, mean over runs), ``reattributed`` (kernel names, rule 3) and
    ``reattributed_pct`` (their share of the kernel time, %).
    """
    batch, _ = next(iter(context.data.batches()))
    times = profile_node_seconds(context.model, {context.io.input_name: batch}, runs=runs, warmup=warmup)
    spread = measured_ideal(times.runs, groups)
    total = float(np.mean([sum(r) for r in times.runs]))
    info = {"mean": spread.mean, "low": spread.low, "high": spread.high, "per_run": list(spread.per_run),
            "runs": runs, "warmup": warmup, "threads": 1, "batch_images": int(len(batch)),
            "kernel_s_per_run": total, "reattributed": times.reattributed,
            "reattributed_pct": 100 * float(np.mean(times.reattributed_s)) / total if total else 0.0}
    return spread, info
