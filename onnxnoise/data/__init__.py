"""Datasets and preprocessing: open a dataset, decode it once, yield float32 batches.

Typical use::

    from onnxnoise import data

    config = data.resolve_data_config("torchvision", crop=224)
    ds = data.open_dataset("imagenette-val500", limit=200)
    loaded = data.load_images(ds, config)          # (N, H, W, C) uint8, decoded once
    for x, y in data.iter_batches(loaded.images, loaded.labels, config, 64):
        ...                                        # x float32 NCHW, y int64

Modules: :mod:`~onnxnoise.data.config` (``DataConfig``, presets, merging),
:mod:`~onnxnoise.data.assumed` (what a model that states no preprocessing gets),
:mod:`~onnxnoise.data.decode` (image decoding, geometry, normalization),
:mod:`~onnxnoise.data.dataset` (``Dataset``, ``open_dataset``, subsets),
:mod:`~onnxnoise.data.formats` (the dataset-format protocol: ``DatasetFormat``,
``DatasetContents``), :mod:`~onnxnoise.data.detect` (the format registry
``DATASET_FORMATS`` and detection; one format class each in ``cifar``, ``folder``,
``imagenet``, ``npz``), :mod:`~onnxnoise.data.loading` (decoding a dataset into memory,
batches) and :mod:`~onnxnoise.data.cache` (decoded images on disk).
"""

from __future__ import annotations

from onnxnoise.data.assumed import assumed_warning, input_geometry, static_size
from onnxnoise.data.config import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    DEFAULT_PRESET,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INTERPOLATIONS,
    PREPROCESS_KEYS,
    PRESETS,
    DataConfig,
    config_differences,
    get_preset,
    layout_conflict,
    list_presets,
    resolve_data_config,
    unit_mismatch,
)
from onnxnoise.data.dataset import Dataset, open_dataset, stratified_indices
from onnxnoise.data.decode import convert_channels, decode_image, normalize, transform_array
from onnxnoise.data.detect import DATASET_FORMATS, register_format
from onnxnoise.data.formats import DatasetContents, DatasetFormat
from onnxnoise.data.loading import LoadedImages, SkippedImage, iter_batches, load_images

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATASET_FORMATS",
    "DEFAULT_PRESET",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INTERPOLATIONS",
    "PREPROCESS_KEYS",
    "PRESETS",
    "DataConfig",
    "Dataset",
    "DatasetContents",
    "DatasetFormat",
    "LoadedImages",
    "SkippedImage",
    "convert_channels",
    "decode_image",
    "get_preset",
    "iter_batches",
    "list_presets",
    "load_images",
    "normalize",
    "open_dataset",
    "register_format",
    "resolve_data_config",
    "stratified_indices",
    "transform_array",
    "unit_mismatch",
    "config_differences",
    "layout_conflict",
    "assumed_warning",
    "input_geometry",
    "static_size",
]
