"""onnxnoise: accuracy of ONNX image classifiers under SNR-scaled weight noise."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
