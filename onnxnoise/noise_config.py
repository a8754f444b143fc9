"""Noise settings: which model, its parameters, strengths, seeds and the policies around each draw.

:class:`NoiseConfig` is re-exported by :mod:`onnxnoise.config`, whose ``RunConfig`` holds one.
Each field declares its user settings (:mod:`onnxnoise.settings`); the noise model and
its strengths are given through several options (``--noise``, each model's own strength
option, ``--strength``), combined by :meth:`NoiseConfig.from_options`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from onnxnoise.errors import ConfigError, NoiseConfigError
from onnxnoise.noise.presets import PresetExpansion, expand_preset
from onnxnoise.noise import (
    BN_VARIANCE_POLICIES, NOISE_MODELS, NoiseModel, NoisePolicies, get_noise_model, make_noise_model,
)
from onnxnoise.options import (
    AUTO_MAX_SEEDS, DEFAULT_NOISE_MODEL, check_auto_seeds, given, parse_noise, parse_numbers, parse_seeds,
    parse_strengths, resolve_seeds, strength_options,
)
from onnxnoise.settings import NOISE, Setting, config_values, declared, option, option_inputs, show_default

__all__ = [
    "NoiseConfig", "apply_analog_preset", "check_tile_rows", "noise_choice_settings", "preset_overrides",
    "strength_settings",
]


def noise_choice_settings() -> list[Setting]:
    """``--noise MODEL[:KEY=VALUE,...]`` and its older spelling ``--noise-model`` / ``--noise-param`` (hidden)."""
    models = ", ".join(sorted(NOISE_MODELS))
    return [
        Setting(key="noise", flag="--noise", metavar="MODEL[:KEY=VALUE,...]", group=NOISE, files=("sweeps",),
                trial_key="noise", help="noise model and its parameters, e.g. pcm:compensation=global or "
                f"gaussian-snr:scope=channel; models: {models} (default {{default}}; `onnxnoise noise-models` lists "
                "their parameters)"),
        Setting(key="noise_model", flag="--noise-model", metavar="NAME", group=NOISE, files=("sweeps",),
                trial_key="noise_model", hidden=True, help="older spelling of --noise MODEL"),
        Setting(key="noise_params", flag="--noise-param", metavar="NAME=VALUE", action="append", group=NOISE,
                files=("sweeps",), trial_key="noise", hidden=True, help="older spelling of --noise MODEL:NAME=VALUE"),
    ]


def strength_settings() -> list[Setting]:
    """Each registered model's own strength option (``--snr``, ``--t``, ``--rate``...), then ``--strength``.

    Listed anew each time, so a model registered later brings its option. ``check``
    writes the one strength it tested itself (``recheck=False``).
    """
    own = [Setting(key=flag.replace("-", "_"), flag=f"--{flag}", metavar="LIST", help=help_text, group=NOISE,
                   files=("sweeps",), trial_key="strength", recheck=False)
           for flag, help_text in strength_options().items()]
    return [*own, Setting(
        key="strength", flag="--strength", metavar="LIST", group=NOISE, files=("sweeps",), trial_key="strength",
        recheck=False, help="any noise model's strengths, the generic spelling of its own option (e.g. --strength "
        "1s,1h,1d,30d,1y for pcm = --t 1s,1h,1d,30d,1y); default: the model's grid (`onnxnoise noise-models`)")]


def _halfwidth(value: Any) -> float:
    return parse_numbers([value], "--ci-halfwidth")[0]


@dataclass(frozen=True)
class NoiseConfig:
    """Which noise, how strong, how many draws, and the policies around each draw.

    Attributes:
        model: Registered noise model name (:data:`onnxnoise.noise.NOISE_MODELS`).
        params: The model's parameters (name -> value); defaults from the model.
        strengths: Values of the model's strength axis (for ``gaussian-snr`` the
            linear SNR ``sigma_w / sigma_noise``); ``None`` = the model's
            ``default_strengths``. Stored without duplicates, least noise first.
        seeds: A count ``N`` (seeds ``0 .. N-1``) or explicit seeds; default 3. ``"auto"``:
            seeds ``0, 1, ...`` per (strength, layer) group until the 95% t-interval of the
            mean top-1 is narrower than ``ci_halfwidth`` (at least 3, at most ``max_seeds``;
            :func:`onnxnoise.engine.plan.enough_draws`).
        bn_variance: Negative BatchNormalization variance policy.
        keep_zeros: Keep exactly-zero weights at zero.
        ci_halfwidth: With ``seeds="auto"``: target half-width in top-1 accuracy points (> 0).
        max_seeds: With ``seeds="auto"``: most draws per group, >= 3 (default
            :data:`~onnxnoise.options.AUTO_MAX_SEEDS`).

    Raises:
        NoiseConfigError / ConfigError: On any invalid value (one line).
    """

    model: str = option_inputs(noise_choice_settings, default=DEFAULT_NOISE_MODEL)
    params: Mapping[str, Any] = field(default_factory=dict)
    strengths: tuple[float, ...] | None = option_inputs(strength_settings, default=None)
    seeds: int | tuple[int, ...] = option(
        3, flag="--seeds", parse=parse_seeds, group=NOISE, files=("sweeps",), trial_key="seed", recheck=False,
        hidden=("check",), help="noise draws per strength (default {default}): a count N (seeds 0..N-1), seeds like "
        "40,30, or auto: seeds 0,1,... until the 95% interval of the mean top-1 is under --ci-halfwidth")
    ci_halfwidth: float | None = option(
        None, flag="--ci-halfwidth", type=float, metavar="POINTS", parse=_halfwidth, group=NOISE, files=("sweeps",),
        unit="accuracy points", recheck=False, hidden=("check",),
        help="--seeds auto: target 95% t-interval half-width of the mean top-1, accuracy points")
    max_seeds: int | None = option(
        None, flag="--max-seeds", type=int, metavar="N", group=NOISE, files=("sweeps",), commands=("bench", "sweep"),
        shown=AUTO_MAX_SEEDS, help="--seeds auto: most draws per strength and layer, >= 3 (default {default})")
    bn_variance: str = option(
        "clamp", flag="--bn-variance", choices=BN_VARIANCE_POLICIES, group=NOISE, files=("sweeps",), trial_key="noise",
        help="negative BatchNormalization variance under noise: clamp to 0, abs, or keep (gives NaN logits); "
        "default {default}")
    keep_zeros: bool = option(False, flag="--keep-zeros", action="store_true", group=NOISE, files=("sweeps",),
                              trial_key="noise", help="keep exactly-zero (pruned) weights at zero")

    def __post_init__(self) -> None:
        noise_model = make_noise_model(self.model, self.params)
        object.__setattr__(self, "model", noise_model.name)  # an alias names the registered model
        object.__setattr__(self, "params", dict(noise_model.params()))
        object.__setattr__(self, "_noise_model", noise_model)
        values = noise_model.default_strengths if self.strengths is None else self.strengths
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            msg = f"`strengths` must be a list of numbers (parse text with parse_strengths), got {values!r}"
            raise ConfigError(msg)
        checked: list[float] = []
        for value in values:
            value = float(noise_model.check_strength(value))
            if value not in checked:
                checked.append(value)
        if not checked:
            msg = f"no {noise_model.strength_label} values given for noise model {self.model!r}"
            raise NoiseConfigError(msg)
        checked.sort(reverse=noise_model.more_noise_when == "lower")
        object.__setattr__(self, "strengths", tuple(checked))
        if self.seeds == "auto":
            object.__setattr__(self, "max_seeds", check_auto_seeds(self.ci_halfwidth, self.max_seeds))
        elif self.ci_halfwidth is not None or self.max_seeds is not None:
            msg = "`--ci-halfwidth` / `--max-seeds` (ci_halfwidth / max_seeds) only apply with `--seeds auto`"
            raise ConfigError(msg)
        else:
            resolve_seeds(self.seeds)
        NoisePolicies(self.bn_variance, self.keep_zeros)

    @property
    def noise_model(self) -> NoiseModel:
        """The validated noise model instance."""
        return self._noise_model  # type: ignore[attr-defined]

    @property
    def policies(self) -> NoisePolicies:
        """The policies around each draw."""
        return NoisePolicies(self.bn_variance, self.keep_zeros)

    @property
    def seed_list(self) -> list[int]:
        """The seeds, in order (``0 .. max_seeds-1`` with ``seeds="auto"``: the most that may run)."""
        return list(range(self.max_seeds)) if self.seeds == "auto" else resolve_seeds(self.seeds)

    def settings(self) -> dict[str, Any]:
        """``{"params", "bn_variance", "keep_zeros"}``: the trial row's ``noise`` JSON."""
        return {"params": dict(self.params), "bn_variance": self.bn_variance, "keep_zeros": self.keep_zeros}

    def to_dict(self) -> dict[str, Any]:
        """All settings, JSON-ready."""
        auto = {"seeds": "auto", "ci_halfwidth": self.ci_halfwidth, "max_seeds": self.max_seeds}
        return {"model": self.model, **self.settings(), "strengths": list(self.strengths),
                **(auto if self.seeds == "auto" else {"seeds": self.seed_list})}

    @classmethod
    def from_options(cls, *, noise: Any = None, model: str | None = None, params: Any = None, strength: Any = None,
                     flags: Mapping[str, Any] | None = None, noise_model: str | None = None,
                     noise_params: Any = None, **options: Any) -> NoiseConfig:
        """Build from user options (CLI flags or experiment keys, by key); ``None`` = not given.

        ``noise`` is ``MODEL[:key=value,...]`` (:func:`~onnxnoise.options.parse_noise`);
        ``model`` / ``noise_model`` and ``params`` / ``noise_params`` are the older spelling of the
        same. The strengths come from the one strength option given
        (:func:`~onnxnoise.options.parse_strengths`): the model's own (by key, in ``options`` or
        ``flags``: ``t`` for pcm, ``rate`` for stuck-at, ``snr`` / ``noise_pct`` for
        gaussian-snr...) or ``strength``, any model's, with time units for a time strength
        (``1s,1h,1d``). Another model's option is an error. The other ``options`` are this
        class's declared settings (``seeds``, which may be ``auto`` with ``ci_halfwidth`` in
        points and ``max_seeds``; ``bn_variance``; ``keep_zeros``...).

        Raises:
            ConfigError / NoiseConfigError: On any invalid option.
            TypeError: An option that is neither a strength option nor a setting of this class.
        """
        model, params = parse_noise(noise, model=model if model is not None else noise_model,
                                    params=params if params is not None else noise_params)
        name = model or cls.model
        model_cls = get_noise_model(name)  # an unknown name is the first thing to say
        model = None if model is None else model_cls.name  # an alias (`stuck`) keys as its model
        own = {s.key: options.pop(s.key, None) for s in strength_settings() if s.key != "strength"}
        own.update((key, value) for key, value in (flags or {}).items() if value is not None)
        unknown = sorted(set(options) - {s.key for s in declared(NoiseConfig)})
        if unknown:
            raise TypeError(f"NoiseConfig.from_options got unknown option(s) {', '.join(unknown)}")
        if params:
            params, inline = model_cls.split_params(params)  # `pcm:t=1d`: one strength inside --noise
            if inline is not None:
                key, value = inline
                if strength is not None or any(v is not None for v in own.values()):
                    msg = (f"give the {model_cls.name} strength either inside --noise ({key}=...) or as an "
                           "option (--strength or the model's own), not both")
                    raise ConfigError(msg)
                value = value if isinstance(value, (list, tuple)) else [value]
                if key == "strength":
                    strength = value
                else:
                    own[key] = value
        strengths = parse_strengths(strength=strength, noise_model=model_cls,
                                    **{k: v for k, v in own.items() if v is not None})
        return cls(**given(model=model, params=params, strengths=strengths), **config_values(cls, options))



def apply_analog_preset(options: Mapping[str, Any], known: Sequence[str]) -> tuple[dict[str, Any], PresetExpansion | None]:
    """Options with ``options["analog_preset"]``'s settings filled in where the user gave none.

    The expansion (:func:`onnxnoise.noise.presets.expand_preset`): each preset setting whose key
    the user left unset (``None``) takes the preset's value; the noise is the preset's, or with
    ``--noise`` of the same model its parameters updated by the user's (``--noise`` of another
    model replaces it, and the preset's strengths with it); the preset's strengths apply unless a
    strength option, or a strength inside ``--noise``, is given.

    Args:
        options: Given values by setting key (``None``: not given), as
            :func:`onnxnoise.settings.config_values` takes them.
        known: Every setting key of the config the options are for (a preset key outside it is refused).

    Returns:
        ``(options, expansion)``; ``options`` unchanged (a copy) and ``None`` without a preset.

    Raises:
        ConfigError: An unknown preset, or one setting keys this build does not have (one line).
    """
    out = dict(options)
    name = out.get("analog_preset")
    if name is None:
        return out, None
    preset = expand_preset(str(name))
    missing = [key for key in preset.settings if key not in known]
    if missing:
        raise ConfigError(f"--analog-preset {preset.name} sets {', '.join(missing)}, which this onnxnoise does not "
                          "have (the analog tile stages); choose another preset or update onnxnoise")
    for key, value in preset.settings.items():
        if out.get(key) is None:
            out[key] = value
    model, params = parse_noise(out.pop("noise", None), model=out.pop("noise_model", None),
                                params=out.pop("noise_params", None))
    own_model, own_params = parse_noise(preset.noise)
    ours = model is None or get_noise_model(model).name == get_noise_model(own_model).name
    if ours:
        model, params = own_model, {**(own_params or {}), **(params or {})}
    out.update(noise_model=model, noise_params=params)
    strength_keys = [s.key for s in strength_settings()]
    if ours:  # another model's strength option: say that the preset chose the model the user did not name
        try:
            parse_strengths(noise_model=get_noise_model(model), **{key: out.get(key) for key in strength_keys})
        except ConfigError as exc:
            raise ConfigError(f"{exc} (--analog-preset {preset.name} sets --noise {preset.noise})") from None
    inline = ours and params and get_noise_model(model).split_params(params)[1] is not None
    if ours and preset.strengths and not inline and all(out.get(key) is None for key in strength_keys):
        out["strength"] = preset.strengths
    return out, preset


def preset_overrides(options: Mapping[str, Any]) -> list[str]:
    """The flags the user gave that replace or change ``options["analog_preset"]``'s settings, as typed.

    What :func:`apply_analog_preset` lets win over the preset: ``--noise`` (of the preset's model it
    merges its parameters, of another it replaces the noise), a strength option (``--t``,
    ``--strength``...) and each of the preset's run settings the user set (``--adc-bits 6``).

    Args:
        options: Given values by setting key (``None``: not given), as :func:`apply_analog_preset` takes them.

    Returns:
        ``["--adc-bits 6", "--t 60s"]`` in the order of the preset's expansion; ``[]`` without a preset
        or when no flag overrides it.
    """
    name = options.get("analog_preset")
    if name is None:
        return []
    preset = expand_preset(str(name))
    keys = ["noise", "noise_model", "noise_params", *preset.settings, *(s.key for s in strength_settings())]
    out = []
    for key in dict.fromkeys(keys):
        value = options.get(key)
        if value is not None:
            shown = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else show_default(value)
            out.append(f"--{key.replace('_', '-')} {shown}")
    return out


def check_tile_rows(noise: NoiseConfig, tile_rows: int) -> None:
    """Refuse, before any trial, a noise model that needs ``--tile-rows`` in a run without tiles.

    Args:
        noise: The run's noise settings.
        tile_rows: The run's ``--tile-rows`` (0: no tiles).

    Raises:
        ConfigError: One line naming the parameter and the flag to set.
    """
    needed = noise.noise_model.tile_rows_needed()
    if needed and not tile_rows:
        raise ConfigError(f"--noise {noise.model}:{needed} takes one full scale per tile: set --tile-rows R (input "
                          "rows per tile, e.g. 512)")
