"""Noise models (plug-ins with a registry) and the policies around one draw.

``from onnxnoise.noise import make_noise_model, draw_noise`` is the whole API the
engine uses; :mod:`onnxnoise.noise.base` explains how to add a model.
"""

from onnxnoise.noise.base import NOISE_MODELS, NoiseModel, TensorInfo, get_noise_model, make_noise_model, register
from onnxnoise.noise.draw import BN_VARIANCE_POLICIES, NoiseDraw, NoisePolicies, draw_noise
from onnxnoise.noise.gaussian import GaussianSNR
from onnxnoise.noise.rng import tensor_rng

__all__ = [
    "NOISE_MODELS", "NoiseModel", "TensorInfo", "get_noise_model", "make_noise_model", "register",
    "BN_VARIANCE_POLICIES", "NoiseDraw", "NoisePolicies", "draw_noise", "GaussianSNR", "tensor_rng",
]
