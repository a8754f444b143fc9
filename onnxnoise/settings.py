"""Settings declared once: each config field carries its flag, help, file key and where it applies.

A user setting is a field of :class:`~onnxnoise.config.RunConfig`,
:class:`~onnxnoise.config.NoiseConfig`, :class:`~onnxnoise.config.SweepConfig` or
:class:`~onnxnoise.check.gate.GateSettings`, declared with :func:`option`::

    batch_size: int = option(128, flag="--batch-size", help="images per ONNX Runtime call (default {default})",
                             type=int, group=RUNTIME, files=("sweeps",), unit="images", trial_key=True)

From that one declaration come the ``bench`` / ``sweep`` / ``check`` flags and their
``--help`` (``{default}`` is the field's default), the experiment-file key and the
tables that may hold it, the mapping of parsed options to the config, the ``check``
re-check command line and ``docs/options.md``. The field's ``__post_init__`` validates
it. A new setting is one field.

Settings outside the package (a plug-in, a test) register with :func:`register_setting`:
they are held in ``RunConfig.extra`` and reach the same places.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from pathlib import PurePath
from typing import Any

__all__ = [
    "Setting", "option", "option_map", "option_inputs", "nested", "extra_settings", "declared", "config_values",
    "show_default", "register_setting", "unregister_setting", "registered_settings", "own_key_values",
    "RUN_COMMANDS", "FILE_TABLES", "NOISE", "DATA", "PREPROCESSING", "RUNTIME", "BASELINE", "EXECUTOR", "GATE",
    "SEARCH", "TILE", "GROUPS",
]

#: The commands that run a model: every setting of a run applies to them unless it says otherwise.
RUN_COMMANDS: tuple[str, ...] = ("bench", "sweep", "check")

#: Experiment-file tables a setting's key may appear in, least precedence first (a sweep's own key wins).
FILE_TABLES: tuple[str, ...] = ("data", "models", "sweeps")

#: ``--help`` sections, in the order they are shown (``None``: the command's own options, first).
EXECUTOR = "executor (where trials run; see docs/distributed.md)"
NOISE = "noise"
DATA = "data"
PREPROCESSING = "preprocessing (each overrides the preset and the model's defaults)"
RUNTIME = "runtime and output"
BASELINE = "baseline check"
GATE = "gate"
SEARCH = "tolerance search and protection plan"
TILE = "analog tile input/output stages (DAC, ADC, read noise, tiles; off by default)"
GROUPS: tuple[str, ...] = (EXECUTOR, NOISE, TILE, DATA, PREPROCESSING, RUNTIME, BASELINE, GATE, SEARCH)

_KEY = "onnxnoise.settings"


@dataclass(frozen=True)
class Setting:
    """One user setting: how it is given on the command line and in experiment files.

    Attributes:
        key: Experiment-file key, keyword of the config builders and the parsed argument's
            name (``args.<key>``); default: the field name.
        flag: Command-line option (``--batch-size``); ``None``: none.
        help: ``--help`` text; ``{default}`` is replaced by the default (:func:`show_default`).
        metavar, type, choices: As for ``argparse`` (``type`` converts the flag's text).
        action: ``store_true`` (the flag sets ``True``), ``store_false`` (the flag sets ``False``,
            e.g. ``--no-cache``) or ``append`` (repeatable); ``None``: takes a value.
        group: ``--help`` section (one of :data:`GROUPS`); ``None``: the command's own options.
        commands: The commands that take the flag.
        files: Experiment-file tables that may hold ``key`` (:data:`FILE_TABLES`, least precedence
            first; relative paths resolve against the file's folder); ``()``: none.
        parse: Turns a given value (flag text after ``type``, or a file value) into the field's
            value; raises :class:`~onnxnoise.errors.ConfigError` on a bad one. ``None``: as given.
        unit: Unit of the value, for the options reference (``GiB``, ``percentage points``).
        trial_key: Whether the setting can change a trial's counts, and how it enters the trial
            key: the name of the entry of :meth:`onnxnoise.engine.context.RunContext.key_fields`
            (or of the trial: ``layers``, ``strength``, ``seed``, ``mode``) that carries its resolved
            value (``"preprocess"``, ``"provider"``); ``True``: its value itself enters
            ``key_fields()["settings"]`` (:func:`own_key_values`); ``False``: it cannot change counts.
        recheck: ``check``'s re-check command line repeats it.
        required: The command needs the flag.
        hidden: Accepted but not shown in ``--help``: ``True`` everywhere (an older spelling), or
            the commands that accept the flag only to refuse it with the fix (``check`` chooses
            its own number of draws: ``--seeds`` there is refused naming ``--max-seeds``).
        default: The default (filled from the field; given for a registered setting).
        shown: The default as ``--help`` and the docs state it, when the field's default
            only means "not given" (``--find-resolution``: ``None`` -> 0.05); ``None``: ``default``.
    """

    key: str = ""
    flag: str | None = None
    help: str = ""
    metavar: str | None = None
    type: Callable[[str], Any] | None = None
    choices: Sequence[str] | None = None
    action: str | None = None
    group: str | None = None
    commands: tuple[str, ...] = RUN_COMMANDS
    files: tuple[str, ...] = ()
    parse: Callable[[Any], Any] | None = None
    unit: str = ""
    trial_key: bool | str = False
    recheck: bool = True
    required: bool = False
    hidden: bool | tuple[str, ...] = False
    default: Any = None
    shown: Any = None

    def __post_init__(self) -> None:
        if self.group is not None and self.group not in GROUPS:
            raise ValueError(f"setting {self.key or self.flag!r}: unknown help group {self.group!r}")
        unknown = [table for table in self.files if table not in FILE_TABLES]
        if unknown:
            raise ValueError(f"setting {self.key or self.flag!r}: unknown file table(s) {unknown}")

    def hidden_in(self, command: str) -> bool:
        """Whether ``command``'s ``--help`` leaves the flag out."""
        return self.hidden is True or (isinstance(self.hidden, tuple) and command in self.hidden)

    def shown_in(self) -> tuple[str, ...]:
        """The commands whose ``--help`` shows the flag."""
        return tuple(c for c in self.commands if not self.hidden_in(c))

    def text(self) -> str:
        """The ``--help`` text with its default filled in."""
        return self.help.replace("{default}", self.default_text())

    def default_text(self) -> str:
        """The default as ``--help`` and the docs state it (:func:`show_default`; ``""``: none)."""
        return show_default(self.default if self.shown is None else self.shown)

    def value(self, raw: Any) -> Any:
        """A given value as the field holds it (``parse``d); ``None`` stays ``None`` (not given)."""
        return raw if raw is None or self.parse is None else self.parse(raw)


@dataclass(frozen=True)
class _Declared:
    """What a field declares: its settings and how they make the field's value.

    ``kind``: ``value`` (one setting is the field), ``map`` (its settings make ``{key: value}``),
    ``inputs`` (the class combines them in ``from_options``), ``nested`` (a config of its own,
    ``nested`` its class) or ``extra`` (the registered settings).
    """

    kind: str
    settings: tuple[Setting, ...] | Callable[[], Sequence[Setting]] = ()
    nested: type | None = None


def option(default: Any = MISSING, *, default_factory: Any = MISSING, **setting: Any) -> Any:
    """A dataclass field that is one user setting (keywords: :class:`Setting`'s attributes)."""
    return field(default=default, default_factory=default_factory,
                 metadata={_KEY: _Declared("value", (Setting(**setting),))})


def option_map(*settings: Setting, default_factory: Any = dict) -> Any:
    """A mapping field assembled from several settings: ``{key: value}`` of those given (e.g. preprocessing)."""
    return field(default_factory=default_factory, metadata={_KEY: _Declared("map", settings)})


def option_inputs(settings: Sequence[Setting] | Callable[[], Sequence[Setting]], *, default: Any = MISSING,
                  default_factory: Any = MISSING) -> Any:
    """A field its class builds from several inputs in ``from_options`` (the noise model, its strengths).

    ``settings`` may be a function, called each time the settings are listed (so a noise model
    registered later brings its own strength option).
    """
    return field(default=default, default_factory=default_factory, metadata={_KEY: _Declared("inputs", settings)})


def nested(cls: type, *, default_factory: Any = MISSING) -> Any:
    """A field holding a config of its own (``RunConfig.noise``, ``SweepConfig.run``), its settings listed in place."""
    return field(default_factory=default_factory, metadata={_KEY: _Declared("nested", nested=cls)})


def extra_settings() -> Any:
    """The field holding registered settings (:func:`register_setting`), ``key -> value``."""
    return field(default_factory=dict, metadata={_KEY: _Declared("extra")})


_REGISTERED: dict[str, Setting] = {}


def register_setting(setting: Setting) -> Setting:
    """Add a run setting from outside the package: held in ``RunConfig.extra[setting.key]``.

    It reaches every place a declared field does: the flag of the commands it names, the
    experiment-file tables, ``RunConfig`` (validated by ``parse`` when built) and its
    ``to_dict`` (the recorded config), and ``check``'s re-check command line. With
    ``trial_key=True`` its value enters the trial key when it differs from its default
    (:func:`own_key_values`), and so the ``context`` column of every trial row.

    Args:
        setting: With ``key`` and ``default`` set.

    Raises:
        ValueError: A ``key`` or ``flag`` already declared or registered.
    """
    if not setting.key:
        raise ValueError("a registered setting needs a key")
    taken = {s.key for s in _REGISTERED.values()} | {s.flag for s in _REGISTERED.values() if s.flag}
    if setting.key in taken or (setting.flag and setting.flag in taken):
        raise ValueError(f"setting {setting.key!r} ({setting.flag}) is already registered")
    _REGISTERED[setting.key] = setting
    return setting


def unregister_setting(key: str) -> None:
    """Remove a registered setting (a test's cleanup); an unknown key is ignored."""
    _REGISTERED.pop(key, None)


def registered_settings() -> dict[str, Setting]:
    """The registered settings, ``key -> Setting``, in registration order."""
    return dict(_REGISTERED)


def _field_default(f: Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


def _own(f: Field) -> tuple[_Declared, list[Setting]] | None:
    """A field's declaration and its settings with key and default filled in; ``None`` when it declares none."""
    meta = f.metadata.get(_KEY)
    if meta is None:
        return None
    if meta.kind in ("extra", "nested"):
        return meta, list(_REGISTERED.values()) if meta.kind == "extra" else []
    listed = meta.settings() if callable(meta.settings) else meta.settings
    default = _field_default(f)
    out = []
    for s in listed:
        key = s.key or f.name
        value = s.default if s.default is not None else default.get(key) if meta.kind == "map" else default
        out.append(replace(s, key=key, default=value))
    return meta, out


def declared(cls: type, command: str | None = None, *, nested: bool = True) -> list[Setting]:
    """Every setting of a config class in field order, nested configs in place (unless ``nested=False``).

    Args:
        cls: The config class.
        command: Only the settings this command takes; ``None``: all.
        nested: Include the settings of nested configs (``RunConfig.noise``, ``SweepConfig.run``).
    """
    out: list[Setting] = []
    for _, meta, settings in _fields(cls):
        if meta.kind == "nested":
            out += declared(meta.nested, command) if nested else []
        else:
            out += [s for s in settings if command is None or command in s.commands]
    return out


def _fields(cls: type) -> Iterator[tuple[Field, _Declared, list[Setting]]]:
    for f in fields(cls):
        own = _own(f)
        if own is not None:
            yield f, own[0], own[1]


def config_values(cls: type, options: Mapping[str, Any], **fixed: Any) -> dict[str, Any]:
    """The given field values of ``cls`` from ``options`` (``key -> value``; ``None`` or missing: not given).

    Each value is ``parse``d (:meth:`Setting.value`); a mapping field gets the dict of its
    given settings; a nested config is built by its class's ``from_options`` from the same
    ``options``. Fields that combine several inputs are left to the class's ``from_options``.
    A class with a classmethod ``expand_options(options) -> options`` gets its options through it
    first (``RunConfig``: ``--analog-preset`` expands there).

    Args:
        cls: The config class.
        options: Given values by setting key.
        **fixed: Field values taken as they are (a nested config built already: ``run=...``).
    """
    expand = getattr(cls, "expand_options", None)
    if expand is not None:
        options = expand(options)
    out: dict[str, Any] = {}
    for f, meta, settings in _fields(cls):
        if f.name in fixed:
            continue
        if meta.kind == "nested":
            out[f.name] = meta.nested.from_options(**{s.key: options.get(s.key) for s in declared(meta.nested)})
        elif meta.kind == "value":
            value = settings[0].value(options.get(settings[0].key))
            if value is not None:
                out[f.name] = value
        elif meta.kind in ("map", "extra"):
            values = {s.key: s.value(options.get(s.key)) for s in settings}
            out[f.name] = {k: v for k, v in values.items() if v is not None}
    return {**out, **fixed}


def show_default(value: Any) -> str:
    """A default as ``--help`` and the options reference write it: ``0.5``, ``4``, ``all``, ``auto``."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return ",".join(show_default(v) for v in value)
    return "" if value is None else str(value)


def own_key_values(config: Any) -> dict[str, Any]:
    """The values that enter the trial key as themselves: settings with ``trial_key=True``.

    Looks at the config's own fields (not nested configs, which have their own key entries)
    and its registered settings (``extra``). A value equal to the setting's default is left
    out, so a setting added later keeps the keys of runs made before it existed, as long as
    its default reproduces what those runs did. Paths become text.

    Args:
        config: A config instance (:class:`~onnxnoise.config.RunConfig`).

    Returns:
        ``key -> value``, in declaration order; empty when every such setting is at its default.
    """
    out: dict[str, Any] = {}
    for f, meta, settings in _fields(type(config)):
        if meta.kind not in ("value", "map", "extra"):  # nested and combined fields have their own key entries
            continue
        value = getattr(config, f.name)
        for setting in settings:
            if setting.trial_key is not True:
                continue
            given = value if meta.kind == "value" else value.get(setting.key)
            if given != setting.default:
                out[setting.key] = str(given) if isinstance(given, PurePath) else given
    return out
