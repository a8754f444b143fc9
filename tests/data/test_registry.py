"""Datasets by name: `onnxnoise data add|list|remove`, and `bench`/`sweep` without --data picking the
registered dataset whose class count matches the model's outputs (or saying how to register one)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PIL import Image

from onnxnoise.data.registry import load_registry, register_dataset, registry_path, resolve_data
from onnxnoise.errors import DataError

from tests._builders import tiny_cnn
from tests._checks import one_line, run_cli, strict_json
from tests._disk import fill_disk, leftovers

#: The first three ImageNet-1k wnids: labels 0, 1, 2 in the 1000-class index.
WNIDS = ("n01440764", "n01443537", "n01484850")


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch) -> Path:
    """A private registry for every test, and the working folder in tmp (bench writes reports/ there)."""
    folder = tmp_path / "config"
    monkeypatch.setenv("ONNXNOISE_CONFIG_DIR", str(folder))
    monkeypatch.chdir(tmp_path)
    return folder


def _model(path: Path, outputs: int, favourite: int) -> Path:
    """A random-weight tiny CNN (224x224 input) with ``outputs`` scores; output ``favourite`` always wins."""
    model = tiny_cnn(num_classes=outputs, size=224)
    bias = next(t for t in model.graph.initializer if t.name == "fc.bias")
    values = numpy_helper.to_array(bias).copy()
    values[favourite] = 100.0
    bias.CopyFrom(numpy_helper.from_array(values, "fc.bias"))
    onnx.save(model, str(path))
    return path


@pytest.fixture()
def imagenet_like(tmp_path) -> Path:
    """A tiny ImageNet-style val folder: 3 wnid class folders (sparse in the 1000 classes), 2 images each."""
    root = tmp_path / "tiny-imagenet" / "val"
    rng = np.random.default_rng(0)
    for wnid in WNIDS:
        (root / wnid).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / wnid / f"{i}.png")
    return root


def _npz(path: Path, classes: int, n: int = 20) -> Path:
    rng = np.random.default_rng(classes)
    np.savez(path, images=rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8),
             labels=np.arange(n, dtype=np.int64) % classes)
    return path


def test_bench_without_data_uses_the_registered_imagenet(imagenet_like, tmp_path, capsys):
    model = _model(tmp_path / "vgg16.onnx", 1000, favourite=1)  # always predicts class 1 (n01443537)
    code, out, err = run_cli(capsys, "data", "add", "imagenet", imagenet_like)
    assert code == 0, err
    assert out.split() == ["registered", "`imagenet`:", f"{imagenet_like}", "(image-folder,", "1000", "classes,", "6",
                           "images)"]
    code, out, err = run_cli(capsys, "bench", model, "--snr", "5", "--json")
    assert code == 0, err
    assert (f"onnxnoise: no --data given: using registered dataset `imagenet` ({imagenet_like}, 1000 classes, 6 "
            "images) for the 1000 outputs of vgg16.onnx") in err.splitlines()
    summary = json.loads(out)
    assert summary["dataset_path"] == str(imagenet_like)
    assert (summary["images"], summary["dataset_classes"], summary["label_offset"]) == (6, 1000, 0)
    assert summary["baseline"]["top1_acc"] == pytest.approx(100 / 3)  # the 2 images of class 1 of 6
    assert Path("reports").is_dir()


def test_check_without_data_names_the_dataset_in_its_recheck_command(imagenet_like, tmp_path, capsys):
    model = _model(tmp_path / "vgg16.onnx", 1000, favourite=1)
    register_dataset("imagenet", imagenet_like)
    code, _, err = run_cli(capsys, "check", model, "--snr", "5", "--max-drop", "50", "--out", tmp_path / "c")
    assert code in (0, 1, 3), err
    command = json.loads((tmp_path / "c" / "check.json").read_text())["recheck_command"]
    assert f"--data {imagenet_like}" in command  # the path used, not whatever the registry holds later


def test_bench_1001_outputs_uses_imagenet_with_label_offset_1(imagenet_like, tmp_path, capsys):
    model = _model(tmp_path / "tf_slim.onnx", 1001, favourite=2)  # output 2 = class 1 after the background class
    register_dataset("imagenet", imagenet_like)
    code, out, err = run_cli(capsys, "bench", model, "--snr", "5", "--seeds", "1", "--json")
    assert code == 0, err
    assert "using registered dataset `imagenet`" in err and "for the 1001 outputs of tf_slim.onnx" in err
    summary = json.loads(out)
    assert summary["label_offset"] == 1
    assert summary["baseline"]["top1_acc"] == pytest.approx(100 / 3)


def test_bench_without_data_and_nothing_registered_says_how(tmp_path, capsys):
    model = _model(tmp_path / "vgg16.onnx", 1000, favourite=1)
    code, out, err = run_cli(capsys, "bench", model, "--snr", "5")
    assert code == 2
    assert err.splitlines() == [
        "onnxnoise: error: no --data given and no registered dataset has 1000 classes for the 1000 outputs of "
        "vgg16.onnx; register an ImageNet val folder with `onnxnoise data add imagenet /path/to/val` or download "
        "Imagenette (10 ImageNet classes) with `onnxnoise data get imagenette`, or pass --data PATH"]
    cifar = _model(tmp_path / "resnet20.onnx", 10, favourite=0)
    code, _, err = run_cli(capsys, "bench", cifar, "--snr", "5")
    assert code == 2 and len(err.splitlines()) == 1
    assert "no registered dataset has 10 classes" in err and "`onnxnoise data get cifar10`" in err


def test_data_name_and_sweep_without_data(imagenet_like, tmp_path, capsys):
    model = _model(tmp_path / "m.onnx", 1000, favourite=0)
    register_dataset("imagenet", imagenet_like)
    code, out, err = run_cli(capsys, "bench", model, "--data", "imagenet", "--snr", "5", "--seeds", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["dataset_path"] == str(imagenet_like)
    assert f"onnxnoise: --data imagenet: registered dataset `imagenet` ({imagenet_like}, 1000 classes)" in err
    code, out, err = run_cli(capsys, "sweep", model, "--snr", "5", "--seeds", "1", "--out", tmp_path / "run")
    assert code == 0, err
    assert "using registered dataset `imagenet`" in err and "2 trials planned: 0 already done, 2 run now" in out
    code, _, err = run_cli(capsys, "bench", model, "--data", "cifar10", "--snr", "5")
    assert code == 2 and err.splitlines() == [
        "onnxnoise: error: --data `cifar10` does not exist as a path and is not a registered dataset name "
        "(registered: imagenet); pass a dataset path, or download it with `onnxnoise data get cifar10` or register "
        "a folder with `onnxnoise data add cifar10 /path/to/cifar-10-batches-py`"]


def test_resolution_prefers_the_conventional_name_then_any_matching_class_count(tmp_path):
    model10 = _model(tmp_path / "m10.onnx", 10, favourite=0)
    model7 = _model(tmp_path / "m7.onnx", 7, favourite=0)
    register_dataset("another10", _npz(tmp_path / "a.npz", 10))
    register_dataset("seven", _npz(tmp_path / "s.npz", 7))
    assert resolve_data(None, model10).name == "another10"  # no `cifar10`: any 10-class dataset
    register_dataset("cifar10", _npz(tmp_path / "c.npz", 10))
    choice = resolve_data(None, model10)
    assert (choice.name, choice.path) == ("cifar10", (tmp_path / "c.npz").resolve())
    assert resolve_data(None, model7).name == "seven"
    # A folder here spelled like a registered name is ambiguous (see the test below); a path is returned as given.
    (tmp_path / "cifar10").mkdir()
    with pytest.raises(DataError, match="--data cifar10 is ambiguous"):
        resolve_data("cifar10", model10)
    assert resolve_data("./cifar10", model10).name is None
    assert resolve_data(tmp_path / "x.npz", model10).path == tmp_path / "x.npz"


def _images_npz(path: Path, channels: int, size: int, n: int = 20) -> Path:
    """``n`` images of ``size`` x ``size`` (gray stored as (N, H, W)), 10 classes."""
    shape = (n, size, size) if channels == 1 else (n, size, size, channels)
    np.savez(path, images=np.random.default_rng(size).integers(0, 256, shape, dtype=np.uint8),
             labels=np.arange(n, dtype=np.int64) % 10)
    return path


def test_without_data_the_dataset_whose_images_fit_the_input_wins_over_the_conventional_name(tmp_path, capsys):
    """fresh22 finding 3: with `cifar10` (3x32x32) and a Fashion-MNIST-like set (1x28x28) registered, a 1x28x28
    10-class model gets the one that fits, not CIFAR-10 by its class count; the note says what it was chosen over."""
    model = tmp_path / "gray28.onnx"
    onnx.save(tiny_cnn(channels=1, size=28), str(model))
    register_dataset("cifar10", _images_npz(tmp_path / "c.npz", 3, 32))
    register_dataset("fmnist", _images_npz(tmp_path / "f.npz", 1, 28))
    choice = resolve_data(None, model)
    assert (choice.name, choice.path) == ("fmnist", (tmp_path / "f.npz").resolve())
    assert choice.note == (f"no --data given: using registered dataset `fmnist` ({(tmp_path / 'f.npz').resolve()}, "
                           "10 classes, 20 images) for the 10 outputs of gray28.onnx; chosen over `cifar10` "
                           "(3x32x32) for its 1x28x28 input")
    # An RGB 224x224 model: both fit in channels or size by one point; the conventional name breaks the tie.
    rgb = _model(tmp_path / "rgb224.onnx", 10, favourite=0)
    assert resolve_data(None, rgb).name == "cifar10"
    code, out, err = run_cli(capsys, "bench", model, "--preprocess", "mnist", "--snr", "5", "--seeds", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["dataset_path"] == str((tmp_path / "f.npz").resolve())


def test_without_data_several_fitting_equally_or_none_fitting_is_one_line_naming_them(tmp_path, capsys):
    model = tmp_path / "gray28.onnx"
    onnx.save(tiny_cnn(channels=1, size=28), str(model))
    register_dataset("cifar10", _images_npz(tmp_path / "c.npz", 3, 32))
    code, _, err = run_cli(capsys, "bench", model, "--snr", "5")
    assert code == 2 and err.splitlines() == [
        "onnxnoise: error: no --data given and no registered 10-class dataset fits the 1x28x28 input of "
        "gray28.onnx: `cifar10` (3x32x32); pass --data NAME to use one anyway (with --crop and --resize), or "
        "--data PATH for a dataset that fits"]
    register_dataset("mnist", _images_npz(tmp_path / "m.npz", 1, 28))
    register_dataset("fmnist", _images_npz(tmp_path / "f.npz", 1, 28))
    with pytest.raises(DataError) as info:
        resolve_data(None, model)
    assert str(info.value) == ("no --data given and 2 registered 10-class datasets fit the 1x28x28 input of "
                               "gray28.onnx equally: `fmnist` (1x28x28), `mnist` (1x28x28); pass --data NAME "
                               "(e.g. --data fmnist)")
    assert resolve_data("mnist", model).path == (tmp_path / "m.npz").resolve()  # --data NAME settles it


def test_registered_folder_that_vanished_is_one_line(imagenet_like, tmp_path, capsys):
    model = _model(tmp_path / "m.onnx", 1000, favourite=0)
    register_dataset("imagenet", imagenet_like)
    shutil.rmtree(imagenet_like)
    code, _, err = run_cli(capsys, "bench", model, "--snr", "5")
    assert code == 2 and err.splitlines() == [
        f"onnxnoise: error: registered dataset `imagenet` points to `{imagenet_like}`, which no longer exists; "
        "register it again with `onnxnoise data add imagenet PATH` or drop it with `onnxnoise data remove imagenet`"]


def test_data_list_add_remove(imagenet_like, tmp_path, config_dir, capsys):
    code, out, _ = run_cli(capsys, "data", "list", "--json")
    assert code == 0
    listing = json.loads(out)
    assert listing["datasets"] == [] and listing["registry"] == str(config_dir / "datasets.json")
    assert [d["name"] for d in listing["downloadable"]] == ["cifar10", "cifar100", "imagenette"]
    assert run_cli(capsys, "data", "add", "imagenet", imagenet_like)[0] == 0
    assert run_cli(capsys, "data", "add", "cifar10", _npz(tmp_path / "c.npz", 10, n=30))[0] == 0
    code, out, _ = run_cli(capsys, "data", "list", "--json")
    rows = {d["name"]: d for d in json.loads(out)["datasets"]}
    assert sorted(rows) == ["cifar10", "imagenet"]
    assert {k: rows["cifar10"][k] for k in ("path", "num_classes", "images", "format", "source", "exists")} == {
        "path": str((tmp_path / "c.npz").resolve()), "num_classes": 10, "images": 30, "format": "npz",
        "source": "added", "exists": True}
    assert (rows["imagenet"]["num_classes"], rows["imagenet"]["images"]) == (1000, 6)
    code, out, _ = run_cli(capsys, "data", "list")
    assert code == 0
    text = " ".join(out.split())
    assert "cifar10" in text and "imagenet" in text and "1000 │ 6" in text and "10 │ 30" in text
    assert "`onnxnoise data get cifar100`" in text and "`onnxnoise data get imagenette`" in text
    assert "`onnxnoise data get cifar10`" not in text  # registered already
    code, out, _ = run_cli(capsys, "data", "remove", "cifar10")
    assert code == 0 and sorted(load_registry()) == ["imagenet"]
    assert (tmp_path / "c.npz").exists()  # files untouched
    code, _, err = run_cli(capsys, "data", "remove", "cifar10")
    assert code == 2 and err.splitlines() == [
        "onnxnoise: error: no dataset named `cifar10` is registered; `onnxnoise data list` shows the names"]


def test_add_of_a_non_dataset_folder_or_bad_name_is_one_line(tmp_path, capsys):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("hello")
    code, _, err = run_cli(capsys, "data", "add", "junk", junk)
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"onnxnoise: error: cannot register `junk`: cannot tell the "
                                                   f"dataset format of `{junk}`")
    code, _, err = run_cli(capsys, "data", "add", "Image Net", junk)
    assert code == 2 and err.splitlines() == [
        "onnxnoise: error: dataset name 'Image Net' is not valid; use lowercase letters, digits, `.`, `_` or `-` "
        "(e.g. imagenet, cifar10)"]
    code, _, err = run_cli(capsys, "data", "add", "nothing", tmp_path / "absent")
    assert code == 2 and "does not exist" in err and len(err.splitlines()) == 1
    assert load_registry() == {}


def test_corrupt_registry_is_one_line(config_dir, capsys):
    config_dir.mkdir()
    (config_dir / "datasets.json").write_text("{not json")
    code, _, err = run_cli(capsys, "data", "list")
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"onnxnoise: error: cannot read the dataset registry `{config_dir / 'datasets.json'}`")
    with pytest.raises(DataError, match="fix or delete the file"):
        load_registry()


def test_add_never_silently_replaces_a_name(tmp_path, capsys):
    first = _npz(tmp_path / "a.npz", 10, n=30)
    other = _npz(tmp_path / "b.npz", 100, n=200)
    assert run_cli(capsys, "data", "add", "cifar10", first)[0] == 0
    assert run_cli(capsys, "data", "add", "cifar10", first)[0] == 0  # the same path again: refreshed
    code, _, err = run_cli(capsys, "data", "add", "cifar10", other)
    assert code == 2 and err.splitlines() == [
        f"onnxnoise: error: `cifar10` is already registered for {first.resolve()} (10 classes); "
        "`onnxnoise data add --replace cifar10 PATH` replaces it, or choose another name"]
    assert load_registry()["cifar10"].num_classes == 10
    assert run_cli(capsys, "data", "add", "--replace", "cifar10", other)[0] == 0
    assert load_registry()["cifar10"].num_classes == 100


_ADD_WHEN_GO = """
import sys, time
from pathlib import Path
from onnxnoise.data.registry import register_dataset  # what `onnxnoise data add` calls
go = Path(sys.argv[1])
while not go.exists():  # every process imported and waiting: the adds overlap
    time.sleep(0.005)
register_dataset(sys.argv[2], sys.argv[3])
"""


def test_concurrent_adds_keep_every_entry(tmp_path, config_dir):
    """8 `data add` at once (``register_dataset`` in 8 processes), 3 rounds: all 8 entries every round.

    Without the lock around the registry's read-modify-write, about one round in three lost entries.
    """
    data = _npz(tmp_path / "d.npz", 10, n=10)
    root = Path(__file__).resolve().parents[2]
    for round_ in range(3):
        go = tmp_path / f"go-{round_}"
        names = [f"set{round_}-{i}" for i in range(8)]
        procs = [subprocess.Popen([sys.executable, "-c", _ADD_WHEN_GO, str(go), name, str(data)], cwd=root,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for name in names]
        time.sleep(1.0)
        go.touch()
        results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
        for p in procs:
            p.stderr.close()
        assert results == [(0, "")] * 8
        registered = load_registry()
        assert set(names) <= set(registered) and len(registered) == 8 * (round_ + 1)
    assert sorted(p.name for p in config_dir.iterdir()) == ["datasets.json", "datasets.json.lock"]


def test_full_disk_while_registering_keeps_the_registry_and_says_so(tmp_path, config_dir, monkeypatch, capsys):
    first = _npz(tmp_path / "a.npz", 10, n=30)
    assert run_cli(capsys, "data", "add", "cifar10", first)[0] == 0
    before = (config_dir / "datasets.json").read_bytes()
    fill_disk(monkeypatch, "datasets.json")
    code, _, err = run_cli(capsys, "data", "add", "other", first)
    assert code == 2 and err == (f"onnxnoise: error: No space left on device: {config_dir / 'datasets.json'} (the "
                                 "dataset registry is as it was; fix it and run the same command again)\n")
    assert (config_dir / "datasets.json").read_bytes() == before and leftovers(config_dir) == []


def test_a_folder_here_shadowing_a_registered_name_is_refused_as_ambiguous(tmp_path, capsys):
    model = _model(tmp_path / "m.onnx", 10, favourite=0)
    (tmp_path / "elsewhere").mkdir()
    registered = _npz(tmp_path / "elsewhere" / "digits.npz", 10)
    register_dataset("digits", registered)
    here = tmp_path / "digits"  # the working folder is tmp_path (autouse fixture)
    here.mkdir()
    _npz(here / "d.npz", 10, n=30)
    expected = (f"--data digits is ambiguous: `digits` in the current directory ({here}) and the registered dataset "
                f"`digits` ({registered}); pass ./digits for the one here, or {registered} for the registered one")
    with pytest.raises(DataError) as info:
        resolve_data("digits", model)
    assert str(info.value) == expected
    code, _, err = run_cli(capsys, "bench", model, "--data", "digits", "--snr", "5", "--seeds", "1")
    assert code == 2 and err.splitlines() == [f"onnxnoise: error: {expected}"]
    assert resolve_data("./digits", model).path == Path("./digits")  # each spelling chooses one
    assert resolve_data(str(registered), model).path == registered
    shutil.rmtree(here)
    assert resolve_data("digits", model).path == registered
    # A file here registered under its own name: the name and the file are one dataset, not ambiguous.
    register_dataset("same.npz", _npz(tmp_path / "same.npz", 10))
    assert resolve_data("same.npz", model).path == tmp_path / "same.npz"
    # A symlink here to the registered file, named without its suffix: the registered dataset (the symlink's name
    # made it "not a .npz file"): the same numbers as the file itself.
    (tmp_path / "fav").symlink_to(tmp_path / "same.npz")
    register_dataset("fav", tmp_path / "same.npz")
    choice = resolve_data("fav", model)
    assert (choice.path, choice.name) == (tmp_path / "same.npz", "fav")
    runs = []
    for data in ("fav", tmp_path / "same.npz"):
        code, out, err = run_cli(capsys, "bench", model, "--data", data, "--snr", "5", "--seeds", "1", "--json")
        assert code == 0, err
        runs.append(strict_json(out)["baseline"])
    assert runs[0] == runs[1]


def test_a_deeply_nested_registry_is_one_line_exit_2(config_dir, capsys):
    config_dir.mkdir(parents=True, exist_ok=True)
    registry_path().write_text('{"version": ' + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8")
    code, _, err = run_cli(capsys, "data", "list")
    assert code == 2
    assert one_line(err) == (f"onnxnoise: error: cannot read the dataset registry `{registry_path()}` (the JSON text "
                             "nests arrays or objects more than 64 levels deep); fix or delete the file")


def test_a_registry_that_is_a_symlink_is_written_and_locked_where_it_points(tmp_path, config_dir):
    kept = tmp_path / "dotfiles" / "datasets.json"
    kept.parent.mkdir()
    config_dir.mkdir()
    (config_dir / "datasets.json").symlink_to(kept)  # dangling: the dotfiles registry does not exist yet
    register_dataset("first", _npz(tmp_path / "a.npz", 10))
    register_dataset("second", _npz(tmp_path / "b.npz", 100))
    assert (config_dir / "datasets.json").is_symlink()
    assert sorted(json.loads(kept.read_text())["datasets"]) == ["first", "second"]
    assert sorted(p.name for p in kept.parent.iterdir()) == ["datasets.json", "datasets.json.lock"]
    assert sorted(load_registry()) == ["first", "second"]


def test_a_lock_path_planted_as_a_symlink_creates_nothing_where_it_points(tmp_path, config_dir, capsys):
    config_dir.mkdir()
    (config_dir / "datasets.json.lock").symlink_to(tmp_path / "elsewhere")
    code, _, err = run_cli(capsys, "data", "add", "x", str(_npz(tmp_path / "a.npz", 10)))
    assert code == 2 and one_line(err).endswith("(the dataset registry is as it was; fix it and run the same "
                                                "command again)")
    assert not (tmp_path / "elsewhere").exists() and not (config_dir / "datasets.json").exists()


def test_data_add_counts_the_images_a_run_reads_and_names_the_special_files(tmp_path, capsys, monkeypatch):
    """2 classes x 3 PNGs, plus a FIFO and a socket named like images: bench skips both unread, so the
    registered count is 6, not 8, and a WARNING line names what was left out."""
    root = tmp_path / "ds"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (4, 4), (i, 0, 0)).save(root / cls / f"{i}.png")
    os.mkfifo(root / "a" / "pipe.png")
    server = socket.socket(socket.AF_UNIX)
    monkeypatch.chdir(root / "b")
    server.bind("sock.jpg")  # relative: a socket path is limited to 108 bytes
    try:
        code, out, err = run_cli(capsys, "data", "add", "ds", root)
    finally:
        server.close()
    assert code == 0, err
    assert " ".join(out.split()) == (
        f"WARNING: 2 file(s) with an image name are not images a run can read and are not counted, e.g. "
        f"`{root / 'a' / 'pipe.png'}` (a FIFO (named pipe)) registered `ds`: {root} (image-folder, 2 classes, "
        "6 images)")
    assert load_registry()["ds"].images == 6
