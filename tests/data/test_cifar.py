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
from tests._checks import one_line
from tests._limits import run_limited

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


def _expanding_pickle(repeats: int, chars: int) -> bytes:
    """A protocol-2 pickle of ``repeats`` calls of ``_codecs.encode`` on one memoized string of ``chars``
    characters: ``8 * repeats + chars`` bytes on disk, ``repeats * chars`` bytes once unpickled."""
    text = b"x" * chars
    body = (b"\x80\x02c_codecs\nencode\nq\x00X" + len(text).to_bytes(4, "little") + text + b"q\x01"
            b"X\x06\x00\x00\x00latin1q\x02]q\x03(" + b"h\x00h\x01h\x02\x86R" * repeats + b"e.")
    return body


def _huge_array_pickle() -> bytes:
    """A protocol-2 pickle whose only array is declared 100000 x 100000 uint8 (10 GB) in 90 bytes."""
    return (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01"
            b"J\xa0\x86\x01\x00J\xa0\x86\x01\x00\x86q\x02U\x01bq\x03\x87R.")


def test_a_small_pickle_that_expands_is_refused_before_its_memory_is_taken(tmp_path: Path):
    # 80 kB on disk, 10 GB unpickled: refused once the callables have built 2 x its size + 1 MiB
    path = tmp_path / "test_batch"
    path.write_bytes(_expanding_pickle(10_000, 1 << 20))
    with pytest.raises(DataError, match=r"^refusing to load cifar file `.*test_batch`: unpickling it would build "
                       r"more than \d+ bytes \(2 x its size \+ 1048576; stopped at a string of 1048576 characters\)"):
        load_pickle(path)
    path.write_bytes(_huge_array_pickle())
    with pytest.raises(DataError, match=r"stopped at an array of shape \(100000, 100000\)"):
        load_pickle(path)
    # the same calls within the bound load as before
    path.write_bytes(_expanding_pickle(3, 100))
    assert load_pickle(path) == [b"x" * 100] * 3


def test_an_expanding_cifar_batch_is_one_line_and_exit_2_under_a_memory_limit(tmp_path: Path, tiny_float_int8):
    folder = _fake_cifar(tmp_path / "cifar-10-batches-py", {b"labels": [0]})
    (folder / "test_batch").write_bytes(_expanding_pickle(10_000, 1 << 20))
    done = run_limited(["bench", str(tiny_float_int8[0]), "--data", str(folder), "--snr", "10"])
    assert done.returncode == 2, done.stderr
    assert "unpickling it would build more than" in one_line(done.stderr)


def test_codecs_encode_takes_latin1_strings_only(tmp_path: Path):
    path = tmp_path / "p"
    path.write_bytes(_expanding_pickle(1, 4).replace(b"\x06\x00\x00\x00latin1", b"\x03\x00\x00\x00hex"))
    with pytest.raises(DataError, match=r"`_codecs.encode` with encoding 'hex' is not allowed \(only latin1\)"):
        load_pickle(path)


def test_an_object_array_declared_huge_is_refused(tmp_path: Path):
    # an object array's __setstate__ allocates its declared shape (80 GB here) before it looks at the data
    path = tmp_path / "p"
    array = np.empty((1,), dtype=object)
    array[0] = 1
    data = pickle.dumps(array, protocol=2)
    assert data.count(b"K\x01\x85") == 1  # the state's shape (1,) ...
    path.write_bytes(data.replace(b"K\x01\x85", b"J\xa0\x86\x01\x00J\xa0\x86\x01\x00\x86"))  # ... as (100000, 100000)
    code = f"from onnxnoise.data.cifar import load_pickle\nload_pickle({str(path)!r})"
    done = run_limited([], code=code)  # under the memory limit: no machine-wide allocation if the check failed
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1].startswith(
        "onnxnoise.errors.DataError: refusing to load cifar file"), done.stderr
    assert "numpy object arrays are not allowed" in done.stderr
