"""Shared pytest fixtures: the read-only ``../shared`` folder and ONNX models exported from it.

Every test that needs data or an optional package gets it through a fixture here, and every
such skip is raised here: :func:`shared_path` (and :func:`shared_dir`, :func:`shared_data`,
:func:`cifar_resnet_checkpoint` built on it) for files under ``../shared``, :func:`demo_files`
for the demo model built by ``scripts/train_demo_model.py``, and :func:`export_models` for torch
(the ``export`` extra; the ``onnxnoise`` package never imports torch). Tests do not call
``pytest.skip`` / ``importorskip`` on data or packages themselves. Fixtures on models built in
the test, used by several folders, are here too: :func:`colour_onnx` (the colour classifier of
``tests/_colour.py``) and :func:`tiny_float_int8` (a tiny CNN, its int8 version made by docs/usage.md's
quantization snippet, and labeled data).

``tests/`` mirrors the package (``tests/engine/prefix/test_lockstep.py`` tests
``onnxnoise/engine/prefix/lockstep.py``); every folder is a package, and test modules import the
shared builders as ``from tests._builders import ...`` (docs/contributing.md, "Where tests live").

Outside CI a missing folder or package skips the test, with the reason. With ``CI=true`` in
the environment any skip fails the session (see :class:`SkipsFailInCI`): a broken optional
import or a missing data folder must not turn real-model tests into a green run.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import onnx
import pytest

from tests._builders import conv_bn_resnet, labeled_npz, tiny_cnn
from tests._colour import colour_model

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPTS_DIR = REPO_ROOT / "scripts"

#: CIFAR-10 ResNet checkpoints (akamaster/pytorch_resnet_cifar10), relative to ``shared_dir``.
CIFAR_RESNET_CHECKPOINTS = "models/cifar10-resnet/resnet{depth}.th"


def _load_script(name: str) -> ModuleType:
    """Import ``scripts/<name>.py`` (scripts/ is not a package) once per session."""
    module_name = f"_onnxnoise_scripts_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, SCRIPTS_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


@pytest.fixture(scope="session")
def load_script():
    """``load_script(name)``: ``scripts/<name>.py`` imported once per session (:func:`_load_script`)."""
    return _load_script


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The project root (the folder holding ``pyproject.toml``)."""
    return REPO_ROOT


def _require(path: Path, what: str, *, kind: str = "any") -> Path:
    """``path`` if it exists (as a ``file`` / ``dir`` when ``kind`` says so), else skip the test.

    The one place a missing data file or folder becomes a skip (a failure under ``CI=true``).
    """
    ok = {"any": path.exists, "file": path.is_file, "dir": path.is_dir}[kind]()
    if not ok:
        pytest.skip(f"{what} not found: {path}")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` next to the project root (read-only data and checkpoints); skips if missing."""
    return _require((REPO_ROOT.parent / "shared").resolve(), "shared folder", kind="dir")


@pytest.fixture(scope="session")
def shared_path(shared_dir: Path) -> Callable[..., Path]:
    """Factory: ``shared_path(relative, kind="any"|"file"|"dir")`` -> ``shared_dir/relative``; skips if missing.

    Use it for every file or folder a test needs from ``../shared``, e.g.
    ``shared_path("models/efficientnet-lite0/efficientnet_lite0.onnx", kind="file")``.
    """

    def get(relative: str, kind: str = "any") -> Path:
        return _require(shared_dir / relative, "shared data", kind=kind)

    return get


@pytest.fixture(scope="session")
def export_models() -> ModuleType:
    """``scripts/export_models.py`` as a module; skips if torch/onnxscript are not importable."""
    for name in ("torch", "onnxscript"):
        # exc_type=ImportError: a broken install (missing shared library) skips too (fails under CI=true).
        pytest.importorskip(
            name, reason=f"{name} is not importable (install the `export` extra)", exc_type=ImportError
        )
    return _load_script("export_models")


@pytest.fixture(scope="session")
def demo_files() -> tuple[Path, Path]:
    """``(model, subset)``: ``models/demo`` files written by ``scripts/train_demo_model.py``; skips if missing."""
    demo = REPO_ROOT / "models" / "demo"
    hint = "demo file (run scripts/train_demo_model.py)"
    return (_require(demo / "fashion_mnist_cnn.onnx", hint, kind="file"),
            _require(demo / "fashion_mnist_test1000.npz", hint, kind="file"))


@pytest.fixture(scope="session")
def cifar_resnet_checkpoint(shared_path: Callable[..., Path]) -> Callable[[int], Path]:
    """Factory: ``cifar_resnet_checkpoint(depth)`` -> path of ``resnet<depth>.th`` in ``shared_dir``."""

    def get(depth: int) -> Path:
        return shared_path(CIFAR_RESNET_CHECKPOINTS.format(depth=depth), kind="file")

    return get


@pytest.fixture(scope="session")
def cifar_resnet_onnx(
    export_models: ModuleType,
    cifar_resnet_checkpoint: Callable[[int], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., Path]:
    """Factory: ``cifar_resnet_onnx(depth, keep_batchnorm=False)`` -> exported ONNX file.

    Each (depth, keep_batchnorm) pair is exported once per session into a temporary folder
    (about 5 s for ResNet20 on CPU); later calls return the cached path. Treat the file as read-only.
    """
    out_dir = tmp_path_factory.mktemp("cifar_resnet_onnx")
    cache: dict[tuple[int, bool], Path] = {}

    def get(depth: int, keep_batchnorm: bool = False) -> Path:
        key = (int(depth), bool(keep_batchnorm))
        if key not in cache:
            out = out_dir / f"resnet{depth}{'_bn' if keep_batchnorm else ''}.onnx"
            export_models.export_cifar_resnet(
                depth, cifar_resnet_checkpoint(depth), out, keep_batchnorm=keep_batchnorm
            )
            cache[key] = out
        return cache[key]

    return get


@pytest.fixture()
def colour_onnx(tmp_path: Path) -> Path:
    """The colour classifier of :mod:`tests._colour` saved as ``tmp_path/colour.onnx`` (100% clean top-1)."""
    path = tmp_path / "colour.onnx"
    onnx.save(colour_model(), str(path))
    return path


def _readme_quantization_snippet() -> str:
    """The Python block of docs/usage.md's 'Integer weights for bit-flip' section."""
    text = (REPO_ROOT / "docs" / "usage.md").read_text()
    section = text.split("## Integer weights for bit-flip", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture(scope="session")
def tiny_float_int8(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """``(float, int8, data)`` paths: ``tiny_cnn`` (input [N, 3, 8, 8]), its int8 version made by docs/usage.md's
    quantization snippet (so the snippet is tested too), and a labeled .npz of 60 images. Read-only."""
    folder = tmp_path_factory.mktemp("findings")
    float_path, int8_path = folder / "tiny.onnx", folder / "tiny-int8.onnx"
    model = tiny_cnn()
    onnx.save(model, float_path)
    code = _readme_quantization_snippet()
    assert '"resnet20.onnx"' in code and '"resnet20-int8.onnx"' in code
    code = code.replace('"resnet20.onnx"', repr(str(float_path))).replace('"resnet20-int8.onnx"', repr(str(int8_path)))
    exec(compile(code, "docs/usage.md", "exec"), {})  # the doc's own code path, on a tiny model
    data = labeled_npz(model, folder / "d.npz", n=60)
    return float_path, int8_path, data.path


@pytest.fixture(scope="session")
def resnet_npz(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(model, data)`` paths: ``conv_bn_resnet(seed=0)`` (13 layers, input [N, 3, 8, 8]) and a labeled
    .npz of 40 images it classifies (70% clean top-1 under ``--preprocess raw``). Read-only."""
    folder = tmp_path_factory.mktemp("resnet_npz")
    model = conv_bn_resnet(seed=0)
    onnx.save(model, folder / "m.onnx")
    return folder / "m.onnx", labeled_npz(model, folder / "d.npz", n=40).path


@pytest.fixture(autouse=True, scope="session")
def _isolated_image_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep the decoded-image cache of the whole test session in a temporary folder."""
    patch = pytest.MonkeyPatch()
    patch.setenv("ONNXNOISE_CACHE_DIR", str(tmp_path_factory.mktemp("image_cache")))
    yield
    patch.undo()


@pytest.fixture(autouse=True, scope="session")
def _isolated_dataset_registry(tmp_path_factory: pytest.TempPathFactory):
    """Never read or write the user's real dataset registry (``onnxnoise data``) from a test."""
    patch = pytest.MonkeyPatch()
    patch.setenv("ONNXNOISE_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))
    patch.delenv("ONNXNOISE_DATA_MIRROR", raising=False)
    yield
    patch.undo()


@pytest.fixture(scope="session")
def shared_data(shared_path: Callable[..., Path]) -> Callable[[str], Path]:
    """Factory: ``shared_data(name)`` -> ``shared_dir/data/<name>``; skips if that folder is missing."""

    def get(name: str) -> Path:
        return shared_path(f"data/{name}", kind="dir")

    return get


# ---------------------------------------------------------------- CI: a skip is a failure


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: reason")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


class SkipsFailInCI:
    """Plugin active when ``CI=true``: any skipped test or module fails the session.

    Skips stay reported as skips (``-ra`` lists them); at the end a ``skipped tests fail
    the run under CI=true`` section lists each with its reason, and the exit status becomes
    1 (tests failed) when it would otherwise be 0 or 5 (no tests collected). ``xfail`` is not
    a skip and is left alone.
    """

    def __init__(self) -> None:
        self.skipped: list[tuple[str, str]] = []

    def record(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            self.skipped.append((report.nodeid or "<session>", _skip_reason(report)))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.record(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self.record(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.skipped and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.skipped:
            return
        terminalreporter.section("skipped tests fail the run under CI=true", sep="=", red=True, bold=True)
        for nodeid, reason in self.skipped:
            terminalreporter.line(f"SKIPPED (fails in CI) {nodeid}: {reason}", red=True)
        terminalreporter.line(
            f"{len(self.skipped)} skipped; in CI every test must run: provide the data / package, "
            "or delete the test", red=True,
        )


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI") == "true":
        config.pluginmanager.register(SkipsFailInCI(), "onnxnoise-skips-fail-in-ci")
