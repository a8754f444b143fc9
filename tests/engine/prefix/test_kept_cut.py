"""A kept cut under a memory bound (onnxnoise.engine.prefix.kept_cut + cut_store): memory, disk, recompute.

A bound of a few batches forces the cut of every split into memory + spill-file batches; the
counts must equal full-model evaluation for every layer (forward advances and backward
rebuilds), memory must never hold more than the bound, and a cut with no room anywhere is
recomputed with a warning, never silently.
"""

from __future__ import annotations

import gc
import logging
import os
from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxnoise.config import DEFAULT_PREFIX_MEMORY_GIB, RunConfig
from onnxnoise.data import resolve_data_config
from onnxnoise.data.npz import load_npz
from onnxnoise.engine.evaluate import EvalSet, evaluate
from onnxnoise.engine.prefix import DEFAULT_MEMORY_BYTES, PrefixRunner, cut_store
from onnxnoise.engine.prefix.cut_store import SpillFile
from onnxnoise.engine.runtime import SessionFactory
from onnxnoise.errors import ConfigError
from onnxnoise.model import get_initializers, get_model_io, list_layers, load_model
from onnxnoise.noise import draw_noise, make_noise_model

from tests._builders import conv_bn_resnet, labeled_npz

IMAGES = 120
BATCH = 16  # 8 batches (the last one short)
REL_TOL = 1e-5


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prefix-memory")
    path = tmp / "conv_bn_resnet.onnx"
    onnx.save(conv_bn_resnet(), path)
    model = load_model(path)
    stored = load_npz(labeled_npz(model, tmp / "data.npz", n=IMAGES).path)
    data = EvalSet(stored.images, stored.labels, resolve_data_config("raw"), batch_size=BATCH)
    io = get_model_io(model)
    layers = list_layers(model)
    factory = SessionFactory(model, [t for layer in layers for t in layer.tensors], input_name=io.input_name,
                             output_name=io.output_name, device="cpu")
    return model, io, layers, data, factory, get_initializers(model)


def _noisy(inits, layer, seed=0):
    return draw_noise(make_noise_model("gaussian-snr"), 2.0, seed, [layer], inits).arrays


def _check_every_layer(runner, setup):
    """Every layer forward (advances), then backward (rebuilds): same counts, logits within REL_TOL."""
    model, io, layers, data, factory, inits = setup
    for layer in [*layers, *reversed(layers)]:
        rep = _noisy(inits, layer)
        session = factory.create(rep)
        full = np.concatenate([session.run(x)[: len(y)] for x, y in data.batches()])
        split = np.concatenate([s for s, _ in runner.iter_scores(rep)])
        assert split.shape == full.shape
        assert float(np.abs(split - full).max()) <= REL_TOL * float(np.abs(full).max()), layer.name
        assert runner.evaluate(rep) == evaluate(session, data), layer.name


def _batch_bytes(runner, position, data):
    """Bytes of one full batch of the cut at ``position``."""
    values = runner.sessions.cut_values({runner.input_name: next(data.batches())[0]}, 0, position)
    assert sorted(values) == sorted(runner.splitter.cut(position))
    return sum(v.nbytes for v in values.values())


def test_tiny_bound_many_spilled_batches_same_counts(setup, tmp_path):
    model, io, layers, data, factory, inits = setup
    probe = PrefixRunner(model, data, io.input_name, io.output_name, device="cpu", spill_dir=tmp_path / "probe")
    probe.evaluate(_noisy(inits, layers[1]))  # sets up the store
    first = probe.position(layers[1].tensors)
    limit = 3 * _batch_bytes(probe, first, data)  # three batches of an early cut: the rest of 8 go to disk
    runner = PrefixRunner(model, data, io.input_name, io.output_name, device="cpu", memory_limit_bytes=limit,
                          spill_dir=tmp_path / "spill", overflow="disk")
    _check_every_layer(runner, setup)
    stats = runner.stats
    assert stats.spilled_batches >= 5 and stats.kept_batches >= 3, stats
    assert 0 < stats.peak_kept_bytes <= limit
    assert stats.recomputed_batches == 0 and stats.fallbacks == 0 and runner.warnings == []
    assert stats.spill_bytes_read > 0 and stats.spill_bytes_written > 0
    positions = {runner.position(layer.tensors) for layer in layers} - {0}
    assert (stats.advances, stats.rebuilds) == (len(positions) - 1, len(positions))
    # one cut (at most one spill file) at a time, and the folder goes with the runner
    (folder,) = (tmp_path / "spill").iterdir()
    assert len(list(folder.iterdir())) <= 1
    del runner
    gc.collect()
    assert not folder.exists()


def test_bound_holds_while_the_cut_grows(setup, tmp_path):
    """Advancing into a larger cut (a residual branch joins) never holds more than the bound in memory."""
    model, io, layers, data, factory, inits = setup
    runner = PrefixRunner(model, data, io.input_name, io.output_name, device="cpu", memory_limit_bytes=1 << 16,
                          spill_dir=tmp_path)
    sizes = []
    for layer in layers:
        runner.evaluate(_noisy(inits, layer))
        sizes.append(sum(s.nbytes for s in runner.kept_cut.slots) if runner.kept_cut else 0)
        assert runner.cut_store.kept_bytes <= 1 << 16
    assert max(sizes) > 4 * (1 << 16)  # the cuts are far larger than the bound
    assert 0 < runner.stats.peak_kept_bytes <= 1 << 16


def test_no_disk_recomputes_with_a_warning(setup, caplog):
    model, io, layers, data, factory, inits = setup
    runner = PrefixRunner(model, data, io.input_name, io.output_name, device="cpu", memory_limit_bytes=1,
                          spill_dir=False)
    with caplog.at_level(logging.WARNING, logger="onnxnoise.engine.prefix.cut_store"):
        for layer in layers[2:5]:
            rep = _noisy(inits, layer)
            assert runner.evaluate(rep) == evaluate(factory.create(rep), data), layer.name
    assert runner.stats.fallbacks == 3 and runner.stats.kept_batches == runner.stats.spilled_batches == 0
    assert runner.stats.recomputed_batches == 8 * runner.stats.advances + 8 * runner.stats.rebuilds
    assert "recomputed from the images in every trial" in caplog.text
    assert "raise --prefix-memory" in runner.warnings[0]


def test_full_disk_recomputes_with_a_warning(setup, tmp_path, monkeypatch, caplog):
    model, io, layers, data, factory, inits = setup
    monkeypatch.setattr(cut_store, "free_disk_bytes", lambda folder: 10 << 20)  # 10 MiB free: under the reserve
    runner = PrefixRunner(model, data, io.input_name, io.output_name, device="cpu", memory_limit_bytes=1,
                          spill_dir=tmp_path, overflow="disk")
    rep = _noisy(inits, layers[3])
    with caplog.at_level(logging.WARNING, logger="onnxnoise.engine.prefix.cut_store"):
        assert runner.evaluate(rep) == evaluate(factory.create(rep), data)
    assert runner.stats.spilled_batches == 0 and runner.stats.recomputed_batches == 8
    assert "0.0 GiB free in" in caplog.text and "GiB reserve" in caplog.text
    assert runner.stats.fallbacks == 1


@pytest.mark.parametrize("speed, kind", [(1.0, "recompute"), (1e15, "disk")], ids=["slow-disk", "fast-disk"])
def test_auto_overflow_takes_the_cheaper_of_disk_and_recompute(setup, tmp_path, caplog, speed, kind):
    """Beyond the bound, a slow disk makes recomputing cheaper (chosen silently, not a fallback); a fast one not."""
    model, io, layers, data, factory, inits = setup
    runner = PrefixRunner(model, data, io.input_name, io.output_name, device="cpu", memory_limit_bytes=1,
                          spill_dir=tmp_path)
    runner.evaluate(_noisy(inits, layers[0]))  # position 0: no cut yet, the store exists
    assert runner.position(layers[0].tensors) == 0 and runner.kept_cut is None
    runner.cut_store.read_speed = runner.cut_store.write_speed = speed  # bytes/s, as if measured
    with caplog.at_level(logging.INFO, logger="onnxnoise.engine.prefix.kept_cut"):
        for layer in layers[3:6]:
            rep = _noisy(inits, layer)
            assert runner.evaluate(rep) == evaluate(factory.create(rep), data), layer.name
    stats = runner.stats
    assert stats.fallbacks == 0 and runner.warnings == []
    if kind == "recompute":
        assert stats.recomputed_batches > 0 and stats.spilled_batches == 0
        assert "are recomputed (per batch and trial" in caplog.text
    else:
        assert stats.spilled_batches > 0 and stats.recomputed_batches == 0
        assert "are spilled to disk (per batch and trial" in caplog.text


def test_spill_file_round_trip_is_bit_identical(tmp_path):
    rng = np.random.default_rng(0)
    spill = SpillFile(tmp_path)
    batches = [{"a": rng.normal(size=(4, 3, 5)).astype(np.float32), "b": rng.integers(0, 9, (7,)),
                "c": np.asfortranarray(rng.normal(size=(3, 2)))} for _ in range(3)]
    where = [spill.write(b) for b in batches]
    assert where[1][0] == where[0][2] and spill.size == sum(w[2] for w in where)
    for (offset, specs, _), batch in zip(reversed(where), reversed(batches)):
        back = spill.read(offset, specs)
        for name, array in batch.items():
            assert back[name].dtype == array.dtype and back[name].tobytes() == np.ascontiguousarray(array).tobytes()
    spill.close()
    assert not spill.path.exists()


def test_stale_spill_folders_of_dead_processes_are_removed(tmp_path):
    dead = tmp_path / "999999999-abc"  # no such pid
    live = tmp_path / f"{os.getpid()}-xyz"
    for folder in (dead, live):
        folder.mkdir()
        (folder / "cut-1.bin").write_bytes(b"x")
    store = cut_store.CutStore(1, tmp_path)
    spill = store.new_file()
    assert not dead.exists() and live.exists() and spill.path.parent.parent == tmp_path
    spill.close()


def test_prefix_memory_setting(tmp_path):
    kwargs = {"model": Path("m.onnx"), "data": Path("d")}
    assert RunConfig(**kwargs).prefix_memory == DEFAULT_PREFIX_MEMORY_GIB == 4.0
    assert DEFAULT_MEMORY_BYTES == 4 << 30  # the runner's default is the setting's, in bytes
    for bad in (0, -1.0, float("nan"), "2", True):
        with pytest.raises(ConfigError, match="`--prefix-memory` must be a positive number of GiB"):
            RunConfig(**kwargs, prefix_memory=bad)


def test_cli_prefix_memory_reaches_the_runner(tmp_path):
    from onnxnoise.cli.commands import _run_config
    from onnxnoise.cli.parser import build_parser
    from onnxnoise.engine.context import prepare_context

    path = tmp_path / "m.onnx"
    onnx.save(conv_bn_resnet(), path)
    labeled = labeled_npz(load_model(path), tmp_path / "d.npz", n=20)
    args = build_parser().parse_args(["sweep", str(path), "--data", str(labeled.path), "--prefix-memory", "0.25",
                                      "--preprocess", "raw", "--device", "cpu"])
    config = _run_config(args, args.model, args.data)
    assert config.prefix_memory == 0.25
    runner = prepare_context(config).prefix_runner()
    assert runner.memory_limit_bytes == 1 << 28
