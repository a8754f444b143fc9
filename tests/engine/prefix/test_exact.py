"""Prefix reuse is exact on a Conv+BN residual network (no torch, no ../shared needed).

For every layer of :func:`_builders.conv_bn_resnet` (identity and projection shortcuts, BN
kept), noise at SNR 2 with two seeds: :class:`PrefixRunner` gives the same top-1 / top-5 / NaN
counts as the full model and logits within ``REL_TOL`` (relative to the largest |logit|).
Also with 11 outputs (a background class at output 0, labels shifted by one).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxnoise.data import resolve_data_config
from onnxnoise.data.npz import load_npz
from onnxnoise.engine.evaluate import EvalSet, evaluate
from onnxnoise.engine.prefix import PrefixRunner
from onnxnoise.engine.runtime import SessionFactory
from onnxnoise.model import Layer, get_initializers, get_model_io, list_layers, load_model
from onnxnoise.noise import draw_noise, make_noise_model

from tests._builders import conv_bn_resnet, labeled_npz


def noisy(initializers: dict[str, np.ndarray], layer: Layer, *, snr: float, seed: int) -> dict[str, np.ndarray]:
    """``tensor name -> noisy array`` for the tensors of ``layer`` (the test's only use of the noise API)."""
    return draw_noise(make_noise_model("gaussian-snr"), snr, seed, [layer], initializers).arrays


#: Max |logit difference| / max |logit| allowed between prefix reuse and the full model.
REL_TOL = 1e-5
SNR = 2.0
SEEDS = (0, 1)
IMAGES = 200
RELABEL = 0.3  # clean top-1 is exactly 70%


def _setup(tmp_path: Path, num_classes: int, label_offset: int):
    path = tmp_path / "conv_bn_resnet.onnx"
    onnx.save(conv_bn_resnet(num_classes=num_classes), path)
    model = load_model(path)
    labeled = labeled_npz(model, tmp_path / "data.npz", n=IMAGES, relabel=RELABEL, label_offset=label_offset)
    stored = load_npz(labeled.path)
    data = EvalSet(stored.images, stored.labels, resolve_data_config("raw"), batch_size=64,
                   label_offset=label_offset)
    io = get_model_io(model)
    layers = list_layers(model)
    factory = SessionFactory(model, [t for layer in layers for t in layer.tensors], input_name=io.input_name,
                             output_name=io.output_name, device="cpu")
    return model, io, layers, data, factory, labeled


@pytest.mark.parametrize("num_classes, label_offset", [(10, 0), (11, 1)], ids=["10-classes", "background-class"])
def test_every_layer_prefix_equals_full_model(tmp_path: Path, num_classes: int, label_offset: int):
    model, io, layers, data, factory, labeled = _setup(tmp_path, num_classes, label_offset)
    assert len(layers) == 13 and [layer.op_type for layer in layers].count("BatchNormalization") == 6
    inits = get_initializers(model)

    clean = evaluate(factory.create(), data)
    assert (clean.images, clean.top1_correct) == (IMAGES, IMAGES - round(RELABEL * IMAGES))
    assert clean.top5_correct == labeled.top5_correct and clean.nan_count == 0

    runner = PrefixRunner(model, data, io.input_name, io.output_name, device="cpu")
    assert runner.evaluate({}) == clean
    changed = 0
    for seed in SEEDS:  # the second seed moves the split backward: cuts are rebuilt from the images
        for layer in layers:
            rep = noisy(inits, layer, snr=SNR, seed=seed)
            session = factory.create(rep)
            full_counts = evaluate(session, data)
            full = np.concatenate([session.run(x)[: len(y)] for x, y in data.batches()])
            split = np.concatenate([scores for scores, _ in runner.iter_scores(rep)])
            where = (layer.name, seed)
            assert split.shape == full.shape == (IMAGES, num_classes), where
            rel = float(np.abs(split - full).max() / np.abs(full).max())
            assert rel <= REL_TOL, (*where, rel)
            assert (split.argmax(axis=1) == full.argmax(axis=1)).all(), where
            assert runner.evaluate(rep) == full_counts, where  # top-1, top-5 and NaN counts
            changed += full_counts.top1_correct != clean.top1_correct
    assert changed >= len(layers)  # SNR 2 is strong: the noise does move the counts
    assert runner.stats.fallbacks == 0
    assert runner.stats.advances >= 5 and runner.stats.rebuilds >= 1  # forward moves reuse the kept cut


@pytest.mark.parametrize("parallel", [1, 2, 3])
def test_lockstep_group_equals_full_model_and_keeps_no_cut(tmp_path: Path, parallel: int):
    """Every layer at once in lockstep (per-image outcomes equal the full model's), in any order given,
    with the suffix sessions one at a time or several side by side (one thread each)."""
    model, io, layers, data, factory, _ = _setup(tmp_path, 10, 0)
    inits = get_initializers(model)
    reps = [noisy(inits, layer, snr=SNR, seed=3) for layer in layers]
    full = [evaluate(factory.create(rep), data) for rep in reps]
    runner = PrefixRunner(model, data, io.input_name, io.output_name, device="cpu", memory_limit_bytes=1,
                          parallel=parallel)
    order = list(range(len(layers)))[::-1]  # given backwards: the runner sorts by split position
    results = runner.evaluate_lockstep([reps[i] for i in order])
    for got, i in zip(results, order):
        assert got == full[i], layers[i].name
        for name in ("top1_class", "top1_hit", "top5_hit"):
            np.testing.assert_array_equal(getattr(got, name), getattr(full[i], name), err_msg=layers[i].name)
    stats = runner.stats
    assert (stats.kept_batches, stats.spilled_batches, stats.recomputed_batches, stats.peak_kept_bytes) == (0, 0, 0, 0)
    assert stats.trials == len(layers) and stats.prefix_seconds > 0


@pytest.mark.parametrize("parallel", [1, 2])
def test_lockstep_failure_of_one_trial_leaves_the_others(tmp_path: Path, parallel: int):
    model, io, layers, data, factory, _ = _setup(tmp_path, 10, 0)
    inits = get_initializers(model)
    good = noisy(inits, layers[2], snr=SNR, seed=0)
    bad = {name: np.zeros((1,), np.float32) for name in layers[5].tensors}  # wrong shape: the session fails
    runner = PrefixRunner(model, data, io.input_name, io.output_name, device="cpu", parallel=parallel)
    first, second = runner.evaluate_lockstep([bad, good])
    assert isinstance(first, Exception)
    assert second == evaluate(factory.create(good), data)


def test_prefix_sessions_run_without_spinning_or_arena(tmp_path: Path):
    """Lockstep suffix and segment sessions take turns per batch: their thread pools must not spin, and an
    idle one must not hold a memory arena; side by side (``parallel``) each has one intra-op thread."""
    model, io, layers, data, factory, _ = _setup(tmp_path, 10, 0)
    clean = factory.create().session.get_session_options()
    with pytest.raises(RuntimeError, match="does not have configuration"):  # the full model: ORT's default
        clean.get_session_config_entry("session.intra_op.allow_spinning")
    assert clean.enable_cpu_mem_arena
    runner = PrefixRunner(model, data, io.input_name, io.output_name, device="cpu", threads=2)
    rep = noisy(get_initializers(model), layers[4], snr=SNR, seed=0)
    for threads in (None, 1):
        factory = runner.sessions.suffix_factory(runner.position(rep), threads=threads)
        options = factory.create(rep).session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        assert not options.enable_cpu_mem_arena
        assert options.intra_op_num_threads == (threads or 2)
