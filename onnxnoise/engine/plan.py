"""Trials and plans: which layers are noised, at which strength and seed, under which key.

The experiments of Fagbohungbe & Qian, "Benchmarking Inference Performance of Deep
Learning Models on Analog Devices" (arXiv 2011.11840), as trials:

* ``all``: noise in every selected layer at once (Table III, Fig. 2);
* ``per-layer``: noise in one layer at a time (Figs. 3-4, 6-10);
* ``cumulative``: noise in the first ``L`` selected layers, ``L = 1 .. N`` (Fig. 5).

Every plan starts with one ``baseline`` trial (no noise), the ``a_0`` of eq. 2.
``bench`` is the plan of mode ``all``; a sweep may ask for several modes.

A trial's key (:func:`trial_key`) hashes the trial with
:meth:`onnxnoise.engine.context.RunContext.key_fields`, the resolved settings of the
context that executes it, so anything that can change a count changes the key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from onnxnoise.config import SWEEP_MODES, resolve_seeds
from onnxnoise.store.schema import KEY_VERSION, MODES, SPLIT_KEY_VERSION  # bump them when trial_key changes meaning
from onnxnoise.errors import NoiseConfigError
from onnxnoise.intervals import t_half_width
from onnxnoise.model import Layer


__all__ = ["MODES", "KEY_VERSION", "SPLIT_KEY_VERSION", "Trial", "PlannedTrial", "expand_trials", "trial_key",
           "key_version", "plan_trial", "plan_trials",
           "SeedRule", "enough_draws", "seed_rule", "draw_group"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Trial:
    """One evaluation of the model with noise in a set of layers.

    Attributes:
        mode: One of :data:`MODES`.
        layer_index: ``per-layer``: ``Layer.index`` of the noised layer;
            ``cumulative``: ``L``, the number of leading selected layers noised;
            otherwise ``None``.
        layers: Names of the noised layers, graph order (empty for the baseline).
        strength: The noise model's strength (for ``gaussian-snr`` the linear SNR);
            ``None`` for the baseline.
        seed: Noise seed (>= 0); ``None`` for the baseline.

    Raises:
        NoiseConfigError: If the fields are inconsistent with ``mode``.
    """

    mode: str
    layer_index: int | None
    layers: tuple[str, ...]
    strength: float | None
    seed: int | None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            msg = f"`mode` must be one of {', '.join(MODES)}, got {self.mode!r}"
            raise NoiseConfigError(msg)
        if not isinstance(self.layers, tuple) or not all(isinstance(n, str) for n in self.layers):
            msg = f"`layers` must be a tuple of layer names, got {self.layers!r}"
            raise NoiseConfigError(msg)
        if self.mode == "baseline":
            if self.layers or self.layer_index is not None or self.seed is not None or self.strength is not None:
                msg = ("the `baseline` trial has no layers, strength, seed or layer_index, got "
                       f"layers={self.layers!r}, strength={self.strength!r}, seed={self.seed!r}, "
                       f"layer_index={self.layer_index!r}")
                raise NoiseConfigError(msg)
            return
        if isinstance(self.strength, bool) or not isinstance(self.strength, (int, float)):
            msg = f"the {self.mode!r} trial needs a numeric strength, got {self.strength!r}"
            raise NoiseConfigError(msg)
        if not _is_int(self.seed) or self.seed < 0:
            msg = f"`seed` must be a non-negative integer for the {self.mode!r} trial, got {self.seed!r}"
            raise NoiseConfigError(msg)
        if not self.layers:
            msg = f"the {self.mode!r} trial needs at least one layer in `layers`"
            raise NoiseConfigError(msg)
        index = self.layer_index
        if self.mode == "all" and index is not None:
            msg = f"`layer_index` must be None for an 'all' trial, got {index!r}"
            raise NoiseConfigError(msg)
        if self.mode == "per-layer" and (not _is_int(index) or index < 0 or len(self.layers) != 1):
            msg = f"the 'per-layer' trial needs one layer and `layer_index` >= 0, got {index!r} with {len(self.layers)}"
            raise NoiseConfigError(msg)
        if self.mode == "cumulative" and (not _is_int(index) or index != len(self.layers)):
            msg = f"the 'cumulative' trial needs `layer_index` = number of layers ({len(self.layers)}), got {index!r}"
            raise NoiseConfigError(msg)

    def to_dict(self) -> dict[str, Any]:
        """``{"mode", "layer_index", "layers" (list), "strength", "seed"}``: trial-row columns."""
        return {"mode": self.mode, "layer_index": self.layer_index, "layers": list(self.layers),
                "strength": None if self.strength is None else float(self.strength), "seed": self.seed}


@dataclass(frozen=True)
class PlannedTrial:
    """A trial, its store key and the key's version (:func:`key_version`; the rows' ``key_version``)."""

    key: str
    trial: Trial
    key_version: int = KEY_VERSION


def key_version(trial: Trial, split_layers: frozenset[str] = frozenset()) -> int:
    """:data:`SPLIT_KEY_VERSION` when ``trial`` noises one of ``split_layers`` (a layer holding a tensor whose
    draw is split into chunks: :func:`onnxnoise.noise.split_layers`), else :data:`KEY_VERSION`."""
    return SPLIT_KEY_VERSION if not split_layers.isdisjoint(trial.layers) else KEY_VERSION


def trial_key(trial: Trial, key_fields: Mapping[str, Any], *, split_layers: frozenset[str] = frozenset()) -> str:
    """Content hash identifying ``trial`` executed in a context with ``key_fields``.

    Args:
        trial: The trial.
        key_fields: :meth:`~onnxnoise.engine.context.RunContext.key_fields` of the
            context that executes it (JSON-ready values).
        split_layers: The context's :attr:`~onnxnoise.engine.context.RunContext.split_layers`: a trial
            noising one of them hashes ``"v": SPLIT_KEY_VERSION`` (:func:`key_version`); empty for every
            model without a tensor of 2^24 values or more, whose keys are those of before split draws.

    Returns:
        64 hex digits: sha256 of the canonical (sorted-key) JSON of
        ``{"v": key_version(trial, split_layers), "trial": ..., "context": ...}``; strengths are encoded
        with ``repr(float(x))`` so ``100`` and ``100.0`` give the same key.

    Raises:
        NoiseConfigError: If ``key_fields`` holds a value that is not JSON-serializable.
    """
    body = {**trial.to_dict(), "strength": None if trial.strength is None else repr(float(trial.strength))}
    try:
        text = json.dumps({"v": key_version(trial, split_layers), "trial": body, "context": dict(key_fields)}, sort_keys=True,
                          separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        msg = f"trial key context must be JSON-serializable without NaN/inf: {exc}"
        raise NoiseConfigError(msg) from None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def expand_trials(
    layers: Sequence[Layer],
    *,
    modes: Sequence[str],
    strengths: Sequence[float],
    seeds: int | Sequence[int],
) -> list[Trial]:
    """The trials of a plan: the baseline, then each mode's noisy trials.

    Order: baseline; then per mode (order given), strength (order given: least
    noise first), seed, layer (graph order; ``L = 1..N`` for ``cumulative``). Per-layer
    trials of one strength and seed walk the layers forward, which is the order
    prefix reuse computes cheapest.

    Args:
        layers: Selected layers, graph order (unique names).
        modes: Any of :data:`onnxnoise.config.SWEEP_MODES`.
        strengths: Already validated strengths.
        seeds: A count or explicit seeds.

    Returns:
        ``1 + len(strengths) * len(seeds) * (1 + 2N)`` trials for all three modes and N layers.

    Raises:
        NoiseConfigError: On no layers, duplicate layer names, or an unknown mode.
    """
    names = tuple(layer.name for layer in layers)
    if not names:
        msg = "no layers selected to noise"
        raise NoiseConfigError(msg)
    if len(set(names)) != len(names):
        msg = f"layer names must be unique, got duplicates in {list(names)[:10]}"
        raise NoiseConfigError(msg)
    if isinstance(modes, str) or len(set(modes)) != len(modes):
        msg = f"`modes` must be a sequence of distinct modes, got {modes!r}"
        raise NoiseConfigError(msg)
    trials = [Trial("baseline", None, (), None, None)]
    for mode in modes:
        if mode not in SWEEP_MODES:
            msg = f"mode {mode!r} is unknown; choose from {', '.join(SWEEP_MODES)}"
            raise NoiseConfigError(msg)
        for strength in strengths:
            for seed in resolve_seeds(seeds):
                if mode == "all":
                    trials.append(Trial("all", None, names, strength, seed))
                elif mode == "per-layer":
                    trials.extend(Trial(mode, layer.index, (layer.name,), strength, seed) for layer in layers)
                else:
                    trials.extend(Trial(mode, k, names[:k], strength, seed) for k in range(1, len(names) + 1))
    return trials


def plan_trials(context, modes: Sequence[str]) -> list[PlannedTrial]:
    """The keyed trials of ``modes`` for a :class:`~onnxnoise.engine.context.RunContext`.

    Returns:
        Planned trials in run order, baseline first, each keyed by :func:`trial_key`
        with the context's own :meth:`~onnxnoise.engine.context.RunContext.key_fields`.
    """
    noise = context.config.noise
    trials = expand_trials(context.selected, modes=modes, strengths=noise.strengths, seeds=noise.seed_list)
    fields, split = context.key_fields(), context.split_layers
    return [plan_trial(context, trial, fields, split) for trial in trials]


def plan_trial(context, trial: Trial, fields: Mapping[str, Any] | None = None,
               split: frozenset[str] | None = None) -> PlannedTrial:
    """``trial`` keyed in a :class:`~onnxnoise.engine.context.RunContext`: its ``key_fields()`` and
    ``split_layers`` (``fields`` and ``split`` when the caller already has them)."""
    split = context.split_layers if split is None else split
    fields = context.key_fields() if fields is None else fields
    return PlannedTrial(trial_key(trial, fields, split_layers=split), trial, key_version(trial, split))


def enough_draws(top1: Sequence[float], half_width: float, *, min_seeds: int = 3, max_seeds: int = 20,
                 level: float = 0.95) -> bool:
    """The stopping rule of ``--seeds auto``: whether a group needs no more noise draws.

    Enough when ``n >= max_seeds``, or when ``n >= min_seeds`` and the half-width of the
    two-sided Student t interval of the mean top-1 is below ``half_width``:
    ``t_{(1+level)/2, n-1} * s / sqrt(n) < half_width`` (``s`` the sample std, ``ddof=1``;
    :func:`onnxnoise.intervals.t_half_width`). The minimum of 3 keeps the interval from
    resting on a chance agreement of two draws (with ``n = 2``, ``t = 12.7``).

    Args:
        top1: Top-1 accuracies (percent) of the group's finished draws so far, seed order.
        half_width: Target half-width in accuracy points (> 0).
        min_seeds: Fewest draws before the interval may stop the group.
        max_seeds: Most draws; the group stops there whatever the interval.
        level: Confidence level of the interval.

    Returns:
        ``True`` to stop adding draws.
    """
    n = len(top1)
    if n >= max_seeds:
        return True
    if n < max(min_seeds, 2):
        return False
    return bool(t_half_width(float(np.std(np.asarray(top1, dtype=np.float64), ddof=1)), n, level) < half_width)


@dataclass(frozen=True)
class SeedRule:
    """``--seeds auto --ci-halfwidth X --max-seeds N``: add draws per group until :func:`enough_draws`.

    Attributes:
        half_width: ``X``, target 95% t-interval half-width of the mean top-1, accuracy points.
        max_seeds: ``N``: seeds ``0 .. N-1`` are planned (the same keys as ``--seeds N``).
        min_seeds: Fewest draws (3).
        level: Confidence level (0.95).
    """

    half_width: float
    max_seeds: int = 20
    min_seeds: int = 3
    level: float = 0.95

    def enough(self, top1: Sequence[float]) -> bool:
        """:func:`enough_draws` with these settings."""
        return enough_draws(top1, self.half_width, min_seeds=self.min_seeds, max_seeds=self.max_seeds,
                            level=self.level)


def seed_rule(noise) -> SeedRule | None:
    """The :class:`SeedRule` of a :class:`~onnxnoise.config.NoiseConfig` with ``seeds = "auto"``, else None."""
    if noise.seeds != "auto":
        return None
    return SeedRule(half_width=float(noise.ci_halfwidth), max_seeds=int(noise.max_seeds))


def draw_group(trial: Trial) -> tuple[str, float | None, int | None, tuple[str, ...]]:
    """The trials that are draws of one measurement (differ only by seed): mode, strength, layer index, layers."""
    return (trial.mode, trial.strength, trial.layer_index, trial.layers)
