"""npz.py: sizes an .npz declares are checked against what it holds and the memory, before np.load allocates."""

from __future__ import annotations

import io
import math
import struct
import zipfile

import numpy as np
import onnx
import pytest

import onnxnoise.data.npz as npz
from onnxnoise.data.npz import load_npz
from onnxnoise.errors import DataError
from tests._builders import tiny_cnn
from tests._checks import one_line, run_cli


def _npy(descr: str, shape: tuple[int, ...], body: bytes) -> bytes:
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    header = header.ljust(117) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + body


def _forged(path, images_shape=(100000, 100000, 100000, 3), labels_shape=(10,)):
    labels = io.BytesIO()
    np.save(labels, np.zeros(10, np.int64))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("images.npy", _npy("|u1", images_shape, bytes(min(math.prod(images_shape), 64))))
        archive.writestr("labels.npy", _npy("<i8", labels_shape, bytes(80)) if labels_shape != (10,)
                         else labels.getvalue())
    return path


def test_an_array_declaring_more_than_the_file_holds_is_refused_before_allocation(tmp_path):
    with pytest.raises(DataError, match=r"^`images` in `.*` declares shape \(100000, 100000, 100000, 3\) "
                                        r"\(3,000,000,000,000,000 bytes\) but the file holds 64 bytes of it; "):
        load_npz(_forged(tmp_path / "forged.npz"))
    with pytest.raises(DataError, match=r"^`labels` in .* declares shape \(10000000000000,\)"):
        load_npz(_forged(tmp_path / "labels.npz", images_shape=(4, 4, 4), labels_shape=(10**13,)))


def test_a_forged_npz_is_one_line_exit_2(tmp_path, capsys):
    onnx.save(tiny_cnn(), tmp_path / "m.onnx")
    code, _, err = run_cli(capsys, "bench", tmp_path / "m.onnx", "--data", _forged(tmp_path / "f.npz"),
                           "--snr", "10", "--seeds", "1", "--out", tmp_path / "out")
    assert code == 2 and "declares shape (100000, 100000, 100000, 3)" in one_line(err)


def test_arrays_needing_more_than_the_available_memory_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "d.npz"
    np.savez_compressed(path, images=np.zeros((10, 8, 8, 3), np.uint8), labels=np.arange(10) % 3)
    assert load_npz(path).labels.tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]  # 1,920 + 80 bytes
    monkeypatch.setattr(npz, "available_memory", lambda: 1999)
    with pytest.raises(DataError, match=r"the arrays need 0.0 GiB, more than the 0.0 GiB of memory available"):
        load_npz(path)
    monkeypatch.setattr(npz, "available_memory", lambda: 2000)
    assert len(load_npz(path).labels) == 10
