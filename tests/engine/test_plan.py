"""plan: Trial validation, trial keys, and plan expansion order."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from onnxnoise.config import NoiseConfig, RunConfig, SweepConfig
from onnxnoise.engine.plan import (
    KEY_VERSION,
    MODES,
    PlannedTrial,
    Trial,
    expand_trials,
    plan_trials,
    trial_key,
)
from onnxnoise.errors import ConfigError, NoiseConfigError
from onnxnoise.model import Layer

#: What :meth:`onnxnoise.engine.context.RunContext.key_fields` returns, for a made-up run.
KEY_FIELDS = {
    "model_sha256": "a" * 64,
    "dataset_fingerprint": "fp1",
    "images": 200,
    "limit": None,
    "preprocess": {"resize": 36, "crop": 32, "mean": [0.5, 0.5, 0.5]},
    "score_output": "logits",
    "label_offset": 0,
    "batch_size": 128,
    "provider": "CPUExecutionProvider",
    "provider_options": {},
    "onnxruntime": "1.20.0",
    "noise_model": "gaussian-snr",
    "noise": {"params": {}, "bn_variance": "clamp", "keep_zeros": False},
}

BASELINE = Trial("baseline", None, (), None, None)


def _layer(index: int, name: str) -> Layer:
    return Layer(index, name, "Conv", (f"{name}.w",), ("weight",), ((3, 3),), 9, 1.0)


LAYERS = [_layer(0, "a"), _layer(1, "b"), _layer(2, "c")]


def test_expand_trials_order_and_counts():
    strengths = NoiseConfig(strengths=(10, 100)).strengths  # stored least noise first
    assert strengths == (100.0, 10.0)
    trials = expand_trials(LAYERS, modes=["all", "per-layer", "cumulative"], strengths=strengths, seeds=2)
    assert len(trials) == 1 + 2 * 2 * (1 + 3 + 3)
    assert trials[0] == BASELINE
    assert sum(t.mode == "baseline" for t in trials) == 1
    # all: strength in the order given (least noise first), then seed
    assert [(t.mode, t.strength, t.seed) for t in trials[1:5]] == [
        ("all", 100.0, 0), ("all", 100.0, 1), ("all", 10.0, 0), ("all", 10.0, 1)
    ]
    assert trials[1].layers == ("a", "b", "c") and trials[1].layer_index is None
    per_layer = [t for t in trials if t.mode == "per-layer"]
    assert [(t.strength, t.seed, t.layer_index, t.layers) for t in per_layer[:4]] == [
        (100.0, 0, 0, ("a",)), (100.0, 0, 1, ("b",)), (100.0, 0, 2, ("c",)), (100.0, 1, 0, ("a",))
    ]
    cumulative = [t for t in trials if t.mode == "cumulative"][:3]
    assert [(t.layer_index, t.layers) for t in cumulative] == [(1, ("a",)), (2, ("a", "b")), (3, ("a", "b", "c"))]
    # mode blocks follow the order given
    modes = [t.mode for t in trials]
    assert modes.index("cumulative") > max(i for i, m in enumerate(modes) if m == "per-layer")
    assert len(set(trials)) == len(trials)


def test_expand_trials_layer_objects_keep_graph_index_and_explicit_seeds():
    layers = [_layer(3, "conv3"), _layer(7, "fc")]
    trials = expand_trials(layers, modes=["per-layer"], strengths=[5.0], seeds=[40, 30])
    assert [(t.layer_index, t.seed) for t in trials[1:]] == [(3, 40), (7, 40), (3, 30), (7, 30)]
    assert trials[0] == BASELINE
    # A sweep's modes are deduplicated (order kept) before they reach the plan.
    run = RunConfig(model="m.onnx", data="d.npz")
    assert SweepConfig(run, modes=("per-layer", "all", "per-layer")).modes == ("per-layer", "all")
    assert SweepConfig(run, modes="cumulative,all").modes == ("cumulative", "all")


def test_expand_trials_rejects_bad_layers_and_modes():
    cases = [
        (dict(layers=[]), "no layers selected to noise"),
        (dict(layers=[_layer(0, "a"), _layer(1, "a")]), "layer names must be unique, got duplicates in ['a', 'a']"),
        (dict(modes=["bogus"]), "mode 'bogus' is unknown; choose from all, per-layer, cumulative"),
        (dict(modes=["baseline"]), "mode 'baseline' is unknown; choose from all, per-layer, cumulative"),
    ]
    for kwargs, message in cases:
        args = {"layers": LAYERS[:1], "modes": ["all"], "strengths": [10.0], "seeds": 1, **kwargs}
        layers = args.pop("layers")
        with pytest.raises(NoiseConfigError) as info:
            expand_trials(layers, **args)
        assert str(info.value) == message, kwargs


@pytest.mark.parametrize(("modes", "message"), [
    (("bogus",), "mode(s) bogus unknown; choose from all, per-layer, cumulative"),
    (("all", "baseline"), "mode(s) baseline unknown; choose from all, per-layer, cumulative"),
    ((), "modes is empty; choose from all, per-layer, cumulative"),
    ("", "modes is empty; choose from all, per-layer, cumulative"),
])
def test_sweep_config_validates_modes(modes, message):
    with pytest.raises(ConfigError) as info:
        SweepConfig(RunConfig(model="m.onnx", data="d.npz"), modes=modes)
    assert str(info.value) == message


@pytest.mark.parametrize(("seeds", "message"), [
    (0, "seeds count must be >= 1, got 0 (a count N runs seeds 0..N-1; a count of 1 runs seed 0)"),
    ((-1,), "seed -1 must be a non-negative integer"),
    ((1.5,), "seed 1.5 must be a non-negative integer"),
    ((), "seeds list is empty; give a count (e.g. 3) or seeds (e.g. 40,30)"),
    ("3", "seeds must be a count or a list of seeds, got '3'"),
])
def test_noise_config_validates_seeds(seeds, message):
    with pytest.raises(ConfigError) as info:
        NoiseConfig(seeds=seeds)
    assert str(info.value) == message
    with pytest.raises(ConfigError) as info:  # expand_trials resolves seeds with the same function
        expand_trials(LAYERS, modes=["all"], strengths=[10.0], seeds=seeds)
    assert str(info.value) == message


def test_trial_validation():
    cases = [
        (("some", None, ("a",), 10.0, 0), "`mode` must be one of baseline, all, per-layer, cumulative, got 'some'"),
        (("baseline", None, (), 10.0, None),
         "the `baseline` trial has no layers, strength, seed or layer_index, got layers=(), strength=10.0, "
         "seed=None, layer_index=None"),
        (("cumulative", 1, ("a", "b"), 10.0, 0),
         "the 'cumulative' trial needs `layer_index` = number of layers (2), got 1"),
        (("per-layer", 0, ("a", "b"), 10.0, 0),
         "the 'per-layer' trial needs one layer and `layer_index` >= 0, got 0 with 2"),
        (("all", None, ("a",), 10.0, None), "`seed` must be a non-negative integer for the 'all' trial, got None"),
        (("all", None, ("a",), None, 0), "the 'all' trial needs a numeric strength, got None"),
        (("all", 0, ("a",), 10.0, 0), "`layer_index` must be None for an 'all' trial, got 0"),
        (("all", None, (), 10.0, 0), "the 'all' trial needs at least one layer in `layers`"),
        (("all", None, ["a"], 10.0, 0), "`layers` must be a tuple of layer names, got ['a']"),
    ]
    for args, message in cases:
        with pytest.raises(NoiseConfigError) as info:
            Trial(*args)
        assert str(info.value) == message, args
    assert MODES == ("baseline", "all", "per-layer", "cumulative")


def test_key_is_stable_and_sensitive_to_everything():
    t = Trial("per-layer", 2, ("conv2",), 10.0, 0)
    key = trial_key(t, KEY_FIELDS)
    assert len(key) == 64 and int(key, 16) >= 0
    assert trial_key(Trial("per-layer", 2, ("conv2",), 10, 0), KEY_FIELDS) == key  # int vs float strength
    # key fields in another order (dicts nested too) give the same key
    reordered = {k: KEY_FIELDS[k] for k in reversed(KEY_FIELDS)}
    reordered["preprocess"] = {"mean": [0.5, 0.5, 0.5], "crop": 32, "resize": 36}
    reordered["noise"] = {"keep_zeros": False, "bn_variance": "clamp", "params": {}}
    assert trial_key(t, reordered) == key
    variants = [
        Trial("per-layer", 3, ("conv2",), 10.0, 0),
        Trial("per-layer", 2, ("conv3",), 10.0, 0),
        Trial("per-layer", 2, ("conv2",), 5.0, 0),
        Trial("per-layer", 2, ("conv2",), 10.0, 1),
        Trial("all", None, ("conv2",), 10.0, 0),
    ]
    assert len({trial_key(v, KEY_FIELDS) for v in variants} | {key}) == len(variants) + 1
    changed = {
        "model_sha256": "b" * 64,
        "dataset_fingerprint": "fp2",
        "images": 100,
        "limit": 100,
        "preprocess": {"crop": 32},
        "score_output": "probs",
        "label_offset": 1,
        "batch_size": 64,
        "provider": "CUDAExecutionProvider",
        "provider_options": {"use_tf32": "1"},
        "onnxruntime": "1.21.0",
        "noise_model": "other",
        "noise": {"params": {}, "bn_variance": "abs", "keep_zeros": False},
    }
    assert changed.keys() == KEY_FIELDS.keys()
    for field, value in changed.items():
        assert trial_key(t, {**KEY_FIELDS, field: value}) != key, field
    # the baseline (strength None) has a key too
    assert trial_key(BASELINE, KEY_FIELDS) != key
    assert KEY_VERSION == 2


def test_key_rejects_bad_context():
    t = Trial("all", None, ("a",), 10.0, 0)
    for bad in ({"x": object()}, {"x": math.nan}, {"x": math.inf}):
        with pytest.raises(NoiseConfigError, match="^trial key context must be JSON-serializable without NaN/inf: "):
            trial_key(t, bad)


def test_to_dict_matches_store_columns():
    d = Trial("cumulative", 2, ("a", "b"), 2.5, 7).to_dict()
    assert d == {"mode": "cumulative", "layer_index": 2, "layers": ["a", "b"], "strength": 2.5, "seed": 7}
    assert isinstance(Trial("all", None, ("a",), 10, 0).to_dict()["strength"], float)
    assert BASELINE.to_dict() == {"mode": "baseline", "layer_index": None, "layers": [], "strength": None,
                                  "seed": None}


def test_plan_trials_keys_each_trial_with_the_context_key_fields():
    noise = NoiseConfig(strengths=(5, 50), seeds=(3, 1))
    context = SimpleNamespace(
        config=RunConfig(model="m.onnx", data="d.npz", noise=noise),
        selected=LAYERS[:2],
        key_fields=lambda: KEY_FIELDS,
        split_layers=frozenset(),
    )
    planned = plan_trials(context, ("all", "per-layer"))
    assert all(isinstance(p, PlannedTrial) for p in planned)
    assert [p.trial for p in planned] == expand_trials(LAYERS[:2], modes=("all", "per-layer"),
                                                       strengths=(50.0, 5.0), seeds=(3, 1))
    assert [p.key for p in planned] == [trial_key(p.trial, KEY_FIELDS) for p in planned]
    assert len({p.key for p in planned}) == len(planned) == 1 + 2 * 2 * (1 + 2)
    assert [(p.trial.strength, p.trial.seed) for p in planned[1:5]] == [(50.0, 3), (50.0, 1), (5.0, 3), (5.0, 1)]
