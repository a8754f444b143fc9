"""The Python API's reading functions: :func:`report`, :func:`compare`, :func:`layers`, :func:`noise_models`.

Each calls what the CLI's command calls and returns its tables instead of printing them
(:mod:`onnxnoise.api.results`); nothing is printed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from onnxnoise.api.results import CompareRun, LayerList, NoiseModelInfo, ReportRun
from onnxnoise.files import output_folder
from onnxnoise.lazy import lazy_module
from onnxnoise.model import layer_report, load_model
from onnxnoise.noise_catalog import noise_model_list
from onnxnoise.report.comparison import comparison_json, write_comparison
from onnxnoise.report.study import collect_runs, collect_trials, write_report
from onnxnoise.run_setup import default_out_dir

pl = lazy_module("polars")

__all__ = ["make_report", "compare_runs", "model_layers", "noise_models"]

PathLike = str | os.PathLike[str]


def _folders(run_dirs: PathLike | Sequence[PathLike]) -> list[PathLike]:
    """One run folder or several, as a list."""
    return [run_dirs] if isinstance(run_dirs, (str, os.PathLike)) else list(run_dirs)


def _frame(frame: pl.DataFrame | None) -> pl.DataFrame:
    return pl.DataFrame() if frame is None else frame


def make_report(run_dirs: PathLike | Sequence[PathLike], *, out: PathLike | None = None,
           title: str | None = None) -> ReportRun:
    """Tables, figures and ``report.md`` of one or more run folders (sweeps or benches), as ``onnxnoise report``.

    Args:
        run_dirs: A run folder (with ``trials.sqlite`` or ``trials.parquet``) or several (several models).
        out: Folder to write into (default: the first run folder, as the CLI).
        title: Report title (default: the model names).

    Returns:
        The :class:`~onnxnoise.api.results.ReportRun`: summary (percent, 95% intervals), ``A_avr``
        (paper eq. 3), blame, and the files written.

    Raises:
        StoreError: A folder holds no trials, or a store cannot be read.
        ConfigError: ``out`` cannot be written.

    Examples:
        >>> import onnxnoise, tempfile
        >>> model, data = onnxnoise.demo_paths()
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = onnxnoise.sweep_model(model, data, out=tmp.name, modes="all", snr="10,100", seeds=1, limit=100)
        >>> report = onnxnoise.make_report(tmp.name)
        >>> report.summary.sort("strength", nulls_last=False)["mode"].to_list()  # clean, SNR 10, SNR 100
        ['baseline', 'all', 'all']
        >>> report.markdown.name, report.a_avr.is_empty()  # no per-layer trials: no A_avr
        ('report.md', True)
        >>> tmp.cleanup()
    """
    folders = _folders(run_dirs)
    folder = output_folder(out if out is not None else folders[0], option="out")
    trials = collect_trials(folders)
    files = write_report(trials, collect_runs(folders), folder, title=title)
    return ReportRun(trials=trials, summary=_frame(files.summary), a_avr=_frame(files.a_avr),
                     blame=_frame(files.blame), results=_frame(files.results), out=folder,
                     markdown=Path(files.markdown),
                     tables=tuple(files.tables), figures=tuple(files.figures), warnings=tuple(files.warnings))


def compare_runs(run_dirs: Sequence[PathLike], *, out: PathLike | None = None) -> CompareRun:
    """Paired differences of two or more models' runs with a verdict each, as ``onnxnoise compare``.

    Args:
        run_dirs: Run folders; the first model is the reference.
        out: Folder to write ``compare.md``, ``compare.json`` and the tables into (default
            ``reports/compare-<stamp>``, as the CLI).

    Returns:
        The :class:`~onnxnoise.api.results.CompareRun` (differences in percentage points, 95% intervals).

    Raises:
        StoreError: No trials, or no strength two models share and no per-layer trials.
        ConfigError: ``out`` cannot be written.

    Examples:
        >>> import onnxnoise, shutil, tempfile
        >>> model, data = onnxnoise.demo_paths()
        >>> tmp = tempfile.TemporaryDirectory()
        >>> twin = shutil.copy(model, f"{tmp.name}/twin.onnx")  # the same weights under another name
        >>> for path, name in ((model, "a"), (twin, "b")):
        ...     _ = onnxnoise.sweep_model(path, data, out=f"{tmp.name}/{name}", modes="all", snr=10, seeds=2,
        ...                               limit=100)
        >>> compared = onnxnoise.compare_runs([f"{tmp.name}/a", f"{tmp.name}/b"], out=f"{tmp.name}/cmp")
        >>> top1 = compared.verdicts.filter(compared.verdicts["metric"] == "top-1 %")
        >>> top1["difference"].to_list()  # percentage points: same weights, seeds and images
        [0.0]
        >>> tmp.cleanup()
    """
    folders = _folders(run_dirs)
    folder = output_folder(out if out is not None else default_out_dir("compare"), option="out")
    trials = collect_trials(folders)
    files = write_comparison(trials, collect_runs(folders), folder)
    verdicts = _frame(files.summary)
    return CompareRun(trials=trials, verdicts=verdicts, a_avr=_frame(files.a_avr), json=comparison_json(verdicts),
                      out=folder, markdown=Path(files.markdown), tables=tuple(files.tables),
                      figures=tuple(files.figures))


def model_layers(model: PathLike) -> LayerList:
    """A model's parameter layers in graph order, as ``onnxnoise layers MODEL`` lists them.

    Args:
        model: ONNX file.

    Returns:
        The :class:`~onnxnoise.api.results.LayerList` (``table``: one row per layer).

    Raises:
        GraphError: The file cannot be loaded or validated.

    Examples:
        >>> import onnxnoise
        >>> listed = onnxnoise.model_layers(onnxnoise.demo_paths()[0])
        >>> listed.table.columns[:4]
        ['index', 'name', 'op_type', 'num_params']
    """
    found = layer_report(load_model(model))
    table = pl.DataFrame(
        [{"index": layer.index, "name": layer.name, "op_type": layer.op_type, "num_params": layer.num_params,
          "sigma_w": layer.sigma_w, "tensors": list(layer.tensors), "quantization_policy": layer.quantization_policy}
         for layer in found.layers],
        schema={"index": pl.Int64, "name": pl.String, "op_type": pl.String, "num_params": pl.Int64,
                "sigma_w": pl.Float64, "tensors": pl.List(pl.String), "quantization_policy": pl.String})
    return LayerList(model=Path(model), table=table, layers=tuple(found.layers), set_aside=tuple(found.set_aside),
                     left_out=tuple(found.left_out))


def noise_models() -> tuple[NoiseModelInfo, ...]:
    """Every registered noise model, by name, as ``onnxnoise noise-models --json`` lists them.

    Examples:
        >>> import onnxnoise
        >>> "gaussian-snr" in [m.name for m in onnxnoise.noise_models()]
        True
    """
    return tuple(NoiseModelInfo(name=m["name"], strength=m["strength"], default_strengths=tuple(m["default_strengths"]),
                                params=m["params"], source=m["source"], example=m["example"])
                 for m in noise_model_list())
