"""Tests of onnxnoise/noise/clean.py: the run's clean values and statistics, computed once."""

from __future__ import annotations

import math

import numpy as np
import pytest

import onnxnoise.noise.scope as scope_module
from onnxnoise.noise import CleanStats, draw_noise, make_noise_model
from onnxnoise.noise.clean import CleanValues
from tests._noise_inputs import conv_weight


def test_memo_computes_once_per_key():
    stats = CleanStats({})
    calls = []
    assert stats.memo("a", lambda: calls.append(1) or 1.5) == 1.5
    assert stats.memo("a", lambda: calls.append(1) or 2.5) == 1.5
    assert stats.memo("b", lambda: 3.0) == 3.0 and len(calls) == 1


def test_float32_values_are_the_stored_array_and_shared_by_layer():
    layer, inits = conv_weight(np.random.default_rng(0), shape=(4, 2, 3, 3))
    stats = CleanStats(inits, [layer])
    assert stats.layer_values(layer)["conv.w"] is inits["conv.w"]  # no copy of a float32 tensor
    assert stats.layer_values(layer) is stats.layer_values(layer)
    assert list(CleanValues([layer], inits)) == ["conv.w", "conv.b"] and len(stats.model_values) == 2


@pytest.mark.parametrize("scope", ["tensor", "channel", "layer"])
def test_sigma_w_computed_once_per_run(monkeypatch, scope):
    layer, inits = conv_weight(np.random.default_rng(1), shape=(4, 2, 3, 3))
    name, calls_per_run = "conv.w", 2  # weight and bias: one sigma_w each per run
    inits[name][...] = np.arange(72, dtype=np.float32).reshape(4, 2, 3, 3)  # std over all: sqrt((72^2-1)/12)
    calls = []
    real = scope_module._scoped_std
    monkeypatch.setattr(scope_module, "_scoped_std", lambda *a: calls.append(a[2]) or real(*a))
    model = make_noise_model("gaussian-snr", {} if scope == "tensor" else {"scope": scope})
    stats = CleanStats(inits, [layer])
    first = draw_noise(model, 10.0, 3, [layer], inits, model_layers=[layer], stats=stats).arrays[name]
    again = draw_noise(model, 10.0, 3, [layer], inits, model_layers=[layer], stats=stats).arrays[name]
    other = draw_noise(model, 5.0, 4, [layer], inits, model_layers=[layer], stats=stats).arrays[name]
    assert calls == [scope] * calls_per_run
    fresh = draw_noise(model, 10.0, 3, [layer], inits, model_layers=[layer]).arrays[name]  # no stats: recomputed
    assert len(calls) == 2 * calls_per_run
    np.testing.assert_array_equal(first, fresh)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    if scope == "tensor":  # std of 0..71: sqrt((72^2 - 1) / 12)
        sigma = stats.memo((("std", "tensor"), name), lambda: None)
        assert sigma == pytest.approx(math.sqrt((72**2 - 1) / 12), rel=1e-12)


def test_stats_of_other_initializers_are_refused():
    layer, inits = conv_weight(np.random.default_rng(2), shape=(4, 2, 3, 3))
    stats = CleanStats(dict(inits), [layer])
    with pytest.raises(ValueError, match="other initializers"):
        draw_noise(make_noise_model("gaussian-snr"), 10.0, 0, [layer], inits, stats=stats)
