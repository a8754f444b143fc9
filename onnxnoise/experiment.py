"""Experiment files: a whole study (models, data, preprocessing, sweeps) in one TOML file.

Example (see ``experiments/cifar10-resnet.toml``)::

    name = "cifar10-resnet"
    out = "runs/cifar10-resnet"          # each model's trial store: <out>/<model>/trials.sqlite

    [data]
    path = "../shared/data/cifar-10-batches-py"
    limit = 2000                         # optional; any preprocessing key may follow

    [models.resnet20-bn]
    path = "build/resnet20-bn.onnx"
    export = { kind = "cifar-resnet", depth = 20, checkpoint = "...", keep_batchnorm = true }

    [[sweeps]]
    models = ["resnet20-bn"]
    modes = ["per-layer"]
    snr = [100, 10, 5, 2.5, 1.67, 1]     # or noise_pct = [1, 2, 5, 10]; any model: strength = [...]
    # other noise models, each with its own key: noise = "pcm:compensation=global" with
    # t = ["1s", "1h", "1d", "30d", "1y"]; "stuck-at" with rate = [0.001, 0.01]; "bit-flip" with ber = [1e-4]
    seeds = [0, 1, 2]                    # or a count, or "auto" with ci_halfwidth = 0.5 [max_seeds = 20]
    limit = 2000                         # optional, overrides [data] limit for this sweep
    expect_top1 = 91.73                  # optional: a clean top-1 outside 91.73 +- tolerance (default 0.5)
                                         # stops the sweep before any noisy trial (also under [models.NAME])

Relative paths are resolved against the folder of the TOML file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxnoise.config import RunConfig, SweepConfig
from onnxnoise.errors import ExperimentError, OnnxNoiseError
from onnxnoise.files import check_folder_name, folder_name
from onnxnoise.options import strength_options
from onnxnoise.run_setup import keyword_options, option_settings
from onnxnoise.settings import Setting, config_values, declared
from onnxnoise.strict_json import parse_toml

__all__ = ["ExperimentError", "ModelEntry", "Experiment", "load_experiment", "load_settings_file", "SETTINGS_FILE_KEYS"]

_TOP_KEYS = {"name", "out", "data", "models", "sweeps", "description"}
#: Keys of each table that are the file's structure, not settings (:mod:`onnxnoise.settings` gives the rest).
_STRUCTURE = {"data": {"path"}, "models": {"path", "export"}, "sweeps": {"models"}}


def _file_settings(table: str) -> list[Setting]:
    """The settings an experiment file's ``table`` (``data``, ``models``, ``sweeps``) may hold, declared order."""
    return [s for s in declared(SweepConfig) if table in s.files]


def _allowed(table: str) -> set[str]:
    return _STRUCTURE[table] | {s.key for s in _file_settings(table)}


@dataclass(frozen=True)
class ModelEntry:
    """One model of an experiment.

    Attributes:
        name: Key under ``[models]``; also the run folder name.
        path: The ONNX file (absolute).
        export: How to build it when missing (read by ``scripts/reproduce_paper.py``).
        settings: Settings given under ``[models.NAME]`` (``expect_top1``, ``tolerance``), by key
            (a sweep's own keys override them).
    """

    name: str
    path: Path
    export: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    """A parsed experiment file.

    Attributes:
        name: Study name.
        out: Folder holding one run folder per model.
        models: ``name -> ModelEntry``.
        sweeps: ``(model name, SweepConfig)`` pairs, in file order.
        source: The TOML file.
    """

    name: str
    out: Path
    models: dict[str, ModelEntry]
    sweeps: list[tuple[str, SweepConfig]]
    source: Path

    def run_dir(self, model: str) -> Path:
        """The run folder (trial store) of one model: ``out/<model>``.

        Model names are checked at load (:func:`onnxnoise.files.check_folder_name`), so the
        folder is always one level inside ``out``.
        """
        return self.out / model


def _check_keys(table: dict, allowed: set[str], where: str, path: Path) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        msg = f"{path}: unknown key(s) {', '.join(unknown)} in {where}; allowed: {', '.join(sorted(allowed))}"
        raise ExperimentError(msg)


def _resolve(base: Path, value: Any) -> Path:
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


#: A CLI value list in a message: ``1s,1h,1d`` or ``100,10,5`` (no spaces).
_VALUES = r"[\w.+-]+(?:,[\w.+-]+)*"


def _toml_list(values: str) -> str:
    """``1s,1h`` -> ``["1s", "1h"]``; ``100,10`` -> ``[100, 10]``: a CLI value list as a TOML array."""
    def item(value: str) -> str:
        try:
            float(value)
        except ValueError:
            return f'"{value}"'
        return value

    return "[" + ", ".join(item(v) for v in values.split(",")) + "]"


def file_syntax(text: str) -> str:
    """A message written for the command line, as an experiment file spells it.

    Strength options with values become TOML keys with arrays (``--t 1s,1h`` ->
    ``t = ["1s", "1h"]``), example value lists become arrays (``e.g. 100,10,5`` ->
    ``e.g. [100, 10, 5]``), ``comma-separated`` becomes ``a list of``, and every other
    ``--flag`` its key (``--noise-pct`` -> ``noise_pct``).
    """
    keys = "|".join(re.escape(flag) for flag in sorted({*strength_options(), "strength"}, key=len, reverse=True))
    text = re.sub(rf"--({keys}) ({_VALUES})(?=[\s;)]|$)",
                  lambda m: f"{m.group(1).replace('-', '_')} = {_toml_list(m.group(2))}", text)
    text = re.sub(rf"\be\.g\. ({_VALUES},{_VALUES})(?=[\s;)]|$)", lambda m: f"e.g. {_toml_list(m.group(1))}", text)
    text = text.replace("give comma-separated numbers", "give a list of numbers")
    return re.sub(r"--([a-z][a-z-]*)", lambda m: m.group(1).replace("-", "_"), text)


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment TOML file.

    Args:
        path: The ``.toml`` file.

    Returns:
        The :class:`Experiment`, with every sweep expanded to one ``SweepConfig`` per model.

    Raises:
        ExperimentError: Missing file, invalid TOML, unknown keys, a sweep naming an
            undefined model, or invalid noise settings.
    """
    path = Path(path)
    doc = _read_toml(path, "experiment file")
    base = path.resolve().parent
    _check_keys(doc, _TOP_KEYS, "the top level", path)
    for key in ("data", "models", "sweeps"):
        if key not in doc:
            msg = f"{path}: missing [{key}]" if key != "sweeps" else f"{path}: missing [[sweeps]]"
            raise ExperimentError(msg)
    data = doc["data"]
    _check_keys(data, _allowed("data"), "[data]", path)
    if "path" not in data:
        msg = f"{path}: [data] needs `path`"
        raise ExperimentError(msg)
    models = {}
    for name, entry in doc["models"].items():
        _folder_name(name, "[models] key", path)
        _check_keys(entry, _allowed("models"), f"[models.{name}]", path)
        if "path" not in entry:
            msg = f"{path}: [models.{name}] needs `path`"
            raise ExperimentError(msg)
        models[name] = ModelEntry(name, _resolve(base, entry["path"]), dict(entry.get("export", {})),
                                  _given(entry, "models", base))
    sweeps = []
    for number, sweep in enumerate(doc["sweeps"], start=1):
        where = f"[[sweeps]] #{number}"
        _check_keys(sweep, _allowed("sweeps"), where, path)
        names = sweep.get("models", list(models))
        for name in names:
            if name not in models:
                msg = f"{path}: {where} names model {name!r}, not defined under [models] ({', '.join(models)})"
                raise ExperimentError(msg)
        shared, own = _given(data, "data", base), _given(sweep, "sweeps", base)
        try:
            for name in names:  # noise keys (and analog_preset) are a sweep's own: the same for every model
                options = {**shared, **models[name].settings, **own}  # a sweep's own key wins
                run = RunConfig(**config_values(RunConfig, options), model=models[name].path,
                                data=_resolve(base, data["path"]))
                sweeps.append((name, SweepConfig(**config_values(SweepConfig, options, run=run))))
        except OnnxNoiseError as exc:  # messages name CLI flags and values; say them as the file spells them
            raise ExperimentError(f"{path}: {where}: {file_syntax(str(exc))}") from None
    name = str(doc["name"]) if "name" in doc else _name_from_file(path)
    out = _resolve(base, doc["out"] if "out" in doc else Path("runs") / _folder_name(name, "`name`", path, out=True))
    return Experiment(name=name, out=out, models=models, sweeps=sweeps, source=path)


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    """The TOML document of ``path`` (UTF-8, a byte-order mark allowed).

    Raises:
        ExperimentError: A missing file, bytes that are not UTF-8, or text that is not TOML.
    """
    if not path.is_file():
        msg = f"{what} not found: {path}"
        raise ExperimentError(msg)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark (Windows editors) is not part of the TOML
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        msg = (f"{path} is not valid TOML: line {line} holds byte 0x{raw[exc.start]:02x}, which is not UTF-8 "
               "(TOML files are UTF-8: save it as UTF-8)")
        raise ExperimentError(msg) from None
    try:
        return parse_toml(text)
    except ValueError as exc:  # not TOML, nested too deep
        msg = f"{path} is not valid TOML: {exc}"
        raise ExperimentError(msg) from None


#: Keys of a settings file besides the command's settings: the positional MODEL and ``--out``.
SETTINGS_FILE_KEYS: tuple[str, ...] = ("model", "out")


def load_settings_file(path: str | Path, command: str, *classes: type,
                       refused: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings of ``bench --config FILE`` / ``check --config FILE``: one flat TOML table.

    Its keys are the setting keys ``command`` takes (docs/options.md: ``snr = [100, 10]``,
    ``seeds = 3``, ``noise = "pcm:compensation=global"``, ``data = "cifar10"``), plus ``model`` and
    ``out``; values as an experiment file spells them (a TOML array for a comma-separated flag). Relative
    paths are resolved against the file's folder (a ``data`` that is no file there stays a name). The command
    line's flags override the file's values.

    Args:
        path: The ``.toml`` file.
        command: ``bench`` or ``check``.
        classes: The config classes whose settings ``command`` takes (``RunConfig``; check's gate and request).
        refused: Setting keys of ``classes`` that ``command`` refuses, each with why and what to use instead
            (check's ``seeds`` and ``ci_halfwidth``): not listed as valid keys, and refused by that reason.

    Returns:
        ``key -> value`` as the command's parsed flags give them (:func:`onnxnoise.run_setup.keyword_options`;
        every setting key, ``None`` when the file does not give it; an array as a tuple, as a comma list
        parses), with ``model`` and ``out`` (``Path`` or ``None``).

    Raises:
        ExperimentError: As :func:`_read_toml`; a key that is not one of the command's (one line naming it
            and the valid keys), a table where a value belongs, or a value its flag refuses.
    """
    path = Path(path)
    doc = _read_toml(path, "settings file")
    base = path.resolve().parent
    refused = refused or {}
    clash = sorted(set(doc) & set(refused))
    if clash:
        raise ExperimentError(f"{path}: {command} --config takes no `{clash[0]}`: {refused[clash[0]]}")
    settings = {s.key: s for s in option_settings(command, *classes) if s.key not in refused}
    unknown = sorted(set(doc) - set(settings) - set(SETTINGS_FILE_KEYS))
    if unknown:
        msg = (f"{path}: unknown key(s) {', '.join(unknown)}; {command} --config takes "
               f"{', '.join([*SETTINGS_FILE_KEYS, *sorted(settings)])} (the setting keys of docs/options.md)")
        raise ExperimentError(msg)
    nested = sorted(k for k, v in doc.items() if isinstance(v, dict))
    if nested:
        msg = f"{path}: {', '.join(nested)} is a table; {command} --config takes one value per key, no [sections]"
        raise ExperimentError(msg)
    given = {k: _file_path(base, v, k == "out") if k in SETTINGS_FILE_KEYS or settings[k].type is Path else v
             for k, v in doc.items()}
    given = {k: tuple(v) if isinstance(v, list) and k in settings and settings[k].action != "append" else v
             for k, v in given.items()}
    try:
        values = keyword_options(command, {k: v for k, v in given.items() if k in settings}, *classes)
    except OnnxNoiseError as exc:
        raise ExperimentError(f"{path}: {file_syntax(str(exc))}") from None
    return {**values, **{k: given.get(k) for k in SETTINGS_FILE_KEYS}}


def _file_path(base: Path, value: Any, new: bool) -> Path:
    """A path of a settings file: relative to the file's folder when it is there (or, ``new``, an output folder);
    else as given (``data = "cifar10"``: a registered dataset name)."""
    resolved = _resolve(base, value)
    return resolved if new or resolved.exists() else Path(str(value))


def _name_from_file(path: Path) -> str:
    """The experiment name when the file gives none: its file name's stem, made one plain folder name
    (:func:`onnxnoise.files.folder_name`; ``...toml`` -> ``experiment``) when the stem is not one."""
    try:
        return check_folder_name(path.stem, "`name`")
    except ValueError:
        return folder_name(path.stem, fallback="experiment")


def _folder_name(name: str, what: str, path: Path, *, out: bool = False) -> str:
    """``name`` when it is one folder name (a run folder under ``out``, or ``runs/<name>``), else one line."""
    try:
        return check_folder_name(name, what)
    except ValueError as exc:
        hint = "; or give `out = \"FOLDER\"`" if out else ""
        raise ExperimentError(f"{path}: {exc}{hint}") from None


def _given(table: dict, name: str, base: Path) -> dict[str, Any]:
    """The settings ``table`` (``[data]``, ``[models.NAME]``, a sweep) gives, by key; paths resolved from ``base``."""
    return {s.key: _resolve(base, table[s.key]) if s.type is Path else table[s.key]
            for s in _file_settings(name) if s.key in table}
