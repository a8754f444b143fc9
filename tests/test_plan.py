"""plan: Trial validation, keys, and sweep expansion order."""

from __future__ import annotations

import math

import pytest

from onnxnoise.errors import NoiseConfigError
from onnxnoise.model.graph import Layer
from onnxnoise.engine.plan import Trial, expand_sweep, make_context

CONTEXT = make_context(
    model_sha256="a" * 64,
    dataset_fingerprint="fp1",
    preprocess={"resize": 36, "crop": 32, "mean": [0.5, 0.5, 0.5]},
    noise={"noise_model": "gaussian-snr", "bn_variance": "clamp", "keep_zeros": False},
)


def _layer(index: int, name: str) -> Layer:
    return Layer(index, name, "Conv", (f"{name}.w",), ("weight",), ((3, 3),), 9, 1.0)


def test_expand_sweep_order_and_counts():
    trials = expand_sweep(["a", "b", "c"], modes=["all", "per-layer", "cumulative"], snrs=[10, 100], seeds=2)
    assert len(trials) == 1 + 2 * 2 * (1 + 3 + 3)
    assert trials[0] == Trial("baseline", None, (), math.inf, None)
    # all: SNR descending, then seed
    assert [(t.mode, t.snr, t.seed) for t in trials[1:5]] == [
        ("all", 100.0, 0), ("all", 100.0, 1), ("all", 10.0, 0), ("all", 10.0, 1)
    ]
    assert trials[1].layers == ("a", "b", "c") and trials[1].layer_index is None
    per_layer = [t for t in trials if t.mode == "per-layer"]
    assert [(t.snr, t.seed, t.layer_index, t.layers) for t in per_layer[:4]] == [
        (100.0, 0, 0, ("a",)), (100.0, 0, 1, ("b",)), (100.0, 0, 2, ("c",)), (100.0, 1, 0, ("a",))
    ]
    cumulative = [t for t in trials if t.mode == "cumulative"][:3]
    assert [(t.layer_index, t.layers) for t in cumulative] == [(1, ("a",)), (2, ("a", "b")), (3, ("a", "b", "c"))]
    # mode blocks follow the order given
    modes = [t.mode for t in trials]
    assert modes.index("cumulative") > max(i for i, m in enumerate(modes) if m == "per-layer")


def test_expand_sweep_layer_objects_keep_graph_index_and_explicit_seeds():
    layers = [_layer(3, "conv3"), _layer(7, "fc")]
    trials = expand_sweep(layers, modes=["per-layer", "baseline", "per-layer"], snrs=[5.0], seeds=[40, 30])
    assert [(t.layer_index, t.seed) for t in trials[1:]] == [(3, 40), (7, 40), (3, 30), (7, 30)]
    assert sum(t.mode == "baseline" for t in trials) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"modes": ["bogus"]}, "`modes` entry 'bogus'"),
        ({"modes": []}, "no noisy mode"),
        ({"modes": "all"}, "`modes` must be a sequence"),
        ({"snrs": []}, "`snrs` is empty"),
        ({"snrs": [0]}, "`snr` must be finite and > 0"),
        ({"snrs": [math.inf]}, "finite"),
        ({"snrs": [math.nan]}, "positive number"),
        ({"seeds": 0}, "`seeds` count must be >= 1"),
        ({"seeds": [-1]}, "`seeds` entry -1"),
        ({"seeds": [1.5]}, "`seeds` entry 1.5"),
        ({"seeds": []}, "`seeds` is empty"),
    ],
)
def test_expand_sweep_rejects_bad_arguments(kwargs, match):
    args = {"modes": ["all"], "snrs": [10], "seeds": 1, **kwargs}
    with pytest.raises(NoiseConfigError, match=match):
        expand_sweep(["a"], **args)


def test_expand_sweep_rejects_bad_layers():
    with pytest.raises(NoiseConfigError, match="`layers` is empty"):
        expand_sweep([], modes=["all"], snrs=[10], seeds=1)
    with pytest.raises(NoiseConfigError, match="twice"):
        expand_sweep(["a", "a"], modes=["all"], snrs=[10], seeds=1)


def test_trial_validation():
    with pytest.raises(NoiseConfigError, match="`mode` must be one of"):
        Trial("some", None, ("a",), 10.0, 0)
    with pytest.raises(NoiseConfigError, match="baseline"):
        Trial("baseline", None, (), 10.0, None)
    with pytest.raises(NoiseConfigError, match="cumulative"):
        Trial("cumulative", 1, ("a", "b"), 10.0, 0)
    with pytest.raises(NoiseConfigError, match="per-layer"):
        Trial("per-layer", 0, ("a", "b"), 10.0, 0)
    with pytest.raises(NoiseConfigError, match="`seed`"):
        Trial("all", None, ("a",), 10.0, None)


def test_key_is_stable_and_sensitive_to_everything():
    t = Trial("per-layer", 2, ("conv2",), 10.0, 0)
    key = t.key(CONTEXT)
    assert len(key) == 64 and int(key, 16) >= 0
    assert Trial("per-layer", 2, ("conv2",), 10, 0).key(CONTEXT) == key  # int vs float SNR
    # context built from a differently ordered preprocess dict gives the same key
    reordered = make_context(
        model_sha256="a" * 64,
        dataset_fingerprint="fp1",
        preprocess={"mean": [0.5, 0.5, 0.5], "crop": 32, "resize": 36},
        noise={"keep_zeros": False, "bn_variance": "clamp", "noise_model": "gaussian-snr"},
    )
    assert t.key(reordered) == key
    variants = [
        Trial("per-layer", 3, ("conv2",), 10.0, 0),
        Trial("per-layer", 2, ("conv3",), 10.0, 0),
        Trial("per-layer", 2, ("conv2",), 5.0, 0),
        Trial("per-layer", 2, ("conv2",), 10.0, 1),
    ]
    assert len({v.key(CONTEXT) for v in variants} | {key}) == 5
    for field, value in [
        ("model_sha256", "b" * 64),
        ("dataset_fingerprint", "fp2"),
        ("preprocess", '{"crop":32}'),
        ("noise", '{"bn_variance":"abs"}'),
    ]:
        assert t.key({**CONTEXT, field: value}) != key, field
    # the baseline (snr inf) has a key too
    assert Trial("baseline", None, (), math.inf, None).key(CONTEXT) != key


def test_key_rejects_bad_context():
    with pytest.raises(NoiseConfigError, match="`context`"):
        Trial("all", None, ("a",), 10.0, 0).key({"x": object()})


def test_to_dict_matches_store_columns():
    d = Trial("cumulative", 2, ("a", "b"), 2.5, 7).to_dict()
    assert d == {"mode": "cumulative", "layer_index": 2, "layers": ["a", "b"], "snr": 2.5, "seed": 7}
    assert Trial("baseline", None, (), math.inf, None).noise_pct == 0.0
