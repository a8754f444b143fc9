"""Insert an analog tile's input and output stages around a model's matrix ops (an ONNX graph rewrite).

For each layer of ``layers`` whose op is a matrix op (``Conv``, ``ConvTranspose``, ``Gemm``,
``MatMul``, and ``QLinearConv`` / ``QLinearMatMul`` / ``ConvInteger`` / ``MatMulInteger`` expressed
in float by :mod:`onnxnoise.tile.quantized`), the op is replaced by (in this order)::

    x -> DAC (clip to [-x_max, x_max], round to the dac_bits grid)
      -> per tile t (ops.AnalogOp): partial product P_t of the tile's input rows
         -> + read noise N(0, 1) * read_noise * x_max * w_max_t (RandomNormalLike, new per run)
         -> ADC (clip to the tile's range, round to the adc_bits grid)
      -> sum of the tiles (digital) -> + bias (digital) -> the op's output name

(grids and formulas: :mod:`onnxnoise.tile.stages`; tiles: :mod:`onnxnoise.tile.ops`). Layers of
other ops (BatchNormalization, PRelu, ...) are digital and left as they are; ``Einsum``, ``QGemm``
and the fused dynamic-quantization ops are refused with one line naming the layer.

Read noise is drawn by ``RandomNormalLike`` with a seed from (seed, layer, tile)
(:func:`onnxnoise.tile.stages.noise_seed`): ONNX Runtime draws new values at every ``run`` of a
session and repeats the sequence in a fresh session with the same seed (measured with
onnxruntime 1.32, 1 and 2 threads), so the noise is new for every image and every batch, and a
trial is reproducible from (seed, the sequence of batches it runs). The CUDA provider has its own
generator: its draws differ from the CPU provider's (not measured here: no GPU in this session).

Cost (``scripts/bench_stages.py``, measured 2026-12-05: ResNet20, CIFAR-10, 1,000 images in batches
of 250, one CPU thread, 7 interleaved rounds, onnxruntime 1.32, a shared 2-core VM; ratio to the
clean model's throughput, 95% interval): 512-row tiles alone 0.91 +- 0.03, 8-bit DAC + ADC with
counters 0.50 +- 0.03 (each stage is 7 to 8 elementwise passes over the tensor, together more
kernel time than the convolutions), with read noise 0.04 0.19 +- 0.04, all of it (aihwkit-like)
0.19 +- 0.04. ``RandomNormalLike`` is 54% of the read-noise kernel time: ONNX Runtime's CPU kernel
draws one value at a time on one thread (6.5 to 10 ns per value measured), and ResNet20 has about
190k partial-sum values per image. A DAC fed by a ``Relu`` counts its clips without the ``Abs``
pass (``|x| > r`` is ``x > r`` there, NaN included).

The model may lack weight initializers (the session factory strips those it swaps in per
trial): shapes and clean values come from ``weights``; weights are sliced in the graph
(``Slice`` / ``Gather`` on the tensor the op reads), never renamed or copied, so a replaced
initializer of the same name reaches every tile. New names lie under ``onnxnoise.tile/<layer>/``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnxnoise.model import Layer
from onnxnoise.tile.calibration import Calibration, LayerRanges
from onnxnoise.tile.ops import MATRIX_OPS, AnalogOp, plan_op
from onnxnoise.tile.quantized import QUANTIZED_OPS, as_float
from onnxnoise.tile.settings import TileSettings
from onnxnoise.tile.stages import (Builder, count_clipped, count_values, noise_seed, quantize,
                                   read_noise)
from onnxnoise.tile.values import constant_names, constant_value

__all__ = ["COUNTERS", "MIN_OPSET", "REFUSED_OPS", "Site", "StagedModel", "analog_ops", "insert_stages",
           "observe_model"]

#: Counter kinds of :attr:`StagedModel.counters`.
COUNTERS: tuple[str, ...] = ("dac_clipped", "dac_values", "adc_clipped", "adc_values")

#: Matrix ops the rewrite cannot split (refused with a ``ValueError`` naming the layer).
REFUSED_OPS = frozenset({"Einsum", "QGemm", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "FusedMatMul"})

#: Lowest default-domain opset the stage nodes need (``Round``: opset 11).
MIN_OPSET = 11


@dataclass(frozen=True)
class StagedModel:
    """A model with tile stages, and its counter outputs.

    Attributes:
        model: A new model; the input model is not modified.
        counters: Extra graph output name -> counter kind (:data:`COUNTERS`): per layer,
            int64 scalars over the whole batch: DAC inputs clipped (``|x| > x_max``) and seen
            (with a DAC), ADC values clipped and seen, summed over the layer's tiles (with an ADC).
    """

    model: onnx.ModelProto
    counters: dict[str, str]

    def totals(self, values: Mapping[str, np.ndarray]) -> dict[str, int]:
        """Each counter kind summed over the layers: ``{kind: int}`` for every kind of :data:`COUNTERS`.

        Args:
            values: Output name -> value of one run (or already summed over batches); names
                missing from ``values`` count 0.
        """
        totals = dict.fromkeys(COUNTERS, 0)
        for name, kind in self.counters.items():
            totals[kind] += int(values.get(name, 0))
        return totals


@dataclass(frozen=True)
class Site:
    """One analog layer's op in the graph, ready to be rewritten.

    Attributes:
        layer: The layer name.
        position: The op's position in the main graph's node list.
        builder: Collects the nodes that replace the op (a quantized op's dequantizing nodes first).
        op: The float op and its tiles.
        finish: ``finish(y)`` maps the float result ``y`` back to the op's output name (``Identity``,
            or requantize / round for a quantized op) and returns that name.
        nonnegative_input: The op's activation input is the output of a ``Relu`` node (``>= 0`` or
            NaN), so the DAC's clip counter needs no ``Abs`` (:func:`onnxnoise.tile.stages.count_clipped`).
    """

    layer: str
    position: int
    builder: Builder
    op: AnalogOp
    finish: Callable[[str], str]
    nonnegative_input: bool = False


def insert_stages(model: onnx.ModelProto, layers: Sequence[Layer], settings: TileSettings,
                  calibration: Calibration | None, *, seed: int,
                  weights: Mapping[str, np.ndarray]) -> StagedModel:
    """Return ``model`` with the stages of ``settings`` around the matrix ops of ``layers``.

    Args:
        model: The model (weight initializers may be missing).
        layers: The layers to put on tiles (digital layers among them are skipped).
        settings: The stages; with ``settings.active`` False the model comes back as it is
            (the same object) with no counters.
        calibration: Ranges from :func:`onnxnoise.tile.calibrate` with the same layers and
            tile settings; may be ``None`` when only ``tile_rows`` is set.
        seed: The trial's seed (read noise).
        weights: Clean arrays by initializer name (shapes, ``w_max``, constant chains).

    Returns:
        A :class:`StagedModel`.

    Raises:
        ValueError: One line: no calibration where one is needed, a calibration made for other
            layers or tiles, a layer the rewrite cannot split, or an opset below :data:`MIN_OPSET`.
    """
    if not settings.active:
        return StagedModel(model, {})
    if settings.needs_calibration and calibration is None:
        msg = "tile stages with a DAC, an ADC or read noise need a calibration (onnxnoise.tile.calibrate)"
        raise ValueError(msg)
    if calibration is not None:
        calibration.check(settings)
    sites = analog_ops(model, layers, settings.tile_rows, weights)
    counters: dict[str, str] = {}
    for site in sites:
        ranges = calibration.ranges(site.layer, site.op.tiles, _width(settings, site.op)) if calibration else None
        counters.update(_stage(site, settings, ranges, seed))
    outputs = [helper.make_tensor_value_info(name, TensorProto.INT64, []) for name in counters]
    return StagedModel(_assemble(model, sites, outputs), counters)


def observe_model(model: onnx.ModelProto, layers: Sequence[Layer], tile_rows: int,
                  weights: Mapping[str, np.ndarray]) -> tuple[onnx.ModelProto, list[AnalogOp], dict[str, tuple]]:
    """The rewrite in observe mode: tiles split, no quantization, no noise, each stage's input an output.

    Returns:
        ``(model, ops, taps)``: the new model, the layers' :class:`~onnxnoise.tile.ops.AnalogOp` in
        graph order, and ``output name -> (layer, "dac")`` for a layer's DAC input or
        ``(layer, tile)`` for a tile's partial sum (the ADC input).
    """
    sites = analog_ops(model, layers, tile_rows, weights)
    taps: dict[str, tuple] = {}
    for site in sites:
        b, op = site.builder, site.op
        taps[b.op("Identity", [op.x], output=f"{b.prefix}observe/dac")] = (site.layer, "dac")
        partials = []
        for t in range(op.tiles):
            partials.append(op.partial(b, op.x, t))
            taps[b.op("Identity", [partials[-1]], output=f"{b.prefix}observe/adc_{t}")] = (site.layer, t)
        site.finish(op.add_bias(b, _sum(b, partials)))
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in taps]
    return _assemble(model, sites, outputs), [s.op for s in sites], taps


def analog_ops(model: onnx.ModelProto, layers: Sequence[Layer], tile_rows: int,
               weights: Mapping[str, np.ndarray]) -> list[Site]:
    """The matrix op of each analog layer of ``layers``, in graph order, ready to be rewritten.

    Raises:
        ValueError: As :func:`insert_stages`.
    """
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        msg = (f"the tile stages need opset {MIN_OPSET} or later, the model has {opset} "
               "(convert it with onnx.version_converter.convert_version(model, 13))")
        raise ValueError(msg)
    positions = {node.name or f"{node.op_type}_{i}": i for i, node in enumerate(model.graph.node)}
    relu_outputs = {node.output[0] for node in model.graph.node if node.op_type == "Relu" and node.output}
    constants = constant_names(model, weights)
    sites = []
    for layer in layers:
        if layer.op_type in REFUSED_OPS:
            msg = (f"layer {layer.name!r}: the tile stages cannot split an {layer.op_type} op "
                   "(they take Conv, ConvTranspose, Gemm, MatMul and their quantized forms)")
            raise ValueError(msg)
        if layer.op_type not in MATRIX_OPS | QUANTIZED_OPS:
            continue  # digital (normalization, PRelu, an elementwise weight)
        if layer.name not in positions:
            msg = f"layer {layer.name!r} is not a node of the main graph (a subgraph op cannot take tile stages)"
            raise ValueError(msg)
        position = positions[layer.name]
        node, b = model.graph.node[position], Builder(layer.name, opset)
        if node.op_type in QUANTIZED_OPS:
            rank = lambda name: len(constant_value(model, name, weights).shape)  # noqa: E731
            float_node, finish = as_float(b, node, constants, rank)
            extra = list(b.nodes)
            known = constant_names(model, weights, extra)
            value_of = lambda name, extra=extra: constant_value(model, name, weights, extra)  # noqa: E731
        else:
            float_node, known = node, constants
            value_of = lambda name: constant_value(model, name, weights)  # noqa: E731
            finish = lambda y, b=b, out=node.output[0]: b.op("Identity", [y], output=out)  # noqa: E731
        op = plan_op(layer.name, float_node, known, value_of, tile_rows)
        sites.append(Site(layer.name, position, b, op, finish, nonnegative_input=op.x in relu_outputs))
    return sorted(sites, key=lambda s: s.position)


def _width(settings: TileSettings, op: AnalogOp) -> int:
    return op.columns if settings.adc_scope == "column" else 1


def _stage(site: Site, settings: TileSettings, ranges: LayerRanges | None, seed: int) -> dict[str, str]:
    """Build one layer's stages (module docstring); returns its counter outputs."""
    b, op, counters = site.builder, site.op, {}
    x_max = ranges.x_max if ranges is not None else 0.0
    x = op.x
    if settings.dac_bits:
        clipped = count_clipped(b, x, np.float64(x_max), nonnegative=site.nonnegative_input)
        counters[b.op("Identity", [clipped], output=f"{b.prefix}dac_clipped")] = "dac_clipped"
        counters[b.op("Identity", [count_values(b, x)], output=f"{b.prefix}dac_values")] = "dac_values"
        x = quantize(b, x, np.float64(x_max), settings.dac_bits)
    partials, clipped, seen = [], [], []
    for t in range(op.tiles):
        p = op.partial(b, x, t)
        if settings.read_noise:
            w_max = op.w_max(t)
            w_max = w_max.reshape(op.column_shape) if settings.adc_scope == "column" else w_max.max()
            p = read_noise(b, p, settings.read_noise * x_max * w_max, noise_seed(seed, site.layer, t))
        if settings.adc_bits:
            bound = np.asarray(ranges.adc[t], dtype=np.float64)
            bound = bound.reshape(op.column_shape) if bound.size > 1 else bound.reshape(())
            clipped.append(count_clipped(b, p, bound))
            seen.append(count_values(b, p))
            p = quantize(b, p, bound, settings.adc_bits)
        partials.append(p)
    if settings.adc_bits:
        counters[b.op("Identity", [_sum(b, clipped, op="Add")], output=f"{b.prefix}adc_clipped")] = "adc_clipped"
        counters[b.op("Identity", [_sum(b, seen, op="Add")], output=f"{b.prefix}adc_values")] = "adc_values"
    site.finish(op.add_bias(b, _sum(b, partials)))
    return counters


def _sum(b: Builder, names: list[str], op: str = "Sum") -> str:
    """The digital sum of the tiles' results (``Sum``; an ``Add`` chain for int64 counters)."""
    if len(names) == 1:
        return names[0]
    if op == "Sum":
        return b.op("Sum", names, "tile_sum")
    total = names[0]
    for name in names[1:]:
        total = b.op("Add", [total, name], "count_sum")
    return total


def _assemble(model: onnx.ModelProto, sites: list[Site], outputs: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
    """A copy of ``model`` with each site's node replaced by its builder's nodes, and ``outputs`` added."""
    new = onnx.ModelProto()
    new.CopyFrom(model)
    by_position = {s.position: s for s in sites}
    nodes = []
    for position, node in enumerate(model.graph.node):
        site = by_position.get(position)
        nodes.extend(site.builder.nodes if site is not None else [node])
    del new.graph.node[:]
    new.graph.node.extend(nodes)
    for site in sites:
        new.graph.initializer.extend(site.builder.initializers)
    new.graph.output.extend(outputs)
    return new

