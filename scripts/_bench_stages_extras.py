"""``--profile`` and the ``noise-fed`` side of ``scripts/bench_stages.py``: where a staged run's time goes.

- :func:`op_times` / :func:`profile_ops`: ONNX Runtime's own per-node kernel times
  (``SessionOptions.enable_profiling``), summed per op type over the timed runs only (the warm-up
  runs' events, which include the arena's first allocations, are left out).
- :func:`fed_noise_model` / :class:`TableNoise`: a *measurement prototype, not the engine's read
  noise*: every ``RandomNormalLike`` of a staged model becomes a graph input, fed per run with values
  drawn in numpy from a 65,536-entry table of standard normal quantiles (``Phi^-1((i + 0.5) / 2**16)``,
  rescaled to unit variance; so a discrete distribution whose ``|z|`` stops at 4.325 and whose
  kurtosis is 2.9992, not 3) indexed by 16-bit integers from numpy's ``SFC64`` generator, drawn in
  chunks of :data:`CHUNK` values. It measures what drawing the noise outside ONNX Runtime would
  gain on one thread (1.1 to 1.2 ns per value here, against 6.5 to 10 for ``RandomNormalLike``);
  the engine does not use it.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper
from scipy.special import ndtri

#: Values drawn per numpy call of :class:`TableNoise` (a chunk stays in the L2 cache).
CHUNK = 1 << 15


def op_times(events: Iterable[Mapping], skip_runs: int) -> dict[str, float]:
    """Microseconds per op type from ONNX Runtime profile events, without each node's first ``skip_runs`` runs.

    Args:
        events: The profile file's JSON list (``cat == "Node"`` events named ``<node>_kernel_time``
            carry ``dur`` in microseconds and ``args.op_name``).
        skip_runs: Runs left out at the start (warm-up); a node's ``n``-th event is its ``n``-th run.

    Returns:
        ``{op type: total microseconds over the kept runs}``.
    """
    durations: dict[str, list[float]] = defaultdict(list)
    op_of: dict[str, str] = {}
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            durations[event["name"]].append(float(event["dur"]))
            op_of[event["name"]] = event["args"]["op_name"]
    totals: Counter = Counter()
    for name, values in durations.items():
        totals[op_of[name]] += sum(values[skip_runs:])
    return dict(totals)


def profile_ops(model: onnx.ModelProto, names: Sequence[str], feeds: Sequence[dict], threads: int,
                prefix: str) -> dict[str, float]:
    """Per-op-type microseconds of one pass over ``feeds`` after one untimed pass (the engine's CPU options).

    ``prefix``: where ONNX Runtime writes its profile file (``prefix_<date>.json``).
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = prefix
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    for _ in range(2):
        for feed in feeds:
            session.run(list(names), feed)
    with open(session.end_profiling(), encoding="utf-8") as f:
        return op_times(json.load(f), skip_runs=len(feeds))


def fed_noise_model(model: onnx.ModelProto, input_name: str,
                    probe: np.ndarray) -> tuple[onnx.ModelProto, dict[str, tuple[tuple[int, ...], float]]]:
    """``model`` with each ``RandomNormalLike`` replaced by a graph input of the same shape.

    Args:
        model: A staged model (:func:`onnxnoise.tile.insert_stages` with read noise).
        input_name: The image input.
        probe: One batch; one run of ``model`` with every noise operand as an output gives their shapes.

    Returns:
        ``(new model, {noise input: (shape of one image's noise, std)})``.
    """
    rnl = [n for n in model.graph.node if n.op_type == "RandomNormalLike"]
    probe_model = onnx.ModelProto()
    probe_model.CopyFrom(model)
    probe_model.graph.output.extend(helper.make_tensor_value_info(n.input[0], TensorProto.FLOAT, None) for n in rnl)
    session = ort.InferenceSession(probe_model.SerializeToString(), providers=["CPUExecutionProvider"])
    shapes = [v.shape[1:] for v in session.run([n.input[0] for n in rnl], {input_name: probe})]
    specs = {}
    new = onnx.ModelProto()
    new.CopyFrom(model)
    nodes = []
    for node in new.graph.node:
        if node.op_type != "RandomNormalLike":
            nodes.append(node)
            continue
        feed = f"{node.output[0]}/fed"
        shape = shapes[len(specs)]
        std = next(helper.get_attribute_value(a) for a in node.attribute if a.name == "scale")
        specs[feed] = (tuple(int(d) for d in shape), float(std))
        nodes.append(helper.make_node("Identity", [feed], [node.output[0]], name=f"{feed}:node"))
        new.graph.input.append(helper.make_tensor_value_info(feed, TensorProto.FLOAT, ["N", *shape]))
    del new.graph.node[:]
    new.graph.node.extend(nodes)
    return new, specs


class TableNoise:
    """Noise feeds for :func:`fed_noise_model`'s inputs, drawn per call (the module docstring's table)."""

    def __init__(self, specs: Mapping[str, tuple[tuple[int, ...], float]], seed: int = 0) -> None:
        quantiles = ndtri((np.arange(1 << 16) + 0.5) / (1 << 16))
        unit = quantiles / np.sqrt(np.mean(quantiles**2))
        self.tables = {name: (unit * std).astype(np.float32) for name, (_, std) in specs.items()}
        self.shapes = {name: shape for name, (shape, _) in specs.items()}
        self.bits = np.random.Generator(np.random.SFC64(seed)).bit_generator

    def draw(self, images: int) -> dict[str, np.ndarray]:
        """``{noise input: (images, *shape) float32}``, new values at every call."""
        feeds = {}
        for name, shape in self.shapes.items():
            out = np.empty(images * int(np.prod(shape)), np.float32)
            for start in range(0, out.size, CHUNK):
                size = min(CHUNK, out.size - start)
                index = self.bits.random_raw((size + 3) // 4).view(np.uint16)[:size]
                np.take(self.tables[name], index, out=out[start:start + size])
            feeds[name] = out.reshape(images, *shape)
        return feeds
