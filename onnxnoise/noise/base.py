"""The noise-model plug-in seam: a base class and a registry.

A noise model turns one clean weight tensor into a perturbed one, given a
*strength* (its one swept axis: an SNR, a time, a fault rate) and the tensor's
own random generator. Everything around the draw (which tensors, dequantizing and
requantizing integer weights, keeping zeros, fixing BatchNormalization variances,
casting back to the stored dtype, counting) is done by :mod:`onnxnoise.noise.draw`,
the same for every model. A new model is one subclass decorated with
:func:`register`; the engine, the trial store and the reports need no change,
because they carry the model's name, its parameters (JSON) and its strength value.

The model's strength axis (symbol, label, direction of more noise, default grid, its
own option, unit, text, scale) is one :class:`~onnxnoise.noise.axis.StrengthAxis`, the
class attribute ``strength_axis``. Device models (conductance pairs) subclass the
template :class:`onnxnoise.noise.device.DeviceModel` instead and implement its stages.

Example (a toy model: zero every ``k``-th weight)::

    @register
    @dataclass(frozen=True)
    class ZeroEveryK(NoiseModel):
        name: ClassVar[str] = "zero-every-k"
        strength_axis: ClassVar[StrengthAxis] = StrengthAxis(
            symbol="k", label="every k-th zeroed, k =", more_noise_when="lower", defaults=(4.0,))
        offset: int = 0

        def perturb(self, w, strength, rng, tensor):
            out = w.copy()
            out.reshape(-1)[self.offset :: int(strength)] = 0
            return out
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, ClassVar

import numpy as np

from onnxnoise.errors import NoiseConfigError
from onnxnoise.model.quant import describe_quantization
from onnxnoise.noise.axis import GENERIC_AXIS, LEGACY_ATTRIBUTES, StrengthAxis, axis_from_attributes

__all__ = ["NoiseModel", "TensorInfo", "NOISE_MODELS", "NOISE_ALIASES", "register", "get_noise_model", "make_noise_model"]


@dataclass(frozen=True)
class TensorInfo:
    """What a noise model may know about the tensor it perturbs.

    Attributes:
        name: Initializer name.
        role: Role in its layer (``weight``, ``bias``, ``scale``, ``mean``, ``var``...).
        op_type: Op type of the owning layer (``Conv``, ``Gemm``, ``BatchNormalization``...).
        layer: Name of the owning layer.
        stored_dtype: dtype the tensor is stored in (``float32``, ``float16``,
            ``int8`` for integer-quantized weights, ...).
        quantized: The tensor is an integer-quantized weight; the model sees its
            dequantized values.
        layer_values: Clean float values of every tensor of the layer (dequantized
            where quantized), by name: for models that pool statistics over a layer.
        model_layers: Every parameter layer of the model (not only the noised ones),
            graph order: for models that take statistics over the whole model (e.g. one
            SNR for all non-BatchNorm weights).
        model_values: Clean float values of every tensor of ``model_layers``, by name,
            dequantized on first access and shared by all tensors of one draw.
        stored: The clean tensor as stored (the integers of a quantized weight), read-only.
        dequantize: For a quantized weight, its own integer-to-float map
            (``(q - zero_point) * scale``, per tensor or per axis); ``None`` for float tensors.
        tile_rows: Input rows per analog tile (the run's ``--tile-rows``), or 0 when the run
            does not tile its weight matrices: the ``tile-column`` mapping and ``gaussian-max``'s
            ``tile`` scope need it (:mod:`onnxnoise.noise.mapping`).
        memo: The run's memo of statistics of clean values,
            ``memo(key, compute) -> compute()`` computed once per key and run
            (:meth:`onnxnoise.noise.clean.CleanStats.memo`): for statistics that depend on the
            clean tensors alone (:meth:`clean_statistic`); ``None``: nothing is kept.
    """

    name: str
    role: str
    op_type: str
    layer: str
    stored_dtype: np.dtype
    quantized: bool = False
    layer_values: Mapping[str, np.ndarray] | None = None
    model_layers: tuple = ()
    model_values: Mapping[str, np.ndarray] | None = None
    stored: np.ndarray | None = None
    dequantize: Callable[[np.ndarray], np.ndarray] | None = None
    tile_rows: int = 0
    memo: Callable[[Hashable, Callable[[], Any]], Any] | None = None

    def clean_statistic(self, kind: Hashable, w: np.ndarray, compute: Callable[[], Any]) -> Any:
        """``compute()``, kept for the run when ``w`` is this tensor's clean values.

        Args:
            kind: What ``compute`` computes (with the tensor's name, the memo key), e.g. ``("std", "tensor")``.
            w: The array ``compute`` reads: memoized only when it is ``layer_values[name]``, the
                clean values (a transformed array is computed every time).
            compute: No-argument function returning the statistic.
        """
        if self.memo is None or self.layer_values is None or self.layer_values.get(self.name) is not w:
            return compute()
        return self.memo((kind, self.name), compute)


@dataclass(frozen=True)
class NoiseModel(ABC):
    """Base class of noise models: parameters are the subclass's dataclass fields.

    Subclasses are frozen dataclasses whose fields are the model's parameters (with
    defaults), and set the class attributes below.

    Attributes:
        name: Registry name, stored with every trial (e.g. ``gaussian-snr``).
        strength_axis: The swept axis, declared once (:class:`onnxnoise.noise.axis.StrengthAxis`):
            symbol, label, direction of more noise, default grid, the model's own option
            (``--t``, ``--rate``...), unit, cell and tick text, log scale.
        strength_name, strength_label, more_noise_when, default_strengths: Read-only mirrors
            of the axis's ``symbol``, ``label``, ``more_noise_when`` and ``defaults``, set for
            every subclass by ``__init_subclass__``. A plug-in that declares these instead of
            an axis (written before axes) gets the axis they describe
            (:func:`onnxnoise.noise.axis.axis_from_attributes`).
        aliases: Other accepted names (``gaussian`` for ``gaussian-snr``).
        needs_integer_weights: The model acts on stored integers (bit flips): a run whose
            noised layers hold no integer-quantized tensor is refused before any trial
            (:meth:`check_layers`), and float tensors of the noised layers are left exact.
        parallel_draw: :meth:`perturb` may run for several tensors at once in threads
            (:func:`onnxnoise.noise.draw_noise`): it reads only its arguments and the run's memo,
            and numpy releases the GIL in its bulk generation. Each tensor keeps its own generator,
            so values and counts are those of a sequential draw. Off by default (a plug-in with
            state of its own is drawn one tensor at a time).
        split_draw: :meth:`perturb` draws ``z`` in one ``rng.standard_normal(w.shape, dtype=...)`` call and
            uses the generator for nothing else, so a tensor of :data:`onnxnoise.noise.rng.SPLIT_MIN_ELEMENTS`
            or more may get a :class:`onnxnoise.noise.rng.SplitNormal` instead (chunks drawn in parallel, each
            from its own generator: other values than one stream, under their own key version). Off by default.
    """

    name: ClassVar[str] = ""
    parallel_draw: ClassVar[bool] = False
    split_draw: ClassVar[bool] = False
    strength_axis: ClassVar[StrengthAxis] = GENERIC_AXIS
    strength_name: ClassVar[str] = GENERIC_AXIS.symbol
    strength_label: ClassVar[str] = GENERIC_AXIS.label
    more_noise_when: ClassVar[str] = GENERIC_AXIS.more_noise_when
    default_strengths: ClassVar[tuple[float, ...]] = GENERIC_AXIS.defaults
    aliases: ClassVar[tuple[str, ...]] = ()
    needs_integer_weights: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Mirror the subclass's axis in ``strength_name``...; build it from those when only they are declared."""
        super().__init_subclass__(**kwargs)
        own = {attr: cls.__dict__[attr] for attr in LEGACY_ATTRIBUTES if attr in cls.__dict__}
        if "strength_axis" not in cls.__dict__ and own:
            cls.strength_axis = axis_from_attributes(own, cls.strength_axis)
        axis = cls.strength_axis
        cls.strength_name, cls.strength_label = axis.symbol, axis.label
        cls.more_noise_when, cls.default_strengths = axis.more_noise_when, axis.defaults

    @classmethod
    def split_params(cls, params: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, Any] | None]:
        """Separate one strength given inline in ``--noise`` from the model's parameters.

        ``--noise pcm:t=1d`` gives pcm's strength (``t``, its own option, or
        ``strength`` for any model) beside its parameters; ``params`` without such a key
        come back unchanged. Models whose published parameters define the strength
        (stuck-at's ``p_sa0`` / ``p_sa1``) override this to translate them.

        Args:
            params: Parameters as parsed from ``MODEL:key=value,...``.

        Returns:
            ``(parameters, (option key, value) or None)``; the key names the option
            for messages (``t``, ``strength``...), the value is unparsed (``"1d"``, ``0.01``).

        Raises:
            NoiseConfigError: If more than one strength key is given.
        """
        keys = {flag.replace("-", "_") for flag in cls.strength_axis.flags} | {cls.strength_name, "strength"}
        given = [key for key in params if key in keys]
        if len(given) > 1:
            msg = f"{cls.name}: give one strength in --noise, got {', '.join(given)}"
            raise NoiseConfigError(msg)
        if not given:
            return dict(params), None
        rest = {key: value for key, value in params.items() if key != given[0]}
        return rest, (given[0], params[given[0]])

    def check_strength(self, value: Any) -> float:
        """Validate one strength value and return it as a float.

        The default accepts any finite number >= 0; models narrow it.

        Raises:
            NoiseConfigError: If the value is not allowed, with the allowed range.
        """
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
            msg = f"{self.name} `{self.strength_name}` must be a finite number >= 0, got {value!r}"
            raise NoiseConfigError(msg)
        return float(value)

    def params(self) -> dict[str, Any]:
        """The model's parameters as a JSON-ready dict (field name -> value)."""
        return asdict(self)

    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., "params": {...}}``, JSON-ready; :func:`make_noise_model` inverts it."""
        return {"name": self.name, "params": self.params()}

    def format_strength(self, value: float | None) -> str:
        """Cell text of one strength value, e.g. ``SNR 10`` (``clean`` for ``None``).

        The axis's :meth:`~onnxnoise.noise.axis.StrengthAxis.text_of`; override only for text
        that depends on the model's parameters.
        """
        return self.strength_axis.text_of(value)

    def describe(self) -> str:
        """One line for captions: the formula in words and the parameters."""
        params = ", ".join(f"{k}={v}" for k, v in self.params().items())
        return f"{self.name}" + (f" ({params})" if params else "")

    def tile_rows_needed(self) -> str | None:
        """The parameter (``mapping=tile-column``, ``scope=tile``) for which this model needs ``--tile-rows``, or ``None``.

        A run whose ``--tile-rows`` is 0 is refused before any trial when this is not ``None``
        (:func:`onnxnoise.noise_config.check_tile_rows`); the default needs none.
        """
        return None

    def collapse_hint(self) -> str | None:
        """Advice for when draws of this model collapse to chance, or ``None`` (the default).

        Reports, ``bench`` and ``check`` warn whenever draws collapse, under any model, and end that
        warning with this advice (:func:`onnxnoise.report.paired.collapse_hint_line`); a model whose collapse a
        setting of its own commonly prevents names that setting here (pcm: drift
        compensation).
        """
        return None

    def check_layers(self, layers: Sequence[Any]) -> None:
        """Refuse, before any trial, a selection of layers this model cannot noise.

        Called once per run when the run context is prepared
        (:func:`onnxnoise.engine.context.prepare_context`), after the layers are selected.
        The default refuses only what :attr:`needs_integer_weights` declares: a selection
        without any integer-quantized tensor. Models with other needs override it.

        Args:
            layers: The selected :class:`onnxnoise.model.Layer` objects (``quant``: per
                tensor its quantization parameters or ``None``).

        Raises:
            NoiseConfigError: One line naming what the selection lacks and how to get it.
        """
        if not self.needs_integer_weights or any(_integer_tensors(layer) for layer in layers):
            return
        layers = list(layers)
        msg = (f"{self.name} noise needs integer-quantized weights, but the {len(layers)} selected layer(s) hold only "
               "float tensors; quantize the model first (onnxruntime.quantization.quantize_dynamic or "
               "quantize_static, see docs/usage.md 'Integer weights for bit-flip') or choose another --noise")
        raise NoiseConfigError(msg)

    def acts_on(self, role: str, op_type: str, quantized: bool) -> bool:
        """Whether this model may change a tensor of ``role`` in a layer of ``op_type`` at some strength.

        The default: every tensor. A model that leaves some tensors exact by design says so here
        (device models: only analog tensors, :func:`onnxnoise.noise.device.is_analog`; bit-flip:
        only integer-quantized ones). :func:`onnxnoise.noise.draw_noise` counts the values changed
        in each layer holding such a tensor (``NoiseDraw.changed_values``), and device models
        refuse layers holding none (:meth:`check_layers`).

        Args:
            role: The tensor's role in its layer (``weight``, ``bias``, ``scale``, ...).
            op_type: The layer's op type.
            quantized: The tensor is an integer-quantized weight.
        """
        return True

    def describe_quantization(self, layers: Iterable[Any], clipped_count: int | None = None) -> str | None:
        """One caption line on how this model treats the integer-quantized weights of ``layers``.

        The default is the draw's ``dequantize-noise-requantize`` policy
        (:func:`onnxnoise.model.quant.describe_quantization`): the model perturbs the
        dequantized values and the result is rounded back onto each tensor's grid. Models
        that act on the stored integers themselves (bit-flip) override it.

        Args:
            layers: The noised :class:`onnxnoise.model.Layer` objects.
            clipped_count: Values clipped to the integer range (summed over trials), if known.

        Returns:
            The line, or ``None`` when no layer holds integer weights.
        """
        return describe_quantization(layers, clipped_count)

    @abstractmethod
    def perturb(self, w: np.ndarray, strength: float, rng: np.random.Generator, tensor: TensorInfo) -> np.ndarray:
        """Return the perturbed values of one tensor.

        Args:
            w: Clean values, float32 (float64 for float64 or integer-quantized tensors),
                read-only.
            strength: The trial's strength, already validated by :meth:`check_strength`.
            rng: This tensor's generator (depends only on the trial seed and ``tensor.name``).
            tensor: Facts about the tensor.

        Returns:
            An array of ``w``'s shape; return ``w`` itself to leave the tensor unchanged.
        """


#: Registered noise models: name -> class.
NOISE_MODELS: dict[str, type[NoiseModel]] = {}
#: Other accepted names (``gaussian``, ``stuck``) -> the registered name.
NOISE_ALIASES: dict[str, str] = {}


def register(cls: type[NoiseModel]) -> type[NoiseModel]:
    """Class decorator adding a :class:`NoiseModel` subclass to :data:`NOISE_MODELS`.

    Raises:
        NoiseConfigError: If the class has no ``name`` or the name is taken by another class.
    """
    if not cls.name:
        msg = f"noise model class {cls.__name__} needs a `name`"
        raise NoiseConfigError(msg)
    other = NOISE_MODELS.get(cls.name)
    if other is not None and other.__qualname__ != cls.__qualname__:
        msg = f"noise model name {cls.name!r} is already registered by {other.__qualname__}"
        raise NoiseConfigError(msg)
    for alias in cls.aliases:
        owner = NOISE_ALIASES.get(alias, cls.name)
        if owner != cls.name or (alias in NOISE_MODELS and alias != cls.name):
            msg = f"noise model alias {alias!r} of {cls.name!r} is already taken by {owner!r}"
            raise NoiseConfigError(msg)
        NOISE_ALIASES[alias] = cls.name
    NOISE_MODELS[cls.name] = cls
    return cls


def get_noise_model(name: str) -> type[NoiseModel]:
    """The registered class called ``name`` or one of its aliases (``stuck`` -> ``stuck-at``).

    Raises:
        NoiseConfigError: If no model has that name (the message lists the known ones).
    """
    try:
        return NOISE_MODELS[NOISE_ALIASES.get(name, name)]
    except KeyError:
        msg = f"unknown noise model {name!r}; choose from {', '.join(sorted(NOISE_MODELS))}"
        raise NoiseConfigError(msg) from None


def make_noise_model(name: str, params: Mapping[str, Any] | None = None) -> NoiseModel:
    """Instantiate a registered model with validated parameters.

    Args:
        name: Registry name.
        params: Parameter name -> value; missing ones take the model's defaults.

    Raises:
        NoiseConfigError: Unknown model, unknown or missing parameter, or a value the
            model refuses (one line naming the parameter and what it accepts).
    """
    cls = get_noise_model(name)
    params = dict(params or {})
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(params) - set(known))
    if unknown:
        listed = ", ".join(known) or "none"
        msg = f"noise model {name!r} has no parameter(s) {', '.join(unknown)}; its parameters: {listed}"
        raise NoiseConfigError(msg)
    missing = [n for n, f in known.items() if n not in params and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        msg = f"noise model {name!r} needs parameter(s) {', '.join(missing)}"
        raise NoiseConfigError(msg)
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        msg = f"noise model {name!r}: {exc}"
        raise NoiseConfigError(msg) from None


def _integer_tensors(layer: Any) -> list[int]:
    """Indices of the integer-quantized tensors of one layer (``layer.quant`` entries that are not ``None``)."""
    quant = tuple(getattr(layer, "quant", ()) or ())
    return [i for i, params in enumerate(quant) if params is not None]

