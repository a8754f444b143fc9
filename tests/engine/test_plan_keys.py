"""Trial keys are pinned: the exact content hashes of a few trials on a model built here.

A stored trial is found again by its key, so a change of key derivation (or of what a
setting or noise model puts into the key) makes every existing store unresumable. These
strings were computed by the code of main at 5ea7912 (before the trial columns were
declared in one table); they must never change without a key-version bump and a migration.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import onnx
import pytest

import onnxnoise.noise.rng as rng_module
from onnxnoise.bench import run_bench
from onnxnoise.config import NoiseConfig, RunConfig
from onnxnoise.engine.context import prepare_context
from onnxnoise.engine.plan import KEY_VERSION, SPLIT_KEY_VERSION, plan_trials
from onnxnoise.store.schema import KEY_VERSION as STORE_KEY_VERSION

from tests._builders import conv_bn_resnet, labeled_npz

#: What the key hashes of the model and data built below (they depend on onnx's serializer
#: and numpy's generator, not on onnxnoise): if these move, the inputs changed, not the keys.
MODEL_SHA256 = "16a34509a292a49be804b3d6c963a9824fba73f29e0cc4e3b8a14e2da47c740c"
DATASET_FINGERPRINT = "659aa306dc575c847cc12d5d43adcfd79bf0a4543f29fa3faee898c970f8bfc3"

#: (mode, layer_index, seed) -> key, per noise model.
PINNED = {
    "gaussian-snr": {
        ("baseline", None, None): "fbaa16c51a92cd30c66b35f43ae8462d665ae012f4dfa6eb58b74f0645123bc5",
        ("all", None, 0): "50db6e91ced8409cfb3fc9d39b4a0637b88c0abf4e84bd5c1224c933310feb71",
        ("per-layer", 0, 0): "c187a6d72e3e4f280948f8c58e9802b6ceffc4b71c822c59491274831bb929b1",
        ("per-layer", 1, 0): "81077f6d6315400fa03bc81300bb508aaf52e2e91fd288f1fc48f783173a09de",
    },
    "pcm": {
        ("baseline", None, None): "bdd267d24430d33690f6acb4795339023410e163cf345d6dd749e4f27144357c",
        ("all", None, 1): "83637d76bd27edee15899e1d4d3090294d112b674a909bded3e115d9ff74c7a2",
        ("per-layer", 0, 1): "dd9eba5ebcd15215b51daa9e420bf410c73977031164c459ac07e7859e5f6915",
        ("per-layer", 1, 1): "36b3862c4f57ffeba955a09783c6fe22d68f86334b7cda48242fe33d99d797d5",
    },
}

NOISE = {
    "gaussian-snr": NoiseConfig(strengths=(10.0,), seeds=(0,)),
    "pcm": NoiseConfig(model="pcm", strengths=(60.0,), seeds=(1,)),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("keys")
    model = conv_bn_resnet(num_classes=10)
    onnx.save(model, folder / "m.onnx")
    return folder / "m.onnx", labeled_npz(model, folder / "d.npz", n=40).path


def test_one_key_version_defined_in_the_store_schema():
    assert KEY_VERSION is STORE_KEY_VERSION and KEY_VERSION == 2


@pytest.mark.parametrize("noise_model", sorted(PINNED))
def test_trial_keys_are_pinned(inputs, noise_model):
    model, data = inputs
    config = RunConfig(model=model, data=data, noise=NOISE[noise_model], preset="raw", device="cpu", batch_size=16)
    context = prepare_context(config)
    assert (context.model_sha256, context.dataset_fingerprint) == (MODEL_SHA256, DATASET_FINGERPRINT)
    # The onnxruntime version is hashed too; pin it so that an upgrade does not move these strings.
    context = dataclasses.replace(context, versions={**context.versions, "onnxruntime": "pinned"})
    keys = {(p.trial.mode, p.trial.layer_index, p.trial.seed): p.key for p in plan_trials(context, ("all", "per-layer"))}
    assert {trial: keys[trial] for trial in PINNED[noise_model]} == PINNED[noise_model]


def test_only_trials_noising_a_split_tensor_change_key(inputs, monkeypatch):
    """With the split size lowered to block2.b.conv's 2,304 values, the trials noising it (whole model; per-layer 8)
    are keyed under version 4 (the split key version); the baseline and per-layer 0 and 1 keep their pinned keys."""
    monkeypatch.setattr(rng_module, "SPLIT_MIN_ELEMENTS", 2304)
    model, data = inputs
    config = RunConfig(model=model, data=data, noise=NOISE["gaussian-snr"], preset="raw", device="cpu", batch_size=16)
    context = prepare_context(config)
    context = dataclasses.replace(context, versions={**context.versions, "onnxruntime": "pinned"})
    assert context.split_layers == {"block2.b.conv"}
    planned = {(p.trial.mode, p.trial.layer_index, p.trial.seed): p for p in plan_trials(context, ("all", "per-layer"))}
    pinned = PINNED["gaussian-snr"]
    for trial in [("baseline", None, None), ("per-layer", 0, 0), ("per-layer", 1, 0)]:
        assert (planned[trial].key, planned[trial].key_version) == (pinned[trial], KEY_VERSION)
    assert planned[("all", None, 0)].key != pinned[("all", None, 0)]
    split = {trial for trial, p in planned.items() if p.key_version == SPLIT_KEY_VERSION}
    assert split == {("all", None, 0), ("per-layer", 8, 0)} and SPLIT_KEY_VERSION == 4
    rows = run_bench(config, context=context).trials  # the rows record the key's version
    assert dict(zip(rows["mode"], rows["key_version"])) == {"baseline": 2, "all": 4}
    assert rows.filter(rows["mode"] == "all")["key"].to_list() == [planned[("all", None, 0)].key]
