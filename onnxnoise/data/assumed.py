"""Preprocessing for a model that states none: geometry from its input, and a warning naming the rest.

A model without ``onnxnoise.preprocess`` metadata, run without ``--preprocess``, starts from
the default preset (torchvision: resize 256, crop 224, x/255, ImageNet mean and std). Two
things follow:

* geometry, as timm takes it (``timm.data.resolve_data_config``: the input size from the
  model, ``crop_pct`` 0.875): a square static input of ``S x S`` pixels gets ``crop = S`` and
  ``resize = floor(S * 256 / 224)`` (:func:`input_geometry`); a 224 x 224 input keeps 256 /
  224, so nothing changes for it. Geometry given with ``--resize``, ``--crop`` or
  ``--crop-pct`` is left alone, and a non-square or symbolic input keeps the preset's.
* a warning (:func:`assumed_warning`) naming every setting that was assumed rather than
  read or given, and how to set it: a wrong mean/std costs accuracy without any error
  (EfficientNet-Lite0 reads 62% with torchvision's instead of its 69% with ``tf-lite``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from onnxnoise.data.config import DEFAULT_PRESET, DataConfig, get_preset, list_presets

__all__ = ["static_size", "input_geometry", "assumed_warning", "stated_settings"]

_GEOMETRY_KEYS = ("resize", "crop", "crop_pct")


def static_size(input_shape: Sequence[int | None], layout: str | None = None) -> tuple[int, int] | None:
    """``(height, width)`` of a 4-D image input whose spatial dimensions are static, else None.

    Args:
        input_shape: The model's input shape (``None`` for symbolic dimensions).
        layout: ``NCHW`` / ``NHWC`` when known; else read from where the 1 or 3 channels are
            (dimension 1: NCHW, dimension 3: NHWC; neither or both: unknown, None).
    """
    shape = tuple(input_shape)
    if len(shape) != 4:
        return None
    if layout is None:
        first, last = shape[1] in (1, 3), shape[3] in (1, 3)
        if first == last:
            return None
        layout = "NCHW" if first else "NHWC"
    h, w = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    if h is None or w is None or h <= 0 or w <= 0:
        return None
    return int(h), int(w)


def input_geometry(input_shape: Sequence[int | None], given: Mapping[str, Any]) -> tuple[dict[str, int], tuple | None]:
    """The default preset's geometry scaled to a square static input, timm style.

    Args:
        input_shape: The model's input shape.
        given: The single preprocessing settings given (``--resize``, ``--mean``...).

    Returns:
        ``({"resize": floor(S * 256 / 224), "crop": S}, (S, S))`` for an ``S x S`` input
        other than the preset's crop; ``({}, size)`` when the preset already fits, the input
        is not square and static, or any geometry setting was given (``size`` is the
        static ``(H, W)`` or None).
    """
    size = static_size(input_shape, given.get("layout"))
    base = get_preset(DEFAULT_PRESET)
    if size is None or any(given.get(key) is not None for key in _GEOMETRY_KEYS):
        return {}, size
    h, w = size
    if h != w or h == base.crop or base.crop is None:
        return {}, size
    resize = None if base.resize is None else h * base.resize // base.crop
    return {"resize": resize, "crop": h}, size


def _values(values: Sequence[float]) -> str:
    return ",".join(f"{v:g}" for v in values)


def assumed_warning(config: DataConfig, given: Mapping[str, Any], *, normalized: bool = True,
                    size: tuple[int, int] | None = None, partial: bool = False) -> str | None:
    """One line naming the preprocessing assumed for a model that states none, and how to set it.

    Args:
        config: The resolved preprocessing.
        given: The single settings given on the command line or in the experiment file
            (not assumed, so not named), and with ``partial`` those the model's metadata states.
        normalized: False for a uint8-input model (no scale, mean or std is applied).
        size: The model's static ``(H, W)`` input, named next to the geometry taken from it.
        partial: The model's metadata states some settings but no preset (the line says so).

    Returns:
        e.g. ``"no preprocessing stored in the model (metadata `onnxnoise.preprocess`) and no
        --preprocess given: assumed torchvision's resize 256 bilinear, crop 224 (the model's
        224x224 input), RGB, x/255, mean 0.485,0.456,0.406, std 0.229,0.224,0.225; ..."``,
        or None when every such setting was given.
    """
    parts = []
    if not any(given.get(key) is not None for key in _GEOMETRY_KEYS):
        geometry = [f"resize {config.resize} {config.interpolation}" if config.resize else "no resize",
                    f"crop {config.crop}" if config.crop else "no crop"]
        parts.append(", ".join(geometry) + (f" (the model's {size[0]}x{size[1]} input)" if size else ""))
    if normalized:
        if config.channels == 3 and given.get("channel_order") is None:
            parts.append(config.channel_order)
        if given.get("scale") is None:
            parts.append("x/255" if abs(config.scale * 255.0 - 1.0) < 1e-9 else f"x*{config.scale:.6g}")
        parts += [f"{key} {_values(getattr(config, key))}" for key in ("mean", "std") if given.get(key) is None]
    if not parts:
        return None
    where = ("the model's `onnxnoise.preprocess` metadata names no preset and leaves settings out" if partial
             else "no preprocessing stored in the model (metadata `onnxnoise.preprocess`)")
    return (f"{where} and no --preprocess given: "
            f"assumed {config.preset}'s {', '.join(parts)}; if the model was trained otherwise, pass --preprocess "
            f"PRESET ({', '.join(list_presets())}) or --mean/--std/--scale/--resize/--crop")


def stated_settings(metadata: dict[str, Any]) -> dict[str, Any]:
    """The settings a model's ``onnxnoise.preprocess`` metadata states, spelled as given settings for
    :func:`input_geometry` and :func:`assumed_warning`: a null ``resize`` / ``crop`` / ``crop_pct`` states
    "off" (as in :func:`onnxnoise.data.resolve_data_config`), a layout is upper-cased as ``DataConfig`` reads it.

    Args:
        metadata: The parsed JSON object.

    Returns:
        ``setting -> value`` of every setting stated (None values of other settings dropped).
    """
    stated = {key: ("off" if value is None else value) for key, value in metadata.items()
              if value is not None or key in _GEOMETRY_KEYS}
    if isinstance(stated.get("layout"), str):  # DataConfig reads "nchw" as NCHW; so does the geometry
        stated["layout"] = stated["layout"].upper()
    return stated
