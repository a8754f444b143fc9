"""Datasets by name: a small registry of dataset folders in the user's config folder.

The registry is one JSON file, ``<config dir>/datasets.json``::

    {"version": 1, "datasets": {"imagenet": {"path": "/data/imagenet/val", "num_classes": 1000,
                                            "images": 50000, "format": "imagenet-val",
                                            "source": "added", "added_at": "2025-01-01T12:00:00Z"}}}

The config folder is ``$ONNXNOISE_CONFIG_DIR`` when set, else platformdirs'
``user_config_dir("onnxnoise")`` (``~/.config/onnxnoise`` on Linux). Entries are added by
``onnxnoise data add NAME PATH`` (an existing folder, validated by
:func:`onnxnoise.data.open_dataset`) or ``onnxnoise data get NAME`` (a downloaded archive, see
:mod:`onnxnoise.data.download`).

:func:`resolve_data` is the one place a ``--data`` value (a path, a registered name, or
nothing) becomes a dataset path: without ``--data`` it picks the registered dataset whose
class count matches the model's score output (1000 or 1001 outputs -> ``imagenet``,
10 -> ``cifar10``, 100 -> ``cifar100``, else any registered dataset with that many classes); among several,
the one whose images fit the model's input in channels and size (:mod:`onnxnoise.data.fit`), the
conventional name breaking a tie, else it asks for ``--data NAME``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import platformdirs

from onnxnoise.data.dataset import Dataset, open_dataset
from onnxnoise.data.fit import Geometry, dataset_geometry, fit_score, model_geometry
from onnxnoise.data.formats import special_file
from onnxnoise.data.label_space import BACKGROUND_CLASS_OUTPUTS
from onnxnoise.errors import DataError
from onnxnoise.files import atomic_write, locked
from onnxnoise.model import get_model_io, load_model, score_width
from onnxnoise.strict_json import parse_json

__all__ = [
    "CONFIG_ENV",
    "REGISTRY_FILE",
    "PREFERRED_NAMES",
    "RegisteredDataset",
    "DataChoice",
    "check_name",
    "get_config_dir",
    "registry_path",
    "load_registry",
    "register_dataset",
    "unregister_dataset",
    "lookup_dataset",
    "matches_outputs",
    "resolve_data",
]

#: Environment variable overriding the config folder (tests, CI, several setups side by side).
CONFIG_ENV = "ONNXNOISE_CONFIG_DIR"
#: The registry's file name inside the config folder.
REGISTRY_FILE = "datasets.json"
_VERSION = 1
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
#: Model output count -> the registered name tried first, and how to get such a dataset.
PREFERRED_NAMES: dict[int, str] = {1000: "imagenet", 1001: "imagenet", 10: "cifar10", 100: "cifar100"}
_HOW_TO = {
    "imagenet": "register an ImageNet val folder with `onnxnoise data add imagenet /path/to/val` "
                "or download Imagenette (10 ImageNet classes) with `onnxnoise data get imagenette`",
    "cifar10": "download it with `onnxnoise data get cifar10` or register a folder with "
               "`onnxnoise data add cifar10 /path/to/cifar-10-batches-py`",
    "cifar100": "download it with `onnxnoise data get cifar100` or register a folder with "
                "`onnxnoise data add cifar100 /path/to/cifar-100-python`",
}


@dataclass(frozen=True)
class RegisteredDataset:
    """One registry entry.

    Attributes:
        name: Registered name (lowercase letters, digits, ``.``, ``_``, ``-``; at most 64).
        path: Absolute dataset path, as :func:`onnxnoise.data.open_dataset` takes it.
        num_classes: Size of the dataset's label space (10, 100, 1000, 1001...).
        images: Number of images when registered.
        format: A format name, a key of :data:`onnxnoise.data.DATASET_FORMATS`.
        source: ``added`` or ``downloaded from <url> (sha256 <hex>)``.
        added_at: UTC time of registration, ISO 8601.
    """

    name: str
    path: str
    num_classes: int
    images: int
    format: str
    source: str
    added_at: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, plus ``exists`` (whether the path is still there)."""
        return {**asdict(self), "exists": Path(self.path).exists()}


@dataclass(frozen=True)
class DataChoice:
    """What :func:`resolve_data` decided.

    Attributes:
        path: The dataset path to open.
        name: The registered name used, or None when ``--data`` was a path.
        note: One line saying which registered dataset is used and why, or None.
    """

    path: Path
    name: str | None = None
    note: str | None = None


def get_config_dir() -> Path:
    """The config folder: ``$ONNXNOISE_CONFIG_DIR``, else ``platformdirs.user_config_dir("onnxnoise")``."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_config_dir("onnxnoise", appauthor=False))


def registry_path() -> Path:
    """``<config dir>/datasets.json``."""
    return get_config_dir() / REGISTRY_FILE


def load_registry() -> dict[str, RegisteredDataset]:
    """Every registered dataset, by name (empty when there is no registry file yet).

    Raises:
        DataError: The registry file exists but is not a registry this version wrote.
    """
    path = registry_path()
    try:
        raw = parse_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the dataset registry `{path}` ({exc}); fix or delete the file") from None
    try:
        if raw.get("version") != _VERSION:
            raise ValueError(f"version {raw.get('version')!r}")
        return {name: RegisteredDataset(name=name, **{k: v for k, v in entry.items() if k != "name"})
                for name, entry in raw["datasets"].items()}
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"the dataset registry `{path}` is not a version {_VERSION} registry ({exc}); "
                        "fix or delete the file") from None


@contextlib.contextmanager
def _changing() -> Iterator[dict[str, RegisteredDataset]]:
    """The registry's entries, to change in the block; written back on a clean exit.

    The read, the change and the write happen under one lock on ``datasets.json.lock``
    (:func:`onnxnoise.files.locked`), so concurrent ``data add`` / ``data get`` /
    ``data remove`` commands never lose each other's entries, and the file is replaced
    whole (:func:`onnxnoise.files.atomic_write`): a full disk or ``kill -9`` leaves the
    previous registry. A registry file that is a symbolic link (a config kept with one's
    dotfiles) is written, and locked, where the link points: replacing the link by a file
    would leave the linked registry behind and two configs linked to one registry unlocked.
    """
    path = registry_path()
    if path.is_symlink():
        path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(locked(path))
        except TimeoutError as exc:
            raise DataError(f"{exc}; try again when the other `onnxnoise data` command has finished") from None
        entries = load_registry()
        yield entries
        body = {"version": _VERSION, "datasets": {n: {k: v for k, v in asdict(e).items() if k != "name"}
                                                  for n, e in sorted(entries.items())}}
        with atomic_write(path, text=True) as fh:
            json.dump(body, fh, indent=2)
            fh.write("\n")


def check_name(name: str) -> str:
    """``name`` if it is a valid registry name, else :class:`DataError`."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise DataError(f"dataset name {name!r} is not valid; use lowercase letters, digits, `.`, `_` or `-` "
                        "(e.g. imagenet, cifar10)")
    return name


def register_dataset(name: str, path: str | os.PathLike[str], *, source: str = "added",
                     replace: bool = False, on_skipped: Callable[[str], None] | None = None) -> RegisteredDataset:
    """Validate ``path`` with :func:`onnxnoise.data.open_dataset` and register it as ``name``.

    An existing entry of that name for the same path is refreshed; one for another path is
    replaced only with ``replace`` (a silently replaced ``cifar10`` would change what every
    later run without ``--data`` measures).

    Args:
        name: Registry name (see :class:`RegisteredDataset`).
        path: Dataset folder or ``.npz`` file; stored absolute.
        source: Where it came from (``added``, or the download URL and sha256).
        replace: Replace an entry of that name that points elsewhere.
        on_skipped: Called with one line naming the image files a run skips without decoding
            (a FIFO, device or socket, a dangling link or link loop), when there are any.

    Returns:
        The new entry (class count as the loader reports it; image count without the files
        a run skips unread, so it is what ``bench`` evaluates when every image decodes).

    Raises:
        DataError: Bad name, a path the dataset loader cannot open (its one-line reason), or
            ``name`` registered for another path without ``replace``.
    """
    check_name(name)
    root = Path(path).expanduser().resolve()
    _check_replace(load_registry(), name, root, replace)  # before the (slow) opening
    try:
        dataset = open_dataset(root)
    except DataError as exc:
        raise DataError(f"cannot register `{name}`: {exc}") from None
    unread = _unread_files(dataset)
    if unread and on_skipped is not None:
        on_skipped(f"{len(unread)} file(s) with an image name are not images a run can read and are not counted, "
                   f"e.g. `{unread[0][0]}` ({unread[0][1]})")
    entry = RegisteredDataset(name=name, path=str(root), num_classes=int(dataset.num_classes),
                              images=len(dataset) - len(unread), format=dataset.format, source=source,
                              added_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    with _changing() as entries:
        _check_replace(entries, name, root, replace)  # again: another command may have added it meanwhile
        entries[name] = entry
    return entry


def _unread_files(dataset: Dataset) -> list[tuple[Path, str]]:
    """``(path, what it is)`` of the dataset's files that a run skips without decoding them.

    A FIFO, device or socket (``formats.special_file``) and a path that cannot be looked at
    (a dangling link, a link loop): ``data.loading`` skips them as unreadable, so the
    registered image count leaves them out.
    """
    unread = []
    for path in dataset.files or ():
        try:
            os.stat(path)
        except OSError as exc:
            unread.append((path, exc.strerror or str(exc)))
            continue
        kind = special_file(path)
        if kind is not None:
            unread.append((path, kind))
    return unread


def _check_replace(entries: dict[str, RegisteredDataset], name: str, root: Path, replace: bool) -> None:
    existing = entries.get(name)
    if existing is not None and Path(existing.path) != root and not replace:
        raise DataError(f"`{name}` is already registered for {existing.path} ({existing.num_classes} classes); "
                        f"`onnxnoise data add --replace {name} PATH` replaces it, or choose another name")


def unregister_dataset(name: str) -> RegisteredDataset:
    """Remove ``name`` from the registry (its files are left alone) and return the removed entry.

    Raises:
        DataError: ``name`` is not registered.
    """
    with _changing() as entries:
        if name not in entries:
            raise DataError(f"no dataset named `{name}` is registered; `onnxnoise data list` shows the names")
        return entries.pop(name)


def lookup_dataset(name: str) -> RegisteredDataset | None:
    """The entry registered as ``name``, or None.

    Raises:
        DataError: The entry's path no longer exists (says how to re-register or remove it).
    """
    entry = load_registry().get(name)
    if entry is not None and not Path(entry.path).exists():
        raise DataError(f"registered dataset `{name}` points to `{entry.path}`, which no longer exists; register "
                        f"it again with `onnxnoise data add {name} PATH` or drop it with "
                        f"`onnxnoise data remove {name}`")
    return entry


def matches_outputs(num_classes: int, num_outputs: int) -> bool:
    """True when a dataset of ``num_classes`` classes can be scored by ``num_outputs`` outputs.

    Equal counts, or a 1000-class dataset on a 1001-output model (background class at
    output 0; the label offset of 1 is then detected by
    :func:`onnxnoise.engine.labels.resolve_label_offset`).
    """
    return num_classes == num_outputs or (num_outputs, num_classes) in BACKGROUND_CLASS_OUTPUTS


def _model_io(model: Path, score_output: str | None) -> tuple[int | None, Geometry]:
    """Class scores per image of the model's score output (with shape inference when the graph omits it), and
    the geometry of its image input."""
    proto = load_model(model)
    io = get_model_io(proto, output=score_output)
    return score_width(proto, io), model_geometry(io.input_shape)


def _best_fit(candidates: list[RegisteredDataset], geometry: Geometry, preferred: str | None, outputs: int,
              model_name: str) -> tuple[RegisteredDataset, list[str]]:
    """The candidate whose images fit the model's input best (:func:`onnxnoise.data.fit.fit_score`); among equals
    the conventional name (:data:`PREFERRED_NAMES`), or the only one. Returns it and the worse-fitting others.

    Raises:
        DataError: None fits in channels or size, or several fit equally and none has the conventional name;
            the message lists them with their geometry and says to pass ``--data NAME``.
    """
    shapes = {e.name: dataset_geometry(e.path, e.format) for e in candidates}
    scores = {e.name: fit_score(geometry, shapes[e.name]) for e in candidates}
    best = max(scores.values())
    top = [e for e in candidates if scores[e.name] == best]

    def listed(entries: list[RegisteredDataset]) -> str:
        return ", ".join(f"`{e.name}` ({shapes[e.name].text()})" for e in entries)

    if best == 0:
        raise DataError(f"no --data given and no registered {outputs}-class dataset fits the {geometry.text()} input "
                        f"of {model_name}: {listed(candidates)}; pass --data NAME to use one anyway (with --crop and "
                        "--resize), or --data PATH for a dataset that fits")
    chosen = next((e for e in top if e.name == preferred), top[0] if len(top) == 1 else None)
    if chosen is None:
        raise DataError(f"no --data given and {len(top)} registered {outputs}-class datasets fit the "
                        f"{geometry.text()} input of {model_name} equally: {listed(top)}; pass --data NAME "
                        f"(e.g. --data {top[0].name})")
    return chosen, [f"`{e.name}` ({shapes[e.name].text()})" for e in candidates if scores[e.name] < best]


def _check_not_shadowed(text: str) -> bool:
    """Refuse a ``--data`` value that is both an existing path and a registered name of another folder.

    Returns:
        True when the path here is the registered dataset itself (a symlink to it, or the
        registered path is relative and this one): the registered entry is then used.

    Raises:
        DataError: Naming both and the spelling that chooses each.
    """
    try:
        entry = load_registry().get(text)
    except DataError:  # an unreadable registry cannot make a given path ambiguous
        return False
    if entry is None:
        return False
    here = Path(text).expanduser().resolve()
    if Path(entry.path).expanduser().resolve() == here:
        return True
    raise DataError(f"--data {text} is ambiguous: `{text}` in the current directory ({here}) and the registered "
                    f"dataset `{text}` ({entry.path}); pass ./{text} for the one here, or {entry.path} for the "
                    "registered one")


def resolve_data(data: str | os.PathLike[str] | None, model: str | os.PathLike[str],
                 *, score_output: str | None = None) -> DataChoice:
    """Turn a ``--data`` value into a dataset path.

    Args:
        data: A dataset path, a registered name, or None (pick by the model's outputs).
            A value that is both a path in the current directory and a registered name
            is refused as ambiguous unless both are the same folder; a value that is
            neither is returned as a path, so the loader reports it.
        model: The ONNX model (read only when ``data`` is None).
        score_output: Name of the score output (default: the first float graph output).

    Returns:
        The path to open, the registered name used (or None) and a one-line note.

    Raises:
        DataError: ``data`` names both a path and a registered dataset elsewhere
            (:func:`_check_not_shadowed`), ``data`` is None and no registered dataset has as many classes as the
            model has outputs (the message says how to register or download one), none of those fits the
            model's input or several fit it equally (:func:`_best_fit`), the
            model's output size is unknown, or the chosen entry's path is gone.
        GraphError: The model cannot be loaded (``data`` None only).
    """
    if data is not None:
        text = os.fspath(data)
        if not _NAME.match(text):
            return DataChoice(Path(text))
        if Path(text).expanduser().exists() and not _check_not_shadowed(text):
            return DataChoice(Path(text))
        entry = lookup_dataset(text)
        if entry is None:
            names = ", ".join(sorted(load_registry())) or "none"
            how = _HOW_TO.get(text, f"register it with `onnxnoise data add {text} PATH`")
            raise DataError(f"--data `{text}` does not exist as a path and is not a registered dataset name "
                            f"(registered: {names}); pass a dataset path, or {how}")
        note = f"--data {text}: registered dataset `{entry.name}` ({entry.path}, {entry.num_classes} classes)"
        return DataChoice(Path(entry.path), entry.name, note)
    model = Path(model)
    outputs, geometry = _model_io(model, score_output)
    if outputs is None:
        raise DataError(f"no --data given and the number of outputs of `{model.name}` is unknown (symbolic), so no "
                        "registered dataset can be chosen; pass --data PATH or a name from `onnxnoise data list`")
    entries = load_registry()
    preferred = PREFERRED_NAMES.get(outputs)
    candidates = [e for _, e in sorted(entries.items()) if matches_outputs(e.num_classes, outputs)]
    if candidates:
        entry, others = _best_fit(candidates, geometry, preferred, outputs, model.name)
        lookup_dataset(entry.name)  # a vanished folder is an error, not a silent fallback
        note = (f"no --data given: using registered dataset `{entry.name}` ({entry.path}, {entry.num_classes} "
                f"classes, {entry.images} images) for the {outputs} outputs of {model.name}")
        if others:
            note += f"; chosen over {', '.join(others)} for its {geometry.text()} input"
        return DataChoice(Path(entry.path), entry.name, note)
    how = _HOW_TO.get(preferred or "", f"register a {outputs}-class dataset with "
                      "`onnxnoise data add NAME /path/to/dataset`")
    raise DataError(f"no --data given and no registered dataset has {outputs} classes for the {outputs} outputs "
                    f"of {model.name}; {how}, or pass --data PATH")
