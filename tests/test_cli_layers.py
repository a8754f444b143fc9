"""Layers around the settings and the CLI: the library never imports the CLI, the settings never the engine.

Read from the source with ``ast`` (function-local imports included), so a cycle hidden in a
function body fails here rather than when that function first runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "onnxnoise"
#: The settings layer: below the engine, which imports it (config <- engine.runtime, engine.context).
SETTINGS_LAYER = ("config.py", "noise_config.py", "options.py", "settings.py", "experiment.py")


def _imports(path: Path) -> list[tuple[str, bool]]:
    """``(imported onnxnoise module, inside a function)`` for every import of the package in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    local: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            local |= {id(inner) for inner in ast.walk(node) if inner is not node}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("onnxnoise"):
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("onnxnoise")]
        else:
            continue
        found += [(name, id(node) in local) for name in names]
    return found


def _modules(*parts: str) -> list[Path]:
    return sorted((PACKAGE.joinpath(*parts)).rglob("*.py")) if parts else sorted(PACKAGE.rglob("*.py"))


def test_no_library_module_imports_the_cli():
    library = [p for p in _modules() if "cli" not in p.relative_to(PACKAGE).parts]
    offenders = [f"{p.relative_to(PACKAGE)} imports {name}" for p in library
                 for name, _ in _imports(p) if name == "onnxnoise.cli" or name.startswith("onnxnoise.cli.")]
    assert offenders == []


@pytest.mark.parametrize("name", SETTINGS_LAYER)
def test_settings_layer_does_not_import_the_engine(name):
    assert [n for n, _ in _imports(PACKAGE / name) if n.startswith("onnxnoise.engine")] == []


def test_no_function_local_imports_of_the_package_in_cli_check_and_settings():
    paths = [*_modules("cli"), *_modules("check"), *(PACKAGE / name for name in SETTINGS_LAYER)]
    offenders = [f"{p.relative_to(PACKAGE)}: {name}" for p in paths for name, local in _imports(p) if local]
    assert offenders == []


def test_no_reading_of_argparse_private_tables():
    assert [p.name for p in _modules() if "_option_string_actions" in p.read_text()] == []


def test_cli_check_and_settings_modules_stay_small():
    paths = [*_modules("cli"), *_modules("check"), *(PACKAGE / name for name in SETTINGS_LAYER)]
    assert {p.name: n for p in paths if (n := len(p.read_text().splitlines())) > 450} == {}
