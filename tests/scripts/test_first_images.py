"""scripts/parity/first_images.py: the first N CIFAR-10 test images, in file order, as an onnxnoise .npz."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from onnxnoise.data.cifar import load_cifar

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "parity" / "first_images.py"


def test_the_file_holds_the_first_images_of_test_batch_in_order(shared_data, tmp_path):
    folder = shared_data("cifar-10-batches-py")
    out = tmp_path / "first.npz"
    done = subprocess.run([sys.executable, str(SCRIPT), "7", str(out), "--test-batch", str(folder / "test_batch")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    written = np.load(out)
    contents = load_cifar(folder)  # onnxnoise's own reader of the same file
    assert written["images"].shape == (7, 32, 32, 3) and written["images"].dtype == np.uint8
    assert np.array_equal(written["images"], contents.images[:7])
    assert written["labels"].tolist() == contents.labels[:7].tolist()


@pytest.mark.parametrize("count", ["0", "10001"])
def test_a_count_outside_1_to_10000_is_one_line_and_exit_2(tmp_path, count):
    done = subprocess.run([sys.executable, str(SCRIPT), count, str(tmp_path / "x.npz")], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: the number of images must be in 1..10000, got {count}"
