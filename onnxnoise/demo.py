"""The embedded demo: a small Fashion-MNIST CNN the project trains itself.

``scripts/train_demo_model.py`` builds ``models/demo/`` (model + a test subset);
the wheel ships that folder as ``onnxnoise/_demo``. ``onnxnoise bench`` with no
MODEL runs on it.
"""

from __future__ import annotations

from pathlib import Path

from onnxnoise.errors import GraphError

__all__ = ["DEMO_MODEL", "DEMO_DATA", "demo_paths"]

DEMO_MODEL = "fashion_mnist_cnn.onnx"
DEMO_DATA = "fashion_mnist_test1000.npz"


def demo_paths() -> tuple[Path, Path]:
    """Return ``(model, data)`` paths of the demo.

    Looks in the installed package (``onnxnoise/_demo``), then in the source tree
    (``models/demo`` beside the package, for editable installs).

    Raises:
        GraphError: If the demo files are missing (a broken install).
    """
    here = Path(__file__).resolve().parent
    for folder in (here / "_demo", here.parent / "models" / "demo"):
        model, data = folder / DEMO_MODEL, folder / DEMO_DATA
        if model.is_file() and data.is_file():
            return model, data
    msg = "the demo model is missing from this install; reinstall onnxnoise or pass a MODEL and `--data`"
    raise GraphError(msg)
