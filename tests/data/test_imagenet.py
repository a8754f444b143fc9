"""data/folder.py and data/imagenet.py: wnid folders, flat val folders and ground-truth files."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onnxnoise.data import load_images, open_dataset, resolve_data_config
from onnxnoise.data.folder import imagenet_class_names, imagenet_wnids, load_image_folder
from onnxnoise.data.imagenet import BUILTIN_GROUND_TRUTH, read_ground_truth
from onnxnoise.errors import DataError

MANIFEST_INDICES = {
    "n01440764": 0,
    "n02102040": 217,
    "n02979186": 482,
    "n03000684": 491,
    "n03028079": 497,
    "n03394916": 566,
    "n03417042": 569,
    "n03425413": 571,
    "n03445777": 574,
    "n03888257": 701,
}


def _csv_labels(path: Path) -> dict[str, int]:
    with open(path, newline="") as fh:
        return {Path(r["path"]).name: int(r["label"]) for r in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def imagenette(shared_data) -> Path:
    return shared_data("imagenette-val500")


@pytest.fixture(scope="module")
def val1300(shared_data) -> Path:
    return shared_data("imagenet-val1300")


def test_wnid_table():
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and list(wnids) == sorted(wnids)
    for wnid, index in MANIFEST_INDICES.items():
        assert wnids[index] == wnid
    names = imagenet_class_names()
    assert len(names) == 1000 and names[0] == "tench"


def test_imagenette_wnid_mapping(imagenette: Path):
    ds = open_dataset(imagenette)
    assert ds.format == "image-folder" and ds.label_source == "imagenet wnid folders"
    assert len(ds) == 500 and ds.num_classes == 1000 and len(ds.class_names) == 1000
    assert ds.name == "imagenette-val500"
    folder_label = {p.parent.name: int(label) for p, label in zip(ds.files, ds.labels)}
    assert folder_label == MANIFEST_INDICES
    assert {p.name: int(label) for p, label in zip(ds.files, ds.labels)} == _csv_labels(imagenette / "labels.csv")
    assert np.all(np.diff(ds.labels) >= 0)  # sorted by class index, then path
    assert "springer" in ds.class_names[217].lower()


def test_imagenette_decode(imagenette: Path):
    ds = open_dataset(imagenette)
    loaded = load_images(ds, resolve_data_config("torchvision"), workers=2)
    assert loaded.images.shape == (500, 224, 224, 3) and loaded.images.dtype == np.uint8
    assert loaded.skipped == () and len(loaded) == 500
    np.testing.assert_array_equal(loaded.labels, ds.labels)
    # one image checked against the plain PIL pipeline: short side 256, center 224
    path = ds.files[123]
    with Image.open(path) as img:
        rgb = img.convert("RGB")
        w, h = rgb.size
        size = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
        ref = np.asarray(rgb.resize(size, Image.Resampling.BILINEAR))
    top, left = int(round((ref.shape[0] - 224) / 2)), int(round((ref.shape[1] - 224) / 2))
    np.testing.assert_array_equal(loaded.images[123], ref[top : top + 224, left : left + 224])


@pytest.mark.parametrize("sub", ["", "images"])
def test_val1300_labels_match_labels_csv(val1300: Path, sub: str):
    ds = open_dataset(val1300 / sub if sub else val1300)
    assert ds.format == "imagenet-val" and len(ds) == 1300 and ds.num_classes == 1000
    assert Path(ds.label_source).name == "ILSVRC2012_val_labels_50000_caffe.txt"
    assert [p.name for p in ds.files] == sorted(p.name for p in ds.files)
    assert {p.name: int(label) for p, label in zip(ds.files, ds.labels)} == _csv_labels(val1300 / "labels.csv")


def test_val1300_loads_all_images(val1300: Path):
    ds = open_dataset(val1300)
    loaded = load_images(ds, resolve_data_config("raw"))  # already 227x227: no geometry
    assert loaded.images.shape == (1300, 227, 227, 3) and loaded.skipped == ()


def test_val1300_explicit_ground_truth_files(val1300: Path):
    expected = _csv_labels(val1300 / "labels.csv")
    ds = open_dataset(val1300, ground_truth=val1300 / "dataset.txt")  # `./data/x.JPEG, 472`
    assert {p.name: int(v) for p, v in zip(ds.files, ds.labels)} == expected
    ds = open_dataset(val1300, ground_truth=val1300 / "labels.csv")  # CSV with a header
    assert {p.name: int(v) for p, v in zip(ds.files, ds.labels)} == expected
    ds1001 = open_dataset(val1300, ground_truth=val1300 / "dataset_1001.txt")
    assert ds1001.num_classes == 1001 and ds1001.class_names[0] == "background"
    np.testing.assert_array_equal(ds1001.labels, ds.labels + 1)


# ---------------------------------------------------------------- synthetic folders


def _jpeg(path: Path, color=(10, 200, 30), size=(12, 9)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format="JPEG")
    return path


VAL_NAMES = ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG", "ILSVRC2012_val_00000003.JPEG"]


def test_ground_truth_autodetect_prefers_val_labels(tmp_path: Path):
    root = tmp_path / "val"
    for name in VAL_NAMES:
        _jpeg(root / name)
    (root / "dataset_1001.txt").write_text("".join(f"./data/{n},{i + 1}\n" for i, n in enumerate(VAL_NAMES)))
    (root / "synset_words.txt").write_text("n01440764 tench, Tinca tinca\n")
    (tmp_path / "val_labels.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(VAL_NAMES)))
    ds = open_dataset(root)
    assert Path(ds.label_source).name == "val_labels.txt"
    assert ds.labels.tolist() == [0, 1, 2] and ds.num_classes == 1000


def test_builtin_ground_truth_fallback(tmp_path: Path):
    for name in VAL_NAMES:
        _jpeg(tmp_path / "flat" / name)
    ds = open_dataset(tmp_path / "flat")
    assert ds.label_source == BUILTIN_GROUND_TRUTH
    assert ds.labels.tolist() == [65, 970, 230]  # caffe val.txt, first three lines


def test_missing_ground_truth(tmp_path: Path):
    _jpeg(tmp_path / "flat" / "cat.jpg")
    message = r"no ground-truth file found for the 1 images in `.*flat`.*pass --ground-truth FILE"
    with pytest.raises(DataError, match=message):
        open_dataset(tmp_path / "flat")


def test_image_absent_from_ground_truth(tmp_path: Path):
    root = tmp_path / "flat"
    for name in [*VAL_NAMES, "extra.jpg"]:
        _jpeg(root / name)
    gt = tmp_path / "gt.txt"
    gt.write_text("".join(f"{n} 3\n" for n in VAL_NAMES))
    with pytest.raises(DataError, match=r"1 of 4 images in `.*flat` have no label in `.*gt\.txt`, e\.g\. `extra\.jpg`"):
        open_dataset(root, ground_truth=gt)


def test_ground_truth_parse_errors(tmp_path: Path):
    bad = tmp_path / "bad.txt"
    bad.write_text("a.JPEG 1\nb.JPEG x\n")
    with pytest.raises(DataError, match=r"ground-truth file `.*bad\.txt` line 2 is not `<file name> <class index>`"):
        read_ground_truth(bad)
    clash = tmp_path / "clash.txt"
    clash.write_text("# comment\n\na.JPEG 1\na.JPEG 2\n")
    with pytest.raises(DataError, match=r"labels `a\.JPEG` twice \(1 and 2, line 4\)"):
        read_ground_truth(clash)
    big = tmp_path / "big.txt"
    big.write_text("a.JPEG 1001\n")
    _jpeg(tmp_path / "f" / "a.JPEG")
    with pytest.raises(DataError, match=r"class index 1001, outside the imagenet range"):
        open_dataset(tmp_path / "f", ground_truth=big)
    with pytest.raises(DataError, match=r"ground-truth file `.*nope\.txt` does not exist"):
        open_dataset(tmp_path / "f", ground_truth=tmp_path / "nope.txt")


def test_class_folder_errors(tmp_path: Path):
    _jpeg(tmp_path / "mixed" / "n01440764" / "a.jpg")
    _jpeg(tmp_path / "mixed" / "cats" / "b.jpg")
    with pytest.raises(DataError, match=r"mix imagenet wnids \(`n01440764`\) and other names \(`cats`\)"):
        open_dataset(tmp_path / "mixed")
    _jpeg(tmp_path / "unknown" / "n99999999" / "a.jpg")
    with pytest.raises(DataError, match=r"class folder `.*n99999999` is a wnid outside ImageNet-1k"):
        open_dataset(tmp_path / "unknown")


def test_generic_class_folders(tmp_path: Path):
    root = tmp_path / "animals"
    _jpeg(root / "zebra" / "1.JPG")
    _jpeg(root / "ant" / "b.png")
    _jpeg(root / "ant" / "a.Jpeg")
    _jpeg(root / "ant" / "nested" / "c.jpg")
    (root / "ant" / "notes.txt").write_text("x")
    (root / "empty").mkdir()
    ds = open_dataset(root)
    assert ds.class_names == ("ant", "empty", "zebra") and ds.num_classes == 3
    names = [p.relative_to(root).as_posix() for p in ds.files]
    assert names == ["ant/a.Jpeg", "ant/b.png", "ant/nested/c.jpg", "zebra/1.JPG"]
    assert ds.labels.tolist() == [0, 0, 0, 2]
    message = r"has 1 non-image file\(s\), e\.g\. `.*notes\.txt`; remove them or drop --strict"
    with pytest.raises(DataError, match=message):
        load_image_folder(root, strict=True)
