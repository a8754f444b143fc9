"""Clean values of a model's tensors and their statistics, computed once per run and shared by every draw.

A noise draw reads each perturbed tensor's clean float values (dequantized where quantized) and
statistics of them: ``sigma_w`` (``gaussian-snr``, per tensor, layer or output channel:
:func:`onnxnoise.noise.scope.scoped_std`), the model's mean square (``gaussian-global-db``). They
depend on the clean model only, never on the seed or the strength, so a run computes them once:
:class:`CleanStats` holds the dequantized values (:class:`CleanValues`, filled on first access) and
a memo of derived statistics (:meth:`CleanStats.memo`), and every trial's
:func:`onnxnoise.noise.draw_noise` receives the same object (the engine's
``RunContext.noise_stats``). A draw without one builds a fresh one, which computes everything again
(what every draw did before; the values are the same either way: a statistic is a function of the
clean values alone). Measured on VGG16 (138M parameters): ``sigma_w`` of every tensor took 3.1 s of
each 10.5 s draw (docs/performance.md, "Big models").
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from onnxnoise.model.quant import QuantParams, dequantize

__all__ = ["CleanValues", "CleanStats"]


class CleanValues(Mapping):
    """Clean float values of the tensors of some layers, by name, dequantized on first access.

    Float tensors are read in float32 (float64 stays float64; a float32 tensor is returned as
    stored, not copied); integer-quantized weights are dequantized
    (:func:`onnxnoise.model.quant.dequantize`, float64).

    Args:
        layers: :class:`~onnxnoise.model.Layer` objects; the mapping's keys are their tensors.
        initializers: Clean ``name -> array`` (also holds quantization scales and zero points).
        cache: ``name -> values`` shared with other mappings of the same run (filled here).
    """

    def __init__(self, layers: Iterable, initializers: Mapping[str, np.ndarray],
                 cache: dict[str, np.ndarray] | None = None) -> None:
        self._initializers = initializers
        self._quant = {name: params for layer in layers for name, params in
                       zip(layer.tensors, tuple(getattr(layer, "quant", ())) or (None,) * len(layer.tensors))}
        self._cache: dict[str, np.ndarray] = {} if cache is None else cache

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._quant:
            raise KeyError(name)
        if name not in self._cache:
            self._cache[name] = _values(self._initializers[name], self._quant[name], self._initializers)
        return self._cache[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._quant)

    def __len__(self) -> int:
        return len(self._quant)


def _values(clean: np.ndarray, params: QuantParams | None, initializers: Mapping[str, np.ndarray]) -> np.ndarray:
    if params is not None:
        return dequantize(clean, params, initializers)
    return clean.astype(np.float64 if clean.dtype == np.float64 else np.float32, copy=False)


class CleanStats:
    """Clean values and statistics of one model's tensors, for every draw of a run.

    Args:
        initializers: Clean ``name -> array`` of the model (never modified).
        model_layers: Every parameter layer of the model, graph order.

    Attributes:
        initializers: As given.
        model_layers: As given, a tuple.
        model_values: :class:`CleanValues` of every tensor of ``model_layers``.
    """

    def __init__(self, initializers: Mapping[str, np.ndarray], model_layers: Iterable = ()) -> None:
        self.initializers = initializers
        self.model_layers = tuple(model_layers)
        self._cache: dict[str, np.ndarray] = {}
        self.model_values = CleanValues(self.model_layers, initializers, self._cache)
        self._layers: dict[tuple[str, tuple[str, ...]], CleanValues] = {}
        self._memo: dict[Hashable, Any] = {}

    def layer_values(self, layer) -> CleanValues:
        """:class:`CleanValues` of ``layer``'s tensors (one mapping per layer, values shared with the run)."""
        key = (layer.name, tuple(layer.tensors))
        if key not in self._layers:
            self._layers[key] = CleanValues([layer], self.initializers, self._cache)
        return self._layers[key]

    def memo(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """``compute()`` the first time ``key`` is asked for, the same object afterwards.

        ``key`` must name a statistic of clean values only (e.g. ``("std", tensor name, scope)``);
        never one that depends on a seed or a strength.
        """
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]
