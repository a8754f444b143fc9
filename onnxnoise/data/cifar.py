"""CIFAR-10 / CIFAR-100 "python version" batch folders, read with a restricted unpickler.

Layouts (https://www.cs.toronto.edu/~kriz/cifar.html):

* ``cifar-10-batches-py/``: ``test_batch``, ``data_batch_1..5``, ``batches.meta``
  (``label_names``); labels under ``labels``.
* ``cifar-100-python/``: ``test``, ``train``, ``meta`` (``fine_label_names``); fine labels
  under ``fine_labels`` (100 classes).

Each batch is a pickled dict whose ``data`` is a (N, 3072) uint8 array: per row 1024 red,
then 1024 green, then 1024 blue values, each a row-major 32x32 plane.

Pickles can run code. :class:`_RestrictedUnpickler` only resolves the three numpy globals
a real batch references (``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``,
``numpy.dtype``), plus numpy's protocol-5 ``_frombuffer`` and ``_codecs.encode`` (used by
Python 3 re-pickled copies); anything else (``os.system``, ``builtins.eval``...) raises
:class:`~onnxnoise.errors.DataError` before it can run.

The allowed callables are bounded too, so a small file cannot expand without limit (a
memoized string encoded a million times, an array whose declared shape is huge): together
they may build at most :data:`EXPANSION_FACTOR` times the file's size plus
:data:`EXPANSION_SLACK` bytes, ``_codecs.encode`` only with ``latin1`` (what Python 3 writes),
``numpy.ndarray`` only as the type ``_reconstruct`` builds, and ``numpy.dtype`` never of Python
objects (an object array allocates its declared shape before its data is checked). Past the bound the load stops
with a :class:`~onnxnoise.errors.DataError` before the memory is taken.
"""

from __future__ import annotations

import codecs
import math
import os
import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from onnxnoise.data.formats import FOLDER, DatasetContents, DatasetFormat, PathView, open_regular
from onnxnoise.errors import DataError, PickleExpansionError, UnsafePickleError

__all__ = ["CifarFormat", "EXPANSION_FACTOR", "EXPANSION_SLACK", "detect_cifar", "load_cifar", "load_pickle"]

#: Most bytes the unpickler's callables may build together, as a multiple of the file's size
#: (a real batch builds about its own size once: its pixel bytes) ...
EXPANSION_FACTOR = 2
#: ... plus this many bytes (small headers, a tiny file's few arrays).
EXPANSION_SLACK = 1 << 20

_RECONSTRUCT = np.zeros(1).__reduce_ex__(2)[0]  # numpy(._)core.multiarray._reconstruct
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]  # numpy(._)core.numeric._frombuffer (protocol 5)
_NDARRAY = object()  # what `numpy.ndarray` resolves to: only `_reconstruct` takes it (as np.ndarray)
_LATIN1 = {"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1", "l1"}
# Everything a CIFAR batch (Python 2 era) or a Python 3 re-pickled copy needs; all side-effect free.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy.core.numeric", "_frombuffer"): "frombuffer",
    ("numpy._core.numeric", "_frombuffer"): "frombuffer",
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): "dtype",
    ("_codecs", "encode"): "encode",  # bytes written by Python 3 with protocol 2
}

# variant -> (meta file, label-names key, labels key, split -> batch file)
_VARIANTS: dict[str, tuple[str, str, str, dict[str, str]]] = {
    "cifar-10": ("batches.meta", "label_names", "labels", {"test": "test_batch"}),
    "cifar-100": ("meta", "fine_label_names", "fine_labels", {"test": "test", "train": "train"}),
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the numpy globals a CIFAR batch needs, each bounded by ``budget`` bytes."""

    def __init__(self, fh: Any, *, budget: int) -> None:
        super().__init__(fh, encoding="bytes")
        self.budget = budget

    def find_class(self, module: str, name: str) -> Any:
        try:
            found = _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"global `{module}.{name}` is not allowed") from None
        return getattr(self, f"_{found}") if isinstance(found, str) else found

    def _take(self, nbytes: int, what: str) -> None:
        """Count ``nbytes`` against the budget; past it, raise :class:`PickleExpansionError`."""
        self.budget -= nbytes
        if self.budget < 0:
            raise PickleExpansionError(what)

    def _array_bytes(self, shape: Any, dtype: Any, what: str) -> None:
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if any(not isinstance(d, int) or d < 0 for d in shape):
            raise PickleExpansionError(f"{what} of shape {shape!r}")
        self._take(math.prod(shape) * np.dtype(dtype).itemsize, f"{what} of shape {shape!r}")

    def _reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> Any:
        if subtype is not _NDARRAY:
            raise UnsafePickleError("`_reconstruct` of a type other than numpy.ndarray is not allowed")
        self._array_bytes(shape, dtype.decode("latin1") if isinstance(dtype, bytes) else dtype, "an array")
        return _RECONSTRUCT(np.ndarray, shape, dtype)

    def _frombuffer(self, buf: Any, dtype: Any, shape: Any, order: Any) -> Any:
        self._array_bytes(shape, dtype, "an array")
        return _FROMBUFFER(buf, dtype, shape, order)

    def _dtype(self, spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
        dtype = np.dtype(spec, align=bool(align), copy=bool(copy))
        if dtype.hasobject:  # an object array's __setstate__ allocates its declared shape before any check
            raise UnsafePickleError("numpy object arrays are not allowed")
        return dtype

    def _encode(self, obj: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
        if not isinstance(encoding, str) or encoding.lower() not in _LATIN1:
            raise UnsafePickleError(f"`_codecs.encode` with encoding {encoding!r} is not allowed (only latin1)")
        if not isinstance(obj, str):
            raise UnsafePickleError("`_codecs.encode` of a non-string is not allowed")
        self._take(len(obj), f"a string of {len(obj)} characters")
        return codecs.encode(obj, "latin1", errors)


def load_pickle(path: Path) -> Any:
    """Loads a CIFAR pickle with the restricted unpickler (``encoding="bytes"``).

    Args:
        path: The pickle file.

    Returns:
        The unpickled object; dict keys are decoded from bytes to str.

    Raises:
        DataError: The file cannot be read, is not a valid pickle, references a
            global outside the numpy allow-list (the file may be malicious), or would
            build more than ``EXPANSION_FACTOR`` x its size + ``EXPANSION_SLACK`` bytes.
    """
    try:
        with open_regular(path) as fh:
            budget = EXPANSION_FACTOR * os.fstat(fh.fileno()).st_size + EXPANSION_SLACK
            obj = _RestrictedUnpickler(fh, budget=budget).load()
    except PickleExpansionError as exc:
        raise DataError(
            f"refusing to load cifar file `{path}`: unpickling it would build more than {budget} bytes "
            f"({EXPANSION_FACTOR} x its size + {EXPANSION_SLACK}; stopped at {exc}), so it is not a cifar batch; "
            "download the dataset again"
        ) from None
    except UnsafePickleError as exc:
        raise DataError(
            f"refusing to load cifar file `{path}`: {exc}; a real cifar batch only needs numpy "
            "arrays, so this file is corrupt or malicious; download the dataset again"
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read cifar file `{path}`: {exc.strerror or exc}") from None
    except Exception as exc:  # truncated / garbage pickles raise many types
        raise DataError(
            f"cannot unpickle cifar file `{path}` ({type(exc).__name__}: {exc}); "
            "the file is corrupt, download the dataset again"
        ) from None
    if isinstance(obj, dict):
        obj = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    return obj


class CifarFormat(DatasetFormat):
    """The ``cifar-python`` format: a CIFAR-10 / CIFAR-100 python batch folder (its test split)."""

    name: ClassVar[str] = "cifar-python"
    looks_at: ClassVar[str] = FOLDER
    expected: ClassVar[str] = "a cifar batch folder (batches.meta + test_batch)"

    def detect(self, view: PathView) -> bool:
        """True when the folder holds a variant's meta file and test batch (see :func:`detect_cifar`)."""
        return detect_cifar(view.path) is not None

    def open(self, where: Path, *, ground_truth: Path | None, strict: bool) -> DatasetContents:
        """Reads the test split with :func:`load_cifar` (``ground_truth`` and ``strict`` do not apply)."""
        return load_cifar(where)


def detect_cifar(root: Path) -> str | None:
    """Returns ``cifar-10`` / ``cifar-100`` if ``root`` is such a batch folder, else None."""
    for variant, (meta, _, _, splits) in _VARIANTS.items():
        if (root / meta).is_file() and (root / splits["test"]).is_file():
            return variant
    return None


def _as_str(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def load_cifar(root: Path, *, split: str = "test") -> DatasetContents:
    """Loads one split of a CIFAR-10 or CIFAR-100 python batch folder.

    Args:
        root: Folder with ``batches.meta`` + ``test_batch`` (CIFAR-10) or ``meta`` +
            ``test`` (CIFAR-100).
        split: ``test`` (default); CIFAR-100 also has ``train``.

    Returns:
        The images (N, 32, 32, 3) uint8 RGB NHWC, labels (N,) int64, class names (10 or
        100), ``names`` (each image's original file name, e.g. ``domestic_cat_s_000907.png``,
        or ``test_batch_00000``... when the batch has none) and the label source
        ``<root> (<variant> <split>)``, e.g. ``.../cifar-10-batches-py (cifar-10 test)``.

    Raises:
        DataError: Not a CIFAR folder, unknown split, unsafe or malformed pickle.
    """
    root = Path(root)
    variant = detect_cifar(root)
    if variant is None:
        raise DataError(
            f"`{root}` is not a cifar batch folder: expected batches.meta + test_batch "
            "(cifar-10-batches-py) or meta + test (cifar-100-python)"
        )
    meta_name, names_key, labels_key, splits = _VARIANTS[variant]
    if split not in splits:
        raise DataError(f"unknown {variant} split `{split}`; choose one of {', '.join(splits)}")
    meta = load_pickle(root / meta_name)
    batch_path = root / splits[split]
    batch = load_pickle(batch_path)
    if not isinstance(meta, dict) or names_key not in meta:
        raise DataError(f"cifar meta file `{root / meta_name}` has no `{names_key}` entry; download the dataset again")
    if not isinstance(batch, dict) or "data" not in batch or labels_key not in batch:
        raise DataError(
            f"cifar batch `{batch_path}` has no `data` / `{labels_key}` entries; download the dataset again"
        )
    class_names = tuple(_as_str(n) for n in meta[names_key])
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DataError(
            f"cifar batch `{batch_path}` has `data` of shape {shape}, expected (N, 3072) uint8; "
            "download the dataset again"
        )
    labels = np.asarray(batch[labels_key])
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"cifar batch `{batch_path}` has {labels.shape} `{labels_key}` for {data.shape[0]} images; "
            "download the dataset again"
        )
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise DataError(
            f"cifar batch `{batch_path}` has labels outside 0..{len(class_names) - 1}; download the dataset again"
        )
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    filenames = tuple(_as_str(f) for f in batch.get("filenames", ()))
    if len(filenames) != len(labels):
        filenames = tuple(f"{splits[split]}_{i:05d}" for i in range(len(labels)))
    return DatasetContents(
        labels=labels,
        class_names=class_names,
        label_source=f"{root} ({variant} {split})",
        images=images,
        names=filenames,
    )
