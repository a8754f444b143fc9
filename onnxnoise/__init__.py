"""onnxnoise: accuracy of ONNX image classifiers under SNR-scaled weight noise.

The Python API (docs/api.md)::

    import onnxnoise
    run = onnxnoise.bench_model("model.onnx", "cifar10", noise="gaussian-snr", snr="10,100", seeds=3)
    run.summary        # polars DataFrame: one row per strength, top-1 in percent with its 95% interval

Every name but ``__version__`` is loaded on first use (module ``__getattr__``, PEP 562): ``import
onnxnoise`` stays cheap (no onnxruntime, Polars, rich or matplotlib), and importing any submodule, which
runs this file first, does not pull in the whole package. Their home is :mod:`onnxnoise.api` (and
:mod:`onnxnoise.errors`, :mod:`onnxnoise.demo`). Type checkers read ``__init__.pyi``, which imports
them from there (the import-graph test reads ``.py`` files only: this layer-0 module imports nothing above it).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_LAZY = {
    **dict.fromkeys(("bench_model", "sweep_model", "sweep_experiment", "check_model", "make_report", "compare_runs",
                     "model_layers", "noise_models", "BenchRun", "SweepRun", "ExperimentRun", "CheckRun", "ReportRun",
                     "CompareRun", "LayerList", "NoiseModelInfo"), "onnxnoise.api"),
    **dict.fromkeys(("OnnxNoiseError", "ConfigError", "DataError", "GraphError", "NoiseConfigError", "SessionError",
                     "StoreError", "BaselineError", "BaselineExpectationError", "ExperimentError"),
                    "onnxnoise.errors"),
    "demo_paths": "onnxnoise.demo",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    """Load a public name on first use (PEP 562) and keep it in the module."""
    if name not in _LAZY:
        raise AttributeError(f"module 'onnxnoise' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
