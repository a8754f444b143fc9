"""How well a dataset's images fit a model's image input: channels and, where both are static, the size.

Used by :func:`onnxnoise.data.registry.resolve_data` to prefer, among the registered datasets with the model's
class count, one whose images are what the model takes (a Fashion-MNIST 1x28x28 model gets the registered
Fashion-MNIST set, not CIFAR-10 at 3x32x32). The geometry of a registered dataset is read without loading its
images: the ``images`` header of a ``.npz`` (:func:`onnxnoise.data.npz.npz_image_shape`), 3x32x32 for a CIFAR
batch folder; image files (``image-folder``, ``imagenet-val``) have no one size and fit any input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from onnxnoise.data.assumed import static_size
from onnxnoise.data.npz import npz_image_shape

__all__ = ["Geometry", "model_geometry", "dataset_geometry", "fit_score"]

#: Formats whose images all have one known geometry: (channels, (height, width)).
_FIXED = {"cifar-python": (3, (32, 32))}


@dataclass(frozen=True)
class Geometry:
    """Image channels and size; ``None`` where unknown or not fixed (symbolic input, files of any size).

    Attributes:
        channels: 1 (gray) or 3 (colour), or None.
        size: ``(height, width)`` in pixels, or None.
    """

    channels: int | None = None
    size: tuple[int, int] | None = None

    def text(self) -> str:
        """``"1x28x28"``, ``"3 channels"``, ``"28x28"`` or ``"any size"``."""
        size = None if self.size is None else f"{self.size[0]}x{self.size[1]}"
        if self.channels is not None and size is not None:
            return f"{self.channels}x{size}"
        if self.channels is not None:
            return f"{self.channels} channels"
        return size or "any size"


def model_geometry(input_shape: Sequence[int | None]) -> Geometry:
    """The geometry of a 4-D image input, NCHW or NHWC (read from where the 1 or 3 channels are, as
    :func:`onnxnoise.data.assumed.static_size`); unknown parts None."""
    shape = tuple(input_shape)
    size = static_size(shape)
    channels = None
    if len(shape) == 4 and (shape[1] in (1, 3)) != (shape[3] in (1, 3)):
        channels = shape[1] if shape[1] in (1, 3) else shape[3]
    return Geometry(channels, size)


def dataset_geometry(path: str | Path, format_name: str) -> Geometry:
    """The geometry of a registered dataset's images, without loading them (module docstring)."""
    if format_name in _FIXED:
        channels, size = _FIXED[format_name]
        return Geometry(channels, size)
    if format_name == "npz":
        shape = npz_image_shape(path)
        if shape is not None and len(shape) in (3, 4):
            return Geometry(1 if len(shape) == 3 else shape[3], (shape[1], shape[2]))
    return Geometry()


def fit_score(model: Geometry, data: Geometry) -> int:
    """0 to 2: one point each for channels and size that match or are unknown on either side."""
    channels = model.channels is None or data.channels is None or model.channels == data.channels
    size = model.size is None or data.size is None or model.size == data.size
    return int(channels) + int(size)
