"""Toy noise models shared by the tests, registered when this module is imported.

Registry names start with ``test-`` so that they never clash with a real model:

- ``test-drift`` (:class:`Drift`): noise grows with its strength, a time (``more_noise_when="higher"``),
  one parameter ``nu``; the default ``describe()`` and ``format_strength()`` (``time (s) 60``).
- ``test-drift-labeled`` (:class:`LabeledDrift`): the same with its own ``format_strength()`` (``t = 60 s``).
- ``test-db`` (:class:`Db`): an SNR-in-dB-like axis that is not ``gaussian-snr`` (``more_noise_when="lower"``).
- ``test-zero-every-k`` (:class:`ZeroEveryK`): zeroes every ``k``-th element.

and, registered only by the fixture :func:`toy_device_model` (``from tests._noise_models import
toy_device_model`` in a test module), ``test-toy-device`` (:class:`ToyDevice`): a device model on
the template :class:`onnxnoise.noise.device.DeviceModel` with its own strength option ``--toy-loss``;
by the fixture :func:`zeroing_model`, ``test-zero-all`` (:class:`ZeroAll`): every noised tensor
zeroed, with a :meth:`~onnxnoise.noise.NoiseModel.collapse_hint`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from onnxnoise.noise import NOISE_MODELS, DeviceModel, NoiseModel, StrengthAxis, register


@dataclass(frozen=True)
class _ReportOnly(NoiseModel):
    """Base of the models that only name an axis for reports: tests never draw with them."""

    def perturb(self, w, strength, rng, tensor):
        return w


@register
@dataclass(frozen=True)
class Drift(_ReportOnly):
    """Noise grows with the strength (a time), unlike SNR; default describe() and format_strength()."""

    name: ClassVar[str] = "test-drift"
    strength_name: ClassVar[str] = "t"
    strength_label: ClassVar[str] = "time (s)"
    more_noise_when: ClassVar[str] = "higher"
    nu: float = 0.05


@register
@dataclass(frozen=True)
class LabeledDrift(Drift):
    """:class:`Drift` with its own strength text, ``t = 60 s``, for legends."""

    name: ClassVar[str] = "test-drift-labeled"

    def format_strength(self, value):
        return "clean" if value is None else f"t = {value:g} s"


@register
@dataclass(frozen=True)
class Db(_ReportOnly):
    """An SNR-like axis in dB that is not gaussian-snr: more noise at lower values."""

    name: ClassVar[str] = "test-db"
    strength_label: ClassVar[str] = "SNR (dB)"
    more_noise_when: ClassVar[str] = "lower"


@register
@dataclass(frozen=True)
class ZeroEveryK(NoiseModel):
    """Toy plug-in: zero every ``k``-th element (from ``offset``) of each tensor."""

    name: ClassVar[str] = "test-zero-every-k"
    strength_name: ClassVar[str] = "k"
    strength_label: ClassVar[str] = "every k-th zeroed, k ="
    more_noise_when: ClassVar[str] = "lower"
    default_strengths: ClassVar[tuple[float, ...]] = (4.0,)
    offset: int = 0

    def check_strength(self, value):
        value = super().check_strength(value)
        if value < 1 or value != int(value):
            raise ValueError(f"k must be an integer >= 1, got {value!r}")
        return value

    def perturb(self, w, strength, rng, tensor):
        out = w.copy()
        out.reshape(-1)[self.offset :: int(strength)] = 0
        return out


# ---------------------------------------------------------------- a toy device model on the template


@dataclass(frozen=True)
class ToyDevice(DeviceModel):
    """Toy device model on the device template: every device loses a fraction ``loss`` of its conductance.

    ``w' = (g+ (1 - loss) - g- (1 - loss)) / g_max * w_max = w (1 - loss)`` (within rounding) on the
    analog tensors; one drift-like stage hook, everything else the template's. Not registered
    at import: the :func:`toy_device_model` fixture registers it for one test and removes it after.
    """

    name: ClassVar[str] = "test-toy-device"
    strength_axis: ClassVar[StrengthAxis] = StrengthAxis(
        symbol="loss", label="conductance loss", defaults=(0.1, 0.5), flag="toy-loss", unit="fraction",
        name="toy conductance loss per device", style="percent", text="loss {}",
        help="toy: fraction of conductance every device loses, e.g. 0.1,0.5")
    floor: float = 0.0

    def drift_stage(self, devices, strength, rng):
        return np.maximum(devices.now * (1.0 - strength), self.floor)


@pytest.fixture
def toy_device_model():
    """:class:`ToyDevice` registered as ``test-toy-device`` for one test, unregistered after."""
    register(ToyDevice)
    yield ToyDevice
    NOISE_MODELS.pop(ToyDevice.name, None)


@dataclass(frozen=True)
class ZeroAll(NoiseModel):
    """Toy plug-in: every noised tensor becomes zeros (a zeroed classifier head: no top-1 hit at all).

    Its :meth:`collapse_hint` is :data:`ZERO_ALL_HINT`. Not registered at import: :func:`zeroing_model`.
    """

    name: ClassVar[str] = "test-zero-all"
    strength_label: ClassVar[str] = "zeroed"
    more_noise_when: ClassVar[str] = "higher"
    default_strengths: ClassVar[tuple[float, ...]] = (1.0,)

    def perturb(self, w, strength, rng, tensor):
        return np.zeros_like(w)

    def collapse_hint(self):
        return ZERO_ALL_HINT


#: :meth:`ZeroAll.collapse_hint`.
ZERO_ALL_HINT = "zeroed weights predict nothing: keep this layer digital (test advice)"


@pytest.fixture
def zeroing_model():
    """:class:`ZeroAll` registered as ``test-zero-all`` for one test, unregistered after."""
    register(ZeroAll)
    yield ZeroAll
    NOISE_MODELS.pop(ZeroAll.name, None)
