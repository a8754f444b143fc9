"""Calibrate the tile stages' ranges on clean activations (the field's convention: a small clean subset).

:func:`calibrate` runs the clean model with the stages in observe mode
(:func:`onnxnoise.tile.rewrite.observe_model`: tiles split, no quantization, no noise, each
layer's DAC input and each tile's partial sum exposed) on ONNX Runtime's CPU provider and reduces:

- ``x_max`` per layer: ``max|x|`` over every value of the layer's input, or its percentile;
- per tile, the ADC range: ``max|P_t|`` (or its percentile) over the tile's partial sums, over
  all values (``adc_scope = "layer"``) or per output column (``"column"``); with
  ``adc_bound > 0`` instead ``adc_bound * x_max * w_max`` (``w_max`` of the tile, per column under
  ``"column"``; aihwkit's ``out_bound``, ../shared/PARITY.md sec. 1).

CrossSim ships ranges calibrated this way from 500 clean images (PARITY.md sec. 2).

**Fixed DAC range** (``dac_bound > 0``): every layer's ``x_max`` is ``dac_bound`` (no margin), as
aihwkit's learned input ranges left at ``init_value = 3.0`` (PARITY.md sec. 1); the read noise and a
fixed ADC bound then scale with it. When no range is left to measure (the ADC off or fixed by
``adc_bound``, :attr:`TileSettings.measures <onnxnoise.tile.settings.TileSettings.measures>` False),
the model is not run at all and ``batches`` is not read (``images = 0``). A calibrated ADC range
is still measured on the clean, unclipped partial sums (the observe mode has no DAC), so with a
``dac_bound`` below the inputs' max it is wider than the clipped sums need.

**Margin**: every measured range (``x_max`` and each calibrated ADC range) is the measured
value times ``1 + MARGIN`` (:data:`MARGIN` = 2**-12, 0.024%). The calibration images are usually
among the evaluated ones, so the largest of them sits exactly on an unmargined range, and
whether it then counts as clipped depends on the last bit of its rounding, which differs
between execution paths (the full model, a kept prefix cut, a Ray worker's cut: measured, one
DAC value counted on one path and not on the other). With the margin it sits inside the range
on every path; the margin is far above float32 rounding (2**-23) and far below any quantization
step (2**-7 of the range at 8 bits).

**Percentile** (``calibration = "percentile"``, ``p``): the ``inverted_cdf`` percentile of |value|
(the ``k``-th smallest, ``k = ceil(p / 100 * n)``), from two passes: pass 1 finds ``max``, pass 2
counts values in ``B`` equal bins over ``[0, max]`` and returns the upper edge of the bin
holding the ``k``-th value. The result ``r`` satisfies ``v_k <= r <= v_k + max / B`` (``p = 100``
gives ``max`` exactly), with ``B`` = :data:`BINS` (2**14) for a range over all of a stage's values
and :data:`COLUMN_BINS` (2**10) per output column (``adc_scope = "column"``: every column's
histogram is held at once, 8 KiB each). Batches are kept in memory between the passes (the
caller passes only the calibration images). Both passes run the images in pieces whose observed
values take at most :data:`OBSERVE_BYTES` (every layer's input and partial sums come back at once).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from onnxnoise.lazy import lazy_module
from onnxnoise.model import Layer
from onnxnoise.tile.calibration import Calibration, LayerRanges
from onnxnoise.tile.ops import AnalogOp
from onnxnoise.tile.rewrite import observe_model
from onnxnoise.tile.settings import TileSettings

ort = lazy_module("onnxruntime")

__all__ = ["BINS", "COLUMN_BINS", "MARGIN", "bins_for", "calibrate"]

#: Histogram bins of the percentile pass for a range over all of a stage's values (resolution ``max / BINS``).
BINS = 1 << 14

#: Histogram bins per output column under ``adc_scope = "column"`` (resolution ``max / COLUMN_BINS``).
COLUMN_BINS = 1 << 10


#: Relative margin added to every measured range (module docstring): ``range = measured * (1 + MARGIN)``.
MARGIN = 2.0 ** -12

#: Most bytes of observed values one calibration run returns (batches are cut to stay below it).
OBSERVE_BYTES = 256 << 20


def bins_for(columns: int) -> int:
    """Histogram bins of a stage with ``columns`` ranges: :data:`BINS` for one, :data:`COLUMN_BINS` per column."""
    return BINS if columns == 1 else COLUMN_BINS


def calibrate(model: onnx.ModelProto, layers: Sequence[Layer], batches: Iterable[np.ndarray], *,
              input_name: str, settings: TileSettings, weights: Mapping[str, np.ndarray]) -> Calibration:
    """Measure the DAC and ADC ranges of ``layers`` on clean activations (module docstring).

    Args:
        model: The clean model (weight initializers missing from it are taken from ``weights``).
        layers: The layers the stages will act on (digital ones are skipped).
        batches: Input batches (float32 ``[N, ...]`` as ``input_name`` takes them): the
            ``settings.calibration_images`` first images.
        input_name: The model's image input.
        settings: ``tile_rows``, ``adc_scope``, ``calibration``, ``percentile``, ``adc_bound``,
            ``dac_bound``.
        weights: Clean arrays by initializer name.

    Returns:
        The :class:`~onnxnoise.tile.calibration.Calibration`; ranges that come out 0 are listed by
        its ``dead`` (those stages stay exact).

    Raises:
        ValueError: No batches where a range is measured, or a layer the rewrite cannot split (see
            :func:`onnxnoise.tile.insert_stages`).
    """
    observed, ops, taps = observe_model(model, layers, settings.tile_rows, weights)
    batches = [np.asarray(b) for b in batches] if settings.measures else []
    by_tap = _measure(observed, ops, taps, batches, input_name=input_name, settings=settings,
                      weights=weights) if settings.measures else {}
    result = {}
    for op in ops:
        x_max = float(settings.dac_bound) or float(by_tap[(op.layer, "dac")][0]) * (1.0 + MARGIN)
        adc = []
        for t in range(op.tiles):
            if settings.adc_bound > 0:
                w_max = op.w_max(t) if settings.adc_scope == "column" else op.w_max(t).max(keepdims=True)
                values = settings.adc_bound * x_max * w_max
            elif by_tap:
                values = by_tap[(op.layer, t)] * (1.0 + MARGIN)
            else:  # the ADC is off and nothing was measured: its ranges are never read
                values = np.zeros(op.columns if settings.adc_scope == "column" else 1)
            adc.append(tuple(float(v) for v in values))
        result[op.layer] = LayerRanges(x_max, tuple(adc))
    return Calibration(settings.calibration, float(settings.percentile), settings.adc_scope, settings.tile_rows,
                       float(settings.adc_bound), int(sum(len(b) for b in batches)), result,
                       float(settings.dac_bound))


def _measure(observed: onnx.ModelProto, ops: Sequence[AnalogOp], taps: Mapping[str, tuple],
             batches: list[np.ndarray], *, input_name: str, settings: TileSettings,
             weights: Mapping[str, np.ndarray]) -> dict[tuple, np.ndarray]:
    """Run the observed model on ``batches`` and reduce each tap (max or percentile of |value|).

    Returns:
        ``(layer, "dac")`` or ``(layer, tile)`` -> float64 ``(columns,)`` ranges, unmargined.

    Raises:
        ValueError: No images.
    """
    if not batches or not sum(len(b) for b in batches):
        msg = "calibration needs at least one image"
        raise ValueError(msg)
    present = {t.name for t in observed.graph.initializer}
    observed.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in weights.items()
                                      if k not in present)
    session = ort.InferenceSession(observed.SerializeToString(), providers=["CPUExecutionProvider"])
    by_layer = {op.layer: op for op in ops}
    axes = {name: _column_axis(by_layer[layer], settings, tile) for name, (layer, tile) in taps.items()}
    names = list(taps)
    fixed = _fixed_batch(observed, input_name)
    peaks: dict[str, np.ndarray] = {}
    for values in _observe(session, names, input_name, batches, fixed):
        for name, value in zip(names, values):
            peak = _peak(np.abs(value), axes[name])
            peaks[name] = peak if name not in peaks else np.maximum(peaks[name], peak)
    if settings.calibration == "percentile" and settings.percentile < 100:
        counts = {name: np.zeros((peaks[name].size, bins_for(peaks[name].size)), dtype=np.int64) for name in names}
        for values in _observe(session, names, input_name, batches, fixed):
            for name, value in zip(names, values):
                counts[name] += _histogram(np.abs(value), axes[name], peaks[name])
        ranges = {name: _percentile(counts[name], peaks[name], settings.percentile) for name in names}
    else:
        ranges = peaks
    return {taps[name]: ranges[name] for name in names}


def _fixed_batch(model: onnx.ModelProto, input_name: str) -> bool:
    """True when the model's input has a fixed batch dimension (its batches cannot be cut)."""
    for value in model.graph.input:
        if value.name == input_name and value.type.tensor_type.shape.dim:
            return value.type.tensor_type.shape.dim[0].dim_value > 0
    return False


def _observe(session: ort.InferenceSession, names: list[str], input_name: str, batches: list[np.ndarray],
             fixed: bool):
    """Yield the observed values of each run; a batch is cut so one run returns at most :data:`OBSERVE_BYTES`.

    The first image runs alone to measure the bytes one image's observed values take (a model
    with a fixed batch dimension runs its batches as they are).
    """
    per_image = None
    for batch in batches:
        if fixed:
            yield session.run(names, {input_name: batch})
            continue
        start = 0
        if per_image is None:
            values = session.run(names, {input_name: batch[:1]})
            per_image = max(1, sum(v.nbytes for v in values))
            start = 1
            yield values
        step = max(1, OBSERVE_BYTES // per_image)
        for s in range(start, len(batch), step):
            yield session.run(names, {input_name: batch[s:s + step]})


def _column_axis(op: AnalogOp, settings: TileSettings, tile) -> int | None:
    """The output-column axis (negative) of a tile's partial sum under column scope, else ``None``."""
    if tile == "dac" or settings.adc_scope != "column":
        return None
    return -len(op.column_shape)


def _columns_last(a: np.ndarray, axis: int | None) -> np.ndarray:
    """``a`` as ``(values, columns)`` (one column when ``axis`` is ``None``)."""
    if axis is None:
        return a.reshape(-1, 1)
    return np.moveaxis(a, axis, -1).reshape(-1, a.shape[axis])


def _peak(a: np.ndarray, axis: int | None) -> np.ndarray:
    """``max`` per column, float64 ``(columns,)`` (0 for no values)."""
    flat = _columns_last(a, axis)
    return flat.max(axis=0).astype(np.float64) if flat.shape[0] else np.zeros(flat.shape[1])


def _histogram(a: np.ndarray, axis: int | None, peak: np.ndarray) -> np.ndarray:
    """Counts ``(columns, B)`` of ``a`` in ``B`` equal bins over ``[0, peak]`` per column (bin 0 where peak is 0)."""
    flat = _columns_last(a, axis).astype(np.float64)
    count = bins_for(flat.shape[1])
    scale = np.where(peak > 0, count / np.where(peak > 0, peak, 1.0), 0.0)
    bins = np.minimum((flat * scale).astype(np.int64), count - 1)
    index = bins + np.arange(flat.shape[1], dtype=np.int64) * count
    return np.bincount(index.reshape(-1), minlength=flat.shape[1] * count).reshape(flat.shape[1], count)


def _percentile(counts: np.ndarray, peak: np.ndarray, p: float) -> np.ndarray:
    """Upper edge of the bin holding the ``ceil(p / 100 * n)``-th smallest value, per column (module docstring)."""
    n = counts.sum(axis=1)
    k = np.maximum(np.ceil(p / 100.0 * n), 1)
    cumulative = np.cumsum(counts, axis=1)
    j = (cumulative < k[:, None]).sum(axis=1)
    return np.minimum(peak * (j + 1) / counts.shape[1], peak)
