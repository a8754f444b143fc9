"""One noise draw for a trial: a noise model applied to a set of layers, with the policies around it.

The same for every :class:`~onnxnoise.noise.base.NoiseModel`; for each tensor of
each noised layer, in order:

1. **values**: float tensors are read in float32 (float64 stays float64); integer-
   quantized weights are dequantized (:data:`onnxnoise.model.quant.QUANT_POLICY`);
2. **draw**: ``model.perturb(w, strength, tensor_rng(seed, name), info)`` (tensors in parallel
   threads for a ``parallel_draw`` model and a draw of :data:`PARALLEL_MIN_ELEMENTS` or more; each tensor
   has its own generator, so the values are those of a sequential draw; a tensor of
   :data:`~onnxnoise.noise.rng.SPLIT_MIN_ELEMENTS` or more under a ``split_draw`` model is drawn in
   chunks, each with its own generator, in parallel: :class:`~onnxnoise.noise.rng.SplitNormal`,
   :func:`split_layers`);
3. **keep zeros** (``keep_zeros``): elements with ``w == 0`` stay exactly 0
   (pruned weights; counted in ``zeros_kept``);
4. **BatchNormalization variance** (``bn_variance``): negative running variances
   are clamped to 0, reflected (``abs``) or kept (they then give NaN logits);
5. **store**: quantized weights are requantized onto their own grid and clipped to
   the integer range (``clipped_count``); narrow floats (float16, bfloat16) are cast
   back and values that overflow to inf are counted (``overflow_count``);
6. **count** (``changed_values``): per layer holding a tensor the model acts on
   (:meth:`~onnxnoise.noise.base.NoiseModel.acts_on`), how many stored values differ from
   the clean ones, so a draw that changed nothing in a noised layer can be told apart.
"""

from __future__ import annotations

import numbers
import os
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import partial

import numpy as np

from onnxnoise.errors import NoiseConfigError
from onnxnoise.model.quant import QuantParams, dequantize, requantize
from onnxnoise.noise.base import NoiseModel, TensorInfo
from onnxnoise.noise.clean import CleanStats
from onnxnoise.noise.rng import SplitNormal, is_split, tensor_rng

__all__ = ["BN_VARIANCE_POLICIES", "NoisePolicies", "NoiseDraw", "changed_count", "draw_noise", "draw_threads",
           "split_layers"]

#: What to do with BatchNormalization running variances that noise made negative.
#: ``clamp``: set them to 0 (the op then divides by sqrt(epsilon)); ``abs``: reflect
#: them to their absolute value; ``keep``: leave them negative (sqrt of a negative
#: number gives NaN logits, which are counted as wrong).
BN_VARIANCE_POLICIES: tuple[str, ...] = ("clamp", "abs", "keep")

#: A draw of fewer elements than this runs one tensor at a time even for a ``parallel_draw`` model:
#: starting the threads costs more than they save (ResNet20, 0.27M parameters: 4.4 ms in 2 threads,
#: 3.5 ms in one; VGG16, 138M: see docs/performance.md, "Big models").
PARALLEL_MIN_ELEMENTS = 1 << 20


@dataclass(frozen=True)
class NoisePolicies:
    """Policies applied around every noise model's draw.

    Attributes:
        bn_variance: One of :data:`BN_VARIANCE_POLICIES`.
        keep_zeros: Keep exactly-zero weights at zero (pruned models).

    Raises:
        NoiseConfigError: On an unknown ``bn_variance`` or a non-bool ``keep_zeros``.
    """

    bn_variance: str = "clamp"
    keep_zeros: bool = False

    def __post_init__(self) -> None:
        if self.bn_variance not in BN_VARIANCE_POLICIES:
            msg = f"`bn_variance` must be one of {', '.join(BN_VARIANCE_POLICIES)}, got {self.bn_variance!r}"
            raise NoiseConfigError(msg)
        if not isinstance(self.keep_zeros, bool):
            msg = f"`keep_zeros` must be true or false, got {self.keep_zeros!r}"
            raise NoiseConfigError(msg)


@dataclass(frozen=True)
class NoiseDraw:
    """Perturbed tensors of one trial and what the policies did.

    Attributes:
        arrays: ``tensor name -> perturbed array`` (clean tensor's shape and dtype).
        bn_variance_changed: BatchNormalization variance elements that came out
            negative (clamped or reflected, or left negative under ``keep``).
        overflow_count: Elements that became non-finite when cast back to a narrow float dtype.
        clipped_count: Requantized elements clipped to their integer range.
        zeros_kept: Exactly-zero elements held at zero by ``keep_zeros``.
        changed_values: ``layer name -> number of its stored values that differ from the
            clean ones`` (NaN equal to NaN), for every noised layer holding a tensor the model
            acts on (:meth:`~onnxnoise.noise.base.NoiseModel.acts_on`); a layer the model leaves
            exact by design (BatchNormalization under a device model's ``analog=weights``, a
            float layer under bit-flip) is not a key. 0 means the draw changed nothing there.
    """

    arrays: dict[str, np.ndarray]
    bn_variance_changed: int = 0
    overflow_count: int = 0
    clipped_count: int = 0
    zeros_kept: int = 0
    changed_values: dict[str, int] = field(default_factory=dict)

    def counters(self) -> dict[str, int]:
        """Every counter field (the ints: all but ``arrays`` and ``changed_values``) by name."""
        return {name: getattr(self, name) for name in _counter_names()}


def _counter_names() -> list[str]:
    return [f.name for f in fields(NoiseDraw) if f.name not in ("arrays", "changed_values")]


def changed_count(noisy: np.ndarray, clean: np.ndarray) -> int:
    """How many elements of ``noisy`` differ from ``clean`` (same shape); NaN equals NaN, -0.0 equals 0.0.

    Two passes over the tensor, no copy: the elements that compare unequal, less those NaN in both
    (NaN never compares equal, and both-NaN positions are among the clean NaNs, looked up only
    when the clean tensor has any).
    """
    differ = int(np.count_nonzero(noisy != clean))
    if differ == 0 or np.issubdtype(clean.dtype, np.integer) or np.issubdtype(clean.dtype, np.bool_):
        return differ
    clean_nan = _isnan(clean)
    if not clean_nan.any():
        return differ
    return differ - int(np.count_nonzero(clean_nan & _isnan(noisy)))


def _isnan(a: np.ndarray) -> np.ndarray:
    """``isnan`` of any float array (narrow floats numpy has no ufunc for, e.g. bfloat16, via float32)."""
    return np.isnan(a) if a.dtype.kind == "f" else np.isnan(a.astype(np.float32))


def draw_noise(
    model: NoiseModel,
    strength: float,
    seed: int,
    layers: Iterable,
    initializers: Mapping[str, np.ndarray],
    policies: NoisePolicies = NoisePolicies(),
    *,
    model_layers: Iterable = (),
    tile_rows: int = 0,
    stats: CleanStats | None = None,
) -> NoiseDraw:
    """Perturb the tensors of ``layers`` with ``model`` at ``strength`` (see module docstring).

    Args:
        model: The noise model.
        strength: Its strength for this trial (validated with ``model.check_strength``).
        seed: Non-negative trial seed; with the tensor name it fixes each draw.
        layers: :class:`~onnxnoise.model.Layer` objects whose tensors are perturbed.
        initializers: Clean ``name -> array`` (also holds quantization scales and zero points).
        policies: Zeros and BatchNormalization-variance policies.
        model_layers: Every parameter layer of the model, for models that take
            statistics over the whole model (:attr:`TensorInfo.model_values`).
        tile_rows: Input rows per analog tile (the run's ``--tile-rows``; 0: no tiles), passed to
            every tensor as :attr:`TensorInfo.tile_rows` (the ``tile-column`` mapping, ``gaussian-max``'s
            ``tile`` scope).
        stats: The run's :class:`~onnxnoise.noise.clean.CleanStats` of ``initializers`` (and of
            ``model_layers``, which it replaces when given): clean values and statistics computed
            by an earlier draw are reused (same values, no recomputation). ``None``: a fresh one
            for this draw.

    Returns:
        A :class:`NoiseDraw` with new arrays for the perturbed tensors only;
        ``initializers`` is never modified.

    Raises:
        NoiseConfigError: Invalid strength, seed or ``tile_rows``, or a layer naming a tensor that is
            not an initializer of the model.
        ValueError: ``stats`` was built for other initializers.
    """
    strength = model.check_strength(strength)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        msg = f"`seed` must be a non-negative integer, got {seed!r}"
        raise NoiseConfigError(msg)
    if isinstance(tile_rows, bool) or not isinstance(tile_rows, numbers.Integral) or tile_rows < 0:
        msg = f"`tile_rows` must be a non-negative integer (0: no tiles), got {tile_rows!r}"
        raise NoiseConfigError(msg)
    arrays: dict[str, np.ndarray] = {}
    counts = dict.fromkeys(_counter_names(), 0)
    changed: dict[str, int] = {}
    if stats is None:
        stats = CleanStats(initializers, model_layers)
    elif stats.initializers is not initializers:
        msg = "`stats` holds the statistics of other initializers than the draw's"
        raise ValueError(msg)
    model_layers, model_values = stats.model_layers, stats.model_values
    jobs = []
    for layer in layers:
        missing = [n for n in layer.tensors if n not in initializers]
        if missing:
            msg = f"layer {layer.name!r} names tensor(s) {', '.join(missing)} that are not initializers of the model"
            raise NoiseConfigError(msg)
        values = stats.layer_values(layer)
        quant = tuple(getattr(layer, "quant", ())) or (None,) * len(layer.tensors)
        if any(model.acts_on(role, layer.op_type, params is not None) for role, params in zip(layer.roles, quant)):
            changed[layer.name] = 0
        for name, role, params in zip(layer.tensors, layer.roles, quant):
            clean = initializers[name]
            info = TensorInfo(name=name, role=role, op_type=layer.op_type, layer=layer.name,
                              stored_dtype=clean.dtype, quantized=params is not None, layer_values=values,
                              model_layers=model_layers, model_values=model_values, stored=clean,
                              tile_rows=int(tile_rows), memo=stats.memo,
                              dequantize=None if params is None else partial(dequantize, params=params,
                                                                             initializers=initializers))
            jobs.append((layer, info, values[name], params))  # values read here: dequantized once, in order
    one = partial(_draw_tensor, model, strength, int(seed), initializers, policies)
    big = sum(job[2].size for job in jobs) >= PARALLEL_MIN_ELEMENTS
    workers = min(len(jobs), draw_threads()) if model.parallel_draw and big else 1
    if workers > 1:
        with ThreadPoolExecutor(workers, thread_name_prefix="onnxnoise-draw") as pool:
            results = list(pool.map(one, jobs))  # in job order; the first failing tensor raises
    else:
        results = [one(job) for job in jobs]
    for (layer, info, _, _), (array, delta, moved) in zip(jobs, results):
        arrays[info.name] = array
        for counter, value in delta.items():
            counts[counter] += value
        if moved is not None and (moved or layer.name in changed):
            changed[layer.name] = changed.get(layer.name, 0) + moved
    return NoiseDraw(arrays=arrays, **counts, changed_values=changed)


def draw_threads() -> int:
    """Threads a draw may use: the CPUs this process may run on (``os.sched_getaffinity``, else ``os.cpu_count``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def split_layers(model: NoiseModel, layers: Iterable, initializers: Mapping[str, np.ndarray]) -> frozenset[str]:
    """Names of the ``layers`` holding a tensor whose draw under ``model`` is split into chunks.

    Empty unless ``model.split_draw`` and a tensor has :data:`~onnxnoise.noise.rng.SPLIT_MIN_ELEMENTS`
    or more elements; a trial noising one of these layers has other values than a one-stream draw,
    and its own key version (:func:`onnxnoise.engine.plan.key_version`).
    """
    if not model.split_draw:
        return frozenset()
    return frozenset(layer.name for layer in layers
                     if any(name in initializers and is_split(np.size(initializers[name])) for name in layer.tensors))


def _draw_tensor(model: NoiseModel, strength: float, seed: int, initializers: Mapping[str, np.ndarray],
                 policies: NoisePolicies, job: tuple) -> tuple[np.ndarray, dict[str, int], int | None]:
    """One tensor's draw (its own generator), policies and store: ``(array, counter increments, changed count)``.

    The changed count is ``None`` when the model left the tensor unchanged (the clean array is returned).
    """
    layer, info, w, params = job
    clean = initializers[info.name]
    counts = dict.fromkeys(_counter_names(), 0)
    rng = (SplitNormal(seed, info.name, draw_threads()) if model.split_draw and is_split(w.size)
           else tensor_rng(seed, info.name))
    noisy = model.perturb(w, strength, rng, info)
    if noisy is w:  # the model left the tensor unchanged
        counts["zeros_kept"] += int((w == 0).sum()) if policies.keep_zeros else 0
        return clean, counts, None
    array = _store(noisy, w, clean, params, initializers, layer.op_type, info.role, policies, counts)
    return array, counts, changed_count(array, clean)


def _store(noisy: np.ndarray, w: np.ndarray, clean: np.ndarray, params: QuantParams | None,
           initializers: Mapping[str, np.ndarray], op_type: str, role: str, policies: NoisePolicies,
           counts: dict[str, int]) -> np.ndarray:
    """Apply the zero and BN-variance policies, then requantize or cast back to ``clean``'s dtype."""
    if noisy.shape != w.shape:
        msg = f"noise model returned shape {noisy.shape} for a tensor of shape {w.shape}"
        raise NoiseConfigError(msg)
    if not noisy.flags.writeable:
        noisy = noisy.copy()
    if policies.keep_zeros:
        zeros = w == 0
        counts["zeros_kept"] += int(zeros.sum())
        noisy[zeros] = 0
    if op_type == "BatchNormalization" and role == "var":
        negative = noisy < 0
        counts["bn_variance_changed"] += int(negative.sum())
        if policies.bn_variance == "clamp":
            np.maximum(noisy, 0, out=noisy)
        elif policies.bn_variance == "abs":
            np.abs(noisy, out=noisy)
    if params is not None:
        q, clipped = requantize(noisy, clean, params, initializers)
        counts["clipped_count"] += clipped
        return q
    if noisy.dtype != clean.dtype:
        with np.errstate(over="ignore"):
            noisy = noisy.astype(clean.dtype)
        counts["overflow_count"] += int((~np.isfinite(noisy)).sum())
    return noisy
