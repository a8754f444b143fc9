"""Decoded-image cache on disk: decode and resize a dataset once per (file list, geometry).

An entry is a folder ``<cache_dir>/<key>/`` holding

- ``images.npy``: ``(N, H, W, C) uint8`` NHWC pixels after geometry and channel order,
  read back memory-mapped (``np.load(mmap_mode="r")``), so a hit costs no decoding and
  almost no copying;
- ``labels.npz``: ``labels`` and ``indices`` ((N,) int64, as in :class:`LoadedImages`);
- ``info.json``: format version, shape and skipped files.

The key is the sha256 of the cache format version, the dataset fingerprint
(:meth:`Dataset.fingerprint`: format, labels, and the pixel bytes or each file's
relative path, size and modification time), the file list, and the ``DataConfig``
fields that change decoded pixels (``resize``, ``crop``, ``crop_pct``,
``interpolation``, ``channels``, ``channel_order``). Normalization (``scale``,
``mean``, ``std``) and ``layout`` are applied per batch and are not part of the key.

Entries are written to a temporary folder and renamed into place (atomic on one file
system), so a crash never leaves a half-written entry under a valid key; an entry
that cannot be read back (truncated, edited, wrong shape) is discarded and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from onnxnoise.data.config import DataConfig
from onnxnoise.data.dataset import Dataset
from onnxnoise.data.loading import LoadedImages, SkippedImage, load_images
from onnxnoise.errors import DataError

__all__ = ["CACHE_ENV", "CACHE_VERSION", "GEOMETRY_FIELDS", "cache_key", "get_cache_dir", "load_images_cached"]

log = logging.getLogger(__name__)

#: Environment variable overriding the default cache folder ``~/.cache/onnxnoise``.
CACHE_ENV = "ONNXNOISE_CACHE_DIR"
#: Bumped when the entry layout or decoding changes; old entries are then never hit (2: 16-bit
#: images scaled as ``v >> 8`` where version 1 entries hold them clipped to white).
CACHE_VERSION = 2
#: ``DataConfig`` fields that change the decoded uint8 pixels.
GEOMETRY_FIELDS: tuple[str, ...] = ("resize", "crop", "crop_pct", "interpolation", "channels", "channel_order")


def get_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$ONNXNOISE_CACHE_DIR``, else ``~/.cache/onnxnoise``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "onnxnoise"


def cache_key(dataset: Dataset, config: DataConfig) -> str:
    """sha256 hex key of a dataset's decoded images under ``config``'s geometry.

    Args:
        dataset: From :func:`onnxnoise.data.open_dataset` (after ``limit``).
        config: Preprocessing; only :data:`GEOMETRY_FIELDS` count.

    Returns:
        64 hex characters; changes when the file list, any file's size or mtime, the
        labels, the in-memory pixels, or a geometry field changes.
    """
    h = hashlib.sha256()
    h.update(f"onnxnoise-decoded-v{CACHE_VERSION}\0".encode())
    h.update(dataset.fingerprint().encode())
    for path in dataset.files or ():
        h.update(os.fsencode(path) + b"\0")
    geometry = {name: getattr(config, name) for name in GEOMETRY_FIELDS}
    h.update(json.dumps(geometry, sort_keys=True).encode())
    return h.hexdigest()


def load_images_cached(
    dataset: Dataset,
    config: DataConfig,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    strict: bool = False,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LoadedImages:
    """:func:`onnxnoise.data.load_images` with an on-disk cache of the decoded pixels.

    Args:
        dataset: From :func:`onnxnoise.data.open_dataset`.
        config: Preprocessing settings.
        cache_dir: Cache folder (default: see :func:`get_cache_dir`).
        strict: As in ``load_images``; a cached entry with skipped files then raises.
        workers: Decoding threads on a miss.
        progress: Called as ``progress(done, total)`` while decoding on a miss.

    Returns:
        The decoded images; on a hit ``images`` is a read-only memory map of
        ``images.npy`` and ``seconds`` the time to open it.

    Raises:
        DataError: As ``load_images``; also ``strict`` with a cached entry that skipped
            files.
    """
    started = time.perf_counter()
    root = get_cache_dir(cache_dir)
    key = cache_key(dataset, config)
    entry = root / key
    if entry.is_dir():
        loaded = _read_entry(entry)
        if loaded is not None:
            if strict and loaded.skipped:
                first = loaded.skipped[0]
                msg = (f"cannot decode image `{first.path}` ({first.reason}); replace or remove the file, "
                       "or drop --strict to skip unreadable images")
                raise DataError(msg)
            log.debug("decoded-image cache hit %s", entry)
            return LoadedImages(loaded.images, loaded.labels, loaded.indices, loaded.skipped,
                                time.perf_counter() - started)
        log.warning("discarding unreadable decoded-image cache entry %s; decoding again", entry)
        shutil.rmtree(entry, ignore_errors=True)
    loaded = load_images(dataset, config, workers=workers, strict=strict, progress=progress)
    try:
        _write_entry(root, key, loaded)
    except OSError as exc:  # a read-only or full cache folder must not fail the run
        log.warning("could not write decoded-image cache entry in %s: %s", root, exc)
    return loaded


def _write_entry(root: Path, key: str, loaded: LoadedImages) -> None:
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key[:16]}-", dir=root))
    try:
        np.save(tmp / "images.npy", np.ascontiguousarray(loaded.images, dtype=np.uint8))
        np.savez(tmp / "labels.npz", labels=loaded.labels, indices=loaded.indices)
        info = {
            "version": CACHE_VERSION,
            "shape": list(loaded.images.shape),
            "skipped": [s.to_dict() for s in loaded.skipped],
        }
        (tmp / "info.json").write_text(json.dumps(info))
        for name in ("images.npy", "labels.npz", "info.json"):
            with open(tmp / name, "rb") as fh:
                os.fsync(fh.fileno())
        try:
            os.rename(tmp, root / key)
        except OSError:
            if not (root / key).is_dir():  # lost a race to another writer: theirs is as good
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_entry(entry: Path) -> LoadedImages | None:
    """The entry's contents, or None when it is incomplete or inconsistent."""
    try:
        info = json.loads((entry / "info.json").read_text())
        if info.get("version") != CACHE_VERSION:
            return None
        images = np.load(entry / "images.npy", mmap_mode="r", allow_pickle=False)
        with np.load(entry / "labels.npz", allow_pickle=False) as arrays:
            labels = np.asarray(arrays["labels"], dtype=np.int64)
            indices = np.asarray(arrays["indices"], dtype=np.int64)
        if (
            images.dtype != np.uint8
            or list(images.shape) != info["shape"]
            or images.ndim != 4
            or labels.shape != (images.shape[0],)
            or indices.shape != labels.shape
        ):
            return None
        skipped = tuple(SkippedImage(int(s["index"]), Path(s["path"]), str(s["reason"])) for s in info["skipped"])
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):  # missing, truncated, not npy/json, zip errors
        return None
    return LoadedImages(images=images, labels=labels, indices=indices, skipped=skipped)
