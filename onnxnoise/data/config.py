"""Preprocessing settings: `DataConfig`, its validation, the presets, and merging them.

A pixel ``x`` (uint8, 0..255) becomes ``(x * scale - mean[c]) / std[c]`` with ``mean``
and ``std`` given in the model's channel order (``channel_order`` = ``RGB`` or ``BGR``).

Geometry follows torchvision's ``Resize(resize)`` + ``CenterCrop(crop)`` on PIL images
(applied by :mod:`onnxnoise.data.decode`):

* resize: the short side becomes ``resize``, the long side ``int(resize * long / short)``;
  an image that already has that size is left alone (torchvision does the same).
* center crop: ``top = int(round((h - crop) / 2))``, ``left = int(round((w - crop) / 2))``;
  an image smaller than ``crop`` is first zero-padded, torchvision style.
* ``crop_pct`` (timm): when set and ``resize`` is not, ``resize = floor(crop / crop_pct)``.
* ``resize`` and ``crop`` (given, from a preset, from a model's metadata, or derived from
  ``crop_pct``) are at most :data:`MAX_SIDE` pixels; more is refused before any image is built.

Settings are merged in timm's order by :func:`resolve_data_config`: explicit arguments,
then the model's own defaults, then the preset.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from onnxnoise.errors import DataError

__all__ = [
    "MAX_SIDE",
    "DataConfig",
    "PRESETS",
    "DEFAULT_PRESET",
    "PREPROCESS_KEYS",
    "INTERPOLATIONS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "list_presets",
    "get_preset",
    "resolve_data_config",
    "unit_mismatch",
    "config_differences",
    "layout_conflict",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
DEFAULT_PRESET = "torchvision"

#: Most pixels a ``resize`` (short side) or ``crop`` (side) may ask for: 805 MB per image as float32 RGB.
MAX_SIDE = 8192

#: Names of the resampling filters ``DataConfig.interpolation`` accepts (PIL's filters of those names).
INTERPOLATIONS: tuple[str, ...] = ("nearest", "bilinear", "bicubic", "lanczos")
_CHANNEL_ORDERS = ("RGB", "BGR")
_LAYOUTS = ("NCHW", "NHWC")


@dataclass(frozen=True)
class DataConfig:
    """How images become model input.

    ``out = (x_uint8 * scale - mean[c]) / std[c]`` per channel ``c`` in the model's
    channel order, after the torchvision geometry described in the module docstring.

    Attributes:
        preset: Name of the preset the settings started from (informational).
        resize: Short side in pixels after resizing (1 to :data:`MAX_SIDE`), or None for no resize.
        crop: Side in pixels of the square center crop (1 to :data:`MAX_SIDE`), or None for no crop.
        crop_pct: timm's crop fraction; when set and ``resize`` is None,
            ``resize = floor(crop / crop_pct)`` is filled in on construction.
        interpolation: PIL resampling filter: ``bilinear``, ``bicubic``, ``nearest``
            or ``lanczos``.
        scale: Factor applied to the uint8 pixel before the mean is subtracted
            (``1/255`` maps to 0..1, ``1`` keeps 0..255).
        mean: Per-channel mean in the model's channel order, in the units after
            ``scale``; a single value is repeated for every channel.
        std: Per-channel standard deviation (nonzero), same order and units as ``mean``.
        channel_order: ``RGB`` or ``BGR`` (ignored when ``channels`` is 1).
        channels: 3 for color, 1 for grayscale (PIL mode ``L``).
        layout: ``NCHW`` or ``NHWC`` layout of the float32 batches.

    Raises:
        DataError: A field has an invalid value (checked on construction).
    """

    preset: str = DEFAULT_PRESET
    resize: int | None = 256
    crop: int | None = 224
    crop_pct: float | None = None
    interpolation: str = "bilinear"
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channel_order: str = "RGB"
    channels: int = 3
    layout: str = "NCHW"

    def __post_init__(self) -> None:
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        """Returns the settings as a flat JSON-friendly dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["mean"] = list(self.mean)
        out["std"] = list(self.std)
        return out

    @property
    def output_size(self) -> tuple[int, int] | None:
        """(height, width) in pixels of every decoded image, or None when it depends on the input."""
        if self.crop is not None:
            return (self.crop, self.crop)
        return None

    def describe(self) -> str:
        """Returns a short one-line description, e.g. for a report column."""
        geo = []
        if self.resize is not None:
            geo.append(f"resize {self.resize} {self.interpolation}")
        if self.crop is not None:
            geo.append(f"crop {self.crop}")
        geo_text = ", ".join(geo) if geo else "no resize"
        mean = ",".join(f"{m:g}" for m in self.mean)
        std = ",".join(f"{s:g}" for s in self.std)
        order = "L" if self.channels == 1 else self.channel_order
        return (
            f"{self.preset}: {geo_text}, {order} {self.layout}, "
            f"x*{self.scale:.6g} mean=({mean}) std=({std})"
        )


def _field_error(name: str, value: object, why: str) -> DataError:
    return DataError(f"invalid preprocessing setting `{name}`={value!r}: {why}")


def _check_side(name: str, value: int, whence: str = "") -> None:
    """Refuse a ``resize`` / ``crop`` of more than :data:`MAX_SIDE` pixels (one line, before any image is built)."""
    if value > MAX_SIDE:
        raise _field_error(name, value, f"{value} pixels{whence} is more than the {MAX_SIDE} allowed; ImageNet "
                           "models take 224 to 600 (set --resize / --crop, or 0 to turn one off)")


def _as_float_tuple(name: str, value: object) -> tuple[float, ...]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value,)
    try:
        out = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise _field_error(name, value, "expected a number or a list of numbers") from None
    if not out:
        raise _field_error(name, value, "expected at least one value")
    if not all(math.isfinite(v) for v in out):
        raise _field_error(name, value, "values must be finite")
    return out


def _validate(cfg: DataConfig) -> None:
    """Checks and canonicalizes a DataConfig in place (frozen: uses object.__setattr__)."""
    put = object.__setattr__
    if not isinstance(cfg.preset, str) or not cfg.preset:
        raise _field_error("preset", cfg.preset, "expected a non-empty preset name")
    for name in ("resize", "crop"):
        value = getattr(cfg, name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise _field_error(name, value, "expected a whole number of pixels or none")
        if value <= 0:
            raise _field_error(name, value, "expected a positive number of pixels")
        _check_side(name, value)
        put(cfg, name, int(value))
    if cfg.crop_pct is not None:
        try:
            pct = float(cfg.crop_pct)
        except (TypeError, ValueError):
            raise _field_error("crop_pct", cfg.crop_pct, "expected a fraction in (0, 1]") from None
        if not 0.0 < pct <= 1.0:
            raise _field_error("crop_pct", cfg.crop_pct, "expected a fraction in (0, 1], e.g. 0.875")
        put(cfg, "crop_pct", pct)
        if cfg.resize is None:
            if cfg.crop is None:
                raise _field_error("crop_pct", cfg.crop_pct, "needs `crop` to derive `resize`; set --crop")
            resize = int(math.floor(cfg.crop / pct))
            _check_side("resize", resize, f" (floor(crop {cfg.crop} / crop_pct {pct}))")
            put(cfg, "resize", resize)
    interp = str(cfg.interpolation).lower()
    if interp not in INTERPOLATIONS:
        raise _field_error("interpolation", cfg.interpolation, f"expected one of {', '.join(INTERPOLATIONS)}")
    put(cfg, "interpolation", interp)
    try:
        scale = float(cfg.scale)
    except (TypeError, ValueError):
        raise _field_error("scale", cfg.scale, "expected a positive number such as 1/255") from None
    if not math.isfinite(scale) or scale <= 0:
        raise _field_error("scale", cfg.scale, "expected a positive number such as 1/255")
    put(cfg, "scale", scale)
    channels = cfg.channels
    if isinstance(channels, bool) or channels not in (1, 3):
        raise _field_error("channels", channels, "expected 3 (color) or 1 (grayscale)")
    put(cfg, "channels", int(channels))
    for name in ("mean", "std"):
        values = _as_float_tuple(name, getattr(cfg, name))
        if len(values) == 1 and channels == 3:
            values = values * 3
        if len(values) != channels:
            raise _field_error(
                name,
                getattr(cfg, name),
                f"expected {channels} value(s), one per channel (channels={channels}); "
                f"pass --{name} with {channels} value(s)",
            )
        put(cfg, name, values)
    if any(s == 0.0 for s in cfg.std):
        raise _field_error("std", cfg.std, "every std must be nonzero")
    order = str(cfg.channel_order).upper()
    if order not in _CHANNEL_ORDERS:
        raise _field_error("channel_order", cfg.channel_order, "expected RGB or BGR")
    put(cfg, "channel_order", order)
    layout = str(cfg.layout).upper()
    if layout not in _LAYOUTS:
        raise _field_error("layout", cfg.layout, "expected NCHW or NHWC")
    put(cfg, "layout", layout)


PRESETS: Mapping[str, DataConfig] = {
    # torchvision / timm ImageNet models: Resize(256) + CenterCrop(224), ToTensor, Normalize.
    "torchvision": DataConfig(preset="torchvision"),
    # CIFAR models: 32x32 as is, ToTensor, Normalize with CIFAR-10 statistics.
    "cifar": DataConfig(
        preset="cifar", resize=None, crop=None, mean=CIFAR10_MEAN, std=CIFAR10_STD
    ),
    # TensorFlow / Keras "inception" style: (x - 127.5) / 127.5 -> [-1, 1], NHWC input.
    "tf": DataConfig(preset="tf", scale=1.0, mean=(127.5,), std=(127.5,), layout="NHWC"),
    # TensorFlow Lite / EfficientNet-Lite: (x - 127) / 128, NHWC input.
    "tf-lite": DataConfig(preset="tf-lite", scale=1.0, mean=(127.0,), std=(128.0,), layout="NHWC"),
    # Caffe models: BGR 0..255 minus the BGR mean, 227 crop (e.g. SqueezeNet 1.0).
    "caffe": DataConfig(
        preset="caffe",
        crop=227,
        scale=1.0,
        mean=(104.0, 117.0, 123.0),
        std=(1.0,),
        channel_order="BGR",
    ),
    # No geometry, pixels scaled to 0..1.
    "raw": DataConfig(preset="raw", resize=None, crop=None, mean=(0.0,), std=(1.0,)),
    # 28x28 grayscale models (MNIST / Fashion-MNIST demo): (x/255 - 0.5) / 0.5 -> [-1, 1].
    "mnist": DataConfig(
        preset="mnist", resize=None, crop=None, mean=(0.5,), std=(0.5,), channels=1
    ),
}


def list_presets() -> list[str]:
    """Returns the preset names, sorted."""
    return sorted(PRESETS)


def get_preset(name: str) -> DataConfig:
    """Returns the preset called ``name``.

    Raises:
        DataError: No preset has that name; the message lists the valid ones.
    """
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise DataError(
            f"unknown preprocessing preset `{name}`; choose one of {', '.join(list_presets())}"
        ) from None


_FIELDS = tuple(f.name for f in dataclasses.fields(DataConfig))

#: Fields chosen otherwise than by a single override: ``preset`` names the base settings
#: (``--preprocess``), ``channels`` follows the model's input shape.
_NOT_OVERRIDABLE = ("preset", "channels")

#: The :class:`DataConfig` fields a user may override one by one (CLI flags, the
#: ``[data]`` table of an experiment), in field order; derived from the dataclass.
PREPROCESS_KEYS: tuple[str, ...] = tuple(name for name in _FIELDS if name not in _NOT_OVERRIDABLE)

def _check_keys(values: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise DataError(
            f"unknown preprocessing key `{unknown[0]}` in {where}; valid keys: {', '.join(_FIELDS)}"
        )


_SWITCHABLE = ("resize", "crop", "crop_pct")
_OFF = object()  # marks a geometry setting explicitly turned off while merging


def _off(key: str, value: Any) -> Any:
    """Maps 0 / ``"none"`` for ``resize``/``crop``/``crop_pct`` to an explicit None (turned off)."""
    if key in _SWITCHABLE and not isinstance(value, bool):
        if (isinstance(value, str) and value.strip().lower() in ("none", "off", "0")) or (
            isinstance(value, (int, float)) and value == 0
        ):
            return _OFF
    return value


def resolve_data_config(
    preset: str | None = None,
    *,
    model_defaults: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> DataConfig:
    """Merges preprocessing settings in timm's order.

    Priority: explicit ``overrides`` (None values are ignored) > ``model_defaults``
    > the preset. The preset is ``preset`` if given, else ``model_defaults["preset"]``,
    else ``"torchvision"``. A layer that sets ``crop_pct`` without ``resize`` drops the
    ``resize`` of lower layers (so ``resize = floor(crop / crop_pct)``), and a layer that
    sets ``resize`` without ``crop_pct`` drops their ``crop_pct``. Because None means
    "not given", ``resize``, ``crop`` and ``crop_pct`` are turned off with ``0`` or
    ``"none"`` (e.g. ``resolve_data_config("torchvision", resize=0, crop=0)``, CLI
    ``--resize 0``). In ``model_defaults`` (a stored ``to_dict()``), a None ``resize``,
    ``crop`` or ``crop_pct`` also means off; other None values are ignored.

    Args:
        preset: Preset name (see :func:`list_presets`), or None.
        model_defaults: The model's own settings (ONNX metadata ``onnxnoise.preprocess``),
            keys are :class:`DataConfig` field names, possibly including ``preset``.
        **overrides: Explicit settings, keys are :class:`DataConfig` field names.

    Returns:
        The validated merged config; its ``preset`` field names the base preset.

    Raises:
        DataError: Unknown preset or key, ``model_defaults`` not a mapping, or an
            invalid merged value.
    """
    if model_defaults is not None and not isinstance(model_defaults, Mapping):
        raise DataError(
            "the model's preprocessing defaults must map setting names to values, "
            f"got a {type(model_defaults).__name__}; store a JSON object in the model's "
            "`onnxnoise.preprocess` metadata"
        )
    defaults = dict(model_defaults or {})
    _check_keys(defaults, "the model's preprocessing defaults")
    _check_keys(overrides, "the preprocessing arguments")
    explicit = {k: _off(k, v) for k, v in overrides.items() if v is not None}
    # In the model's defaults (JSON from DataConfig.to_dict) null means "off" for geometry.
    defaults = {
        k: (_OFF if v is None else _off(k, v))
        for k, v in defaults.items()
        if v is not None or k in _SWITCHABLE
    }
    name = explicit.pop("preset", None) or preset or defaults.get("preset") or DEFAULT_PRESET
    defaults.pop("preset", None)
    merged = get_preset(name).to_dict()
    merged["preset"] = name
    for layer in (defaults, explicit):
        if layer.get("crop_pct", _OFF) is not _OFF and "resize" not in layer:
            merged["resize"] = None
        if "resize" in layer and "crop_pct" not in layer:
            merged["crop_pct"] = None
        merged.update(layer)
    merged = {k: (None if v is _OFF else v) for k, v in merged.items()}
    return DataConfig(**merged)



def _values(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:g}" for v in values)


def unit_mismatch(cfg: DataConfig) -> str | None:
    """Why ``mean``/``std`` cannot be in the units ``scale`` gives the pixels, or None.

    A scaled pixel spans ``0 .. 255 * scale``. With ``scale`` = 1/255 (pixels in 0..1), a
    mean or std above 1 is in 0..255 units: ``--mean 128 --std 128`` turns every pixel
    into about -1 and the baseline reads near 0%. With ``scale`` = 1 (pixels in 0..255),
    means and stds all below 1 are in 0..1 units. Checked only at these two scales (other
    scales, e.g. ``2/255`` for -1..1, are deliberate); ``--force-preprocess`` skips it.

    Returns:
        One line naming the values and the fix, or None when the units agree.
    """
    span = 255.0 * cfg.scale
    given = f"--mean {_values(cfg.mean)} --std {_values(cfg.std)}"
    if span <= 1.0 + 1e-6 and any(abs(v) > 1.0 for v in (*cfg.mean, *cfg.std)):
        return (f"preprocessing units disagree: {given} are in 0..255 units but --scale {cfg.scale:.6g} maps pixels "
                f"to 0..{span:g}; pass `--scale 1` (or mean/std divided by 255), or --force-preprocess to run as given")
    if abs(span - 255.0) < 1e-3 and all(abs(v) < 1.0 for v in (*cfg.mean, *cfg.std)):
        return (f"preprocessing units disagree: {given} are in 0..1 units but --scale {cfg.scale:.6g} keeps pixels "
                f"in 0..255; pass `--scale {1 / 255:.8g}` (or mean/std times 255), "
                "or --force-preprocess to run as given")
    return None


def config_differences(a: DataConfig, b: DataConfig) -> list[str]:
    """Settings (other than the ``preset`` name) where ``a`` and ``b`` differ, as ``key a -> b`` texts."""
    left, right = a.to_dict(), b.to_dict()
    out = []
    for key in _FIELDS:
        if key == "preset" or left[key] == right[key]:
            continue
        out.append(f"{key} {_show(left[key])} -> {_show(right[key])}")
    return out


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return _values(tuple(value))
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def layout_conflict(layout: str, input_shape: Sequence[int | None]) -> str | None:
    """A ``--layout`` that contradicts the model's static input shape, as one user message.

    The shape decides when it is unambiguous: all of its three non-batch dimensions are
    static and exactly one of the channel positions (axis 1 for NCHW, axis 3 for NHWC)
    holds 1 or 3 channels.

    Args:
        layout: The layout given (``NCHW`` or ``NHWC``).
        input_shape: The model's image input shape; ``None`` for symbolic dimensions.

    Returns:
        e.g. ``"--layout NHWC contradicts the model's input, which is NCHW [N, 3, 32, 32]; drop
        --layout or pass --layout NCHW"``; ``None`` when they agree or the shape cannot tell.
    """
    shape = tuple(input_shape)
    if len(shape) != 4 or any(d is None for d in shape[1:]):
        return None
    first, last = shape[1] in (1, 3), shape[3] in (1, 3)
    if first == last:
        return None
    actual = "NCHW" if first else "NHWC"
    if layout == actual:
        return None
    dims = ", ".join(["N" if shape[0] is None else str(shape[0]), *(str(d) for d in shape[1:])])
    return (f"--layout {layout} contradicts the model's input, which is {actual} [{dims}]; drop --layout "
            f"or pass --layout {actual}")
