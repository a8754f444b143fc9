"""From what a user gives (a model, a dataset path or registered name, options by setting key) to a ``RunConfig``.

The one place the CLI (``bench``, ``sweep``, ``check``) and the Python API (:mod:`onnxnoise.api`)
turn their input into a run: the ``--analog-preset`` expansion said in words, the dataset resolved
(a path, a name from ``onnxnoise data list``, or none: the registered dataset matching the model's
outputs, :func:`onnxnoise.data.registry.resolve_data`), and what ``--noise none`` measures. It returns
the lines to tell the user instead of printing them: the CLI prints them on stderr, the API returns
them (silent by default).

Options are keyed by setting key (:mod:`onnxnoise.settings`: ``snr``, ``seeds``, ``noise``, ``limit``...),
the names of the experiment-file keys and of the parsed flags; values are what a flag's text parses to
or the flag's text itself (``snr="10,20"`` or ``snr=[10, 20]``, ``limit=100`` or ``limit="100"``).
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxnoise.config import RunConfig, SweepConfig
from onnxnoise.data.registry import resolve_data
from onnxnoise.errors import ConfigError, DataError, OnnxNoiseError
from onnxnoise.files import folder_name
from onnxnoise.noise import NoiseModel
from onnxnoise.noise.presets import expand_preset
from onnxnoise.noise_config import preset_overrides
from onnxnoise.settings import Setting, config_values, declared

__all__ = ["RunSetup", "run_setup", "sweep_config", "option_settings", "keyword_options", "in_setting_keys", "no_weight_noise_notes",
           "default_out_dir", "flag_words", "sweep_file_free_settings",
           "sweep_overrides"]


@dataclass(frozen=True)
class RunSetup:
    """A run's settings and what to tell the user about how they were chosen.

    Attributes:
        config: The validated run settings, ``config.data`` the dataset path (a registered name resolved).
        notes: Lines for the user: the ``--analog-preset`` expansion, the registered dataset used.
        warnings: Lines for the user about what the run measures (``--noise none`` with nothing to draw).
        picked: ``data`` was None: the registered dataset chosen for it, as `` `NAME` (PATH)``; else None.
    """

    config: RunConfig
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    picked: str | None = None

    @contextlib.contextmanager
    def naming_the_picked_data(self) -> Iterator[None]:
        """Around a run: a ``DataError`` of a run whose dataset was picked without ``data`` says which one was
        picked (the API returns its notes only with a result; the CLI has printed the note already).

        Raises:
            DataError: The run's, with ``; the dataset was the registered `NAME` (PATH), picked because no data
                was given: pass data=NAME or a path to choose another`` appended.
        """
        try:
            yield
        except DataError as exc:
            if self.picked is None:
                raise
            raise DataError(f"{exc}; the dataset was the registered {self.picked}, picked because no data was "
                            "given: pass data=NAME or a path to choose another") from exc


def option_settings(command: str, *classes: type) -> list[Setting]:
    """The settings of ``classes`` that ``command`` takes as options (those with a flag), in declaration order."""
    return [s for cls in classes for s in declared(cls, command) if s.flag is not None]


_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def in_setting_keys(command: str, *classes: type) -> Callable:
    """Decorator of a Python API function: its errors name settings by key, as its caller gave them.

    Messages are written once for the command line (``"`--batch-size` must be an integer >= 1, got 0"``);
    an :class:`~onnxnoise.errors.OnnxNoiseError` leaving the decorated function has every flag of
    ``command``'s settings in ``classes`` replaced by its setting key (``"`batch_size` must be ..."``),
    in place: the same exception, type and cause. Other text, and flags of no such setting, stay.
    """
    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def api(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except OnnxNoiseError as exc:
                if len(exc.args) == 1 and isinstance(exc.args[0], str):
                    keys = {s.flag: s.key for s in option_settings(command, *classes)}
                    exc.args = (_FLAG.sub(lambda m: keys.get(m.group(0), m.group(0)), exc.args[0]),)
                raise
        return api
    return decorate


def keyword_options(command: str, options: Mapping[str, Any], *classes: type) -> dict[str, Any]:
    """``options`` given by keyword (the Python API) as the CLI's parsed flags give them: ``key -> value``.

    A text value of a setting whose flag converts its text (``limit="100"``, ``batch_size="64"``) is
    converted as the flag would; other values pass as given (the config classes parse them). ``noise`` may be
    a noise model object (``GaussianSNR(scope="channel")``, :mod:`onnxnoise.noise`) as well as its text
    (``"gaussian-snr:scope=channel"``): it is given as its name and parameters (``noise_model``, ``noise_params``).

    Raises:
        ConfigError: A key that ``command`` does not take (the message lists the keys it takes), or a
            text the setting's converter refuses.
    """
    settings = {s.key: s for s in option_settings(command, *classes)}
    unknown = sorted(set(options) - set(settings))
    if unknown:
        near = [repr(match[0]) for key in unknown if (match := difflib.get_close_matches(key, settings, n=1, cutoff=0.75))]
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise ConfigError(f"{command} takes no option {', '.join(map(repr, unknown))}{hint}; its options are "
                          f"{', '.join(sorted(settings))} (the setting keys of docs/options.md)")
    out: dict[str, Any] = {key: None for key in settings}
    for key, value in options.items():
        convert = settings[key].type
        if isinstance(value, str) and convert is not None and settings[key].action is None:
            try:
                value = convert(value)
            except (ValueError, TypeError):
                raise ConfigError(f"{key}={value!r} is not a valid {settings[key].flag} value") from None
        out[key] = value
    if isinstance(out.get("noise"), NoiseModel):
        if out.get("noise_model") is not None or out.get("noise_params") is not None:
            raise ConfigError("give the noise model either as `noise` or as `noise_model`/`noise_params`, not both")
        model = out.pop("noise")
        out.update(noise=None, noise_model=model.name, noise_params=model.params())
    return out


def run_setup(model: str | os.PathLike[str], data: str | os.PathLike[str] | None, options: Mapping[str, Any],
              *, command: str) -> RunSetup:
    """The ``RunConfig`` of ``model`` on ``data`` with ``options``; those not given keep their defaults.

    Args:
        model: ONNX classifier file.
        data: A dataset path, a registered dataset name, or ``None`` for the registered dataset whose class
            count matches the model's outputs (:func:`onnxnoise.data.registry.resolve_data`).
        options: Given values by setting key (``None`` or missing: not given), as
            :func:`onnxnoise.settings.config_values` takes them; keys that are not ``RunConfig``'s are ignored
            (a sweep's own options).
        command: ``bench``, ``sweep`` or ``check`` (which notes apply).

    Returns:
        The :class:`RunSetup`.

    Raises:
        ConfigError, NoiseConfigError: A bad setting (the noise settings are checked before the data).
        DataError: ``data`` is neither a dataset path nor a registered name, or none matches the model.
        GraphError: ``data`` is ``None`` and the model cannot be read.
    """
    keys = {s.key for s in declared(RunConfig)}
    options = {k: v for k, v in options.items() if k in keys}
    values = config_values(RunConfig, options)  # the noise settings first: their errors come before the data's
    notes = []
    if options.get("analog_preset") is not None:  # the user sees what the preset stands for, and what replaced it
        flags = " ".join(expand_preset(options["analog_preset"]).flags())
        given = preset_overrides(options)
        note = f"overridden here by {', '.join(given)}" if given else "flags given explicitly override it"
        notes.append(f"--analog-preset {options['analog_preset']} = {flags} ({note})")
    choice = resolve_data(data, model, score_output=options.get("score_output"))
    if choice.note:
        notes.append(choice.note)
    config = RunConfig(**{**values, "model": Path(model), "data": choice.path})
    picked = f"`{choice.name}` ({choice.path})" if data is None and choice.name is not None else None
    return RunSetup(config, tuple(notes), tuple(no_weight_noise_notes(config, command)), picked)


def sweep_config(run: RunConfig, options: Mapping[str, Any]) -> SweepConfig:
    """The sweep of ``run`` with the sweep's own options from ``options`` (``modes``, ``prefix_reuse``, ``executor``,
    ``address``, ``workers``, ``gpus_per_trial``; ``None`` or missing: the default; the run's keys are ignored).

    Raises:
        ConfigError: A bad mode or executor setting.
    """
    return SweepConfig(**config_values(SweepConfig, options, run=run))


def sweep_file_free_settings() -> list[Setting]:
    """The sweep's own settings an experiment file cannot hold (``executor``, ``address``, ``workers``...)."""
    return [s for s in declared(SweepConfig, "sweep", nested=False) if not s.files]


def sweep_overrides(options: Mapping[str, Any]) -> dict[str, Any]:
    """The sweep settings an experiment file cannot hold (``executor``, ``address``, ``workers``...: those
    declared with no file key), as ``SweepConfig`` field values from ``options`` (``None`` or missing: the
    default), to replace in each sweep of the file (``dataclasses.replace``).

    Raises:
        ConfigError: A bad executor setting.
    """
    values = config_values(SweepConfig, {s.key: options.get(s.key) for s in sweep_file_free_settings()}, run=None)
    del values["run"]  # each sweep of the file has its own
    return values


def no_weight_noise_notes(config: RunConfig, command: str) -> list[str]:
    """What ``--noise none`` (weights exact) measures in this run, when that is less than the user may think.

    Without a DAC, an ADC or read noise every trial equals the clean model (a tile split alone only
    reorders the float sums); without read noise nothing is drawn at random, so every seed gives the
    same trial (:mod:`onnxnoise.noise.none`, :attr:`onnxnoise.tile.TileSettings.needs_calibration`); said
    for ``bench`` and ``sweep``, whose ``--seeds`` set the draws (``check`` draws until its bounds settle).
    """
    if config.noise.model != "none":
        return []
    tile, notes = config.tile.settings(), []
    if not tile.needs_calibration:
        notes.append("--noise none leaves the weights exact and no DAC, ADC or read noise is on, so every trial "
                     "equals the clean model; add --dac-bits, --adc-bits or --read-noise to measure the tile's "
                     "stages")
    seeds = config.noise.seed_list if command in ("bench", "sweep") and config.noise.seeds != "auto" else ()
    if not tile.read_noise and len(seeds) > 1:
        notes.append(f"--noise none without --read-noise draws nothing at random: its {len(seeds)} seeds give the "
                     "same trial; --seeds 1 gives the same numbers")
    return notes


def default_out_dir(command: str, model: str | os.PathLike[str] | None = None) -> Path:
    """The output folder a command writes to when none is given (relative to the current directory).

    ``bench``: ``reports/<model>-<YYYYmmdd-HHMMSS>``; ``check``: ``reports/check-<model>-<stamp>``;
    ``compare``: ``reports/compare-<stamp>``; ``sweep``: ``runs/<model>`` (one folder per model, so a
    second run resumes the first). ``<model>`` is the model file's folder-safe name
    (:func:`onnxnoise.files.folder_name`).
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = folder_name(model) if model is not None else ""
    folders = {"bench": f"reports/{name}-{stamp}", "check": f"reports/check-{name}-{stamp}",
               "compare": f"reports/compare-{stamp}", "sweep": f"runs/{name}"}
    if command not in folders:
        raise ValueError(f"no default output folder for {command!r}")
    return Path(folders[command])


def _word(value: Any) -> str:
    """A value as command-line text: floats exactly (``repr``)."""
    return repr(value) if isinstance(value, float) else str(value)


def flag_words(setting: Setting, value: Any) -> list[str]:
    """``setting`` given as ``value`` on the command line: ``["--limit", "100"]``, ``["--no-cache"]``, ``[]``.

    ``value`` is what the flag parses to, or what the Python API takes for it (:func:`keyword_options`): a
    mapping (``noise_params`` of a noise model object) becomes ``key=value`` items with JSON values (as
    ``--noise-param`` reads them), a list of a flag that is not repeated (``mean=[0.5, 0.5, 0.5]``) one
    comma-separated value.
    """
    if value is None or setting.flag is None:
        return []
    if isinstance(value, Mapping):
        value = [f"{key}={json.dumps(item)}" for key, item in value.items()]
    if isinstance(value, list) and setting.action != "append":
        value = tuple(value)
    if setting.action in ("store_true", "store_false"):
        return [setting.flag] if value is (setting.action == "store_true") else []
    if isinstance(value, list):
        return [word for item in value for word in (setting.flag, _word(item))]
    if isinstance(value, tuple):
        return [setting.flag, ",".join(_word(v) for v in value)]
    return [setting.flag, _word(value)]
