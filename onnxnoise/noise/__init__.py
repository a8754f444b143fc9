"""Noise models (plug-ins with a registry) and the policies around one draw.

``from onnxnoise.noise import make_noise_model, draw_noise`` is the whole API the
engine uses; :mod:`onnxnoise.noise.base` explains how to add a model, and
:mod:`onnxnoise.noise.axis` how a model declares its strength axis (``--t``, ``--rate``...), and
:mod:`onnxnoise.noise.device` the template of the device models (conductance pairs, stage hooks). Built-in models:
``gaussian-snr`` (paper eq. 1, ``scope`` tensor/layer/channel), ``gaussian-global-db``
(NoisyNN), ``gaussian-max`` (Analog Foundation Models, aihwkit-lightning), ``multiplicative``, ``pcm``,
``stuck-at``, ``conductance-levels``, ``crosssim`` (CrossSim programming errors), ``bit-flip``; formulas
and sources in each module and in ../shared/NOISE-MODELS.md and ../shared/PARITY.md. The device
models' weight-to-conductance ``mapping`` is :mod:`onnxnoise.noise.mapping`.

Every module of this package is imported here, so a model class in a new file of
``onnxnoise/noise/`` registers itself (``@register``) with no other edit; the names below are
the package's public API.
"""

import importlib
import pkgutil

from onnxnoise.noise.axis import PlotAs, StrengthAxis, axis_label, axis_of, format_seconds
from onnxnoise.noise.base import NOISE_MODELS, NoiseModel, TensorInfo, get_noise_model, make_noise_model, register
from onnxnoise.noise.bitflip import BitFlip
from onnxnoise.noise.clean import CleanStats
from onnxnoise.noise.draw import BN_VARIANCE_POLICIES, NoiseDraw, NoisePolicies, draw_noise, split_layers
from onnxnoise.noise.conductance import ConductanceLevels
from onnxnoise.noise.crosssim import CrossSim
from onnxnoise.noise.device import AnalogModel, DeviceModel, Devices, QuantizedDeviceModel, Tile
from onnxnoise.noise.gaussian import GaussianGlobalDb, GaussianSNR
from onnxnoise.noise.gaussian_max import GaussianMax
from onnxnoise.noise.mapping import MAPPINGS
from onnxnoise.noise.multiplicative import Multiplicative
from onnxnoise.noise.pcm import PCM
from onnxnoise.noise.rng import tensor_rng
from onnxnoise.noise.scope import SCOPES
from onnxnoise.noise.stuck import StuckAt

__all__ = [
    "NOISE_MODELS", "NoiseModel", "TensorInfo", "get_noise_model", "make_noise_model", "register",
    "BN_VARIANCE_POLICIES", "NoiseDraw", "NoisePolicies", "draw_noise", "GaussianSNR", "tensor_rng",
    "GaussianGlobalDb", "Multiplicative", "PCM", "StuckAt", "ConductanceLevels", "BitFlip", "SCOPES",
    "StrengthAxis", "PlotAs", "axis_of", "axis_label", "format_seconds", "DeviceModel", "QuantizedDeviceModel",
    "Devices", "Tile", "AnalogModel", "GaussianMax", "CrossSim", "MAPPINGS", "CleanStats", "split_layers",
]

for _module in pkgutil.iter_modules(__path__):  # a new model file registers itself
    importlib.import_module(f"{__name__}.{_module.name}")

