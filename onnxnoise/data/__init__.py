"""Datasets and preprocessing: open a dataset, decode it once, yield float32 batches.

Typical use::

    from onnxnoise import data

    config = data.resolve_data_config("torchvision", crop=224)
    ds = data.open_dataset("imagenette-val500", limit=200)
    loaded = data.load_images(ds, config)          # (N, H, W, C) uint8, decoded once
    for x, y in data.iter_batches(loaded.images, loaded.labels, config, 64):
        ...                                        # x float32 NCHW, y int64
"""

from __future__ import annotations

from onnxnoise.data.dataset import (
    FORMATS,
    Dataset,
    LoadedImages,
    SkippedImage,
    iter_batches,
    load_images,
    open_dataset,
    stratified_indices,
)
from onnxnoise.data.transforms import (
    DEFAULT_PRESET,
    PRESETS,
    DataConfig,
    decode_image,
    get_preset,
    list_presets,
    normalize,
    resolve_data_config,
    transform_array,
)

__all__ = [
    "DEFAULT_PRESET",
    "FORMATS",
    "PRESETS",
    "DataConfig",
    "Dataset",
    "LoadedImages",
    "SkippedImage",
    "decode_image",
    "get_preset",
    "iter_batches",
    "list_presets",
    "load_images",
    "normalize",
    "open_dataset",
    "resolve_data_config",
    "stratified_indices",
    "transform_array",
]
