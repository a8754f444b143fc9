"""onnxnoise/__init__.py: the public names, loaded lazily, equal to the type stub's; importing the package is cheap."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import onnxnoise

STUB = Path(onnxnoise.__file__).with_suffix(".pyi")


def test_every_public_name_resolves_and_the_stub_lists_the_same():
    stub = {alias.asname or alias.name for node in ast.parse(STUB.read_text()).body
            if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert stub | {"__version__"} == set(onnxnoise.__all__)
    assert all(getattr(onnxnoise, name) is not None for name in onnxnoise.__all__)
    assert onnxnoise.bench_model.__module__ == "onnxnoise.api.measure"
    assert issubclass(onnxnoise.NoiseConfigError, onnxnoise.OnnxNoiseError)
    assert set(onnxnoise.__all__) <= set(dir(onnxnoise))


def test_py_typed_marker_is_in_the_package():
    assert (Path(onnxnoise.__file__).parent / "py.typed").is_file()


def test_import_loads_no_heavy_dependency():
    code = ("import sys, onnxnoise, onnxnoise.errors; "
            "print(sorted(m for m in ('polars', 'onnxruntime', 'rich', 'matplotlib', 'onnx', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(onnxnoise.__file__).parents[1]).stdout
    assert out.strip() == "[]"


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="^module 'onnxnoise' has no attribute 'bench_models'$"):
        onnxnoise.bench_models  # noqa: B018
