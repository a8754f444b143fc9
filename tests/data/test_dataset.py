"""data/dataset.py, data/loading.py and data/npz.py: format detection, errors, limit, decoding, batches, fingerprints."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onnxnoise.data import (
    Dataset,
    iter_batches,
    load_images,
    open_dataset,
    resolve_data_config,
    stratified_indices,
)
from onnxnoise.errors import DataError
from tests._checks import run_cli, strict_json
from tests._colour import CLASSES, colour_folder

RAW = resolve_data_config("raw")


def _img(path: Path, size=(8, 6), color=(120, 30, 200), fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)
    return path


def _class_tree(root: Path, per_class: dict[str, int], size=(8, 6)) -> Path:
    for cls, count in per_class.items():
        for i in range(count):
            _img(root / cls / f"{i:03d}.png", size=size, color=(10 * i % 256, len(cls), 7))
    return root


# ---------------------------------------------------------------- detection errors


def test_missing_path(tmp_path: Path):
    message = r"dataset path `.*nowhere` does not exist; pass an existing dataset folder or \.npz file"
    with pytest.raises(DataError, match=message):
        open_dataset(tmp_path / "nowhere")


def test_empty_folder(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"dataset folder `.*empty` is empty; expected a cifar batch folder"):
        open_dataset(tmp_path / "empty")


def test_unknown_layout(tmp_path: Path):
    root = tmp_path / "docs"
    root.mkdir()
    (root / "readme.md").write_text("hi")
    (root / "data.bin").write_bytes(b"\0\1")
    message = (
        r"cannot tell the dataset format of `.*docs`: its 2 file\(s\) \(e\.g\. `data\.bin`\) "
        r"are neither images nor cifar batches"
    )
    with pytest.raises(DataError, match=message):
        open_dataset(root)


def test_folder_of_broken_links_is_a_data_error(tmp_path: Path):
    root = tmp_path / "links"
    root.mkdir()
    os.symlink(tmp_path / "gone.png", root / "a.png")  # neither a file nor a folder
    message = r"cannot tell the dataset format of `.*links`: it holds no regular files or folders \(`a\.png`"
    with pytest.raises(DataError, match=message):
        open_dataset(root)


def test_folder_with_no_images(tmp_path: Path):
    root = tmp_path / "classes"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "b" / "x.txt").write_text("x")
    with pytest.raises(DataError, match=r"dataset folder `.*classes` has no image files in its 2 sub-folder\(s\)"):
        open_dataset(root)


def test_unknown_file_and_bad_arguments(tmp_path: Path):
    f = tmp_path / "x.csv"
    f.write_text("a,b\n")
    with pytest.raises(DataError, match=r"dataset file `.*x\.csv` is not a \.npz file"):
        open_dataset(f)
    root = _class_tree(tmp_path / "t", {"a": 1})
    with pytest.raises(DataError, match=r"invalid `limit`=0: expected a positive number"):
        open_dataset(root, limit=0)
    gt = tmp_path / "gt.txt"
    gt.write_text("000.png 1\n")
    message = r"--ground-truth applies to flat imagenet val folders, but `.*t` is in the `image-folder` format"
    with pytest.raises(DataError, match=message):
        open_dataset(root, ground_truth=gt)


def test_descends_into_split_folder(tmp_path: Path):
    _class_tree(tmp_path / "ds" / "test", {"cat": 2, "dog": 1})
    (tmp_path / "ds" / "labels.csv").write_text("path,label\n")
    ds = open_dataset(tmp_path / "ds")
    assert ds.format == "image-folder" and ds.class_names == ("cat", "dog") and ds.name == "ds"
    assert ds.root == tmp_path / "ds"


# ---------------------------------------------------------------- limit


def test_stratified_indices_round_robin():
    labels = np.array([0, 0, 0, 1, 1, 2])
    assert stratified_indices(labels, 4).tolist() == [0, 1, 3, 5]
    assert stratified_indices(labels, 3).tolist() == [0, 3, 5]
    assert stratified_indices(labels, 100).tolist() == list(range(6))
    labels = np.array([2, 1, 2, 0, 1, 2, 2])
    # first of each class (3, 1, 0), then second of each (4, 2), then third of class 2 (5)
    assert stratified_indices(labels, 6).tolist() == [0, 1, 2, 3, 4, 5]
    assert stratified_indices(labels, 5).tolist() == [0, 1, 2, 3, 4]
    assert stratified_indices(labels, 2).tolist() == [1, 3]


def test_limit_on_real_cifar(shared_data):
    path = shared_data("cifar-10-batches-py")
    ds = open_dataset(path, limit=105)
    assert len(ds) == 105 and ds.images.shape == (105, 32, 32, 3)
    counts = np.bincount(ds.labels, minlength=10)
    assert counts.min() == 10 and counts.max() == 11
    full = open_dataset(path)
    idx = stratified_indices(full.labels, 105)
    np.testing.assert_array_equal(ds.images, full.images[idx])
    assert ds.fingerprint() != full.fingerprint()
    assert open_dataset(path, limit=105).fingerprint() == ds.fingerprint()


# ---------------------------------------------------------------- decoding


def test_corrupt_images_skipped_or_strict(tmp_path: Path):
    root = _class_tree(tmp_path / "ds", {"a": 2, "b": 2})
    good = (root / "a" / "000.png").read_bytes()
    (root / "b" / "001.png").write_bytes(good[: len(good) // 2])  # truncated
    (root / "b" / "002.jpg").write_text("not an image")
    ds = open_dataset(root)
    assert len(ds) == 5
    calls = []
    loaded = load_images(ds, RAW, workers=2, progress=lambda done, total: calls.append((done, total)))
    assert len(loaded) == 3 and loaded.images.shape == (3, 6, 8, 3)
    assert [s.path.name for s in loaded.skipped] == ["001.png", "002.jpg"]
    assert loaded.indices.tolist() == [0, 1, 2] and loaded.labels.tolist() == [0, 0, 1]
    assert all(s.reason for s in loaded.skipped) and loaded.to_dict()["skipped"] == 2
    assert calls[-1] == (5, 5)
    message = r"cannot decode image `.*b/00[12]\.(png|jpg)` \(.*\); replace or remove the file, or drop --strict"
    with pytest.raises(DataError, match=message):
        load_images(ds, RAW, strict=True)


def test_truncated_jpeg_skipped(tmp_path: Path, shared_path):
    src = shared_path("data/imagenette-val500/images/n01440764", kind="dir")
    real = sorted(src.iterdir())[:3]
    root = tmp_path / "ds"
    (root / "n01440764").mkdir(parents=True)
    for p in real:
        (root / "n01440764" / p.name).write_bytes(p.read_bytes())
    data = real[1].read_bytes()
    (root / "n01440764" / real[1].name).write_bytes(data[: len(data) // 3])
    loaded = load_images(open_dataset(root), resolve_data_config("torchvision"))
    assert len(loaded) == 2 and len(loaded.skipped) == 1 and "truncated" in loaded.skipped[0].reason
    assert loaded.labels.tolist() == [0, 0]


def test_all_images_unreadable(tmp_path: Path):
    (tmp_path / "ds" / "a").mkdir(parents=True)
    (tmp_path / "ds" / "a" / "x.png").write_text("nope")
    with pytest.raises(DataError, match=r"none of the 1 images in `.*ds` could be decoded, e\.g\. `.*x\.png`"):
        load_images(open_dataset(tmp_path / "ds"), RAW)


def test_mixed_sizes_need_geometry(tmp_path: Path):
    root = tmp_path / "ds"
    _img(root / "a" / "1.png", size=(32, 32))
    _img(root / "b" / "2.png", size=(40, 30))
    ds = open_dataset(root)
    message = r"different sizes after preprocessing \(`1\.png` is 32x32, `2\.png` is 40x30 WxH\).*pass --resize and --crop"
    with pytest.raises(DataError, match=message):
        load_images(ds, RAW)
    loaded = load_images(ds, resolve_data_config("raw", resize=32, crop=32))
    assert loaded.images.shape == (2, 32, 32, 3)


def test_workers_validation(tmp_path: Path):
    ds = open_dataset(_class_tree(tmp_path / "ds", {"a": 1}))
    with pytest.raises(DataError, match=r"invalid `workers`=0"):
        load_images(ds, RAW, workers=0)


def test_fingerprint_files(tmp_path: Path):
    root = _class_tree(tmp_path / "ds", {"a": 2, "b": 1})
    fp = open_dataset(root).fingerprint()
    assert len(fp) == 64 and fp == open_dataset(root).fingerprint()
    os.utime(root / "b" / "000.png", ns=(1, 1))
    assert open_dataset(root).fingerprint() != fp


# ---------------------------------------------------------------- npz


def test_npz_grayscale(tmp_path: Path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    labels = np.arange(12) % 3
    path = tmp_path / "fashion.npz"
    np.savez(path, images=images, labels=labels, class_names=np.array(["shirt", "bag", "boot"]))
    ds = open_dataset(path)
    assert (ds.format, ds.name, ds.num_classes, ds.class_names) == ("npz", "fashion", 3, ("shirt", "bag", "boot"))
    assert ds.images.shape == (12, 28, 28, 1) and ds.labels.dtype == np.int64
    mnist = resolve_data_config("mnist")
    loaded = load_images(ds, mnist)
    np.testing.assert_array_equal(loaded.images[..., 0], images)
    batches = list(iter_batches(loaded.images, loaded.labels, mnist, 5))
    assert [x.shape for x, _ in batches] == [(5, 1, 28, 28), (5, 1, 28, 28), (2, 1, 28, 28)]
    np.testing.assert_allclose(batches[0][0][0, 0], (images[0] / 255.0 - 0.5) / 0.5, atol=1e-6)
    assert batches[2][1].tolist() == [1, 2] and batches[2][1].dtype == np.int64
    rgb = load_images(ds, resolve_data_config("raw"))  # 3-channel model on gray data: channel repeated
    assert rgb.images.shape == (12, 28, 28, 3)
    limited = open_dataset(path, limit=6)
    assert np.bincount(limited.labels).tolist() == [2, 2, 2]


def test_npz_errors(tmp_path: Path):
    p = tmp_path / "a.npz"
    np.savez(p, images=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DataError, match=r"dataset file `.*a\.npz` has no `labels` array \(has: images\)"):
        open_dataset(p)
    np.savez(p, images=np.zeros((2, 4, 4), np.float32), labels=[0, 1])
    with pytest.raises(DataError, match=r"`images` in `.*a\.npz` is float32 \(2, 4, 4\); expected uint8"):
        open_dataset(p)
    np.savez(p, images=np.zeros((2, 4, 4), np.uint8), labels=[0, 1], class_names=np.array(["x", 1], dtype=object))
    with pytest.raises(DataError, match=r"store `class_names` as a str array"):
        open_dataset(p)
    np.savez(p, images=np.zeros((2, 4, 4), np.uint8), labels=[0, 5], class_names=np.array(["x", "y"]))
    with pytest.raises(DataError, match=r"`labels` in `.*a\.npz` contains 5, outside 0\.\.1 \(2 classes\)"):
        open_dataset(p)
    p.write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"cannot read dataset file `.*a\.npz` as \.npz"):
        open_dataset(p)


@pytest.mark.parametrize("num_classes", [np.array("ten"), np.array([3, 4]), np.array(float("nan"))])
def test_npz_num_classes_not_an_integer(tmp_path: Path, num_classes):
    p = tmp_path / "a.npz"
    np.savez(p, images=np.zeros((2, 4, 4), np.uint8), labels=[0, 1], num_classes=num_classes)
    with pytest.raises(DataError, match=r"`num_classes` in `.*a\.npz` is .*; expected an integer scalar"):
        open_dataset(p)


def test_npz_class_names_not_utf8(tmp_path: Path):
    p = tmp_path / "a.npz"
    np.savez(p, images=np.zeros((2, 4, 4), np.uint8), labels=[0, 1], class_names=np.array([b"ok", b"\xff"]))
    with pytest.raises(DataError, match=r"`class_names` in `.*a\.npz` is not valid utf-8"):
        open_dataset(p)


# ---------------------------------------------------------------- batches


def test_iter_batches_layouts_and_errors():
    images = np.arange(2 * 2 * 3 * 3, dtype=np.uint8).reshape(2, 2, 3, 3)
    labels = np.array([4, 7])
    cfg = resolve_data_config("tf")  # NHWC, (x - 127.5) / 127.5
    (x, y), = list(iter_batches(images, labels, cfg, 8))
    assert x.shape == (2, 2, 3, 3) and x.dtype == np.float32 and y.tolist() == [4, 7]
    np.testing.assert_allclose(x, (images - 127.5) / 127.5, atol=1e-6)
    with pytest.raises(DataError, match=r"invalid `batch_size`=0"):
        next(iter_batches(images, labels, cfg, 0))
    with pytest.raises(DataError, match=r"got 2 images but 1 labels"):
        next(iter_batches(images, labels[:1], cfg, 1))


def test_dataset_to_dict_and_len():
    ds = Dataset(
        name="x", root=Path("x"), format="npz", labels=np.array([0, 1], np.int64), num_classes=2,
        class_names=("a", "b"), images=np.zeros((2, 2, 2, 3), np.uint8),
    )
    assert len(ds) == 2
    expected = {"name": "x", "root": "x", "format": "npz", "images": 2, "num_classes": 2, "label_source": ""}
    assert ds.to_dict() == expected
    assert ds.subset(np.array([1])).labels.tolist() == [1]



@pytest.mark.skipif(os.name == "nt", reason="POSIX symbolic links")
def test_an_image_that_is_a_symlink_loop_is_skipped_not_a_file_system_error(colour_onnx, tmp_path, capsys):
    root = colour_folder(tmp_path / "v", {str(k): k for k in range(CLASSES)})
    (root / "4" / "a.png").symlink_to("b.png")  # os.stat: ELOOP (the fingerprint raised it as a disk error)
    (root / "4" / "b.png").symlink_to("a.png")
    ds = open_dataset(root)
    assert len(ds) == 2 * CLASSES + 2 and ds.fingerprint() == open_dataset(root).fingerprint()
    code, out, err = run_cli(capsys, "bench", colour_onnx, "--data", root, "--preprocess", "raw", "--snr", "1000",
                             "--seeds", "1", "--device", "cpu", "--out", tmp_path / "run", "--json")
    assert code == 0, err
    summary = strict_json(out)
    assert (summary["images"], summary["skipped_images"]) == (2 * CLASSES, 2)
    assert summary["baseline"]["top1_acc"] == 100.0
