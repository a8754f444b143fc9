"""noise/base.py: checks every noise model shares (integer weights needed) and the quantization caption of the model in use."""

from __future__ import annotations

import inspect
import pkgutil
import sys

import numpy as np
import pytest

from onnxnoise.errors import NoiseConfigError
from onnxnoise.model import list_layers
import onnxnoise.noise as package
from onnxnoise.noise import NOISE_MODELS, NoiseModel, make_noise_model
from onnxnoise.noise.gaussian import GaussianSNR

from tests._builders import qdq_matmul, tiny_cnn


BITFLIP = make_noise_model("bit-flip")


def test_any_model_needing_integer_weights_is_checked_the_same_way():
    """The check is the base class's, driven by ``needs_integer_weights``: no bit-flip code involved."""
    class NeedsInts(GaussianSNR):
        needs_integer_weights = True

    layers = list_layers(tiny_cnn())
    with pytest.raises(NoiseConfigError, match=r"^gaussian-snr noise needs integer-quantized weights, but the 3 "):
        NeedsInts().check_layers(layers)
    GaussianSNR().check_layers(layers)  # the default needs nothing


def test_quantization_caption_comes_from_the_noise_model_in_use():
    rng = np.random.default_rng(0)
    q = rng.integers(-128, 128, size=(256, 64)).astype(np.int8)
    model = qdq_matmul(q, 0.01 * np.ones(64), np.zeros(64, np.int8), rng.integers(-5000, 5000, 64).astype(np.int32),
                       1e-4)
    layers = list_layers(model)
    assert BITFLIP.describe_quantization(layers) == (
        "quantized QDQ weights (1 layer): bits flipped in the stored integers of 2 tensors (16,448 values)")
    assert make_noise_model("gaussian-snr").describe_quantization(layers, 3) == (
        "quantized QDQ weights (1 layer): dequantize-noise-requantize, 3 values clipped")
    assert BITFLIP.describe_quantization(list_layers(tiny_cnn())) is None
    assert "float tensors (biases, normalization, float layers) left exact" in BITFLIP.describe()


def test_every_model_module_of_the_package_registers_itself():
    """A model class in any file of onnxnoise/noise/ is registered by importing the package (no list to edit)."""
    modules = [f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]
    assert len(modules) >= 12 and all(name in sys.modules for name in modules)
    defined = {cls.name for name in modules for _, cls in inspect.getmembers(sys.modules[name], inspect.isclass)
               if issubclass(cls, NoiseModel) and cls.__module__ == name and vars(cls).get("name")}
    assert defined == {"gaussian-snr", "gaussian-global-db", "multiplicative", "pcm", "stuck-at",
                       "conductance-levels", "bit-flip", "gaussian-max", "crosssim", "none"}
    assert defined <= set(NOISE_MODELS)
