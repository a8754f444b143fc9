"""The docs name only what the code has: docs/architecture.md's module table, and references in README.md and docs/.

The table under "## Packages and modules" has one row per concept: its first cell names
modules as backticked paths relative to ``onnxnoise/`` (``errors.py``, ``engine/trial.py``;
a ``pkg/`` token followed by bare file names, ``check/`` (``gate.py``, ...), names files of
that package), its last cell the row's main public names. A name followed by a bracketed
list, ``EvalSet`` (``count``, ``count_all``), lists attributes of that name. The tests:
every module of the package is in exactly one row, every path in the table is a module,
and every listed name exists in one of the row's modules (and every listed attribute on
its object); a function or class must be defined there, not only imported (a package's
``__init__.py`` may list what its modules define). The layer table above it is held by
``test_import_graph.py``; option tables with defaults by ``test_settings.py``.

In README.md and every docs/*.md, inline code is checked too: a dotted reference whose first
part is a module of the package (``engine.plan.trial_key``, ``evaluate.EvalSet``) resolves, a
test function cited by name exists under tests/, a repository path (``scripts/check_cuda.sh``)
and a relative link exist, and docs/usage.md's table of noise models repeats each model's declared
strength options.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from onnxnoise.noise import NOISE_MODELS, axis_of

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


# ---------------------------------------------------------------- references in README.md and docs/

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Backticked words that look like references but are not: a model metadata key, CIFAR's file name.
NOT_REFERENCES = {"onnxnoise.preprocess", "test_batch"}
#: Suffixes of file names (``report.md``, ``bench.json``), not attributes.
FILE_SUFFIXES = {"md", "json", "toml", "xml", "npz", "onnx", "csv", "parquet", "sqlite", "py", "txt", "png", "th",
                 "h5", "npy", "yml", "yaml", "sh", "JPEG"}
#: Folders of the repository whose paths the docs cite.
REPO_FOLDERS = ("onnxnoise", "tests", "scripts", "experiments", "models", "docs", "reports")


def _inline_code(path: Path) -> list[tuple[int, str]]:
    """``(line number, text)`` of every inline code span of a markdown file, fenced blocks left out."""
    spans, fenced = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            spans += [(number, span) for span in re.findall(r"`([^`]+)`", line)]
    return spans


def _modules_named() -> dict[str, list[str]]:
    """Last component of each module name -> the module names (``evaluate`` -> ``onnxnoise.engine.evaluate``)."""
    names: dict[str, list[str]] = {}
    for p in PACKAGE.rglob("*.py"):
        if "__pycache__" not in p.parts and p.name != "__main__.py":
            module = _module_name(str(p.relative_to(PACKAGE)))
            names.setdefault(module.rsplit(".", 1)[-1], []).append(module)
    return names


def _resolves(reference: str, modules: dict[str, list[str]]) -> bool | None:
    """Whether ``a.b.c`` names something of the package (``None``: its first part is no module of it)."""
    first, *rest = reference.split(".")
    if first == "onnxnoise":
        first, *rest = rest or ["onnxnoise"]
    candidates = modules.get(first, [])
    if not candidates:
        return None
    for name in candidates:
        obj, path = importlib.import_module(name), name
        for part in rest:
            if hasattr(obj, part):
                obj, path = getattr(obj, part), f"{path}.{part}"
                continue
            try:
                obj, path = importlib.import_module(f"{path}.{part}"), f"{path}.{part}"
            except ImportError:
                break
        else:
            return True
    return False


def test_dotted_references_in_the_docs_resolve():
    """`engine.plan.trial_key`, `evaluate.EvalSet`, `onnxnoise.cli.app.main`: each names a real object."""
    modules = _modules_named()
    stale = []
    for doc in DOCS:
        for line, span in _inline_code(doc):
            for reference in re.findall(r"(?<![\w./-])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(?![\w/-])", span):
                if reference in NOT_REFERENCES or reference.rsplit(".", 1)[-1] in FILE_SUFFIXES:
                    continue
                if _resolves(reference, modules) is False:
                    stale.append(f"{doc.name}:{line}: {reference}")
    assert stale == []


def test_cited_tests_exist():
    """Test functions cited by name (`test_tied_weight_is_one_layer`, `test_bf16_*`) are defined under tests/."""
    defined = {m for p in (ROOT / "tests").rglob("*.py")
               for m in re.findall(r"^(?:async )?def (test_\w+)", p.read_text(encoding="utf-8"), flags=re.MULTILINE)}
    missing = []
    for doc in DOCS:
        for line, span in _inline_code(doc):
            for name, star in re.findall(r"(?:^|::)(test_\w+)(\*?)$", span):
                if name in NOT_REFERENCES:
                    continue
                if not (any(d.startswith(name) for d in defined) if star else name in defined):
                    missing.append(f"{doc.name}:{line}: {name}{star}")
    assert missing == []


def test_cited_repository_paths_exist():
    """Paths such as `tests/test_prefix.py` or `scripts/check_cuda.sh`, and relative markdown links, exist."""
    missing = []
    for doc in DOCS:
        for line, span in _inline_code(doc):
            for path in re.findall(rf"(?<![\w./-])((?:{'|'.join(REPO_FOLDERS)})/[\w./-]*)", span.split("::")[0]):
                if "<" not in span and not (ROOT / path).exists():
                    missing.append(f"{doc.name}:{line}: {path}")
        text = doc.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if not re.match(r"[a-z]+:", target) and not (doc.parent / target).exists():
                missing.append(f"{doc.name}: link {target}")
    assert missing == []


def test_usage_doc_strength_options_are_the_models_declared_axes():
    """docs/usage.md's table of noise models and their strength options repeats each model's ``StrengthAxis``."""
    text = (ROOT / "docs" / "usage.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| ([^|]+) \|", text.split("| model | option |", 1)[1], flags=re.MULTILINE)
    documented = {model: set(re.findall(r"`--([a-z0-9-]+)`", options)) for model, options in rows}
    declared = {name: {flag for flag in (axis.flag, axis.alt_flag) if flag}  # `none`: no option of its own
                for name, cls in NOISE_MODELS.items() if cls.__module__.startswith("onnxnoise.")
                for axis in [axis_of(cls)]}
    assert documented == declared
