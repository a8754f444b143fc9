"""Lockstep groups (onnxnoise.engine.prefix.lockstep + LocalExecutor): how many trials a group holds.

A group's suffix sessions must fit in the lockstep memory (``lockstep_group_limit``, a
``LocalExecutor`` parameter), not in ``--prefix-memory`` (which bounds a kept cut). Group
sizes never change counts: a per-layer sweep cut into groups of any size, or run on the
kept cut, records the same rows.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest

from onnxnoise.config import DEFAULT_LOCKSTEP_MEMORY_GIB, NoiseConfig, RunConfig
from onnxnoise.engine.context import prepare_context
from onnxnoise.engine.executor import LocalExecutor, MemoryRecorder
from onnxnoise.engine.plan import plan_trials
from onnxnoise.engine.prefix import DEFAULT_LOCKSTEP_MEMORY, MAX_LOCKSTEP, SESSION_BYTES, lockstep_group_limit
from onnxnoise.errors import ConfigError
from onnxnoise.model import load_model

from tests._builders import conv_bn_resnet, labeled_npz

#: Columns that must not depend on how trials were grouped.
COUNTS = ("key", "mode", "layer_index", "strength", "seed", "images", "top1_correct", "top5_correct", "nan_count",
          "error")


@pytest.mark.parametrize(("weights_mib", "gib", "limit"), [
    (100, 4.0, 4096 // (200 + 16)),  # ResNet50-sized: 18 suffix sessions at once
    (553, 4.0, 4096 // (1106 + 16)),  # VGG16-sized: 3
    (553, 0.5, 1),  # never fewer than one
    (1, 4.0, 4096 // (2 + 16)),  # ResNet20-sized: 227, the session overhead dominates
    (1, 8.0, 256),  # at most MAX_LOCKSTEP
])
def test_group_limit_fits_the_suffix_sessions_in_the_lockstep_memory(weights_mib, gib, limit):
    assert (MAX_LOCKSTEP, SESSION_BYTES) == (256, 16 << 20)
    assert lockstep_group_limit(weights_mib << 20, int(gib * 2**30)) == limit


def test_default_lockstep_memory_is_4_gib():
    """One default, defined once (config), the same bound --prefix-memory's default gave before it was split off."""
    assert DEFAULT_LOCKSTEP_MEMORY_GIB == 4.0 and DEFAULT_LOCKSTEP_MEMORY == 4 << 30
    assert lockstep_group_limit(553 << 20) == 3
    assert LocalExecutor().lockstep_memory_bytes is None  # the run's --lockstep-memory
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="`lockstep_memory_bytes` must be a positive number of bytes"):
            LocalExecutor(lockstep_memory_bytes=bad)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lockstep")
    path = tmp / "conv_bn_resnet.onnx"
    onnx.save(conv_bn_resnet(), path)
    return path, labeled_npz(load_model(path), tmp / "data.npz", n=48).path


def _context(files, **settings):
    path, data = files
    return prepare_context(RunConfig(model=path, data=data, preset="raw", device="cpu", batch_size=16,
                                     noise=NoiseConfig(strengths=(2.0,), seeds=1), **settings))


def test_prefix_memory_does_not_bound_lockstep_groups(files):
    small, default = _context(files, prefix_memory=0.001), _context(files)
    weights = sum(int(a.nbytes) for a in default.initializers.values())
    expected = lockstep_group_limit(weights)
    assert expected == 255  # a tiny model: 4 GiB holds 255 sessions of 16 MiB and its few kB of weights
    assert LocalExecutor().group_limit(small) == LocalExecutor().group_limit(default) == expected
    assert LocalExecutor(lockstep=False).group_limit(default) == 1


def test_lockstep_memory_setting_bounds_the_groups(files):
    """--lockstep-memory (RunConfig.lockstep_memory, GiB) reaches the executor's group limit; bad values refused."""
    default = _context(files)
    weights = sum(int(a.nbytes) for a in default.initializers.values())
    for k in (1, 3, 7):
        gib = k * (2 * weights + SESSION_BYTES) / 2**30
        assert LocalExecutor().group_limit(_context(files, lockstep_memory=gib)) == k
    path, data = files
    for bad in (0, -1.0, float("nan"), True):
        with pytest.raises(ConfigError, match=r"`--lockstep-memory` must be a positive number of GiB"):
            RunConfig(model=path, data=data, lockstep_memory=bad)


def test_groups_of_any_size_record_the_same_counts(files):
    """13 layers in lockstep groups of 13, 5 (5 + 5 + 3) and 1, and on the kept cut: identical rows."""
    frames, groups = {}, {}
    for name, k, lockstep in (("one", None, True), ("fives", 5, True), ("ones", 1, True), ("kept", None, False)):
        context = _context(files)
        planned = plan_trials(context, ("per-layer",))
        weights = sum(int(a.nbytes) for a in context.initializers.values())
        memory = DEFAULT_LOCKSTEP_MEMORY if k is None else k * (2 * weights + SESSION_BYTES)
        executor = LocalExecutor(lockstep=lockstep, lockstep_memory_bytes=memory)
        assert executor.group_limit(context) == (1 if not lockstep else k or 255)
        recorder = MemoryRecorder()
        result = executor.run(context, planned, recorder)
        assert (result.ran, result.failed) == (len(planned), 0)
        frames[name] = recorder.frame().select(COUNTS).sort("key")
        groups[name] = context.prefix_runner().stats.lockstep_groups
        layers = len(context.selected)
    assert layers == 13
    assert groups == {"one": 1, "fives": math.ceil(13 / 5), "ones": 0, "kept": 0}  # groups of one run alone
    for name in ("fives", "ones", "kept"):
        assert frames[name].equals(frames["one"]), name
    per_layer = frames["one"].filter(frames["one"]["mode"] == "per-layer")
    assert per_layer.height == 13 and not np.all(per_layer["top1_correct"].to_numpy() == 48 - round(0.3 * 48))
