"""Pinned dataset fingerprints, labels and detection results of one small dataset per format.

Dataset fingerprints enter trial keys, so a refactor of the format readers must leave them
equal. Each dataset is built here from fixed bytes: image files are not decoded by
``open_dataset`` (only their relative path, size and modification time enter the
fingerprint), so they are short byte strings with a fixed modification time.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from onnxnoise.data import open_dataset

#: A fixed modification time (whole seconds, so any file system stores it exactly).
MTIME_NS = 1_700_000_000 * 10**9


def _file(path: Path, body: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    os.utime(path, ns=(MTIME_NS, MTIME_NS))
    return path


def _cifar10(tmp: Path) -> tuple[Path, dict]:
    root = tmp / "cifar-10-batches-py"
    rows = (np.arange(3 * 3072) % 251).astype(np.uint8).reshape(3, 3072)
    _file(root / "batches.meta", pickle.dumps({b"label_names": [b"a", b"b"]}, protocol=2))
    _file(root / "test_batch", pickle.dumps({b"data": rows, b"labels": [1, 0, 1]}, protocol=2))
    return root, {}


def _cifar100(tmp: Path) -> tuple[Path, dict]:
    root = tmp / "cifar-100-python"
    names = [f"c{i}".encode() for i in range(100)]
    rows = (np.arange(2 * 3072) % 239).astype(np.uint8).reshape(2, 3072)
    _file(root / "meta", pickle.dumps({b"fine_label_names": names}, protocol=2))
    _file(root / "test", pickle.dumps({b"data": rows, b"fine_labels": [99, 3]}, protocol=2))
    return root, {}


def _npz(tmp: Path) -> tuple[Path, dict]:
    path = tmp / "small.npz"
    images = (np.arange(4 * 5 * 6 * 3) % 256).astype(np.uint8).reshape(4, 5, 6, 3)
    np.savez(path, images=images, labels=np.array([2, 0, 1, 2]), class_names=np.array(["x", "y", "z"]))
    return path, {}


def _npz_gray(tmp: Path) -> tuple[Path, dict]:
    path = tmp / "gray.npz"
    images = (np.arange(3 * 4 * 4) * 7 % 256).astype(np.uint8).reshape(3, 4, 4)
    np.savez(path, images=images, labels=np.array([0, 4, 1]), num_classes=np.int64(6))
    return path, {}


def _sorted_folders(tmp: Path) -> tuple[Path, dict]:
    root = tmp / "pets"
    for cls, count in (("dog", 2), ("cat", 3)):
        for i in range(count):
            _file(root / cls / f"{i:03d}.png", f"{cls}{i}".encode() * (i + 1))
    _file(root / "cat" / "notes.txt", b"ignored")
    return root, {}


def _class_numbers(tmp: Path) -> tuple[Path, dict]:
    root = tmp / "numbered"
    for cls in ("0", "2", "10"):
        _file(root / cls / "a.jpg", cls.encode() * 3)
    return root, {}


def _wnids(tmp: Path) -> tuple[Path, dict]:
    root = tmp / "imagenette" / "images"
    for wnid in ("n01440764", "n02102040"):
        _file(root / wnid / "x.JPEG", wnid.encode())
        _file(root / wnid / "sub" / "y.JPEG", wnid.encode() * 2)
    return root.parent, {}


def _flat_val(tmp: Path) -> tuple[Path, dict]:
    root = tmp / "val"
    for i, label in enumerate((65, 970, 0)):
        _file(root / f"img_{i}.JPEG", bytes([i]) * (10 + i))
    _file(root / "val_labels.txt", b"img_0.JPEG 65\nimg_1.JPEG 970\nimg_2.JPEG 0\n")
    return root, {}


def _flat_val_wrapped_1001(tmp: Path) -> tuple[Path, dict]:
    root = tmp / "tfval"
    for i in range(2):
        _file(root / "images" / f"p{i}.png", b"p" * (i + 1))
    _file(root / "gt.csv", b"path,label\n./images/p0.png,1000\n./images/p1.png,1\n")
    return root, {}


def _flat_val_given_gt(tmp: Path) -> tuple[Path, dict]:
    root = tmp / "flat"
    for name in ("b.png", "a.png"):
        _file(root / name, name.encode())
    gt = _file(tmp / "labels-elsewhere.txt", b"a.png 5\nb.png 7\n")
    return root, {"ground_truth": gt}


def _limited_folders(tmp: Path) -> tuple[Path, dict]:
    root, _ = _sorted_folders(tmp)
    return root, {"limit": 3}


def _deep_wrapper(tmp: Path) -> tuple[Path, dict]:
    """Two single sub-folders down, a lone ``images/`` folder is a class folder (no third descent)."""
    root = tmp / "deep"
    _file(root / "x" / "y" / "images" / "p.png", b"p")
    return root, {}


def _wrapper_holding_images(tmp: Path) -> tuple[Path, dict]:
    """The one wrapper folder holding images directly wins over an earlier-named wrapper."""
    root = tmp / "wrapped"
    _file(root / "test" / "deep" / "a" / "p.png", b"p")
    _file(root / "val" / "q.png", b"qq")
    _file(root / "gt.txt", b"q.png 3\n")
    return root, {}


def _nested_class_folders(tmp: Path) -> tuple[Path, dict]:
    """Class folders whose images sit one level further down."""
    root = tmp / "nested"
    _file(root / "cls_a" / "sub" / "p.png", b"p")
    _file(root / "cls_b" / "sub" / "q.png", b"q")
    return root, {}


def _cifar_one_down(tmp: Path) -> tuple[Path, dict]:
    root, _ = _cifar10(tmp / "download")
    return root.parent, {}


BUILDERS: dict[str, Callable[[Path], tuple[Path, dict]]] = {
    "cifar-10": _cifar10,
    "cifar-100": _cifar100,
    "npz": _npz,
    "npz-gray": _npz_gray,
    "sorted-folders": _sorted_folders,
    "class-numbers": _class_numbers,
    "wnids": _wnids,
    "flat-val": _flat_val,
    "flat-val-wrapped-1001": _flat_val_wrapped_1001,
    "flat-val-given-gt": _flat_val_given_gt,
    "limited-folders": _limited_folders,
    "deep-wrapper": _deep_wrapper,
    "wrapper-holding-images": _wrapper_holding_images,
    "nested-class-folders": _nested_class_folders,
    "cifar-one-down": _cifar_one_down,
}

#: id -> (format, name, num_classes, labels, label source, fingerprint), the temporary folder written `<tmp>`;
#: taken from the code before dataset formats became classes (data/formats.py).
PINNED: dict[str, tuple[str, str, int, list[int], str, str]] = {
    "cifar-10": (
        "cifar-python", "cifar-10-batches-py", 2, [1, 0, 1], "<tmp>/cifar-10-batches-py (cifar-10 test)",
        "b2616be53ed419a25813c386510a9baaeb917022d307624c918f0397643674dc",
    ),
    "cifar-100": (
        "cifar-python", "cifar-100-python", 100, [99, 3], "<tmp>/cifar-100-python (cifar-100 test)",
        "793836ccd73718cf656c98e25aabe693767ab79c77bd8009857b028cad224d95",
    ),
    "class-numbers": (
        "image-folder", "numbered", 11, [0, 2, 10], "class-number folders (folder `7` = class 7)",
        "3822b62db1ed906b3540855ee66e46d541facebe76ed38ea87e7a0185eba223c",
    ),
    "flat-val": (
        "imagenet-val", "<tmp>/val", 1000, [65, 970, 0], "<tmp>/val/val_labels.txt",
        "69d93a281fda2a60c512b713ef29f57be716e9784f0e2ac1ad87bd1e81bef880",
    ),
    "flat-val-given-gt": (
        "imagenet-val", "flat", 1000, [5, 7], "<tmp>/labels-elsewhere.txt",
        "c939a2e6b632eaf7e9e2423be8e0cc2c4991609088fa11035107d27e348cb92d",
    ),
    "flat-val-wrapped-1001": (
        "imagenet-val", "tfval", 1001, [1000, 1], "<tmp>/tfval/gt.csv",
        "aa675294a62d7de94b5a1ed26c6fd2fbfe8f19df010d348e32637beb322743f2",
    ),
    "limited-folders": (
        "image-folder", "pets", 2, [0, 0, 1], "folder names",
        "be8a10011cf5f760fe54082ed101080dc5bcb76037f3eddf4a4bacf84eeb3900",
    ),
    "npz": (
        "npz", "small", 3, [2, 0, 1, 2], "<tmp>/small.npz",
        "354948fb7cc7b996671aa2c711d5ac31c2f9ca31cf9f00f4fd752171283d8ef1",
    ),
    "npz-gray": (
        "npz", "gray", 6, [0, 4, 1], "<tmp>/gray.npz",
        "fd3f12fd32da9d7a2b62af47e8ff12f7b7ea5cd57e396cc3d3c11d330f7e0cb6",
    ),
    "sorted-folders": (
        "image-folder", "pets", 2, [0, 0, 0, 1, 1], "folder names",
        "c99dde0f69d0ae90ec4d7770211e91ce5982976f7cc88d40967e5683da30e327",
    ),
    "wnids": (
        "image-folder", "imagenette", 1000, [0, 0, 217, 217], "imagenet wnid folders",
        "2d289ad81d9a50370bc33db78154b0de3983306c273689876390a39e351a37f8",
    ),
    "deep-wrapper": (
        "image-folder", "deep", 1, [0], "folder names",
        "4d07e406210cbf5efb67bae981ab562ae1869750ed469acc558725eb65093ba6",
    ),
    "wrapper-holding-images": (
        "imagenet-val", "wrapped", 1000, [3], "<tmp>/wrapped/gt.txt",
        "e528cc57dd2605da36980db743fd884b522808f9e510eda209d291e5a761686a",
    ),
    "nested-class-folders": (
        "image-folder", "nested", 2, [0, 1], "folder names",
        "062d6e117d88e3d9cbe8b88853ffcdbf558aafb6680010c36d092d1739fdb809",
    ),
    "cifar-one-down": (
        "cifar-python", "download", 2, [1, 0, 1], "<tmp>/download/cifar-10-batches-py (cifar-10 test)",
        "b2616be53ed419a25813c386510a9baaeb917022d307624c918f0397643674dc",
    ),
}


@pytest.mark.parametrize("case", sorted(BUILDERS))
def test_fingerprint_and_labels_are_pinned(tmp_path: Path, case: str):
    root, kwargs = BUILDERS[case](tmp_path)
    ds = open_dataset(root, **kwargs)
    source = ds.label_source.replace(str(tmp_path), "<tmp>")
    name = ds.name.replace(tmp_path.name, "<tmp>")
    got = (ds.format, name, ds.num_classes, ds.labels.tolist(), source, ds.fingerprint())
    assert got == PINNED[case]
