"""How a dataset's images fit a model's input (onnxnoise/data/fit.py): geometry read without loading pixels."""

from __future__ import annotations

import numpy as np

from onnxnoise.data.fit import Geometry, dataset_geometry, fit_score, model_geometry


def test_model_geometry_reads_nchw_nhwc_and_symbolic_inputs():
    assert model_geometry(("N", 1, 28, 28)) == Geometry(1, (28, 28))
    assert model_geometry((None, 1, 28, 28)) == Geometry(1, (28, 28))
    assert model_geometry((1, 224, 224, 3)) == Geometry(3, (224, 224))
    assert model_geometry((None, 3, None, None)) == Geometry(3, None)
    assert model_geometry((None, 10)) == Geometry(None, None)


def test_dataset_geometry_from_the_npz_header_or_the_format(tmp_path):
    gray, rgb = tmp_path / "gray.npz", tmp_path / "rgb.npz"
    np.savez(gray, images=np.zeros((5, 28, 26), np.uint8), labels=np.zeros(5, np.int64))
    np.savez(rgb, images=np.zeros((4, 32, 32, 3), np.uint8), labels=np.zeros(4, np.int64))
    assert dataset_geometry(gray, "npz") == Geometry(1, (28, 26))
    assert dataset_geometry(rgb, "npz") == Geometry(3, (32, 32))
    assert dataset_geometry(tmp_path / "gone.npz", "npz") == Geometry()  # unreadable: unknown, not an error here
    assert dataset_geometry(tmp_path, "cifar-python") == Geometry(3, (32, 32))
    assert dataset_geometry(tmp_path, "image-folder") == Geometry()  # files of any size


def test_fit_score_counts_channels_and_size_unknown_fitting():
    model = Geometry(1, (28, 28))
    assert fit_score(model, Geometry(1, (28, 28))) == 2
    assert fit_score(model, Geometry(3, (28, 28))) == 1
    assert fit_score(model, Geometry(1, (32, 32))) == 1
    assert fit_score(model, Geometry(3, (32, 32))) == 0
    assert fit_score(model, Geometry()) == 2
    assert [g.text() for g in (model, Geometry(3), Geometry(None, (8, 8)), Geometry())] == [
        "1x28x28", "3 channels", "8x8", "any size"]
