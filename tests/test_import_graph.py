"""The package's import graph: layers, no cycles, no hidden imports, small modules.

Every import of an ``onnxnoise`` module is read from the source with :mod:`ast`
(function-local ones included, since they only hide an edge until the code runs) and
mapped to its top-level unit (``onnxnoise.engine.trial`` -> ``engine``; the package's
``__init__`` is ``onnxnoise``). The units are ordered in :data:`LAYERS`, lowest first: a
unit may import its own layer's units and the layers below, never above, and no two
units may import each other, directly or through others. ``docs/architecture.md``
prints the same table; a test keeps the two equal.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "onnxnoise"
ARCHITECTURE_DOC = PACKAGE.parent / "docs" / "architecture.md"

#: Top-level units of the package, lowest layer first.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("onnxnoise", "errors", "files", "intervals", "lazy", "strict_json"),
    ("model",),
    ("noise", "data"),
    ("settings", "options", "noise_config", "tile", "tile_config", "provider_config", "config_checks", "config",
     "run_setup",
     "noise_catalog"),
    ("store",),
    ("engine",),
    ("report",),
    ("bench", "sweep", "check", "experiment", "demo"),
    ("api",),
    ("cli",),
)

#: Optional extras: a module that imports one of these at module level may be imported
#: inside a function (so the core runs without the extra installed).
OPTIONAL_EXTRAS: frozenset[str] = frozenset({"ray", "torch"})

#: Most function-local imports of the package's own modules (optional extras aside).
MAX_LOCAL_IMPORTS = 3

#: Longest module, in lines.
MAX_MODULE_LINES = 450


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str | None:
    if not node.level:
        return node.module
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path: Path, text: str | None = None) -> list[tuple[str, int, bool]]:
    """``(imported onnxnoise module, line, inside a function)`` for every import in ``path``.

    ``text`` replaces the file's content (to test the reader on a module that is not written).
    """
    tree = ast.parse(path.read_text(encoding="utf-8") if text is None else text)
    module, is_package = _module_name(path), path.name == "__init__.py"
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            local = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            targets: list[str | None] = []
            if isinstance(child, ast.Import):
                targets = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                target = _resolve(child, module, is_package)
                # ``from onnxnoise.report import stats`` imports the submodule ``stats``.
                targets = [f"{target}.{alias.name}" if _is_module(f"{target}.{alias.name}") else target
                           for alias in child.names]
            for target in targets:
                if target and (target == "onnxnoise" or target.startswith("onnxnoise.")):
                    found.append((target, child.lineno, in_function))
            visit(child, local)

    visit(tree, False)
    return found


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _module_path(name: str) -> Path | None:
    path = PACKAGE.parent.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports_optional_extra(name: str) -> bool:
    path = _module_path(name)
    if path is None:
        return False
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module]
        if any(n.split(".")[0] in OPTIONAL_EXTRAS for n in names):
            return True
    return False


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _unit_graph() -> dict[str, dict[str, list[str]]]:
    """unit -> imported unit -> ``["module:line", ...]`` (edges between different units)."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in _modules():
        source = _module_name(path)
        for target, line, _ in _imports(path):
            a, b = _unit(source), _unit(target)
            if a != b:
                graph[a][b].append(f"{source}:{line}")
    return graph


def _layer_of() -> dict[str, int]:
    return {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def test_every_unit_has_a_layer() -> None:
    units = {_unit(_module_name(p)) for p in _modules()}
    assert units == set(_layer_of()), "add new top-level modules/packages to LAYERS (and docs/architecture.md)"


def test_no_upward_import() -> None:
    layer = _layer_of()
    upward = [f"{a} -> {b} ({', '.join(where)})" for a, targets in _unit_graph().items()
              for b, where in targets.items() if layer[b] > layer[a]]
    assert upward == []


def test_no_cycle_between_units() -> None:
    graph = {a: set(targets) for a, targets in _unit_graph().items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(graph.get(node, ()))
        return False

    cycles = sorted({tuple(sorted((a, b))) for a, targets in graph.items() for b in targets if reaches(b, a)})
    assert cycles == []


def test_no_library_unit_imports_cli() -> None:
    offenders = [f"{a} ({', '.join(where)})" for a, targets in _unit_graph().items()
                 for b, where in targets.items() if b == "cli" and a != "cli"]
    assert offenders == []


def test_function_local_imports_are_few() -> None:
    local = sorted({f"{_module_name(path)}:{line}" for path in _modules()
                    for target, line, in_function in _imports(path)
                    if in_function and not _imports_optional_extra(target)})  # one per import statement
    assert len(local) <= MAX_LOCAL_IMPORTS, "\n".join(local)


def test_no_module_over_the_line_limit() -> None:
    long = {str(p.relative_to(PACKAGE.parent)): n for p in _modules()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_architecture_doc_lists_the_layers() -> None:
    text = ARCHITECTURE_DOC.read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \|", text, flags=re.MULTILINE)
    documented = tuple(tuple(u.strip(" `") for u in units.split(",")) for _, units in rows)
    assert documented == LAYERS


@pytest.mark.parametrize("source, expected", [
    ("from onnxnoise.report import stats\n", [("onnxnoise.report.stats", 1, False)]),
    ("from ..engine import trial\n", [("onnxnoise.engine.trial", 1, False)]),
    ("import os\n\ndef f():\n    from onnxnoise.engine.trial import run_trial\n",
     [("onnxnoise.engine.trial", 4, True)]),
    ("from onnxnoise.noise import NOISE_MODELS\n", [("onnxnoise.noise", 1, False)]),
])
def test_the_reader_sees_submodule_relative_and_local_imports(source: str, expected: list) -> None:
    assert _imports(PACKAGE / "check" / "probe.py", source) == expected


def test_no_reading_of_argparse_private_tables() -> None:
    """The CLI reads its parser through public names only (a re-check command once read ``_option_string_actions``)."""
    assert [str(p.relative_to(PACKAGE)) for p in _modules() if "_option_string_actions" in p.read_text()] == []
