"""Sweep plans: which layers are noised, at which SNR and seed, trial by trial.

The three experiments of Fagbohungbe & Qian, "Benchmarking Inference Performance of
Deep Learning Models on Analog Devices" (arXiv 2011.11840), expressed as trials:

* ``all``: noise in every selected layer at once (Table III, Fig. 2);
* ``per-layer``: noise in one layer at a time (Figs. 3-4, 6-10);
* ``cumulative``: noise in the first ``L`` selected layers, ``L = 1 .. N`` (Fig. 5).

Each sweep starts with one ``baseline`` trial (no noise), the ``a_0`` of eq. 2.

A trial's :meth:`Trial.key` is a content hash of the trial and its experiment
context (model file hash, dataset fingerprint, preprocessing, noise settings), so a
resumed sweep skips exactly the trials already stored for the same experiment and
anything that changes the measurement changes every key.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from onnxnoise.errors import NoiseConfigError
from onnxnoise.model.graph import Layer

__all__ = ["MODES", "SWEEP_MODES", "KEY_VERSION", "Trial", "expand_sweep", "make_context", "resolve_seeds"]

#: Every trial mode, in the order trials of a sweep are listed.
MODES: tuple[str, ...] = ("baseline", "all", "per-layer", "cumulative")

#: Modes a sweep can ask for (the baseline is always included).
SWEEP_MODES: tuple[str, ...] = ("all", "per-layer", "cumulative")

#: Version of the key derivation; bump it when :meth:`Trial.key` changes meaning.
KEY_VERSION: int = 1


def _canonical_json(obj: Any) -> str:
    """Sorted-key, whitespace-free JSON; NaN/inf are refused (encode them first)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True)
class Trial:
    """One evaluation of the model with noise in a set of layers.

    Attributes:
        mode: One of :data:`MODES`.
        layer_index: ``per-layer``: index of the noised layer (``Layer.index``, its
            position among all the model's layers in graph order, or the position in
            the name list given to :func:`expand_sweep`); ``cumulative``: ``L``, the
            number of leading selected layers noised (1..N); otherwise ``None``.
        layers: Names of the noised layers, in graph order (empty for the baseline).
        snr: Linear SNR ``sigma_w / sigma_noise`` (paper eq. 1); ``math.inf`` for the
            baseline.
        seed: Noise seed (non-negative); ``None`` for the baseline.

    Raises:
        NoiseConfigError: If the fields are inconsistent with ``mode``.
    """

    mode: str
    layer_index: int | None
    layers: tuple[str, ...]
    snr: float
    seed: int | None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            msg = f"`mode` must be one of {', '.join(MODES)}, got {self.mode!r}"
            raise NoiseConfigError(msg)
        if not isinstance(self.layers, tuple) or not all(isinstance(n, str) for n in self.layers):
            msg = f"`layers` must be a tuple of layer names, got {self.layers!r}"
            raise NoiseConfigError(msg)
        if self.mode == "baseline":
            if self.layers or self.layer_index is not None or self.seed is not None or self.snr != math.inf:
                msg = (
                    "a `baseline` trial has no layers, `layer_index` None, `seed` None and `snr` inf, "
                    f"got layers={self.layers!r}, layer_index={self.layer_index!r}, "
                    f"seed={self.seed!r}, snr={self.snr!r}"
                )
                raise NoiseConfigError(msg)
            return
        _check_snr(self.snr)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            msg = f"`seed` must be a non-negative integer for a {self.mode!r} trial, got {self.seed!r}"
            raise NoiseConfigError(msg)
        if not self.layers:
            msg = f"a {self.mode!r} trial needs at least one layer in `layers`"
            raise NoiseConfigError(msg)
        index = self.layer_index
        if self.mode == "all" and index is not None:
            msg = f"`layer_index` must be None for an 'all' trial, got {index!r}"
            raise NoiseConfigError(msg)
        if self.mode == "per-layer" and (not _is_int(index) or index < 0 or len(self.layers) != 1):
            msg = (
                f"a 'per-layer' trial needs one layer and `layer_index` >= 0, "
                f"got {index!r} with {len(self.layers)} layers"
            )
            raise NoiseConfigError(msg)
        if self.mode == "cumulative" and (not _is_int(index) or index != len(self.layers)):
            msg = f"a 'cumulative' trial needs `layer_index` = number of layers ({len(self.layers)}), got {index!r}"
            raise NoiseConfigError(msg)

    @property
    def noise_pct(self) -> float:
        """Noise standard deviation in percent of ``sigma_w`` (``100 / snr``; 0 for the baseline)."""
        return 100.0 / self.snr

    def to_dict(self) -> dict:
        """Return the trial as a dict whose keys match the trial store's columns.

        Returns:
            ``{"mode", "layer_index", "layers" (list), "snr" (float, inf for the
            baseline), "seed"}``.
        """
        return {
            "mode": self.mode,
            "layer_index": self.layer_index,
            "layers": list(self.layers),
            "snr": float(self.snr),
            "seed": self.seed,
        }

    def key(self, context: Mapping[str, str]) -> str:
        """Content hash identifying this trial within one experiment.

        The hash covers every trial field and every ``context`` entry, so changing the
        model file, dataset, preprocessing or noise settings changes every key. SNRs
        are encoded with ``repr(float(snr))`` (``100`` and ``100.0`` give the same key;
        ``inf`` is allowed).

        Args:
            context: Experiment context, normally from :func:`make_context`
                (``model_sha256``, ``dataset_fingerprint``, ``preprocess``, ``noise``).

        Returns:
            64 lowercase hex digits: sha256 of the canonical (sorted-key) JSON of
            ``{"v": KEY_VERSION, "trial": ..., "context": ...}``.

        Raises:
            NoiseConfigError: If ``context`` has a non-string key or a value that is
                not JSON-serializable.
        """
        trial = {**self.to_dict(), "snr": repr(float(self.snr))}
        if not all(isinstance(k, str) for k in context):
            msg = f"`context` keys must be strings, got {sorted(map(repr, context))}"
            raise NoiseConfigError(msg)
        try:
            text = _canonical_json({"v": KEY_VERSION, "trial": trial, "context": dict(context)})
        except (TypeError, ValueError) as exc:
            msg = f"`context` must hold JSON-serializable values without NaN/inf: {exc}"
            raise NoiseConfigError(msg) from None
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_context(
    *,
    model_sha256: str,
    dataset_fingerprint: str,
    preprocess: Mapping[str, Any],
    noise: Mapping[str, Any],
    **extra: Any,
) -> dict[str, str]:
    """Build the experiment context that :meth:`Trial.key` hashes.

    Args:
        model_sha256: sha256 hex digest of the ONNX file.
        dataset_fingerprint: ``Dataset.fingerprint()``; it must change when the image
            subset changes (e.g. ``--limit``), else pass the subset in ``extra``.
        preprocess: Resolved preprocessing (``DataConfig.to_dict()``).
        noise: Noise settings other than SNR and seed (noise model name,
            ``bn_variance``, ``keep_zeros``, ...).
        **extra: Anything else that changes the measurement; values are JSON-encoded.

    Returns:
        ``name -> string``; mappings are encoded as canonical (sorted-key) JSON so the
        key does not depend on dict order.

    Raises:
        NoiseConfigError: If a value is not JSON-serializable.
    """
    items = {
        "model_sha256": model_sha256,
        "dataset_fingerprint": dataset_fingerprint,
        "preprocess": preprocess,
        "noise": noise,
        **extra,
    }
    context: dict[str, str] = {}
    for name, value in items.items():
        if isinstance(value, str):
            context[name] = value
            continue
        try:
            context[name] = _canonical_json(value)
        except (TypeError, ValueError) as exc:
            msg = f"context value `{name}` = {value!r} is not JSON-serializable: {exc}"
            raise NoiseConfigError(msg) from None
    return context


def expand_sweep(
    layers: Sequence[Layer] | Sequence[str],
    *,
    modes: Sequence[str],
    snrs: Sequence[float],
    seeds: int | Sequence[int],
) -> list[Trial]:
    """List the trials of a sweep: the baseline, then each mode's noisy trials.

    Order: the baseline first; then for each mode (in the order given), SNR from
    highest to lowest (least noise first), then seed (in the order given), then layer
    (graph order; ``L = 1..N`` for ``cumulative``).

    Args:
        layers: The selected layers in graph order: :class:`~onnxnoise.model.graph.Layer`
            objects (``per-layer`` trials then carry ``Layer.index``) or names (the
            index is then the position in this sequence).
        modes: Any of :data:`SWEEP_MODES`; ``"baseline"`` may be listed and has no
            effect (the baseline is always the first trial). Duplicates are dropped.
        snrs: Linear SNRs ``sigma_w / sigma_noise``, finite and > 0. Duplicates are dropped.
        seeds: A count ``n`` (seeds ``0 .. n-1``) or explicit non-negative seeds
            (e.g. ``(40, 30)`` as in the paper's Figs. 3-4).

    Returns:
        The trials; ``1 + len(snrs) * len(seeds) * (1 + N + N)`` of them when all
        three modes are asked for with ``N`` layers.

    Raises:
        NoiseConfigError: On an unknown mode, an empty or invalid ``modes``/``snrs``/
            ``seeds``, no layers, or duplicate layer names.
    """
    names, indices = _layer_names(layers)
    mode_list = _check_modes(modes)
    snr_list = sorted({float(_check_snr(s)) for s in _as_list(snrs, "snrs")}, reverse=True)
    if not snr_list:
        msg = "`snrs` is empty; give at least one SNR, e.g. 100,10,5"
        raise NoiseConfigError(msg)
    seed_list = resolve_seeds(seeds)
    trials = [Trial("baseline", None, (), math.inf, None)]
    for mode in mode_list:
        for snr in snr_list:
            for seed in seed_list:
                if mode == "all":
                    trials.append(Trial("all", None, names, snr, seed))
                elif mode == "per-layer":
                    trials.extend(Trial(mode, i, (n,), snr, seed) for i, n in zip(indices, names))
                else:
                    trials.extend(Trial(mode, k, names[:k], snr, seed) for k in range(1, len(names) + 1))
    return trials


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_list(values: Any, name: str) -> list:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        msg = f"`{name}` must be a sequence, got {values!r}"
        raise NoiseConfigError(msg)
    return list(values)


def _check_snr(snr: Any) -> float:
    if isinstance(snr, bool) or not isinstance(snr, (int, float)) or math.isnan(snr):
        msg = f"`snr` must be a positive number, got {snr!r}"
        raise NoiseConfigError(msg)
    if snr <= 0 or math.isinf(snr):
        msg = (
            f"`snr` must be finite and > 0 (a linear ratio sigma_w / sigma_noise; "
            f"the baseline is added for you), got {snr!r}"
        )
        raise NoiseConfigError(msg)
    return float(snr)


def _check_modes(modes: Sequence[str]) -> list[str]:
    chosen: list[str] = []
    for mode in _as_list(modes, "modes"):
        if mode not in MODES:
            msg = f"`modes` entry {mode!r} is unknown; choose from {', '.join(SWEEP_MODES)}"
            raise NoiseConfigError(msg)
        if mode != "baseline" and mode not in chosen:
            chosen.append(mode)
    if not chosen:
        msg = f"`modes` has no noisy mode, got {list(modes)!r}; choose from {', '.join(SWEEP_MODES)}"
        raise NoiseConfigError(msg)
    return chosen


def resolve_seeds(seeds: int | Sequence[int]) -> list[int]:
    """Turn a seed count or explicit seeds into the list of seeds.

    Args:
        seeds: A count ``n`` (seeds ``0 .. n-1``) or explicit non-negative seeds.

    Returns:
        The seeds in the order given, duplicates dropped.

    Raises:
        NoiseConfigError: If the count is < 1, a seed is negative or not an integer,
            or the list is empty.
    """
    if _is_int(seeds):
        if seeds < 1:
            msg = f"`seeds` count must be >= 1, got {seeds!r}"
            raise NoiseConfigError(msg)
        return list(range(seeds))
    chosen: list[int] = []
    for seed in _as_list(seeds, "seeds"):
        if not _is_int(seed) or seed < 0:
            msg = f"`seeds` entry {seed!r} must be a non-negative integer"
            raise NoiseConfigError(msg)
        if seed not in chosen:
            chosen.append(seed)
    if not chosen:
        msg = "`seeds` is empty; give a count (e.g. 3) or seeds (e.g. 40,30)"
        raise NoiseConfigError(msg)
    return chosen


def _layer_names(layers: Sequence[Layer] | Sequence[str]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    items = _as_list(layers, "layers")
    if not items:
        msg = "`layers` is empty; select at least one layer to noise"
        raise NoiseConfigError(msg)
    if all(isinstance(x, Layer) for x in items):
        names = tuple(x.name for x in items)
        indices = tuple(x.index for x in items)
    elif all(isinstance(x, str) for x in items):
        names = tuple(items)
        indices = tuple(range(len(items)))
    else:
        msg = f"`layers` must be all Layer objects or all names, got {[type(x).__name__ for x in items][:5]}"
        raise NoiseConfigError(msg)
    seen: set[str] = set()
    for name in names:
        if name in seen:
            msg = f"`layers` names layer {name!r} twice; layer names must be unique"
            raise NoiseConfigError(msg)
        seen.add(name)
    if len(set(indices)) != len(indices):
        msg = f"`layers` repeats a layer index: {list(indices)}"
        raise NoiseConfigError(msg)
    return names, indices
