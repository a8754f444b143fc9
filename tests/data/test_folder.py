"""data/folder.py: class folders named by whole numbers (ImageNetV2 ``0``..``999``) are labelled by their
number, also in a subset; whole numbers mixed with other names, or two folders of one number, are refused.

Images are the colour classifier's (:mod:`tests._colour`), whose clean top-1 is 100% by construction.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from onnxnoise.data import open_dataset
from onnxnoise.errors import DataError

from tests._checks import run_cli, strict_json
from tests._colour import CLASSES, colour_folder

REPO = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------- class 2: integer class folders


def test_integer_class_folders_are_labelled_by_their_number(colour_onnx, tmp_path, capsys):
    root = colour_folder(tmp_path / "v2", {str(k): k for k in range(CLASSES)})
    ds = open_dataset(root)
    # String order would give `10` -> 2 and `2` -> 4; the number is the label.
    by_folder = {path.parent.name: int(label) for path, label in zip(ds.files, ds.labels)}
    assert by_folder == {str(k): k for k in range(CLASSES)}
    assert ds.num_classes == CLASSES and ds.label_source == "class-number folders (folder `7` = class 7)"

    code, out, err = run_cli(capsys, "bench", colour_onnx, "--data", root, "--preprocess", "raw", "--snr", "1000",
                          "--seeds", "1", "--device", "cpu", "--out", tmp_path / "run", "--json")
    assert code == 0, err
    summary = strict_json(out)
    assert summary["baseline"]["top1_acc"] == 100.0
    assert summary["warnings"] == []


def test_integer_class_folders_subset_keeps_their_numbers(tmp_path):
    root = colour_folder(tmp_path / "sub", {"3": 3, "11": 11})
    ds = open_dataset(root)
    assert sorted(set(ds.labels.tolist())) == [3, 11]
    assert ds.num_classes == 12 and ds.class_names[3] == "3" and ds.class_names[11] == "11"


def test_integer_and_other_folder_names_are_refused(tmp_path):
    root = colour_folder(tmp_path / "mixed", {"0": 0, "1": 1, "10": 10, "2": 2, "cat": 3})
    with pytest.raises(DataError) as info:
        open_dataset(root)
    assert str(info.value) == (
        f"class folders in `{root}` mix whole-number names (`0`, `1`, `10` and 1 more) and other names (`cat`); "
        "number folders are class indices and other names are indexed in sorted order, so name every class "
        "folder by its class index or none of them")


def test_two_folders_of_one_class_number_are_refused(tmp_path):
    root = colour_folder(tmp_path / "dup", {"7": 7, "07": 7})
    with pytest.raises(DataError, match=r"class folders `.*07` and `.*7` both name class 7"):
        open_dataset(root)


# ---------------------------------------------------------------- special files in class folders


def test_fifo_in_a_class_folder_is_skipped_and_named_and_the_run_finishes(colour_onnx, tmp_path):
    """A FIFO named like an image: opening it for reading would wait for a writer forever."""
    root = colour_folder(tmp_path / "ds", {str(k): k for k in range(CLASSES)})
    fifo = root / "3" / "pipe.png"
    os.mkfifo(fifo)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "onnxnoise.cli", "bench", str(colour_onnx), "--data", str(root),
                           "--preprocess", "raw", "--snr", "1000", "--seeds", "1", "--device", "cpu",
                           "--no-cache", "--out", str(tmp_path / "run"), "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 120
    summary = strict_json(proc.stdout)
    assert (summary["images"], summary["skipped_images"]) == (2 * CLASSES, 1)
    assert summary["baseline"]["top1_acc"] == 100.0  # the 24 real images, all right
    warning = (f"1 image file(s) could not be read and are left out of every count, e.g. `{fifo}` "
               "(NotRegularFileError: not a regular file but a FIFO (named pipe)); remove or replace them, or pass "
               "--strict to stop at the first one")
    assert summary["warnings"] == [warning]


# ---------------------------------------------------------------- class 3: preprocessing units


# ---------------------------------------------------------------- class 4: a baseline that cannot be right


# ---------------------------------------------------------------- class 7: strict JSON




@pytest.mark.skipif(os.name == "nt", reason="POSIX symbolic links")
def test_a_symlink_loop_in_a_class_folder_lists_each_image_once(colour_onnx, tmp_path, capsys):
    root = colour_folder(tmp_path / "loop", {str(k): k for k in range(CLASSES)})
    (root / "3" / "again").symlink_to(root / "3")  # 3/again/again/... up to the kernel's 40 links
    (root / "5" / "up").symlink_to(root)  # the whole dataset again, under class 5
    outside = colour_folder(tmp_path / "elsewhere", {"7": 7})
    (root / "7" / "more").symlink_to(outside / "7")  # a link to another folder is still followed, once
    ds = open_dataset(root)
    assert len(ds) == 2 * CLASSES + 2 and sorted(ds.labels.tolist()) == sorted([*range(CLASSES)] * 2 + [7, 7])
    code, out, err = run_cli(capsys, "bench", colour_onnx, "--data", root, "--preprocess", "raw", "--snr", "1000",
                             "--seeds", "1", "--device", "cpu", "--out", tmp_path / "run", "--json")
    assert code == 0, err
    summary = strict_json(out)
    assert summary["images"] == 2 * CLASSES + 2 and summary["baseline"]["top1_acc"] == 100.0


def test_a_class_folder_1200_levels_deep_is_listed_without_recursion_error(colour_onnx, tmp_path, capsys):
    root = colour_folder(tmp_path / "deep", {str(k): k for k in range(CLASSES)})
    bottom = root / "6"
    for _ in range(1200):  # os.walk (Python 3.11) recursed once per level
        bottom = bottom / "d"
        bottom.mkdir()
    (root / "6" / "0.png").rename(bottom / "0.png")
    try:
        ds = open_dataset(root)
        assert len(ds) == 2 * CLASSES and ds.files.count(bottom / "0.png") == 1
        code, out, err = run_cli(capsys, "bench", colour_onnx, "--data", root, "--preprocess", "raw", "--snr",
                                 "1000", "--seeds", "1", "--device", "cpu", "--out", tmp_path / "run", "--json")
        assert code == 0, err
        assert strict_json(out)["baseline"]["top1_acc"] == 100.0
    finally:  # bottom up: shutil.rmtree (pytest's clean-up of old tmp folders) recurses once per level too
        (bottom / "0.png").unlink()
        while bottom != root / "6":
            bottom.rmdir()
            bottom = bottom.parent
