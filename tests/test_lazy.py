"""onnxnoise.lazy: a library bound with lazy_module is imported on first use, and --help / layers never use them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from onnxnoise.lazy import lazy_module
from tests._builders import tiny_cnn

ROOT = Path(__file__).resolve().parents[1]

#: The libraries `onnxnoise --help` and `onnxnoise layers MODEL` must not import (issue 24, item 4).
HEAVY = ("polars", "matplotlib", "scipy", "onnxruntime", "ray")


def _imported_after(code: str) -> dict[str, bool]:
    """Which of :data:`HEAVY` are in ``sys.modules`` after ``code`` runs in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_cli_and_its_help_import_none_of_the_heavy_libraries() -> None:
    code = ("import contextlib, io\nfrom onnxnoise.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n    main(['--help'])\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "    main(['bench', '--help'])")
    assert _imported_after(code) == dict.fromkeys(HEAVY, False)


def test_layers_imports_none_of_the_heavy_libraries(tmp_path: Path) -> None:
    model = tmp_path / "tiny.onnx"
    onnx.save(tiny_cnn(), model)
    code = (f"import contextlib, io, json\nfrom onnxnoise.cli import main\nout = io.StringIO()\n"
            f"with contextlib.redirect_stdout(out):\n    code = main(['layers', {str(model)!r}, '--json'])\n"
            f"assert code == 0 and json.loads(out.getvalue())['total_layers'] == 3, out.getvalue()")
    assert _imported_after(code) == dict.fromkeys(HEAVY, False)


def test_the_proxy_imports_on_first_read_and_shadows_on_write(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "lazy_toy_module.py").write_text("VALUE = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lazy_toy_module", raising=False)
    toy = lazy_module("lazy_toy_module")
    assert toy is lazy_module("lazy_toy_module")  # one proxy per name, shared by every module
    assert "lazy_toy_module" not in sys.modules and "not imported yet" in repr(toy)
    assert toy.VALUE == 3 and "(imported)" in repr(toy)
    real = sys.modules["lazy_toy_module"]
    with monkeypatch.context() as patch:  # how the tests patch ONNX Runtime through a module's `ort`
        patch.setattr(toy, "VALUE", 4)
        assert toy.VALUE == 4 and real.VALUE == 3
    assert toy.VALUE == 3 and real.VALUE == 3  # undone: the library's value shows again
    real.VALUE = 5
    assert toy.VALUE == 5  # reads are not copies


def test_a_missing_library_fails_on_first_read_not_on_binding() -> None:
    missing = lazy_module("onnxnoise_no_such_library")
    with pytest.raises(ModuleNotFoundError, match="onnxnoise_no_such_library"):
        missing.anything  # noqa: B018
