"""The device template: weights on differential conductance pairs, the model's stages as hooks, and back.

Device noise models (``pcm``, ``stuck-at``, ``conductance-levels``; a new one is a
subclass) share one skeleton, :meth:`DeviceModel.perturb`, as aihwkit's analog tiles share
their conductance converter:

1. **map** (:meth:`DeviceModel.tile`): a tensor stored on devices (parameter ``analog``)
   with ``w_max > 0`` becomes a :class:`Tile`; each weight is a pair of devices,
   ``g+`` for positive and ``g-`` for negative values, the other device at ``g_min``
   (../shared/NOISE-MODELS.md sec. 4; Joshi et al., Nat. Commun. 11, 2473 (2020); IBM
   aihwkit "Inference and PCM statistical model"; CrossSim's BALANCED core for ``g_min > 0``,
   ../shared/PARITY.md sec. 2)::

       g+_T = g_min + max(w, 0) / w_max * (g_max - g_min),   g-_T = g_min + max(-w, 0) / w_max * (g_max - g_min)

   ``g_max`` is the model's conductance unit (:meth:`DeviceModel.conductance_unit`: pcm's
   ``g_max`` in uS; 1 for stuck-at, whose stages are relative; ``w_max`` for
   conductance-levels, i.e. conductances in weight units) and ``g_min``
   (:meth:`DeviceModel.conductance_floor`) 0 for all of them but crosssim. ``w_max`` is
   taken over the set the parameter ``mapping`` names (:mod:`onnxnoise.noise.mapping`):
   ``tensor`` (default: ``max|w|`` of the tensor, a float), ``channel`` (one per output
   channel, aihwkit's channel-wise remap) or ``tile-column`` (one per output column of each
   tile of ``--tile-rows`` input rows); the last two give an array broadcast over the tensor,
   and a channel of zeros (``w_max = 0``) reads back 0. Digital tensors, and empty, all-zero
   or non-finite ones, are returned unchanged.
2. **quantize**: targets rounded to ``levels`` even steps ``g_min + k * (g_max - g_min) / (levels - 1)``
   (NOISE-MODELS.md sec. 6; half to even), when :meth:`DeviceModel.levels_at` is not 0.
3. **stages**, hooks called in this order (:data:`STAGES`), each returning the pairs'
   conductances ``(2, *w.shape)`` float64 after it; the default leaves them as they are:
   :meth:`~DeviceModel.program_stage` (write-verify programming noise; its result is also
   kept as ``Devices.programmed``, the reference read right after programming),
   :meth:`~DeviceModel.drift_stage`, :meth:`~DeviceModel.fault_stage`,
   :meth:`~DeviceModel.read_stage`. Each stage gets its own generator from
   :meth:`~DeviceModel.stage_rngs` (default: the tensor's generator for every stage).
4. **map back** (:meth:`DeviceModel.read_back`): by default ``w' = (g+ - g-) / (g_max - g_min) *
   w_max`` (:meth:`Tile.weights`); pcm reads the change from the exact targets instead
   (:meth:`Tile.shifted`, so ``w`` comes back bit for bit when no stage acts) and applies
   global drift compensation there; stuck-at reads back only the pairs its faults changed.
5. **cast** to ``w``'s dtype (:mod:`onnxnoise.noise.draw` then stores it as the tensor's type).

Which tensors are analog (parameter ``analog``, :data:`ANALOG_CHOICES`): ``weights``
(default) maps only the weight matrices of Conv, ConvTranspose, Gemm and MatMul (role
``weight``); biases, BatchNormalization and other normalization parameters stay digital
and exact, as in aihwkit's analog layers (digital bias) and in IBM's PCM studies. ``all``
maps every tensor the trial noises, each on its own pair mapping with its own ``w_max``.
A layer has one weight tensor, so per tensor is per layer under ``weights``.
A weight read through layout ops (``Transpose(W) -> MatMul``, ``Reshape``, ``Unsqueeze``...) or
as an ``Einsum`` operand has the role ``weight`` too (:mod:`onnxnoise.model.weight_chains`).

Under ``weights``, a run whose selected layers leave nothing analog is refused before any
trial (:meth:`DeviceModel.check_layers`): a selection without any weight matrix, or a selected
layer holding none that is not a normalization layer (:data:`DIGITAL_OPS`, digital by design:
a ``Concat`` of a class token, an ``Add`` of a positional embedding, a ``PRelu`` slope, a
weight reached through an op discovery does not follow). Noising such a layer would change
nothing while the run says it noised it.

Shared parameters are declared once here: ``analog`` (:class:`AnalogModel`, which
``gaussian-max`` shares), ``mapping`` (:class:`DeviceModel`) and ``levels``
(:class:`QuantizedDeviceModel`, the models whose strength is not the number of levels).
``mapping=tensor`` is left out of :meth:`DeviceModel.params`, so runs that do not set it
keep their stored parameters and trial keys.

**Input and output stages of an analog tile** (DAC on the inputs, ADC and read noise on
each tile's partial sums, tiles of ``--tile-rows`` input rows) act on a layer's activations,
not on its stored weights, so they do not run inside :meth:`~DeviceModel.perturb`: they are
graph nodes inserted around every noised layer (:mod:`onnxnoise.tile`, wired into the run by
:mod:`onnxnoise.engine.stages`), and compose with any weight-side model in one trial. The
weight side and the stages cut a weight into tiles by one rule
(:func:`onnxnoise.model.tiles.tile_chunks`), so ``mapping=tile-column`` gives each tile the
full scale of its own columns, as aihwkit's per-tile remap does. Output corrections that are
weight-equivalent (pcm's global drift compensation, a per-column digital scale) belong in
:meth:`~DeviceModel.read_back`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from onnxnoise.errors import NoiseConfigError
from onnxnoise.noise.base import NoiseModel, TensorInfo
from onnxnoise.noise.mapping import MAPPINGS, check_mapping_layers, full_scale, weight_max
from onnxnoise.noise.params import check_choice, check_levels

__all__ = ["ANALOG_CHOICES", "DIGITAL_OPS", "STAGES", "AnalogModel", "DeviceModel", "Devices", "QuantizedDeviceModel",
           "Tile", "is_analog", "pair_targets", "quantize_conductance", "weight_max", "MAPPINGS"]

#: Values of the device models' ``analog`` parameter (see the module docstring).
ANALOG_CHOICES: tuple[str, ...] = ("weights", "all")

#: Op types of layers that stay digital under ``analog="weights"`` by design (normalization, as in
#: aihwkit's analog networks); other layers without a weight matrix are refused (:meth:`DeviceModel.check_layers`).
DIGITAL_OPS: frozenset[str] = frozenset({"BatchNormalization", "InstanceNormalization", "LayerNormalization",
                                         "GroupNormalization"})

#: The template's stage hooks, in the order they run (``<stage>_stage`` methods of :class:`DeviceModel`).
STAGES: tuple[str, ...] = ("program", "drift", "fault", "read")


def is_analog(tensor: TensorInfo, analog: str) -> bool:
    """Whether ``tensor`` is stored on devices under the ``analog`` choice."""
    return analog == "all" or tensor.role == "weight"


def _names(layers: Sequence[Any], shown: int = 5) -> str:
    text = ", ".join(f"{layer.name!r} ({layer.op_type})" for layer in layers[:shown])
    return text + (f" and {len(layers) - shown} more" if len(layers) > shown else "")


def _ratio(num: float | np.ndarray, den: float | np.ndarray) -> float | np.ndarray:
    """``num / den``, 0 where ``den`` is 0 (a channel of zeros); plain division when both are floats (bit for bit)."""
    if np.ndim(num) == 0 and np.ndim(den) == 0:
        return num / den
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast_shapes(num.shape, den.shape))
    return np.divide(num, den, out=out, where=np.broadcast_to(den != 0, out.shape))


def pair_targets(w: np.ndarray, w_max: float | np.ndarray, g_max: float | np.ndarray,
                 g_min: float = 0.0) -> np.ndarray:
    """Target conductances of the differential pairs.

    Args:
        w: Weights, any shape (float64).
        w_max: The full-scale weight: a float > 0, or an array broadcast over ``w`` (entries >= 0;
            0 for a channel of zeros, whose targets are ``g_min``) (:func:`onnxnoise.noise.mapping.full_scale`).
        g_max: Full-scale conductance (the model's unit; uS for pcm), a float or an array like ``w_max``.
        g_min: Conductance of a device holding 0 (default 0; crosssim's ``g_ratio * g_max``).

    Returns:
        float64 ``(2, *w.shape)``: ``[g+_T, g-_T]``, ``g_min + max(±w, 0) * ((g_max - g_min) / w_max)``.
    """
    scale = _ratio(g_max - g_min if g_min else g_max, w_max)
    targets = np.stack([np.maximum(w, 0.0) * scale, np.maximum(-w, 0.0) * scale])
    return targets + g_min if g_min else targets


def quantize_conductance(g: np.ndarray, g_max: float | np.ndarray, levels: int, g_min: float = 0.0) -> np.ndarray:
    """Round conductances in ``[g_min, g_max]`` to the nearest of ``levels`` even steps (the bounds exact).

    ``g_max`` may be an array broadcast over ``g``'s last axes (a mapping per channel); where it
    is 0 (a channel of zeros) the result is 0.
    """
    steps = levels - 1
    if g_min:
        span = g_max - g_min
        return g_min + np.rint(_ratio(g - g_min, span) * steps) / steps * span
    return np.rint(_ratio(g, g_max) * steps) / steps * g_max


@dataclass(frozen=True)
class Tile:
    """One weight tensor mapped onto differential pairs (one crossbar per tensor).

    Attributes:
        w: Clean weights, float64, the tensor's shape.
        w_max: The weight that maps to ``g_max`` (finite): a float > 0 under ``mapping=tensor``
            (``max|w|``), else a float64 array broadcast over ``w`` (one entry per output channel
            or tile column, >= 0; :func:`onnxnoise.noise.mapping.full_scale`).
        g_max: Full-scale conductance, in the model's unit (:meth:`DeviceModel.conductance_unit`):
            a float, or an array like ``w_max`` (conductance-levels, whose unit is ``w_max``).
        tensor: Facts about the tensor (name, role, layer, op type).
        g_min: Conductance of a device holding 0 (:meth:`DeviceModel.conductance_floor`; default 0).
    """

    w: np.ndarray
    w_max: float | np.ndarray
    g_max: float | np.ndarray
    tensor: TensorInfo
    g_min: float = 0.0

    @cached_property
    def targets(self) -> np.ndarray:
        """Exact targets ``[g+_T, g-_T]``, float64 ``(2, *w.shape)`` (:func:`pair_targets`); stages leave them as is."""
        return pair_targets(self.w, self.w_max, self.g_max, self.g_min)

    @cached_property
    def unit(self) -> float | np.ndarray:
        """``w_max / (g_max - g_min)``: the weight of one conductance unit (0 where ``w_max`` is 0)."""
        return _ratio(self.w_max, self.g_max - self.g_min if self.g_min else self.g_max)

    def weights(self, g: np.ndarray) -> np.ndarray:
        """``(g+ - g-) * unit``: the weights pairs ``g`` (``(2, *w.shape)``) hold, float64."""
        return (g[0] - g[1]) * self.unit

    def shifted(self, g: np.ndarray) -> np.ndarray:
        """``w + ((g+ - g+_T) - (g- - g-_T)) * unit``: ``w`` moved by the pairs' change from their targets.

        Equal to :meth:`weights` in exact arithmetic; returns ``w`` bit for bit where ``g`` is the targets.
        """
        return self.w + ((g[0] - self.targets[0]) - (g[1] - self.targets[1])) * self.unit


@dataclass
class Devices:
    """The conductances of one tile as the stages go: float64 ``(2, *w.shape)`` arrays, ``[g+, g-]``.

    Attributes:
        tile: The mapping.
        target: Programming targets, after the levels grid (the exact targets without one).
        programmed: After :meth:`DeviceModel.program_stage` (``target`` until then).
        now: After the latest stage: what a read at inference time sees.
    """

    tile: Tile
    target: np.ndarray
    programmed: np.ndarray = field(init=False)
    now: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.programmed = self.now = self.target


@dataclass(frozen=True)
class AnalogModel(NoiseModel):
    """Base of the models that noise only the tensors stored on analog devices (parameter ``analog``).

    Shared by the device template (:class:`DeviceModel`) and ``gaussian-max``
    (:class:`onnxnoise.noise.gaussian_max.GaussianMax`): which tensors are analog, and the
    refusal of a selection in which nothing is (module docstring).

    Attributes:
        analog: ``weights`` (default: weight matrices only; biases and normalization
            parameters stay digital and exact) or ``all`` (:data:`ANALOG_CHOICES`).

    Raises:
        ValueError: On a bad parameter (one line naming it; :func:`~onnxnoise.noise.base.make_noise_model`
            turns it into a :class:`~onnxnoise.errors.NoiseConfigError`).
    """

    analog: str = "weights"

    def __post_init__(self) -> None:
        check_choice("analog", self.analog, ANALOG_CHOICES)

    def acts_on(self, role: str, op_type: str, quantized: bool) -> bool:
        """Only analog tensors: every tensor under ``analog="all"``, else weight matrices (role ``weight``)."""
        return self.analog == "all" or role == "weight"

    def check_layers(self, layers: Sequence[Any]) -> None:
        """Refuse a selection in which noise could change nothing (see the module docstring).

        Raises:
            NoiseConfigError: One line naming the selected layers without an analog tensor and
                how to leave them out or map them.
        """
        super().check_layers(layers)
        layers = list(layers)
        digital = [layer for layer in layers if not any(
            self.acts_on(role, layer.op_type, False) for role in layer.roles)]
        everything = len(digital) == len(layers)
        refused = digital if everything else [layer for layer in digital if layer.op_type not in DIGITAL_OPS]
        if not refused:
            return
        what = f"none of the {len(layers)} selected layer(s) holds one" if everything else (
            f"{len(refused)} selected layer(s) hold none")
        msg = (f"{self.name} treats only weight matrices as analog (analog=weights) and {what}, so noise would "
               f"change nothing there: {_names(refused)}; select layers with a weight (e.g. --op-types "
               f"Conv,ConvTranspose,Gemm,MatMul,Einsum or --layer-regex) or treat every tensor as analog "
               f"(--noise {self.name}:analog=all)")
        raise NoiseConfigError(msg)


@dataclass(frozen=True)
class DeviceModel(AnalogModel):
    """Template of the noise models of devices on differential conductance pairs (see :mod:`onnxnoise.noise.device`).

    A device model subclasses it (or :class:`QuantizedDeviceModel`), declares ``name`` and
    ``strength_axis`` like any :class:`~onnxnoise.noise.base.NoiseModel`, and implements
    the hooks it needs; :meth:`perturb` is the skeleton and is not overridden.

    Attributes:
        analog: :class:`AnalogModel`'s: ``weights`` (default) or ``all``.
        mapping: Over what set ``w_max`` is taken (:data:`~onnxnoise.noise.mapping.MAPPINGS`,
            :mod:`onnxnoise.noise.mapping`): ``tensor`` (default), ``channel`` or ``tile-column``
            (needs the run's ``--tile-rows``). The default is left out of :meth:`params`.

    Raises:
        ValueError: On a bad parameter (one line naming it).
        NoiseConfigError: From :meth:`check_layers` / :meth:`perturb`: a ``channel`` or
            ``tile-column`` mapping of a tensor without a known output-channel axis, or
            ``tile-column`` without ``--tile-rows``.
    """

    mapping: str = "tensor"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("mapping", self.mapping, MAPPINGS)

    def params(self) -> dict[str, Any]:
        """The parameters, without ``mapping`` at its default ``tensor`` (stored rows and trial keys unchanged)."""
        out = super().params()
        if out.get("mapping") == "tensor":
            del out["mapping"]
        return out

    def check_layers(self, layers: Sequence[Any]) -> None:
        """:meth:`AnalogModel.check_layers`, then refuse a per-channel mapping of a tensor without a channel axis."""
        super().check_layers(layers)
        check_mapping_layers(self.name, self.mapping, list(layers), self.acts_on)

    def tile_rows_needed(self) -> str | None:
        """``mapping=tile-column`` needs ``--tile-rows``."""
        return "mapping=tile-column" if self.mapping == "tile-column" else None

    def mapping_text(self) -> str:
        """The mapping in words for :meth:`describe`: ``w_max = max|w| per tensor`` (per output channel, ...)."""
        return "w_max = max|w| per " + {"tensor": "tensor", "channel": "output channel",
                                        "tile-column": "tile column"}[self.mapping]

    # ---------------------------------------------------------------- hooks

    def conductance_unit(self, w_max: float | np.ndarray) -> float | np.ndarray:
        """``g_max`` of a tile whose full-scale weight is ``w_max``: the unit of its conductances (default 1)."""
        return 1.0

    def conductance_floor(self, g_max: float | np.ndarray) -> float:
        """``g_min``, the conductance of a device holding 0, for a tile of full scale ``g_max`` (default 0)."""
        return 0.0

    def levels_at(self, strength: float) -> int:
        """Conductance levels per device at ``strength`` (integer >= 2), or 0 for continuous targets (default)."""
        return 0

    def leaves_unchanged(self, strength: float) -> bool:
        """True when no tensor can change at ``strength`` (the template then maps nothing; default False)."""
        return False

    def stage_rngs(self, rng: np.random.Generator) -> dict[str, np.random.Generator]:
        """Generators by stage (:data:`STAGES`) from the tensor's ``rng``; default: ``rng`` itself for every stage.

        A stage left out of the mapping gets ``None`` (a model overriding this names the stages it draws in).
        """
        return dict.fromkeys(STAGES, rng)

    def program_stage(self, devices: Devices, strength: float, rng: np.random.Generator | None) -> np.ndarray:
        """Conductances after programming (write-verify noise) of ``devices.target``; default: the targets."""
        return devices.target

    def drift_stage(self, devices: Devices, strength: float, rng: np.random.Generator | None) -> np.ndarray:
        """Conductances after drifting to the read time; default: ``devices.now`` unchanged."""
        return devices.now

    def fault_stage(self, devices: Devices, strength: float, rng: np.random.Generator | None) -> np.ndarray:
        """Conductances with faulty devices stuck; default: ``devices.now`` unchanged."""
        return devices.now

    def read_stage(self, devices: Devices, strength: float, rng: np.random.Generator | None) -> np.ndarray:
        """Conductances as one read sees them (read noise); default: ``devices.now`` unchanged."""
        return devices.now

    def read_back(self, devices: Devices, strength: float) -> np.ndarray:
        """The weights (float64, the tensor's shape) the pairs hold at read time; default :meth:`Tile.weights`."""
        return devices.tile.weights(devices.now)

    # ---------------------------------------------------------------- the template

    def tile(self, w: np.ndarray, tensor: TensorInfo) -> Tile | None:
        """The pair mapping of one tensor, or ``None`` when it stays exact (digital, empty, all-zero, non-finite)."""
        if not is_analog(tensor, self.analog):
            return None
        w64 = w.astype(np.float64, copy=False)
        w_max = full_scale(w64, tensor, self.mapping)
        if not np.any(w_max):
            return None
        g_max = self.conductance_unit(w_max)
        return Tile(w=w64, w_max=w_max, g_max=g_max, tensor=tensor, g_min=self.conductance_floor(g_max))

    def perturb(self, w: np.ndarray, strength: float, rng: np.random.Generator, tensor: TensorInfo) -> np.ndarray:
        """Map, quantize, run the stages, map back and cast (module docstring); ``w`` itself when it stays exact."""
        tile = None if self.leaves_unchanged(strength) else self.tile(w, tensor)
        if tile is None:
            return w
        levels = self.levels_at(strength)
        devices = Devices(tile, quantize_conductance(tile.targets, tile.g_max, levels, tile.g_min) if levels
                          else tile.targets)
        rngs = self.stage_rngs(rng)
        devices.programmed = devices.now = self.program_stage(devices, strength, rngs.get("program"))
        devices.now = self.drift_stage(devices, strength, rngs.get("drift"))
        devices.now = self.fault_stage(devices, strength, rngs.get("fault"))
        devices.now = self.read_stage(devices, strength, rngs.get("read"))
        return self.read_back(devices, strength).astype(w.dtype, copy=False)


@dataclass(frozen=True)
class QuantizedDeviceModel(DeviceModel):
    """A :class:`DeviceModel` whose targets may be put on a levels grid before its stages.

    Attributes:
        levels: Conductance levels per device applied to the targets before the stages
            (integer >= 2; quantize, then program, drift, faults, read), or 0 (default)
            for continuous targets.
    """

    levels: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_levels("levels", self.levels)

    def levels_at(self, strength: float) -> int:
        """The ``levels`` parameter, at every strength."""
        return self.levels
