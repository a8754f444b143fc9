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
    snr = [100, 10, 5, 2.5, 1.67, 1]     # or noise_pct = [1, 2, 5, 10]
    seeds = [0, 1, 2]                    # or a count
    limit = 2000                         # optional, overrides [data] limit for this sweep

Relative paths are resolved against the folder of the TOML file.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxnoise.errors import NoiseConfigError, OnnxNoiseError
from onnxnoise.noise.legacy import parse_snr_list
from onnxnoise.engine.plan import SWEEP_MODES
from onnxnoise.sweep import SweepConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["ExperimentError", "ModelEntry", "Experiment", "load_experiment"]

_TOP_KEYS = {"name", "out", "data", "models", "sweeps", "description"}
_DATA_KEYS = {"path", "limit", "ground_truth", "strict", "preprocess", "resize", "crop", "crop_pct",
              "interpolation", "scale", "mean", "std", "channel_order", "layout"}
_SWEEP_KEYS = {"models", "modes", "snr", "noise_pct", "seeds", "layers", "op_types", "bn_variance",
               "keep_zeros", "device", "batch_size", "threads", "output", "limit"}
_PREPROCESS_KEYS = ("resize", "crop", "crop_pct", "interpolation", "scale", "mean", "std", "channel_order", "layout")


class ExperimentError(OnnxNoiseError):
    """The experiment file is missing, not TOML, or has unknown or invalid settings."""


@dataclass(frozen=True)
class ModelEntry:
    """One model of an experiment.

    Attributes:
        name: Key under ``[models]``; also the run folder name.
        path: The ONNX file (absolute).
        export: How to build it when missing (read by ``scripts/reproduce_paper.py``).
    """

    name: str
    path: Path
    export: dict = field(default_factory=dict)


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
        """The run folder (trial store) of one model."""
        return self.out / model


def _check_keys(table: dict, allowed: set[str], where: str, path: Path) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        msg = f"{path}: unknown key(s) {', '.join(unknown)} in {where}; allowed: {', '.join(sorted(allowed))}"
        raise ExperimentError(msg)


def _resolve(base: Path, value: Any) -> Path:
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _numbers(value: Any, key: str, where: str, path: Path) -> list | None:
    """A TOML list of numbers, or None; anything else is an ExperimentError naming the key."""
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        msg = f"{path}: {where}: `{key}` must be a non-empty list of numbers, e.g. [100, 10, 5], got {value!r}"
        raise ExperimentError(msg)
    return value


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
    if not path.is_file():
        msg = f"experiment file not found: {path}"
        raise ExperimentError(msg)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        msg = f"{path} is not valid TOML: {exc}"
        raise ExperimentError(msg) from None
    base = path.resolve().parent
    _check_keys(doc, _TOP_KEYS, "the top level", path)
    for key in ("data", "models", "sweeps"):
        if key not in doc:
            msg = f"{path}: missing [{key}]" if key != "sweeps" else f"{path}: missing [[sweeps]]"
            raise ExperimentError(msg)
    data = doc["data"]
    _check_keys(data, _DATA_KEYS, "[data]", path)
    if "path" not in data:
        msg = f"{path}: [data] needs `path`"
        raise ExperimentError(msg)
    models = {}
    for name, entry in doc["models"].items():
        _check_keys(entry, {"path", "export"}, f"[models.{name}]", path)
        if "path" not in entry:
            msg = f"{path}: [models.{name}] needs `path`"
            raise ExperimentError(msg)
        models[name] = ModelEntry(name, _resolve(base, entry["path"]), dict(entry.get("export", {})))
    preprocess = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in _PREPROCESS_KEYS}
    sweeps = []
    for number, sweep in enumerate(doc["sweeps"], start=1):
        where = f"[[sweeps]] #{number}"
        _check_keys(sweep, _SWEEP_KEYS, where, path)
        names = sweep.get("models", list(models))
        for name in names:
            if name not in models:
                msg = f"{path}: {where} names model {name!r}, not defined under [models] ({', '.join(models)})"
                raise ExperimentError(msg)
        snr = _numbers(sweep.get("snr"), "snr", where, path)
        pct = _numbers(sweep.get("noise_pct"), "noise_pct", where, path)
        try:
            snrs = parse_snr_list(
                None if snr is None else ",".join(map(str, snr)),
                None if pct is None else ",".join(map(str, pct)),
            )
        except NoiseConfigError as exc:
            text = str(exc).replace("`--snr`", "`snr`").replace("`--noise-pct`", "`noise_pct`")
            raise ExperimentError(f"{path}: {where}: {text}") from None
        seeds = sweep.get("seeds", 3)
        if not (_is_int(seeds) and seeds >= 1) and not (
                isinstance(seeds, list) and seeds and all(_is_int(v) and v >= 0 for v in seeds)):
            msg = f"{path}: {where}: `seeds` must be a count >= 1 or a list of non-negative integers, got {seeds!r}"
            raise ExperimentError(msg)
        limit = sweep.get("limit", data.get("limit"))
        if limit is not None and not (_is_int(limit) and limit >= 1):
            msg = f"{path}: {where}: `limit` must be a positive integer (a number of images), got {limit!r}"
            raise ExperimentError(msg)
        modes = sweep.get("modes", ["all"])
        if not isinstance(modes, list) or not modes or any(m not in SWEEP_MODES for m in modes):
            msg = f"{path}: {where}: `modes` must be a list of {', '.join(SWEEP_MODES)}, got {modes!r}"
            raise ExperimentError(msg)
        for name in names:
            config = SweepConfig(
                model=models[name].path,
                data=_resolve(base, data["path"]),
                snrs=tuple(snrs),
                seeds=seeds if isinstance(seeds, int) else tuple(seeds),
                layers=sweep.get("layers"),
                op_types=tuple(sweep["op_types"]) if "op_types" in sweep else None,
                limit=limit,
                device=sweep.get("device", "auto"),
                batch_size=sweep.get("batch_size", 128),
                threads=sweep.get("threads", 0),
                preset=data.get("preprocess"),
                preprocess=preprocess,
                ground_truth=_resolve(base, data["ground_truth"]) if "ground_truth" in data else None,
                output=sweep.get("output"),
                bn_variance=sweep.get("bn_variance", "clamp"),
                keep_zeros=sweep.get("keep_zeros", False),
                strict=data.get("strict", False),
                modes=tuple(modes),
            )
            sweeps.append((name, config))
    out = _resolve(base, doc.get("out", f"runs/{doc.get('name', path.stem)}"))
    return Experiment(name=doc.get("name", path.stem), out=out, models=models, sweeps=sweeps, source=path)
