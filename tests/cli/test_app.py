"""The entry point's exit on a closed stdout (``onnxnoise ... | head -1``), in a real child process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests._builders import tiny_cnn

REPO = Path(__file__).resolve().parents[2]


def _closed_stdout(*argv: str) -> tuple[int, str]:
    """Run ``python -m onnxnoise.cli ARGV`` with stdout a pipe whose reader is closed before the child
    writes (the child's imports take far longer than the close), as ``| head -0`` would;
    ``(exit code, stderr)``."""
    proc = subprocess.Popen([sys.executable, "-m", "onnxnoise.cli", *argv], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    return proc.wait(timeout=300), err


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    """A finished one-strength sweep of a tiny classifier (60 images), for ``report``."""
    root = tmp_path_factory.mktemp("pipe")
    onnx.save(tiny_cnn(), str(root / "tiny.onnx"))
    rng = np.random.default_rng(0)
    np.savez(root / "tiny.npz", images=rng.integers(0, 256, size=(60, 8, 8, 3), dtype=np.uint8),
             labels=np.arange(60, dtype=np.int64) % 10)
    done = subprocess.run([sys.executable, "-m", "onnxnoise.cli", "sweep", str(root / "tiny.onnx"), "--data",
                           str(root / "tiny.npz"), "--preprocess", "raw", "--snr", "10", "--seeds", "1", "--mode",
                           "all", "--out", str(root / "run")], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert done.returncode == 0, done.stderr
    return root / "run"


@pytest.mark.parametrize("argv", [["noise-models"], ["noise-models", "--json"],
                                  ["layers", "models/demo/fashion_mnist_cnn.onnx"],
                                  ["layers", "models/demo/fashion_mnist_cnn.onnx", "--json"]])
def test_a_closed_stdout_ends_quietly_with_141(argv):
    code, err = _closed_stdout(*argv)
    assert (code, err) == (141, "")  # 128 + SIGPIPE (13), as a shell reports `yes | head -1` under pipefail


def test_report_into_a_closed_pipe_ends_quietly(swept, tmp_path):
    code, err = _closed_stdout("report", str(swept), "--out", str(tmp_path / "report"))
    assert (code, err) == (141, "")
    assert (tmp_path / "report" / "report.md").is_file()  # written before the tables were printed
