"""data/cifar.py: CIFAR python batches, the restricted unpickler, and agreement with the PNG tree."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onnxnoise.data import load_images, open_dataset, resolve_data_config
from onnxnoise.data.cifar import detect_cifar, load_cifar, load_pickle
from onnxnoise.errors import DataError

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.fixture(scope="module")
def cifar_dir(shared_data) -> Path:
    return shared_data("cifar-10-batches-py")


@pytest.fixture(scope="module")
def png_dir(shared_data) -> Path:
    return shared_data("cifar10-test-png")


def test_load_cifar10_test_batch(cifar_dir: Path):
    data = load_cifar(cifar_dir)
    assert data.label_source == f"{cifar_dir} (cifar-10 test)" and data.files is None
    assert data.images.shape == (10000, 32, 32, 3) and data.images.dtype == np.uint8
    assert data.images.flags.c_contiguous
    assert data.labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(data.labels), [1000] * 10)
    assert data.class_names == CIFAR_CLASSES
    assert data.names[0] == "aeroplane_s_000002.png"
    np.testing.assert_array_equal(data.images[0, 0, 0], [243, 223, 147])  # first pixel, R G B


def test_open_dataset_cifar(cifar_dir: Path):
    ds = open_dataset(cifar_dir)
    assert (ds.format, len(ds), ds.num_classes, ds.files) == ("cifar-python", 10000, 10, None)
    assert ds.name == "cifar-10-batches-py"
    loaded = load_images(ds, resolve_data_config("cifar"))
    assert loaded.images is ds.images  # no geometry, RGB: no copy at all
    assert loaded.skipped == ()
    bgr = load_images(ds, resolve_data_config("cifar", channel_order="BGR")).images
    np.testing.assert_array_equal(bgr, ds.images[..., ::-1])
    gray = load_images(ds, resolve_data_config("mnist")).images
    assert gray.shape == (10000, 32, 32, 1)
    np.testing.assert_array_equal(gray[0, :, :, 0], np.asarray(Image.fromarray(ds.images[0]).convert("L")))


def test_cifar_batch_equals_png_tree(cifar_dir: Path, png_dir: Path):
    """The 10,000 lossless PNGs are the same pixels and labels as the batch (matched by file name)."""
    batch = load_cifar(cifar_dir)
    png = open_dataset(png_dir)
    assert png.format == "image-folder" and png.class_names == CIFAR_CLASSES and png.num_classes == 10
    loaded = load_images(png, resolve_data_config("cifar"))
    assert loaded.images.shape == (10000, 32, 32, 3) and loaded.skipped == ()
    position = {name: i for i, name in enumerate(batch.names)}
    order = np.array([position[p.name] for p in png.files])
    assert sorted(order.tolist()) == list(range(10000))
    np.testing.assert_array_equal(loaded.labels, batch.labels[order])
    np.testing.assert_array_equal(loaded.images, batch.images[order])


def test_png_tree_labels_match_labels_csv(png_dir: Path):
    ds = open_dataset(png_dir)
    rows = (png_dir / "labels.csv").read_text().splitlines()[1:]
    expected = {r.split(",")[0]: int(r.split(",")[1]) for r in rows}
    got = {p.relative_to(png_dir).as_posix(): int(label) for p, label in zip(ds.files, ds.labels)}
    assert got == expected


# ---------------------------------------------------------------- restricted unpickler


class _Evil:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def _fake_cifar(folder: Path, batch_obj: object) -> Path:
    folder.mkdir()
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [b"a", b"b"]}, fh, protocol=2)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump(batch_obj, fh, protocol=2)
    return folder


def test_restricted_unpickler_refuses_os_system(tmp_path: Path):
    target = tmp_path / "pwned"
    folder = _fake_cifar(tmp_path / "cifar-10-batches-py", {b"data": _Evil(target), b"labels": [0]})
    assert detect_cifar(folder) == "cifar-10"
    message = r"refusing to load cifar file `.*test_batch`: global `(posix|os)\.system` is not allowed"
    with pytest.raises(DataError, match=message):
        open_dataset(folder)
    assert not target.exists()


def test_restricted_unpickler_refuses_builtins(tmp_path: Path):
    path = tmp_path / "p"
    path.write_bytes(pickle.dumps(eval, protocol=2))
    with pytest.raises(DataError, match=r"global `(__builtin__|builtins)\.eval` is not allowed"):
        load_pickle(path)


def test_small_valid_fake_batch_and_bad_shapes(tmp_path: Path):
    rows = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    folder = _fake_cifar(tmp_path / "ok", {b"data": rows, b"labels": [1, 0], b"filenames": [b"x.png", b"y.png"]})
    data = load_cifar(folder)
    assert data.class_names == ("a", "b") and data.names == ("x.png", "y.png")
    # row layout: 1024 R, 1024 G, 1024 B, each row-major 32x32
    np.testing.assert_array_equal(data.images[0, 0, 1], [rows[0, 1], rows[0, 1025], rows[0, 2049]])
    np.testing.assert_array_equal(data.images[1, 2, 3], [rows[1, 67], rows[1, 1024 + 67], rows[1, 2048 + 67]])
    bad = _fake_cifar(tmp_path / "bad", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    with pytest.raises(DataError, match=r"has `data` of shape \(2, 100\), expected \(N, 3072\) uint8"):
        load_cifar(bad)
    labels = _fake_cifar(tmp_path / "labels", {b"data": rows, b"labels": [0, 7]})
    with pytest.raises(DataError, match=r"labels outside 0\.\.1"):
        load_cifar(labels)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_python3_pickles_load(tmp_path: Path, protocol: int):
    folder = tmp_path / "c"
    folder.mkdir()
    rows = np.arange(3072, dtype=np.uint8).reshape(1, 3072)
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": ["a", "b"]}, protocol=protocol))
    (folder / "test_batch").write_bytes(pickle.dumps({"data": rows, "labels": [1]}, protocol=protocol))
    data = load_cifar(folder)
    assert data.class_names == ("a", "b") and data.labels.tolist() == [1]
    np.testing.assert_array_equal(data.images[0].transpose(2, 0, 1).reshape(-1), rows[0])


def test_truncated_pickle(tmp_path: Path):
    folder = _fake_cifar(tmp_path / "t", {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]})
    data = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cannot unpickle cifar file .* download the dataset again"):
        load_cifar(folder)


def test_cifar100_layout(tmp_path: Path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    names = [f"c{i}".encode() for i in range(100)]
    with open(folder / "meta", "wb") as fh:
        pickle.dump({b"fine_label_names": names, b"coarse_label_names": [b"x"] * 20}, fh, protocol=2)
    with open(folder / "test", "wb") as fh:
        batch = {b"data": np.zeros((3, 3072), np.uint8), b"fine_labels": [99, 0, 5], b"coarse_labels": [1, 2, 3]}
        pickle.dump(batch, fh, protocol=2)
    ds = open_dataset(folder)
    assert (ds.format, ds.num_classes, ds.labels.tolist()) == ("cifar-python", 100, [99, 0, 5])
    assert ds.class_names[99] == "c99"
    with pytest.raises(DataError, match=r"unknown cifar-100 split `val`; choose one of test, train"):
        load_cifar(folder, split="val")
