"""Hostile or odd data: ImageNet subsets keep 1000-class indices, decompression bombs, crafted pickles."""

from __future__ import annotations

import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onnxnoise.data import load_images, open_dataset, resolve_data_config
from onnxnoise.errors import DataError

RAW = resolve_data_config("raw")


def _img(path: Path, size=(8, 6), color=(120, 30, 200)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format="JPEG" if path.suffix.upper() == ".JPEG" else None)
    return path


def test_imagenet_subset_keeps_1000_class_indices(tmp_path: Path):
    # Three wnids far apart in the sorted 1000-wnid list, as a 3-class subset folder.
    for wnid in ("n15075141", "n01440764", "n03888257"):
        _img(tmp_path / "val" / wnid / f"{wnid}_1.JPEG")
    ds = open_dataset(tmp_path / "val")
    assert ds.num_classes == 1000
    got = {Path(f).parent.name: int(label) for f, label in zip(ds.files, ds.labels)}
    assert got == {"n01440764": 0, "n03888257": 701, "n15075141": 999}


def test_imagenette_labels_are_imagenet_indices(shared_data):
    ds = open_dataset(shared_data("imagenette-val500"))
    assert (len(ds), ds.num_classes) == (500, 1000)
    assert sorted(set(ds.labels.tolist())) == [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]


def test_decompression_bomb_skipped_or_strict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _img(tmp_path / "ds" / "a" / "small.png", size=(8, 6))
    _img(tmp_path / "ds" / "a" / "bomb.png", size=(64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64*64 = 4096 > 2 * 1000: PIL refuses it
    ds = open_dataset(tmp_path / "ds")
    loaded = load_images(ds, RAW)
    assert len(loaded) == 1 and [s.path.name for s in loaded.skipped] == ["bomb.png"]
    assert "decompression bomb" in loaded.skipped[0].reason.lower()
    with pytest.raises(DataError, match=r"cannot decode image `.*bomb\.png`"):
        load_images(ds, RAW, strict=True)


class _Popen:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (subprocess.Popen, (["touch", str(self.target)],))


@pytest.mark.parametrize("protocol", [2, 4])
def test_crafted_cifar_pickle_is_refused_and_not_run(tmp_path: Path, protocol: int):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    target = tmp_path / "pwned"
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [b"a"]}, fh, protocol=2)
    rows = np.zeros((1, 3072), np.uint8)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": rows, b"labels": [0], b"x": _Popen(target)}, fh, protocol=protocol)
    with pytest.raises(DataError, match=r"global `(subprocess|commands)\.Popen` is not allowed"):
        open_dataset(folder)
    assert not target.exists()


def test_a_resize_whose_output_is_a_bomb_is_skipped_or_strict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # a 100 x 1 image resized to a short side of 8192 (the most --resize takes) is 819200 x 8192 = 6.7e9 pixels,
    # past PIL's limit (2 x 89478485); here the same at a smaller scale: 6400 x 64 past 2 x 10000
    _img(tmp_path / "ds" / "a" / "small.png", size=(8, 6))
    _img(tmp_path / "ds" / "a" / "thin.png", size=(100, 1))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # small.png becomes 85 x 64: kept
    ds = open_dataset(tmp_path / "ds")
    config = resolve_data_config("raw", resize=64)
    loaded = load_images(ds, config)
    assert [s.path.name for s in loaded.skipped] == ["thin.png"] and len(loaded) == 1
    assert "resizing a 100x1 image to 6400x64 would exceed the limit of 20000 pixels" in loaded.skipped[0].reason
    with pytest.raises(DataError, match=r"cannot decode image `.*thin\.png`"):
        load_images(ds, config, strict=True)
