"""config.py: run settings whose size is bounded before anything is built (batch size, threads, seeds)."""

from __future__ import annotations

import pytest

from onnxnoise.config import MAX_BATCH_SIZE, MAX_THREADS_PER_CPU, RunConfig, max_threads
from onnxnoise.data.loading import usable_cpus
from onnxnoise.errors import ConfigError

from tests._checks import one_line
from tests._limits import run_limited


def test_batch_size_and_threads_are_bounded():
    assert MAX_BATCH_SIZE == 4096 and max_threads() == MAX_THREADS_PER_CPU * usable_cpus() == 4 * usable_cpus()
    RunConfig(model="m.onnx", data="d", batch_size=MAX_BATCH_SIZE, threads=max_threads())
    with pytest.raises(ConfigError, match=r"^`--batch-size` must be at most 4096, got 4097$"):
        RunConfig(model="m.onnx", data="d", batch_size=MAX_BATCH_SIZE + 1)
    with pytest.raises(ConfigError, match=rf"^`--threads` must be at most {max_threads()} \(4 per CPU this process "
                       rf"may use: {usable_cpus()}\), got {max_threads() + 1}$"):
        RunConfig(model="m.onnx", data="d", threads=max_threads() + 1)


@pytest.mark.parametrize(("flag", "value", "line"), [
    ("--batch-size", "1000000000", "`--batch-size` must be at most 4096, got 1000000000"),
    ("--threads", "10000", "`--threads` must be at most"),
    ("--seeds", "1000000000", "seeds count must be at most 10000 (noise draws per strength and layer), got 1000000000"),
    ("--resize", "100000", "invalid preprocessing setting `resize`=100000: 100000 pixels is more than the 8192"),
    ("--crop", "2000000000", "invalid preprocessing setting `crop`=2000000000: 2000000000 pixels is more than"),
])
def test_huge_sizes_from_flags_are_one_line_exit_2_under_a_memory_limit(tiny_float_int8, flag, value, line):
    model, _, data = tiny_float_int8
    done = run_limited(["bench", str(model), "--data", str(data), "--snr", "10", flag, value], timeout=60)
    assert done.returncode == 2, done.stderr
    assert one_line(done.stderr).startswith(f"onnxnoise: error: {line}")
