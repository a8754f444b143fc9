"""data/formats.py and data/detect.py: the format registry, its order, and adding a format in one class."""

from __future__ import annotations

import ast
import os
import re
import signal
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

from onnxnoise.data import (
    DatasetContents,
    DatasetFormat,
    detect as detect_module,
    load_images,
    open_dataset,
    resolve_data_config,
)
from onnxnoise.data.detect import DATASET_FORMATS, expected_formats, get_format, register_format
from onnxnoise.data.formats import FILE, FOLDER, NotRegularFileError, PathView, open_regular
from onnxnoise.data.imagenet import read_ground_truth
from onnxnoise.data.npz import load_npz
from onnxnoise.errors import DataError

DATA_PACKAGE = Path(__file__).resolve().parents[2] / "onnxnoise" / "data"


class ToyFileFormat(DatasetFormat):
    """A ``.toy`` file: 4 bytes per 2x2 gray image, no header; label = first byte % 3."""

    name: ClassVar[str] = "toy"
    looks_at: ClassVar[str] = FILE
    expected: ClassVar[str] = "a .toy file"

    def detect(self, view: PathView) -> bool:
        return view.path.suffix == ".toy"

    def open(self, where: Path, *, ground_truth: Path | None, strict: bool) -> DatasetContents:
        raw = np.frombuffer(where.read_bytes(), dtype=np.uint8).reshape(-1, 2, 2, 1)
        labels = (raw[:, 0, 0, 0] % 3).astype(np.int64)
        return DatasetContents(labels=labels, class_names=("a", "b", "c"), label_source=f"toy {where.name}",
                               images=np.ascontiguousarray(raw))


class MarkerFolderFormat(DatasetFormat):
    """A folder with a ``toy.marker`` file: one image file per line of the marker."""

    name: ClassVar[str] = "marker"
    looks_at: ClassVar[str] = FOLDER
    expected: ClassVar[str] = "a folder with toy.marker"

    def detect(self, view: PathView) -> bool:
        return (view.path / "toy.marker").is_file()

    def open(self, where: Path, *, ground_truth: Path | None, strict: bool) -> DatasetContents:
        files = tuple(where / line for line in (where / "toy.marker").read_text().split())
        return DatasetContents(labels=np.zeros(len(files), np.int64), class_names=("only",),
                               label_source="toy.marker", files=files)


@pytest.fixture
def formats(monkeypatch: pytest.MonkeyPatch) -> dict[str, DatasetFormat]:
    """A copy of the registry that a test may add to."""
    registry = dict(DATASET_FORMATS)
    monkeypatch.setattr(detect_module, "DATASET_FORMATS", registry)
    return registry


def test_builtin_formats_in_detection_order():
    assert list(DATASET_FORMATS) == ["npz", "cifar-python", "imagenet-val", "image-folder"]
    assert [get_format(n).looks_at for n in DATASET_FORMATS] == ["file", "folder", "folder", "sub-folders"]
    assert [n for n, f in DATASET_FORMATS.items() if f.takes_ground_truth] == ["imagenet-val"]
    assert expected_formats() == (
        "expected a cifar batch folder (batches.meta + test_batch), `<class>/<image>` sub-folders, "
        "a folder of images with a ground-truth file, or a .npz file"
    )
    with pytest.raises(DataError, match=r"unknown dataset format `hdf5`; known: npz, cifar-python, imagenet-val"):
        get_format("hdf5")


def test_a_file_format_is_one_class_and_one_registration(formats, tmp_path: Path):
    register_format(ToyFileFormat())
    path = tmp_path / "four.toy"
    path.write_bytes(bytes(range(7, 23)))  # 4 images of 2x2
    ds = open_dataset(path)
    assert (ds.format, ds.name, len(ds), ds.num_classes, ds.label_source) == ("toy", "four", 4, 3, "toy four.toy")
    assert ds.labels.tolist() == [7 % 3, 11 % 3, 15 % 3, 19 % 3]
    loaded = load_images(ds, resolve_data_config("raw"))
    np.testing.assert_array_equal(loaded.images[1, :, :, 0], [[11, 12], [13, 14]])
    other = tmp_path / "notes.txt"
    other.write_text("x")
    message = (r"dataset file `.*notes\.txt` is not a \.npz file or a \.toy file; "
               r"expected .*, a \.npz file, or a \.toy file$")
    with pytest.raises(DataError, match=message):
        open_dataset(other)
    with pytest.raises(DataError, match=r"but `.*four\.toy` is in the `toy` format; drop --ground-truth"):
        open_dataset(path, ground_truth=other)


def test_a_folder_format_is_asked_after_the_builtin_folder_formats(formats, tmp_path: Path):
    register_format(MarkerFolderFormat())
    root = tmp_path / "marked"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.png").write_bytes(b"a")
    (root / "toy.marker").write_text("sub/a.png\n")
    ds = open_dataset(root)  # before the sub-folder pass: not an image-folder with class `sub`
    assert (ds.format, ds.files, ds.label_source) == ("marker", (root / "sub" / "a.png",), "toy.marker")
    (root / "b.png").write_bytes(b"b")  # an image in the folder itself: imagenet-val is asked first
    with pytest.raises(DataError, match=r"no ground-truth file found for the 1 images in `.*marked`"):
        open_dataset(root)


def test_register_format_refuses_bad_formats(formats):
    with pytest.raises(ValueError, match=r"dataset format `npz` is already registered"):
        register_format(type("Npz2", (ToyFileFormat,), {"name": "npz"})())
    with pytest.raises(ValueError, match=r"dataset format `odd` looks at 'deep'; expected one of"):
        register_format(type("Odd", (ToyFileFormat,), {"name": "odd", "looks_at": "deep"})())
    with pytest.raises(ValueError, match=r"dataset format Unnamed needs a `name` and an `expected` phrase"):
        register_format(type("Unnamed", (ToyFileFormat,), {"name": ""})())
    assert list(formats) == ["npz", "cifar-python", "imagenet-val", "image-folder"]


def _imports(tree: ast.Module) -> list[tuple[str, bool]]:
    """(module imported, whether at module level) for every import in ``tree``."""
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names] if node.module == "onnxnoise" else []
            found += [(name, id(node) in top) for name in names or [node.module]]
    return found


def test_data_imports_no_upper_layer_and_only_at_module_level():
    upper = ("engine", "report", "cli", "bench", "sweep", "check")
    checked = 0
    for path in sorted(DATA_PACKAGE.glob("*.py")):
        for module, top_level in _imports(ast.parse(path.read_text())):
            if module.split(".")[0] != "onnxnoise":
                continue
            checked += 1
            assert top_level, f"{path.name}: function-local import of {module}"
            assert module.split(".")[1] not in upper, f"{path.name} imports {module}, a layer above data"
    assert checked >= 20


# ---------------------------------------------------------------- non-regular files never block


@pytest.fixture()
def no_hang():
    """Fails the test (instead of hanging the suite) when a call blocks for 10 s: SIGALRM interrupts it."""
    def blocked(signum, frame):
        raise AssertionError("blocked for 10 s on a non-regular file")
    previous = signal.signal(signal.SIGALRM, blocked)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_open_regular_refuses_fifos_devices_and_folders_at_once(tmp_path, no_hang):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # no writer: a plain open() for reading waits forever
    for path, kind in ((fifo, "a FIFO (named pipe)"), (Path(os.devnull), "a character device"),
                       (tmp_path, "a folder")):
        with pytest.raises(NotRegularFileError, match=rf"^not a regular file but {re.escape(kind)}$"):
            open_regular(path)
    (tmp_path / "ok.txt").write_text("fine")
    with open_regular(tmp_path / "ok.txt", "r", encoding="utf-8") as fh:
        assert fh.read() == "fine"
    with pytest.raises(FileNotFoundError):
        open_regular(tmp_path / "missing")


def test_fifo_as_npz_or_ground_truth_is_one_error_not_a_hang(tmp_path, no_hang):
    os.mkfifo(tmp_path / "data.npz")
    with pytest.raises(DataError, match=r"^dataset path `.*data\.npz` is not a regular file but a FIFO \(named pipe\); "
                                        r"pass a dataset folder or \.npz file$"):
        open_dataset(tmp_path / "data.npz")
    with pytest.raises(DataError, match=r"^cannot read dataset file `.*data\.npz`: not a regular file but a FIFO"):
        load_npz(tmp_path / "data.npz")
    val = tmp_path / "val"
    val.mkdir()
    Image.new("RGB", (4, 4)).save(val / "ILSVRC2012_val_00000001.JPEG")
    os.mkfifo(tmp_path / "gt.txt")
    with pytest.raises(DataError, match=r"^ground-truth file `.*gt\.txt` is not a regular file but a FIFO"):
        open_dataset(val, ground_truth=tmp_path / "gt.txt")
    with pytest.raises(DataError, match=r"^cannot read ground-truth file `.*gt\.txt`: not a regular file but a FIFO"):
        read_ground_truth(tmp_path / "gt.txt")
