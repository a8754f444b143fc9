"""The Python API: the CLI's commands as functions returning typed results (docs/api.md).

``import onnxnoise`` gives these names lazily (``onnxnoise/__init__.py``); this package is their home.
Every function takes what its command takes (model paths, dataset paths or registered names, any
option by its setting key), prints nothing (``progress=True`` shows progress bars on stderr), raises
:class:`onnxnoise.errors.OnnxNoiseError` subclasses on bad input, and returns a frozen dataclass holding
Polars DataFrames and the paths it wrote.

The verbs carry a noun (``bench_model``, ``check_model``, not ``bench``, ``check``): ``onnxnoise.bench``,
``onnxnoise.sweep``, ``onnxnoise.report`` and ``onnxnoise.check`` are the package's modules, and a function of
the same name on the package would be replaced by its module whenever that module is first imported (or would
hide the module from ``import onnxnoise.report.stats as stats`` and from ``mock.patch("onnxnoise.report...")``).
"""

from __future__ import annotations

from onnxnoise.api.results import (BenchRun, CheckRun, CompareRun, ExperimentRun, LayerList, NoiseModelInfo,
                                   ReportRun, SweepRun)
from onnxnoise.api.measure import bench_model, sweep_experiment, sweep_model
from onnxnoise.api.gate import check_model
from onnxnoise.api.views import compare_runs, make_report, model_layers, noise_models

__all__ = ["bench_model", "sweep_model", "sweep_experiment", "check_model", "make_report", "compare_runs",
           "model_layers", "noise_models", "BenchRun", "SweepRun", "ExperimentRun", "CheckRun", "ReportRun",
           "CompareRun", "LayerList", "NoiseModelInfo"]
