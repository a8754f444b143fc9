"""Issue 9, classes 2, 3, 4 and 7: inputs that gave a wrong number with exit 0 and no word.

Every test builds its own model and data. The model (:func:`colour_model`) classifies an
image by the brightness of its red channel: class ``k`` is the nearest of 12 levels
``(10 + 20 k) / 255`` after the ``raw`` preprocessing (``x / 255``), so on solid-colour
images of those levels its clean top-1 is 100% by construction, and any relabeling,
unit mistake or shifted label shows as an exact, known number.
"""

from __future__ import annotations


import numpy as np
import onnx
import polars as pl
import pytest

from onnxnoise.bench import chance_warning
from onnxnoise.data import get_preset, list_presets, open_dataset, unit_mismatch
from onnxnoise.errors import DataError
from tests._checks import run_cli, strict_json
from tests._colour import CLASSES, colour_folder, colour_model, colour_npz

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


# ---------------------------------------------------------------- class 3: preprocessing units


def test_mean_std_in_pixel_units_with_scale_1_255_are_refused(colour_onnx, tmp_path, capsys):
    data = colour_npz(tmp_path / "d.npz")
    args = ["bench", colour_onnx, "--data", data, "--preprocess", "raw", "--mean", "128,128,128",
            "--std", "128,128,128", "--snr", "100", "--seeds", "1", "--device", "cpu", "--out", tmp_path / "run"]
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert err == ("onnxnoise: error: preprocessing units disagree: --mean 128,128,128 --std 128,128,128 are in "
                   "0..255 units but --scale 0.00392157 maps pixels to 0..1; pass `--scale 1` (or mean/std divided "
                   "by 255), or --force-preprocess to run as given\n")
    assert not (tmp_path / "run").exists()

    # Forced, it runs as given: every pixel becomes about -1, so the model predicts class 0 (1 in 12 right).
    code, out, err = run_cli(capsys, *args, "--force-preprocess", "--json")
    assert code == 0, err
    assert strict_json(out)["baseline"]["top1_acc"] == pytest.approx(100 / 12)


def test_mean_std_in_unit_range_with_scale_1_are_refused(colour_onnx, tmp_path, capsys):
    code, _, err = run_cli(capsys, "bench", colour_onnx, "--data", colour_npz(tmp_path / "d.npz"), "--preprocess", "raw",
                        "--scale", "1", "--mean", "0.5", "--std", "0.25", "--device", "cpu")
    assert code == 2
    assert err == ("onnxnoise: error: preprocessing units disagree: --mean 0.5,0.5,0.5 --std 0.25,0.25,0.25 are "
                   "in 0..1 units but --scale 1 keeps pixels in 0..255; pass `--scale 0.0039215686` (or mean/std "
                   "times 255), or --force-preprocess to run as given\n")


def test_presets_have_consistent_units():
    assert {name: unit_mismatch(get_preset(name)) for name in list_presets()} == dict.fromkeys(list_presets())


def test_preset_overriding_model_metadata_is_a_warning(tmp_path, capsys):
    raw = {"preset": "raw", "resize": None, "crop": None}
    path = tmp_path / "meta.onnx"
    onnx.save(colour_model(metadata={"onnxnoise.preprocess": raw}), str(path))
    data = colour_npz(tmp_path / "d.npz")
    out_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "bench", path, "--data", data, "--preprocess", "cifar", "--snr", "100",
                          "--seeds", "1", "--device", "cpu", "--out", out_dir, "--json")
    assert code == 0, err
    expected = ("--preprocess cifar replaces the preprocessing stored in the model's metadata (the model's metadata "
                "-> preset cifar): mean 0,0,0 -> 0.4914,0.4822,0.4465; std 1,1,1 -> 0.247,0.2435,0.2616")
    summary = strict_json(out)
    assert summary["warnings"][0] == expected
    assert strict_json((out_dir / "bench.json").read_text())["warnings"][0] == expected
    assert "WARNING: " + expected in " ".join(err.split())

    # The model's own preprocessing, or a preset equal to it: no warning.
    code, out, err = run_cli(capsys, "bench", path, "--data", data, "--snr", "100", "--seeds", "1",
                          "--device", "cpu", "--out", tmp_path / "run2", "--json")
    assert code == 0, err
    summary = strict_json(out)
    assert summary["warnings"] == [] and summary["preprocess_source"] == "model metadata"
    assert summary["baseline"]["top1_acc"] == 100.0
    code, out, _ = run_cli(capsys, "bench", path, "--data", data, "--preprocess", "raw", "--snr", "100",
                        "--seeds", "1", "--device", "cpu", "--out", tmp_path / "run3", "--json")
    assert code == 0 and strict_json(out)["warnings"] == []


# ---------------------------------------------------------------- class 4: a baseline that cannot be right


def test_baseline_at_chance_is_a_prominent_warning(colour_onnx, tmp_path, capsys):
    data = colour_npz(tmp_path / "shifted.npz", shift=1)  # every label one class off: exactly 0%
    out_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "bench", colour_onnx, "--data", data, "--preprocess", "raw", "--snr", "100",
                          "--seeds", "1", "--device", "cpu", "--out", out_dir, "--json")
    assert code == 0, err
    expected = ("clean top-1 0.00% (0/60 images, 95% interval 0.00-6.02%) is at or below chance (1/12 classes = "
                "8.33%): the preprocessing, the labels or the dataset layout are probably wrong")
    summary = strict_json(out)
    assert summary["baseline"]["top1_acc"] == 0.0
    assert summary["warnings"] == [expected]
    assert strict_json((out_dir / "bench.json").read_text())["warnings"] == [expected]
    assert "WARNING: " + expected in " ".join(err.split())


def test_chance_warning_uses_the_binomial_interval():
    assert chance_warning(0, 60, 12).startswith("clean top-1 0.00% ")
    # 9/60 = 15% is above 1/12 = 8.33%, but its 95% Wilson interval (8.1-26.1%) reaches chance.
    assert "is within the 95% interval of chance" in chance_warning(9, 60, 12)
    assert chance_warning(12, 60, 12) is None  # 20%, interval 11.8-31.8%
    assert chance_warning(60, 60, 12) is None
    assert chance_warning(0, 10, 1) is None  # one class: no chance level to compare with


def test_expect_top1_outside_tolerance_exits_1_before_noisy_trials(colour_onnx, tmp_path, capsys):
    root = colour_folder(tmp_path / "v2", {str(k): k for k in range(CLASSES)})
    out_dir = tmp_path / "run"
    args = ["bench", colour_onnx, "--data", root, "--preprocess", "raw", "--snr", "100,10", "--seeds", "2",
            "--device", "cpu", "--out", out_dir]
    code, out, err = run_cli(capsys, *args, "--expect-top1", "99", "--tolerance", "0.5")
    assert code == 1
    assert err.splitlines()[-1] == ("onnxnoise: error: clean top-1 100.00% is outside the expected 99% ± 0.5 "
                                    "(--expect-top1 99 --tolerance 0.5); no noisy trial was run")
    trials = pl.read_parquet(out_dir / "trials.parquet")
    assert trials["mode"].to_list() == ["baseline"]  # no noisy trial ran
    assert not (out_dir / "bench.json").exists()

    code, out, err = run_cli(capsys, *args, "--expect-top1", "99.6", "--json")  # default tolerance 0.5 points
    assert code == 0, err
    assert pl.read_parquet(out_dir / "trials.parquet")["mode"].to_list() == ["baseline"] + ["all"] * 4
    assert strict_json(out)["baseline"]["top1_acc"] == 100.0


def test_expect_top1_bad_value_is_bad_input(colour_onnx, tmp_path, capsys):
    code, _, err = run_cli(capsys, "bench", colour_onnx, "--data", colour_npz(tmp_path / "d.npz"), "--preprocess", "raw",
                        "--expect-top1", "120", "--device", "cpu")
    assert code == 2
    assert err == "onnxnoise: error: `expect_top1` must be a percentage from 0 to 100, got 120.0\n"


# ---------------------------------------------------------------- class 7: strict JSON


def test_zero_baseline_writes_null_not_nan(colour_onnx, tmp_path, capsys):
    data = colour_npz(tmp_path / "shifted.npz", shift=1)
    out_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "bench", colour_onnx, "--data", data, "--preprocess", "raw", "--snr", "100,1",
                          "--seeds", "2", "--device", "cpu", "--out", out_dir, "--json")
    assert code == 0, err
    for text in (out, (out_dir / "bench.json").read_text()):
        assert "NaN" not in text and "Infinity" not in text
        summary = strict_json(text)
        rows = {(r["mode"], r["strength"]): r for r in summary["results"]}
        assert rows[("baseline", None)]["top1_acc_mean"] == 0.0
        # a / a0 with a0 = 0 is undefined: null, never a bare NaN token.
        assert rows[("all", 100.0)]["top1_norm_mean"] is None
        assert rows[("all", 1.0)]["top1_norm_mean"] is None

    code, out, _ = run_cli(capsys, "layers", colour_onnx, "--json")
    assert code == 0 and strict_json(out)["total_layers"] == 1


def test_json_text_nulls_every_non_finite_number():
    from onnxnoise.cli import json_text

    payload = {"a": float("nan"), "b": [1.5, float("inf"), {"c": np.float32("-inf"), "d": np.float64("nan")}],
               "e": (np.int64(3), np.float32(0.5)), "f": None}
    assert strict_json(json_text(payload)) == {"a": None, "b": [1.5, None, {"c": None, "d": None}],
                                                "e": [3, 0.5], "f": None}
    assert strict_json(json_text(payload, indent=2)) == strict_json(json_text(payload))
