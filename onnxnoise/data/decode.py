"""Decoding images into uint8 pixels, and normalizing pixels into float32 model input.

Geometry and normalization follow the settings of a :class:`~onnxnoise.data.DataConfig`
(see :mod:`onnxnoise.data.config` for the formulas): :func:`decode_image` reads one
file through PIL, :func:`transform_array` handles in-memory pixels (CIFAR, ``.npz``),
and :func:`normalize` turns a uint8 NHWC batch into the model's float32 layout.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps

from onnxnoise.data.config import INTERPOLATIONS, DataConfig
from onnxnoise.data.formats import open_regular
from onnxnoise.errors import DataError

__all__ = ["SIXTEEN_BIT_MODES", "decode_image", "transform_array", "convert_channels", "normalize", "to_mode"]

#: PIL resampling filter of each ``DataConfig.interpolation`` name.
_RESAMPLING = {name: Image.Resampling[name.upper()] for name in INTERPOLATIONS}
_EXIF_ORIENTATION = 0x0112


# ---------------------------------------------------------------------------
# geometry


def _resized_size(width: int, height: int, resize: int) -> tuple[int, int]:
    """torchvision's output size (width, height) for ``Resize(resize)``."""
    if width <= height:
        return resize, int(resize * height / width)
    return int(resize * width / height), resize


def _center_crop(arr: np.ndarray, crop: int) -> np.ndarray:
    """torchvision ``CenterCrop(crop)`` on a (..., H, W, C) array, zero-padding a small image."""
    height, width = arr.shape[-3], arr.shape[-2]
    if height < crop or width < crop:
        pad_h, pad_w = max(crop - height, 0), max(crop - width, 0)
        pads = [(0, 0)] * (arr.ndim - 3)
        pads += [(pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2), (0, 0)]
        arr = np.pad(arr, pads)
        height, width = arr.shape[-3], arr.shape[-2]
        if height == crop and width == crop:
            return arr
    top = int(round((height - crop) / 2.0))
    left = int(round((width - crop) / 2.0))
    return arr[..., top : top + crop, left : left + crop, :]


def _finish(arr: np.ndarray, config: DataConfig) -> np.ndarray:
    """Crop and channel order on a (H, W, C) or (N, H, W, C) uint8 array (C-contiguous result)."""
    if config.crop is not None:
        arr = _center_crop(arr, config.crop)
    if config.channels == 3 and config.channel_order == "BGR":
        arr = arr[..., ::-1]
    return np.ascontiguousarray(arr)


#: PIL modes of 16-bit grayscale samples. ``I;16*`` hold them as uint16 (16-bit PNG and TIFF); ``I``
#: (32-bit integers) is how Pillow holds 16-bit PGM (any maxval scaled to 65535) and how older Pillow
#: versions held 16-bit PNG samples.
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
#: Modes whose alpha is premultiplied (``La``) or that only convert through another mode first.
_VIA = {"La": "LA", "PA": "RGBA", "LAB": "RGB", "HSV": "RGB"}


def _to_8bit(img: Image.Image) -> Image.Image:
    """A 16-bit grayscale image as mode ``L``: each sample's high byte, ``v >> 8``.

    That is libpng's ``png_set_strip_16`` rule (libpng manual, "Transformations": it strips 16-bit
    samples down to 8 bits by dropping the low byte), and what Pillow itself does to 48/64-bit RGB(A)
    and 32-bit LA PNGs (its ``RGB;16B`` / ``RGBA;16B`` / ``LA;16B`` raw modes keep the high
    byte), so a 16-bit gray PNG and the same picture as 48-bit RGB give the same pixels.
    PIL's own ``convert("L")`` clips instead (every sample above 255 becomes white).

    Raises:
        ValueError: A mode ``I`` sample outside 0..65535 (a 32-bit integer image).
    """
    arr = np.asarray(img)
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 0xFFFF):
        raise ValueError(f"mode {img.mode} (32-bit integer) image has samples {int(arr.min())}..{int(arr.max())}, "
                         "outside the 16-bit range 0..65535 that can be scaled to 8 bits; save it as 8 or 16 bit")
    return Image.fromarray((arr.astype(np.uint32) >> 8).astype(np.uint8))


def to_mode(img: Image.Image, mode: str) -> Image.Image:
    """Converts a decoded image to ``L`` or ``RGB``, whatever its PIL mode.

    16-bit grayscale (:data:`SIXTEEN_BIT_MODES`) is scaled to 8 bits by :func:`_to_8bit`
    (``v >> 8``); 48/64-bit RGB(A) PNGs arrive from Pillow already scaled the same way.
    Alpha is dropped, never composited (the pixels under a transparent area keep their
    color), as torchvision's ``pil_loader`` (``img.convert("RGB")``) does: for ``RGBA``,
    ``LA``, ``PA``, ``La`` and ``P`` with a transparent palette entry (converted through
    ``RGBA``, as PIL recommends). CMYK, YCbCr, LAB, HSV and bilevel images use PIL's conversion.

    Args:
        img: A decoded PIL image.
        mode: ``"L"`` or ``"RGB"``.

    Returns:
        The image in ``mode`` (``img`` itself when it already is).

    Raises:
        ValueError: A mode with no standard 8-bit scale (``F``, 32-bit float samples) or a
            mode ``I`` image with samples outside 0..65535; the message names the mode.
    """
    if img.mode == mode:
        return img
    if img.mode == "F":
        raise ValueError("mode F (32-bit float) image has no standard 8-bit scale; save it as 8 or 16 bit")
    if img.mode in SIXTEEN_BIT_MODES:
        img = _to_8bit(img)
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    elif img.mode in _VIA:
        img = img.convert(_VIA[img.mode])
    return img if img.mode == mode else img.convert(mode)


def _check_resized(size: tuple[int, int], original: tuple[int, int]) -> None:
    """Refuse a resize whose output would be a decompression bomb (PIL's own limit, 2 x ``MAX_IMAGE_PIXELS``):
    a 1 x 100 image resized to a short side of 8192 is 8192 x 819200 pixels."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and size[0] * size[1] > 2 * limit:
        msg = (f"resizing a {original[0]}x{original[1]} image to {size[0]}x{size[1]} would exceed the limit of "
               f"{2 * limit} pixels, could be decompression bomb DOS attack")
        raise Image.DecompressionBombError(msg)


def _check_integer_width(img: Image.Image) -> None:
    """Refuse a mode ``I`` TIFF of 32-bit integer samples: ``I`` is scaled as 16-bit (``v >> 8``), which would turn
    a 32-bit image of 0..255 values black; such samples have no standard 8-bit scale (as ``F`` has none).

    Raises:
        ValueError: Naming the mode and the bits per sample.
    """
    if img.mode != "I" or img.format != "TIFF":
        return
    bits = getattr(img, "tag_v2", {}).get(258, (16,))
    bits = max(bits) if isinstance(bits, tuple) else int(bits)
    if bits > 16:
        raise ValueError(f"mode I TIFF with {bits}-bit integer samples has no standard 8-bit scale; "
                         "save it as 8 or 16 bit")


def _pil_pipeline(img: Image.Image, config: DataConfig) -> np.ndarray:
    """Mode conversion, resize, crop and channel order for one PIL image."""
    _check_integer_width(img)
    if img.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        img = ImageOps.exif_transpose(img)
    img = to_mode(img, "L" if config.channels == 1 else "RGB")
    if config.resize is not None:
        size = _resized_size(img.width, img.height, config.resize)
        _check_resized(size, img.size)
        if size != img.size:
            img = img.resize(size, _RESAMPLING[config.interpolation])
    arr = np.asarray(img)
    return _finish(arr[:, :, None] if arr.ndim == 2 else arr, config)


def decode_image(source: Path | str | bytes, config: DataConfig) -> np.ndarray:
    """Decodes one image file and applies geometry and channel order.

    The format is sniffed from the content (a PNG named ``.JPEG`` works). EXIF
    orientation is applied; every PIL mode is converted to RGB, or to ``L`` when
    ``channels`` is 1, by :func:`to_mode`: 16-bit samples scaled to 8 bits as ``v >> 8``,
    alpha dropped (as torchvision's loader does), CMYK and palette images converted.

    Args:
        source: Path of the image file, or its encoded bytes.
        config: Preprocessing settings (resize, crop, interpolation, channels, order).

    Returns:
        (H, W, C) uint8 array, C = ``config.channels``, channels in ``config.channel_order``.

    Raises:
        OSError, ValueError, SyntaxError, PIL.Image.DecompressionBombError: the file is
        missing, not a regular file (:class:`~onnxnoise.data.formats.NotRegularFileError`
        for a FIFO or device, raised without blocking), corrupt, truncated or not an image
        (PIL's errors), or its mode has no
        8-bit scale (ValueError naming the mode, see :func:`to_mode`); left to the caller,
        which decides whether to skip or fail (:func:`onnxnoise.data.load_images` does).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        stream: IO[bytes] = io.BytesIO(source)
    else:
        stream = open_regular(source)  # a FIFO or device in a dataset must not block the run
    with stream, Image.open(stream) as img:
        img.load()
        return _pil_pipeline(img, config)


def transform_array(images: np.ndarray, config: DataConfig) -> np.ndarray:
    """Applies geometry, grayscale/color conversion and channel order to in-memory pixels.

    Used for in-memory datasets (CIFAR batches, ``.npz``). Without ``resize`` no PIL
    call is made and the whole batch is handled at once: grayscale uses PIL's exact
    integer formula ``L = (19595 R + 38470 G + 7471 B + 32768) >> 16``, gray-to-RGB
    repeats the channel, the crop is a slice. With ``resize`` each image goes through
    the same PIL pipeline as :func:`decode_image`.

    Args:
        images: (H, W, C) or (N, H, W, C) uint8, C = 3 (RGB) or 1 (grayscale);
            (H, W) is read as one grayscale image.
        config: Preprocessing settings.

    Returns:
        uint8 array with the same leading dims, (..., H', W', config.channels).
    """
    if images.ndim == 2:
        images = images[:, :, None]
    if images.ndim == 4:
        if config.resize is None:
            return _finish(convert_channels(images, config.channels), config)
        return np.stack([transform_array(img, config) for img in images])
    if config.resize is not None:
        pil = Image.fromarray(images[:, :, 0] if images.shape[2] == 1 else images)
        return _pil_pipeline(pil, config)
    return _finish(convert_channels(images, config.channels), config)


def convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """Converts uint8 pixels between RGB (C=3) and grayscale (C=1), PIL-exact.

    Args:
        images: (..., H, W, 1) or (..., H, W, 3) uint8 array, color channels in RGB order.
        channels: Wanted channel count, 1 or 3.

    Returns:
        (..., H, W, channels) uint8 array (the input itself when nothing changes).
    """
    have = images.shape[-1]
    if have == channels:
        return images
    if channels == 3:
        return np.repeat(images, 3, axis=-1)
    rgb = images.astype(np.uint32)
    gray = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
    return gray.astype(np.uint8)[..., None]


# ---------------------------------------------------------------------------
# normalization


def _affine(config: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel float32 ``a = scale / std`` and ``b = -mean / std`` (computed in float64)."""
    mean = np.asarray(config.mean, dtype=np.float64)
    std = np.asarray(config.std, dtype=np.float64)
    return (config.scale / std).astype(np.float32), (-mean / std).astype(np.float32)


def normalize(batch: np.ndarray, config: DataConfig) -> np.ndarray:
    """Turns uint8 pixels into the model's float input.

    ``out[n, c, h, w] = (batch[n, h, w, c] * scale - mean[c]) / std[c]``, evaluated as
    ``x * a[c] + b[c]`` in float32 with ``a = scale / std`` and ``b = -mean / std``
    (no float64 temporaries; within ~4e-7 of the float64 formula for the presets).

    Args:
        batch: (N, H, W, C) uint8 NHWC, channels already in the model's order
            (as returned by :func:`decode_image` / ``load_images``).
        config: Preprocessing settings (scale, mean, std, layout).

    Returns:
        New float32 array, (N, C, H, W) for ``layout="NCHW"`` or (N, H, W, C) for ``"NHWC"``.

    Raises:
        DataError: ``batch`` is not a 4-d uint8 array with ``config.channels`` channels.
    """
    ok = isinstance(batch, np.ndarray) and batch.dtype == np.uint8 and batch.ndim == 4
    if not ok or batch.shape[-1] != config.channels:
        raise DataError(
            f"cannot normalize a {getattr(batch, 'dtype', type(batch).__name__)} array of shape "
            f"{getattr(batch, 'shape', None)}: expected (N, H, W, {config.channels}) uint8; "
            "decode images with the same config first"
        )
    a, b = _affine(config)
    n, h, w, c = batch.shape
    if config.layout == "NHWC":
        # View as (N, H, W*C) so the broadcast inner loop runs over W*C, not C.
        out = np.empty((n, h, w * c), dtype=np.float32)
        np.multiply(batch.reshape(n, h, w * c), np.tile(a, w), out=out)
        out += np.tile(b, w)
        return out.reshape(n, h, w, c)
    out = np.empty((n, c, h, w), dtype=np.float32)
    np.multiply(batch.transpose(0, 3, 1, 2), a[:, None, None], out=out)
    out += b[:, None, None]
    return out
