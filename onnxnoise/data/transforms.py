"""Re-exports the old ``onnxnoise.data.transforms`` names; temporary, removed when callers move to onnxnoise.data."""

from onnxnoise.data.config import CIFAR10_MEAN, CIFAR10_STD, DEFAULT_PRESET, IMAGENET_MEAN, IMAGENET_STD, PRESETS, DataConfig
from onnxnoise.data.config import get_preset, list_presets, resolve_data_config
from onnxnoise.data.decode import convert_channels, decode_image, normalize, transform_array

__all__ = ["CIFAR10_MEAN", "CIFAR10_STD", "DEFAULT_PRESET", "IMAGENET_MEAN", "IMAGENET_STD", "PRESETS", "DataConfig", "get_preset", "list_presets", "resolve_data_config", "convert_channels", "decode_image", "normalize", "transform_array"]
