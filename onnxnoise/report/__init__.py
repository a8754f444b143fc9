"""Reports: Polars tables on disk and rich renderables for the terminal."""

from __future__ import annotations

from onnxnoise.report.tables import write_table

__all__ = ["write_table"]
