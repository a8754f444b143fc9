"""``--alternatives`` and ``--tune`` of ``scripts/bench_throughput.py``: per-trial designs and session options."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort

from _bench_measure import instrument
from onnxnoise.engine.evaluate import evaluate
from onnxnoise.engine.plan import Trial
from onnxnoise.engine.runtime import Session
from onnxnoise.engine.trial import run_trial
from onnxnoise.errors import OnnxNoiseError


@dataclass
class _WeightsAsInputs:
    """A :class:`~onnxnoise.engine.runtime.Session` look-alike feeding the noisy weights as graph inputs."""

    session: ort.InferenceSession
    input_name: str
    output_name: str
    feeds: dict
    provider: str = "CPUExecutionProvider"
    on_cuda: bool = False

    def run(self, batch: np.ndarray) -> np.ndarray:
        (out,) = self.session.run([self.output_name], {self.input_name: batch, **self.feeds})
        return out.reshape(out.shape[0], -1)


def weights_as_inputs(context, strength: float) -> dict:
    """Per-trial cost: the engine's trial (new session per trial) vs one session with the weights as inputs.

    The engine runs one ``all`` trial (seed 0); its noisy weights are then fed as graph inputs to a
    session built once, and that session is evaluated on the same data. Both paths include the same
    noise draw; the counts must agree. CPU execution provider only.
    """
    trial = Trial("all", None, tuple(layer.name for layer in context.selected), strength, 0)
    captured = {}
    factory = context.factory
    create = factory.create

    def capture(replacements=None, **kwargs):
        session = create(replacements, **kwargs)
        if replacements:
            captured.update(replacements=dict(replacements), session=session)
        return session

    factory.create = capture
    try:
        with instrument(context) as timing:
            started = time.perf_counter()
            row = run_trial(context, trial)
            rebuilt_s = time.perf_counter() - started
    finally:
        del factory.create
    if row["error"] is not None:
        raise OnnxNoiseError(f"the engine's trial failed: {row['error']}")
    noise_s, build_s = timing.noise_s[-1], timing.sessions[-1].build_s
    names = [n for layer in context.selected for n in layer.tensors]
    model = onnx.ModelProto()
    model.CopyFrom(context.model)
    moved = [t for t in model.graph.initializer if t.name in set(names)]
    kept = [t for t in model.graph.initializer if t.name not in set(names)]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    for t in moved:
        model.graph.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = context.config.threads
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {n: np.ascontiguousarray(captured["replacements"].get(n, context.initializers[n])) for n in names}
    alternative = _WeightsAsInputs(session, context.io.input_name, context.io.output_name, feeds)
    x0, _ = next(iter(context.data.batches()))
    diff = float(np.abs(alternative.run(x0) - captured["session"].run(x0)).max())
    started = time.perf_counter()
    counts = evaluate(alternative, context.data)
    inputs_s = noise_s + time.perf_counter() - started
    same = (counts.top1_correct, counts.top5_correct, counts.nan_count) == (
        row["top1_correct"], row["top5_correct"], row["nan_count"])
    return {"rebuild_trial_s": rebuilt_s, "rebuild_build_s": build_s, "noise_s": noise_s, "inputs_trial_s": inputs_s,
            "inputs_max_abs_diff": diff, "same_counts": same,
            "faster": "rebuild" if rebuilt_s <= inputs_s else "inputs"}


def tune(context) -> list[dict]:
    """Clean throughput (one ``evaluate`` pass after a warm-up) over intra-op threads x graph optimization level."""
    model_bytes = context.factory.standalone_bytes(None)
    rows = []
    levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    for threads in (1, 2, 0):
        for name, level in levels.items():
            options = ort.SessionOptions()
            options.graph_optimization_level = level
            options.intra_op_num_threads = threads
            options.log_severity_level = 3
            t0 = time.perf_counter()
            ort_session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
            build = time.perf_counter() - t0
            session = Session(ort_session, context.io.input_name, context.io.output_name, "CPUExecutionProvider")
            evaluate(session, context.data)  # warm-up
            t0 = time.perf_counter()
            evaluate(session, context.data)
            rows.append({"threads": threads, "opt_level": name, "build_s": build,
                         "images_per_s": len(context.data) / (time.perf_counter() - t0)})
    return rows
