"""Shared pytest fixtures: the read-only ``../shared`` folder and ONNX models exported from it.

The export fixtures need torch (the ``export`` extra); tests that use them are skipped, with the reason,
when torch is not importable or ``../shared`` is missing. The ``onnxnoise`` package never imports torch.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

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
def repo_root() -> Path:
    """The project root (the folder holding ``pyproject.toml``)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` next to the project root (read-only data and checkpoints); skips if missing."""
    path = (REPO_ROOT.parent / "shared").resolve()
    if not path.is_dir():
        pytest.skip(f"shared folder not found: {path}")
    return path


@pytest.fixture(scope="session")
def export_models() -> ModuleType:
    """``scripts/export_models.py`` as a module; skips if torch/onnxscript are not importable."""
    for name in ("torch", "onnxscript"):
        # exc_type=ImportError: a broken install (missing shared library) skips too.
        pytest.importorskip(
            name, reason=f"{name} is not importable (install the `export` extra)", exc_type=ImportError
        )
    return _load_script("export_models")


@pytest.fixture(scope="session")
def cifar_resnet_checkpoint(shared_dir: Path) -> Callable[[int], Path]:
    """Factory: ``cifar_resnet_checkpoint(depth)`` -> path of ``resnet<depth>.th`` in ``shared_dir``."""

    def get(depth: int) -> Path:
        path = shared_dir / CIFAR_RESNET_CHECKPOINTS.format(depth=depth)
        if not path.is_file():
            pytest.skip(f"checkpoint not found: {path}")
        return path

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


@pytest.fixture(autouse=True, scope="session")
def _isolated_image_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep the decoded-image cache of the whole test session in a temporary folder."""
    patch = pytest.MonkeyPatch()
    patch.setenv("ONNXNOISE_CACHE_DIR", str(tmp_path_factory.mktemp("image_cache")))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def shared_data(shared_dir: Path) -> Callable[[str], Path]:
    """Factory: ``shared_data(name)`` -> ``shared_dir/data/<name>``; skips if that folder is missing."""

    def get(name: str) -> Path:
        path = shared_dir / "data" / name
        if not path.is_dir():
            pytest.skip(f"not found: {path}")
        return path

    return get
