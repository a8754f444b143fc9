"""scripts/_bench_node_time.py: ONNX Runtime's profile of a real clean run, mapped back to the graph's nodes
(no timing assertions: which node gets time, and that every kernel's time lands on a node)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests._builders import conv_bn_resnet, tiny_cnn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
node_time = importlib.import_module("_bench_node_time")


def _profile(model: onnx.ModelProto, batch: int, monkeypatch: pytest.MonkeyPatch, runs: int = 3, warmup: int = 2):
    """``(renamed model, NodeTimes, the profile's events)`` of ``warmup + runs`` runs on random images."""
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    x = np.random.default_rng(0).random((batch, *dims), dtype=np.float32)
    named = node_time.renamed(model)
    with_events = {}
    original = node_time.node_seconds

    def spy(events, model, *, skip=0):
        with_events["events"] = events
        return original(events, model, skip=skip)

    monkeypatch.setattr(node_time, "node_seconds", spy)
    times = node_time.profile_node_seconds(model, {model.graph.input[0].name: x}, runs=runs, warmup=warmup)
    return named, times, with_events["events"]


def _kernel_seconds_per_run(events: list[dict], skip: int) -> list[float]:
    runs = sorted((e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"),
                  key=lambda e: e["ts"])[skip:]
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    return [sum(e["dur"] for e in kernels if r["ts"] <= e["ts"] <= r["ts"] + r["dur"]) * 1e-6 for r in runs]


@pytest.mark.parametrize("build", [tiny_cnn, conv_bn_resnet], ids=["tiny_cnn", "conv_bn_resnet"])
def test_every_conv_gets_time_and_every_kernel_lands_on_a_node(build, monkeypatch):
    model = build()
    named, times, events = _profile(model, 16, monkeypatch)
    assert [n.name for n in named.graph.node] == [f"node#{i}#" for i in range(len(model.graph.node))]
    assert len(times.runs) == 3 and all(len(r) == len(model.graph.node) for r in times.runs)
    convs = [i for i, n in enumerate(model.graph.node) if n.op_type == "Conv"]
    assert convs and all(r[i] > 0 for r in times.runs for i in convs)
    # nothing lost or counted twice: per run, the nodes' seconds sum to the run's kernel seconds
    assert [sum(r) for r in times.runs] == pytest.approx(_kernel_seconds_per_run(events, skip=2), rel=1e-9)
    assert all(v >= 0 for r in times.runs for v in r)
    # rules 1 and 2 map every kernel of a graph node; only ONNX Runtime's own layout reorders go by rule 3
    assert all(name.startswith(("ReorderInput", "ReorderOutput")) for name in times.reattributed)


def test_conv_bn_relu_fused_time_lands_on_the_conv(monkeypatch):
    # conv_bn_resnet: every BatchNormalization follows a Conv; ORT folds it, and a Relu right after it, into
    # the Conv, so those nodes get no time of their own
    model = conv_bn_resnet()
    _, times, _ = _profile(model, 16, monkeypatch)
    producer = {out: n for n in model.graph.node for out in n.output}
    folded = [i for i, n in enumerate(model.graph.node) if n.op_type == "BatchNormalization"
              or (n.op_type == "Relu" and producer[n.input[0]].op_type == "BatchNormalization")]
    assert len(folded) >= 4 and all(r[i] == 0 for r in times.runs for i in folded)


def _event(name: str, ts: int, dur: int, cat: str = "Node") -> dict:
    return {"cat": cat, "name": name, "ts": ts, "dur": dur, "ph": "X", "args": {}}


def test_mapping_rules_on_a_written_profile():
    # tiny_cnn: conv (0) -> bn (1) -> relu (2) -> mul (3) -> pool (4) -> reshape (5) -> gemm (6); ORT's NCHWc
    # transformer names a fused Conv + BatchNormalization + Relu after the Relu's output tensor "r"
    model = tiny_cnn()
    assert [n.op_type for n in model.graph.node][:3] == ["Conv", "BatchNormalization", "Relu"]
    named = node_time.renamed(model)
    tensor, last = model.graph.node[2].output[0], 6
    events = [_event("model_run", 0, 50, "Session"), _event("node#0#_kernel_time", 1, 7),  # warm-up run, skipped
              _event("model_run", 100, 100, "Session"),
              _event("ReorderInput_kernel_time", 101, 2),  # rule 3: to the next mapped kernel (the conv)
              _event(f"{tensor}_nchwc_kernel_time", 104, 30), _event(f"{tensor}_nchwc_fence_before", 104, 1),
              _event(f"fused node#{last}#_kernel_time", 140, 5),  # rule 1: the token's node
              _event("ReorderOutput_kernel_time", 150, 4)]  # rule 3 at the end: the previous mapped kernel
    times = node_time.node_seconds(events, named, skip=1)
    expected = [0.0] * len(model.graph.node)
    expected[0], expected[last] = 32e-6, 9e-6
    assert times.runs == [pytest.approx(expected)]
    assert times.reattributed == ["ReorderInput", "ReorderOutput"] and times.reattributed_s == [pytest.approx(6e-6)]
    with pytest.raises(ValueError, match="no model_run event after the 2 warm-up"):
        node_time.node_seconds(events, named, skip=2)
