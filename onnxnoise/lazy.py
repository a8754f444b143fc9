"""Third-party libraries imported where first used: :func:`lazy_module`.

Polars, SciPy, Matplotlib and ONNX Runtime together took about as much CPU to import as everything
else ``onnxnoise --help`` needs (1.8 s of CPU before, 0.8 s with them bound here, on the 2-core
development machine); most commands use only some of them, and ``--help`` and ``layers`` none. A module binds such a library with
``pl = lazy_module("polars")`` at module level instead of ``import polars as pl``: the name reads
the same everywhere in the module, and the library is imported on the first attribute read
(``pl.DataFrame``), not when the module is. Annotations under ``from __future__ import
annotations`` are never evaluated, so they do not import it either.

The package's own modules are never imported this way (tests/test_import_graph.py: imports of
onnxnoise modules sit at module level, so the import graph stays visible in the source).
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType

__all__ = ["lazy_module"]

_PROXIES: dict[str, _LazyModule] = {}
_LOCK = threading.Lock()


class _LazyModule(ModuleType):
    """Stands for the module ``name``: an attribute it lacks is read from that module, importing it first.

    A write sets the proxy's own attribute, which then shadows the library's for every module bound to
    this (shared) proxy, and deleting it shows the library's again: so ``monkeypatch.setattr(session.ort,
    "InferenceSession", fake)`` patches what onnxnoise calls, and its undo restores it (pytest reads and
    restores the target's ``__dict__``), without touching the library itself.
    """

    def _target(self) -> ModuleType:
        module = self.__dict__.get("_lazy_module")
        if module is None:
            module = importlib.import_module(self.__name__)
            self.__dict__["_lazy_module"] = module
        return module

    def __getattr__(self, attr: str):  # called only for names the proxy itself lacks
        if attr.startswith("__") and attr.endswith("__") and attr not in ("__version__", "__file__", "__path__"):
            raise AttributeError(attr)  # copy/pickle probing dunders: do not import for them
        return getattr(self._target(), attr)

    def __dir__(self) -> list[str]:
        return dir(self._target())

    def __repr__(self) -> str:
        state = "imported" if "_lazy_module" in self.__dict__ else "not imported yet"
        return f"<lazy module {self.__name__!r} ({state})>"


def lazy_module(name: str) -> ModuleType:
    """The module ``name`` (e.g. ``"polars"``, ``"scipy.stats"``), imported on its first attribute read.

    One proxy per name, shared by every caller. Until an attribute is read, ``name`` is not in
    :data:`sys.modules` (unless something else imported it); afterwards reads cost one extra
    Python-level lookup (``__getattr__``; about a microsecond), so keep it out of per-element loops.

    Raises:
        ModuleNotFoundError: On the first attribute read, when ``name`` is not installed (not here).
    """
    with _LOCK:
        proxy = _PROXIES.get(name)
        if proxy is None:
            proxy = _PROXIES[name] = _LazyModule(name)
        return proxy
