"""data/config.py and data/decode.py: presets, config merging, torchvision geometry, decoding, normalization;
mean/std in the wrong units refused, presets overriding model metadata warned about, ``--layout``
against the model's input shape."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from onnxnoise.data import (
    DataConfig,
    PREPROCESS_KEYS,
    PRESETS,
    convert_channels,
    decode_image,
    get_preset,
    layout_conflict,
    list_presets,
    normalize,
    resolve_data_config,
    transform_array,
    unit_mismatch,
)
from onnxnoise.errors import DataError

from tests._checks import one_line, run_cli, strict_json
from tests._colour import colour_model, colour_npz

# ---------------------------------------------------------------- presets and merging


def test_presets_sorted_and_valid():
    names = list_presets()
    assert names == sorted(names)
    assert {"torchvision", "cifar", "tf", "tf-lite", "caffe", "raw", "mnist"} <= set(names)
    for name in names:
        cfg = get_preset(name)
        assert cfg.preset == name
        assert len(cfg.mean) == len(cfg.std) == cfg.channels
        assert DataConfig(**cfg.to_dict()) == cfg  # to_dict round-trips


def test_preset_values():
    tv = PRESETS["torchvision"]
    assert (tv.resize, tv.crop, tv.interpolation, tv.channel_order) == (256, 224, "bilinear", "RGB")
    assert tv.scale == pytest.approx(1 / 255)
    assert tv.mean == (0.485, 0.456, 0.406) and tv.std == (0.229, 0.224, 0.225)
    cifar = PRESETS["cifar"]
    assert cifar.resize is None and cifar.crop is None
    assert cifar.mean == (0.4914, 0.4822, 0.4465) and cifar.std == (0.2470, 0.2435, 0.2616)
    caffe = PRESETS["caffe"]
    assert (caffe.channel_order, caffe.crop, caffe.scale, caffe.mean, caffe.std) == (
        "BGR", 227, 1.0, (104.0, 117.0, 123.0), (1.0, 1.0, 1.0)
    )
    assert PRESETS["tf"].mean == (127.5,) * 3 and PRESETS["tf"].std == (127.5,) * 3
    assert PRESETS["tf-lite"].mean == (127.0,) * 3 and PRESETS["tf-lite"].std == (128.0,) * 3
    assert PRESETS["mnist"].channels == 1 and PRESETS["mnist"].mean == (0.5,)


def test_get_preset_unknown_lists_names():
    with pytest.raises(DataError, match=r"unknown preprocessing preset `imagenet`; choose one of caffe, cifar"):
        get_preset("imagenet")


def test_resolve_precedence():
    assert resolve_data_config() == PRESETS["torchvision"]
    cfg = resolve_data_config(
        "torchvision",
        model_defaults={"preset": "cifar", "crop": 200, "mean": [0.5, 0.5, 0.5]},
        crop=None,  # None overrides are ignored
        std=(0.25, 0.25, 0.25),
    )
    assert cfg.preset == "torchvision"  # the explicit preset wins over the model's
    assert (cfg.resize, cfg.crop) == (256, 200)
    assert cfg.mean == (0.5, 0.5, 0.5) and cfg.std == (0.25, 0.25, 0.25)
    cfg = resolve_data_config(model_defaults={"preset": "cifar", "layout": "NHWC"}, layout="NCHW")
    assert cfg.preset == "cifar" and cfg.layout == "NCHW" and cfg.resize is None


def test_crop_pct_replaces_lower_resize():
    cfg = resolve_data_config("torchvision", crop_pct=0.95)
    assert cfg.resize == math.floor(224 / 0.95) == 235
    cfg = resolve_data_config("torchvision", model_defaults={"crop_pct": 0.875, "crop": 288})
    assert cfg.resize == 329
    cfg = resolve_data_config("torchvision", model_defaults={"crop_pct": 0.9}, resize=300)
    assert (cfg.resize, cfg.crop_pct) == (300, None)  # an explicit resize wins, crop_pct is dropped
    cfg = resolve_data_config("torchvision", resize=0, crop="none")
    assert (cfg.resize, cfg.crop) == (None, None)
    cfg = resolve_data_config("torchvision", crop_pct=0)
    assert (cfg.resize, cfg.crop_pct) == (256, None)
    # a stored to_dict() in the model's metadata: null geometry means off, beats the preset
    stored = resolve_data_config("cifar", std=0.5).to_dict()
    cfg = resolve_data_config("torchvision", model_defaults=stored)
    assert (cfg.resize, cfg.crop, cfg.std) == (None, None, (0.5, 0.5, 0.5))
    assert cfg == resolve_data_config("cifar", std=0.5).__class__(**{**stored, "preset": "torchvision"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"std": (0.2, 0.0, 0.2)}, r"invalid preprocessing setting `std`=\(0.2, 0.0, 0.2\): every std must be nonzero"),
        ({"mean": (0.5, 0.5)}, r"`mean`=\(0.5, 0.5\): expected 3 value\(s\)"),
        ({"channels": 1}, r"`mean`=.*expected 1 value\(s\), one per channel \(channels=1\)"),
        ({"crop": -1}, r"`crop`=-1: expected a positive number of pixels"),
        ({"crop": 2.5}, r"`crop`=2.5: expected a whole number of pixels"),
        ({"resize": -3}, r"`resize`=-3"),
        ({"interpolation": "area"}, r"`interpolation`='area': expected one of nearest, bilinear"),
        ({"layout": "CHW"}, r"`layout`='CHW': expected NCHW or NHWC"),
        ({"channel_order": "GRB"}, r"`channel_order`='GRB'"),
        ({"scale": 0}, r"`scale`=0"),
        ({"crop_pct": 1.5}, r"`crop_pct`=1.5"),
        ({"channels": 4}, r"`channels`=4: expected 3 \(color\) or 1"),
    ],
)
def test_invalid_settings(kwargs, message):
    with pytest.raises(DataError, match=message):
        resolve_data_config("torchvision", **kwargs)


def test_unknown_keys():
    with pytest.raises(DataError, match=r"unknown preprocessing key `size` in the preprocessing arguments"):
        resolve_data_config(size=3)
    with pytest.raises(DataError, match=r"unknown preprocessing key `foo` in the model's preprocessing defaults"):
        resolve_data_config(model_defaults={"foo": 1})


@pytest.mark.parametrize("defaults", [["resize", 256], "torchvision", 3])
def test_model_defaults_must_be_a_mapping(defaults):
    with pytest.raises(DataError, match=r"the model's preprocessing defaults must map setting names to values"):
        resolve_data_config(model_defaults=defaults)


def test_preprocess_keys_are_the_overridable_fields():
    import dataclasses

    fields = [f.name for f in dataclasses.fields(DataConfig)]
    assert PREPROCESS_KEYS == tuple(k for k in fields if k not in ("preset", "channels"))
    assert PREPROCESS_KEYS == (
        "resize", "crop", "crop_pct", "interpolation", "scale", "mean", "std", "channel_order", "layout")
    overrides = {"resize": 0, "crop": 0, "crop_pct": None, "interpolation": "nearest", "scale": 1.0,
                 "mean": (0.0,), "std": (1.0,), "channel_order": "BGR", "layout": "NHWC"}
    assert set(overrides) == set(PREPROCESS_KEYS)  # every key is accepted as an override
    cfg = resolve_data_config("torchvision", **overrides)
    assert (cfg.resize, cfg.interpolation, cfg.channel_order, cfg.layout) == (None, "nearest", "BGR", "NHWC")


def test_single_mean_broadcasts():
    cfg = resolve_data_config("mnist", channels=3)
    assert cfg.mean == (0.5, 0.5, 0.5) and cfg.channels == 3


# ---------------------------------------------------------------- geometry


def _gradient(width: int, height: int) -> Image.Image:
    yy, xx = np.mgrid[0:height, 0:width]
    arr = np.stack([xx * 255 // max(width - 1, 1), yy * 255 // max(height - 1, 1), (xx + yy) % 256], axis=-1)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("size", "resized"), [((500, 375), (341, 256)), ((375, 500), (256, 341)), ((256, 256), (256, 256))]
)
def test_torchvision_resize_and_crop(size, resized):
    img = _gradient(*size)
    data = _png_bytes(img)
    only_resize = decode_image(data, resolve_data_config("torchvision", crop=0))
    assert only_resize.shape == (resized[1], resized[0], 3)  # (H, W, C)
    expected = np.asarray(img.resize(resized, Image.Resampling.BILINEAR)) if size != resized else np.asarray(img)
    np.testing.assert_array_equal(only_resize, expected)
    out = decode_image(data, resolve_data_config("torchvision"))
    assert out.shape == (224, 224, 3)
    top = int(round((resized[1] - 224) / 2))
    left = int(round((resized[0] - 224) / 2))
    if size == (500, 375):
        assert (top, left) == (16, 58)  # round(58.5) -> 58, as torchvision
    np.testing.assert_array_equal(out, expected[top : top + 224, left : left + 224])


def test_crop_pads_small_image_like_torchvision():
    img = np.full((20, 30, 3), 200, dtype=np.uint8)  # H=20, W=30
    out = transform_array(img, resolve_data_config("raw", crop=32))
    assert out.shape == (32, 32, 3)
    # pad H by 12 (6 top, 6 bottom) and W by 2 (1 left, 1 right), then crop
    assert (out[6:26, 1:31] == 200).all()
    assert out[:6].max() == 0 and out[26:].max() == 0 and out[:, 0].max() == 0 and out[:, 31].max() == 0


def test_bicubic_and_nearest_use_pil_filters():
    img = _gradient(90, 60)
    for name, flt in [("bicubic", Image.Resampling.BICUBIC), ("nearest", Image.Resampling.NEAREST)]:
        out = decode_image(_png_bytes(img), resolve_data_config("raw", resize=30, interpolation=name))
        np.testing.assert_array_equal(out, np.asarray(img.resize((45, 30), flt)))


# ---------------------------------------------------------------- decoding

RAW = resolve_data_config("raw")


def test_png_named_jpeg(tmp_path: Path):
    img = _gradient(17, 11)
    path = tmp_path / "fake.JPEG"
    img.save(path, format="PNG")
    out = decode_image(path, RAW)
    assert out.dtype == np.uint8 and out.shape == (11, 17, 3)
    np.testing.assert_array_equal(out, np.asarray(img))


def test_cmyk_jpeg(tmp_path: Path):
    rgb = np.zeros((16, 32, 3), dtype=np.uint8)
    rgb[:, :16] = (220, 30, 40)
    rgb[:, 16:] = (20, 60, 230)
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(path, quality=98)
    with Image.open(path) as check:
        assert check.mode == "CMYK"
    out = decode_image(path, RAW)
    assert out.shape == (16, 32, 3)
    assert np.abs(out[4:12, 2:12].astype(int) - (220, 30, 40)).max() <= 12
    assert np.abs(out[4:12, 20:30].astype(int) - (20, 60, 230)).max() <= 12


def test_grayscale_jpeg_becomes_rgb(tmp_path: Path):
    gray = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (8, 1))
    path = tmp_path / "gray.jpg"
    Image.fromarray(gray, "L").save(path, quality=100)
    out = decode_image(path, RAW)
    assert out.shape == (8, 32, 3)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert np.abs(out[..., 0].astype(int) - gray).max() <= 3
    one = decode_image(path, resolve_data_config("mnist"))
    assert one.shape == (8, 32, 1)
    np.testing.assert_array_equal(one[..., 0], out[..., 0])


def test_exif_rotation(tmp_path: Path):
    # stored 40 wide x 20 high: left half red, right half blue; orientation 6 = rotate 90 deg clockwise
    rgb = np.zeros((20, 40, 3), dtype=np.uint8)
    rgb[:, :20] = (255, 0, 0)
    rgb[:, 20:] = (0, 0, 255)
    img = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif.tobytes(), quality=100)
    out = decode_image(path, RAW)
    assert out.shape == (40, 20, 3)  # displayed upright: 20 wide, 40 high
    assert out[5, 10, 0] > 200 and out[5, 10, 2] < 50  # top is red
    assert out[35, 10, 2] > 200 and out[35, 10, 0] < 50  # bottom is blue


def test_rgba_and_palette(tmp_path: Path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., :3] = (10, 20, 30)
    rgba[..., 3] = 0  # fully transparent: alpha is dropped, as torchvision's loader does
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(decode_image(tmp_path / "a.png", RAW), np.full((4, 4, 3), (10, 20, 30), np.uint8))
    pal = Image.new("P", (5, 3))
    pal.putpalette([0, 0, 0, 250, 100, 5] + [0] * 762)
    pal.putpixel((2, 1), 1)
    pal.save(tmp_path / "p.png", transparency=0)
    out = decode_image(tmp_path / "p.png", RAW)
    assert out.shape == (3, 5, 3) and tuple(out[1, 2]) == (250, 100, 5) and tuple(out[0, 0]) == (0, 0, 0)


def test_bgr_and_bytes_source():
    img = _gradient(9, 7)
    data = _png_bytes(img)
    out = decode_image(data, resolve_data_config("caffe", resize=0, crop=0))
    np.testing.assert_array_equal(out, np.asarray(img)[:, :, ::-1])
    assert out.flags.c_contiguous


def test_not_an_image_raises_pil_error(tmp_path: Path):
    path = tmp_path / "x.jpg"
    path.write_text("hello")
    with pytest.raises(OSError):
        decode_image(path, RAW)


def test_convert_channels_matches_pil():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    gray = convert_channels(rgb, 1)
    for i in range(3):
        np.testing.assert_array_equal(gray[i, :, :, 0], np.asarray(Image.fromarray(rgb[i]).convert("L")))
    back = convert_channels(gray, 3)
    assert back.shape == rgb.shape and (back[..., 0] == back[..., 2]).all()


def test_transform_array_fast_path_equals_pil_path():
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 256, (4, 40, 50, 3), dtype=np.uint8)
    cfg = resolve_data_config("caffe", resize=0, crop=32)
    fast = transform_array(batch, cfg)
    slow = np.stack([decode_image(_png_bytes(Image.fromarray(b)), cfg) for b in batch])
    np.testing.assert_array_equal(fast, slow)
    cfg = resolve_data_config("torchvision", resize=36, crop=32)
    np.testing.assert_array_equal(
        transform_array(batch, cfg),
        np.stack([decode_image(_png_bytes(Image.fromarray(b)), cfg) for b in batch]),
    )


# ---------------------------------------------------------------- normalization


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_normalize_matches_float64_reference(name, layout):
    cfg = resolve_data_config(name, layout=layout)
    rng = np.random.default_rng(2)
    batch = rng.integers(0, 256, (3, 7, 5, cfg.channels), dtype=np.uint8)
    batch[0, 0, 0] = 0
    batch[0, 0, 1] = 255
    out = normalize(batch, cfg)
    ref = (batch.astype(np.float64) * cfg.scale - np.array(cfg.mean)) / np.array(cfg.std)
    if layout == "NCHW":
        ref = ref.transpose(0, 3, 1, 2)
    assert out.dtype == np.float32 and out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)


def test_normalize_bgr_channel_swap():
    # one RGB pixel (10, 20, 30) decoded for a caffe model becomes B, G, R minus the BGR mean
    cfg = resolve_data_config("caffe", resize=0, crop=0)
    pixel = transform_array(np.array([[[10, 20, 30]]], dtype=np.uint8), cfg)
    out = normalize(pixel[None], cfg)
    np.testing.assert_array_equal(out[0, :, 0, 0], [30 - 104, 20 - 117, 10 - 123])


def test_normalize_rejects_wrong_input():
    with pytest.raises(DataError, match=r"cannot normalize a float32 array of shape \(1, 4, 4, 3\)"):
        normalize(np.zeros((1, 4, 4, 3), np.float32), PRESETS["torchvision"])
    with pytest.raises(DataError, match=r"expected \(N, H, W, 1\) uint8"):
        normalize(np.zeros((1, 4, 4, 3), np.uint8), PRESETS["mnist"])


def test_layout_contradicting_the_model_input_is_one_line(tiny_float_int8, tmp_path, capsys):
    float_path, _, data = tiny_float_int8
    argv = ["bench", float_path, "--data", data, "--preprocess", "raw", "--seeds", "1", "--snr", "10",
            "--device", "cpu", "--out", tmp_path / "run"]
    code, _, err = run_cli(capsys, *argv, "--layout", "NHWC")
    assert code == 2
    assert one_line(err) == ("onnxnoise: error: --layout NHWC contradicts the model's input, which is NCHW "
                              "[N, 3, 8, 8]; drop --layout or pass --layout NCHW")
    code, _, err = run_cli(capsys, *argv, "--layout", "NCHW")
    assert code == 0, err


@pytest.mark.parametrize("layout, shape, expected", [
    ("NCHW", (None, 32, 32, 3), "--layout NCHW contradicts the model's input, which is NHWC [N, 32, 32, 3]; "
                                "drop --layout or pass --layout NHWC"),
    ("NHWC", (1, 1, 28, 28), "--layout NHWC contradicts the model's input, which is NCHW [1, 1, 28, 28]; "
                             "drop --layout or pass --layout NCHW"),
    ("NHWC", (None, 32, 32, 3), None),
    ("NHWC", (None, 3, None, None), None),  # dynamic sizes: the shape cannot tell
    ("NCHW", (None, 3, 8, 3), None),  # channels-like at both ends: ambiguous
    ("NHWC", (None, 10), None),
])
def test_layout_conflict(layout, shape, expected):
    assert layout_conflict(layout, shape) == expected


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
