"""Image modes: every PIL mode a dataset file can decode to reaches the model as the right 8-bit pixels.

The colour classifier (:mod:`tests._colour`) has 100% clean top-1 on its images by construction; the
same images written as 16-bit grayscale (PIL modes ``I;16``, ``I;16B``, ``I``), 48/64-bit RGB(A) and
32-bit gray+alpha PNGs, ``LA``, ``P`` with a transparent entry, and CMYK must keep it at 100%. Before
16-bit samples were scaled (``v >> 8``), PIL clipped them to white and top-1 fell to chance.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from onnxnoise.data import decode_image, iter_batches, load_images, open_dataset, resolve_data_config
from onnxnoise.data.decode import to_mode

from tests._checks import run_cli, strict_json
from tests._colour import CLASSES, colour_images, colour_model

RAW = resolve_data_config("raw")
PER_CLASS = 2
#: Low byte of every 16-bit sample: the high byte carries the class level, the low byte must not matter.
LOW = 0xC8


def _png16(path: Path, samples: np.ndarray) -> None:
    """A 16-bit PNG of ``samples`` (H, W) gray, (H, W, 2) gray+alpha, (H, W, 3) RGB or (H, W, 4) RGBA uint16.

    Written by hand: PIL cannot write 48/64-bit PNGs.
    """
    if samples.ndim == 2:
        samples = samples[:, :, None]
    height, width, channels = samples.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = samples.astype(">u2").reshape(height, width * channels).tobytes()
    stride = width * channels * 2
    raw = b"".join(b"\x00" + rows[i * stride:(i + 1) * stride] for i in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


def _wide(image: np.ndarray) -> np.ndarray:
    """uint8 -> uint16 samples whose high byte is the 8-bit value (``v >> 8`` gives it back)."""
    return image.astype(np.uint16) << 8 | LOW


def _save(mode: str, image: np.ndarray, path: Path) -> Path:
    """Writes one (8, 8, 3) uint8 colour image in ``mode``; returns the file (its suffix may change)."""
    gray = image[..., 0]  # gray images carry the class level in every channel
    transparent = np.zeros(image.shape[:2], np.uint8)  # alpha 0: dropped, never composited
    if mode == "I;16":
        Image.fromarray(_wide(gray)).save(path.with_suffix(".png"))
    elif mode == "I;16B":
        Image.fromarray(_wide(gray).astype(">u2")).save(path.with_suffix(".tif"))
    elif mode == "I":
        path.with_suffix(".pgm").write_bytes(b"P5 8 8 65535\n" + _wide(gray).astype(">u2").tobytes())
    elif mode == "RGB;16":
        _png16(path.with_suffix(".png"), _wide(image))
    elif mode == "RGBA;16":
        _png16(path.with_suffix(".png"), _wide(np.dstack([image, transparent])))
    elif mode == "LA;16":
        _png16(path.with_suffix(".png"), _wide(np.dstack([gray, transparent])))
    elif mode == "LA":
        Image.fromarray(np.dstack([gray, transparent]), "LA").save(path.with_suffix(".png"))
    elif mode == "RGBA":
        Image.fromarray(np.dstack([image, transparent]), "RGBA").save(path.with_suffix(".png"))
    elif mode == "P":
        # Entry 0 is transparent and holds the image's colour: dropping alpha keeps it.
        pal = Image.new("P", gray.shape[::-1], 0)
        pal.putpalette(list(image[0, 0]) + [255, 255, 255] * 255)
        pal.save(path.with_suffix(".png"), transparency=0)
    elif mode == "CMYK":
        Image.fromarray(image).convert("CMYK").save(path.with_suffix(".tif"))
    elif mode == "CMYK-JPEG":
        Image.fromarray(image).convert("CMYK").save(path.with_suffix(".jpg"), quality=100)
    else:  # pragma: no cover - a typo in the parameter list
        raise AssertionError(mode)
    return next(path.parent.glob(path.name + ".*"))


#: Test mode -> the PIL mode the file opens as.
MODES = {"I;16": "I;16", "I;16B": "I;16B", "I": "I", "RGB;16": "RGB", "RGBA;16": "RGBA", "LA;16": "RGBA",
         "LA": "LA", "RGBA": "RGBA", "P": "P", "CMYK": "CMYK", "CMYK-JPEG": "CMYK"}


def _folder(root: Path, modes: list[str]) -> Path:
    """``root/<k>/<i>.<ext>``: every class's images, the i-th in ``modes[(k + i) % len(modes)]``."""
    for k in range(CLASSES):
        (root / str(k)).mkdir(parents=True)
        for i, image in enumerate(colour_images(k, PER_CLASS)):
            _save(modes[(k + i) % len(modes)], image, root / str(k) / f"{i}")
    return root


def _top1(root: Path) -> float:
    """The colour classifier's top-1 (percent) on the folder, decoded as a run decodes it."""
    loaded = load_images(open_dataset(root), RAW)
    assert loaded.skipped == ()
    session = ort.InferenceSession(colour_model().SerializeToString(), providers=["CPUExecutionProvider"])
    right = sum(int((session.run(None, {"input": x})[0].argmax(1) == y).sum())
                for x, y in iter_batches(loaded.images, loaded.labels, RAW))
    return 100.0 * right / len(loaded)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_mode_keeps_the_colour_classifier_at_100_percent(tmp_path, mode):
    root = _folder(tmp_path / "ds", [mode])
    with Image.open(next((root / "0").iterdir())) as img:
        assert img.mode == MODES[mode]  # the file really decodes to the mode under test
    assert _top1(root) == 100.0


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I", "RGB;16", "RGBA;16", "LA;16"])
def test_16_bit_samples_become_their_high_byte_in_every_mode(tmp_path, mode):
    """``v >> 8`` (libpng's png_set_strip_16), the same rule PIL applies to 48/64-bit PNGs: one rule for all."""
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    image = np.dstack([levels, levels, levels])
    wide = (levels.astype(np.uint16) << 8) | np.uint16(0xFF)  # the largest low byte: rounding would go up
    if mode in ("I;16", "I;16B", "I"):
        path = tmp_path / "x.png"
        if mode == "I;16":
            Image.fromarray(wide).save(path)
        elif mode == "I;16B":
            path = tmp_path / "x.tif"
            Image.fromarray(wide.astype(">u2")).save(path)
        else:
            path = tmp_path / "x.pgm"
            path.write_bytes(b"P5 16 16 65535\n" + wide.astype(">u2").tobytes())
    else:
        path = _save(mode, image, tmp_path / "x")  # written with LOW as the low byte
    rgb = decode_image(path, RAW)
    assert rgb.dtype == np.uint8 and rgb.shape == (16, 16, 3)
    np.testing.assert_array_equal(rgb[..., 0], levels)
    gray = decode_image(path, resolve_data_config("raw", channels=1, mean=[0.0], std=[1.0]))
    np.testing.assert_array_equal(gray[..., 0], levels)


def test_mixed_modes_in_one_run_give_100_percent(colour_onnx, tmp_path, capsys):
    """End to end: a folder mixing every mode, through `bench`: clean top-1 exactly 100%, nothing skipped."""
    root = _folder(tmp_path / "mixed", sorted(MODES))
    code, out, err = run_cli(capsys, "bench", colour_onnx, "--data", root, "--preprocess", "raw", "--snr", "1000",
                             "--seeds", "1", "--device", "cpu", "--out", tmp_path / "run", "--json")
    assert code == 0, err
    summary = strict_json(out)
    assert summary["baseline"]["top1_acc"] == 100.0
    assert (summary["images"], summary["skipped_images"]) == (CLASSES * PER_CLASS, 0)


@pytest.mark.parametrize(("pixels", "message"), [
    # a 32-bit integer TIFF, whatever its values (200 was scaled as 16-bit: black, 0 instead of 200)
    (np.full((4, 4), 70000, np.int32), "mode I TIFF with 32-bit integer samples has no standard 8-bit scale"),
    (np.full((4, 4), 200, np.int32), "mode I TIFF with 32-bit integer samples has no standard 8-bit scale"),
    (np.full((4, 4), 0.5, np.float32), "mode F (32-bit float) image has no standard 8-bit scale"),
])
def test_modes_without_an_8_bit_scale_are_skipped_naming_the_mode(tmp_path, pixels, message):
    (tmp_path / "ds" / "a").mkdir(parents=True)
    Image.fromarray(pixels).save(tmp_path / "ds" / "a" / "wide.tif")
    Image.fromarray(colour_images(0, 1)[0]).save(tmp_path / "ds" / "a" / "ok.png")
    loaded = load_images(open_dataset(tmp_path / "ds"), RAW)
    assert len(loaded) == 1 and [s.path.name for s in loaded.skipped] == ["wide.tif"]
    assert loaded.skipped[0].reason.startswith(f"ValueError: {message}")



def test_mode_i_outside_16_bits_is_refused_where_the_file_does_not_say_its_width():
    # an in-memory mode I image (no TIFF bits-per-sample to read): its samples decide
    with pytest.raises(ValueError, match=r"^mode I \(32-bit integer\) image has samples 70000..70000, outside the "
                                         r"16-bit range 0..65535"):
        to_mode(Image.fromarray(np.full((4, 4), 70000, np.int32)), "RGB")
    assert np.asarray(to_mode(Image.fromarray(np.full((4, 4), 200 * 257, np.int32)), "RGB"))[0, 0].tolist() == [200] * 3
