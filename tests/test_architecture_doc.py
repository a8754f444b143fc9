"""docs/architecture.md's module table is true to the package.

The table under "## Packages and modules" has one row per concept: its first cell names
modules as backticked paths relative to ``onnxnoise/`` (``errors.py``, ``engine/trial.py``;
a ``pkg/`` token followed by bare file names, ``check/`` (``gate.py``, ...), names files of
that package), its last cell the row's main public names. A name followed by a bracketed
list, ``EvalSet`` (``count``, ``count_all``), lists attributes of that name. The tests:
every module of the package is in exactly one row, every path in the table is a module,
and every listed name exists in one of the row's modules (and every listed attribute on
its object); a function or class must be defined there, not only imported (a package's
``__init__.py`` may list what its modules define). The layer table above it is held by ``test_import_graph.py``.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "onnxnoise" / "__init__.py").is_file())
PACKAGE = ROOT / "onnxnoise"
DOC = ROOT / "docs" / "architecture.md"
SECTION = "## Packages and modules"


def _table_rows(text: str) -> list[tuple[str, str]]:
    """``(module cell, names cell)`` of each body row of the first table after :data:`SECTION`."""
    lines = text.split(SECTION, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2:]:  # header and |---| line
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.append((cells[0], cells[-1]))
    return rows


def _module_paths(cell: str) -> list[str]:
    """Paths (relative to ``onnxnoise/``) a module cell names; ``pkg/`` prefixes the bare names after it."""
    cell = re.sub(r"`([\w/]+/)`\s*\(([^)]*)\)",
                  lambda m: ", ".join(f"`{m.group(1)}{name}`" for name in re.findall(r"`([^`]+)`", m.group(2))), cell)
    return re.findall(r"`([^`]+)`", cell)


def _names(cell: str) -> list[tuple[str, list[str]]]:
    """``(name, [attribute, ...])`` for each name in a names cell."""
    found = []
    for match in re.finditer(r"`([A-Za-z_][A-Za-z0-9_]*)`(?:\s*\(([^)]*)\))?", cell):
        attributes = re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", match.group(2) or "")
        found.append((match.group(1), attributes))
    return found


def _module_name(path: str) -> str:
    parts = ["onnxnoise", *Path(path).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


ROWS = _table_rows(DOC.read_text(encoding="utf-8"))


def test_parser_reads_the_cell_forms():
    assert _module_paths("`check/` (`gate.py`, `sequential.py`), `sweep.py`") == ["check/gate.py", "check/sequential.py",
                                                                                 "sweep.py"]
    assert _module_paths("`model/quant.py`, `model/integer_ops.py`") == ["model/quant.py", "model/integer_ops.py"]
    assert _names("`EvalSet` (`count`, `count_all`), `Outcomes`; `evaluate`") == [
        ("EvalSet", ["count", "count_all"]), ("Outcomes", []), ("evaluate", [])]
    assert len(ROWS) > 40


def test_every_module_is_in_exactly_one_row():
    listed = [path for cell, _ in ROWS for path in _module_paths(cell)]
    modules = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)
    missing = [m for m in modules if m not in listed]
    twice = sorted({p for p in listed if listed.count(p) > 1})
    unknown = sorted(set(listed) - set(modules))
    assert (missing, twice, unknown) == ([], [], []), "docs/architecture.md module table: missing, listed twice, no such module"


def _defined_in(obj: object) -> str | None:
    """The module a function or class of the package is defined in (``None`` for other objects)."""
    module = getattr(obj, "__module__", None) if callable(obj) else None
    return module if isinstance(module, str) and module.startswith("onnxnoise") else None


@pytest.mark.parametrize("cell, names", ROWS, ids=[cell for cell, _ in ROWS])
def test_every_listed_name_exists_in_its_rows_modules(cell, names):
    paths = [p for p in _module_paths(cell) if p != "cli/__main__.py"]  # that one runs the CLI when imported
    modules = [importlib.import_module(_module_name(p)) for p in paths]
    fronts = [m.__name__ for p, m in zip(paths, modules) if p.endswith("__init__.py")]
    listed = _names(names)
    assert modules and listed, f"row {cell}: no module or no public name"
    wrong = []
    for name, attributes in listed:
        owner = next((m for m in modules if hasattr(m, name)), None)
        if owner is None or (name.startswith("_") and not name.startswith("__")):
            wrong.append(name)
            continue
        obj = getattr(owner, name)
        home = _defined_in(obj)
        if home and home not in {m.__name__ for m in modules} and not any(home.startswith(f + ".") for f in fronts):
            wrong.append(f"{name} (defined in {home})")  # a re-export listed in the wrong row
        wrong += [f"{name}.{a}" for a in attributes if not hasattr(obj, a)]
    assert wrong == [], f"row {cell}: not defined in {[m.__name__ for m in modules]}"
