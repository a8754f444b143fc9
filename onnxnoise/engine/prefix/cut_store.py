"""Where prefix reuse keeps its clean cut activations: memory up to a bound, then disk.

A *cut* (:mod:`onnxnoise.engine.prefix.kept_cut`) holds, for every batch of the evaluation set,
the clean activations of the tensors live across a split. Held whole, it grows with the
dataset (ResNet20's first cut: 131 kB per CIFAR image, 13 GB for 100k images; a
ResNet50 first cut on 50k ImageNet images: tens of GB). :class:`CutStore` decides per
batch where a cut lives, so that the memory it holds never exceeds ``limit_bytes``
whatever the dataset size:

- ``memory``: while the bytes kept in memory by all batches stay within
  ``limit_bytes``: host arrays on the CPU provider, device ``OrtValue`` s on the CUDA
  provider (bound with ``IOBinding``; they never cross to the host);
- ``disk``: beyond that, the batch is written to a spill file in the cache folder
  (``$ONNXNOISE_CACHE_DIR/prefix``, default ``~/.cache/onnxnoise/prefix``) and read
  back, bit-identical, when a trial needs it. Files are read with ``pread`` into fresh
  arrays, not memory-mapped, so they add nothing to the process's resident memory (the
  operating system may keep them in its page cache, which it can always drop);
- ``recompute``: the batch keeps no cut; each trial recomputes it from the images (same
  counts, no reuse for that batch). The runner chooses this over the disk when it is
  cheaper (early cuts of a CNN are large but cheap to compute: measured compute time vs
  measured disk throughput), and it is forced when the disk has no room (less than
  :data:`DISK_RESERVE_BYTES` free after the write) or no spill folder can be made; a
  forced recompute is said out loud: a warning, counted in the runner's statistics.

Working memory comes on top of the bound: the batch being computed or read (one batch
of the cut, plus ONNX Runtime's own activations of one batch).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from onnxnoise.engine.runtime import DEVICE_ID
from onnxnoise.lazy import lazy_module

ort = lazy_module("onnxruntime")

__all__ = ["CutStore", "Slot", "SpillFile", "HostValues", "DeviceValues", "MEMORY", "DISK", "RECOMPUTE",
           "DISK_RESERVE_BYTES", "free_disk_bytes"]

log = logging.getLogger(__name__)

MEMORY, DISK, RECOMPUTE = "memory", "disk", "recompute"

#: A spill write must leave at least this much free disk space.
DISK_RESERVE_BYTES = 1 << 30

#: Disk throughput assumed before any spill was timed (bytes/s); then a moving average of the measured ones.
PRIOR_WRITE_SPEED, PRIOR_READ_SPEED = 1 << 30, 2 << 30


class HostValues:
    """Cut values as host ``np.ndarray`` s (CPU execution provider)."""

    on_device = False

    @staticmethod
    def nbytes(value: np.ndarray) -> int:
        return int(value.nbytes)

    @staticmethod
    def to_host(value: np.ndarray) -> np.ndarray:
        return value

    @staticmethod
    def from_host(array: np.ndarray) -> np.ndarray:
        return array


class DeviceValues:
    """Cut values as ``OrtValue`` s on GPU :data:`~onnxnoise.engine.runtime.DEVICE_ID` (CUDA provider)."""

    on_device = True

    @staticmethod
    def nbytes(value: ort.OrtValue) -> int:
        return int(value.tensor_size_in_bytes())

    @staticmethod
    def to_host(value: ort.OrtValue) -> np.ndarray:
        return value.numpy()

    @staticmethod
    def from_host(array: np.ndarray) -> ort.OrtValue:
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), "cuda", DEVICE_ID)


@dataclass
class Slot:
    """Where one batch of a cut lives.

    Attributes:
        kind: :data:`MEMORY`, :data:`DISK` or :data:`RECOMPUTE`.
        values: ``tensor name -> value`` (memory only).
        offset: Byte offset in the cut's spill file (disk only).
        specs: ``(name, shape, dtype)`` of each tensor in the file, in file order (disk only).
        nbytes: Bytes the batch's tensors take.
        forced: :data:`RECOMPUTE` for lack of room (warned), not chosen as the cheaper way.
    """

    kind: str
    values: dict | None = None
    offset: int = 0
    specs: tuple = ()
    nbytes: int = 0
    forced: bool = False


class SpillFile:
    """One cut's batches on disk: arrays appended in order, read back by offset.

    Args:
        folder: Where to create the file (deleted by :meth:`close`).
    """

    def __init__(self, folder: Path) -> None:
        fd, name = tempfile.mkstemp(prefix="cut-", suffix=".bin", dir=folder)
        self.fd, self.path, self.size = fd, Path(name), 0

    def write(self, arrays: dict[str, np.ndarray]) -> tuple[int, tuple, int]:
        """Append ``arrays``; returns ``(offset, specs, bytes written)``.

        Raises:
            OSError: The write failed (e.g. no space left on the device).
        """
        offset = self.size
        specs = []
        for name, array in arrays.items():
            array = np.ascontiguousarray(array)
            view = memoryview(array.reshape(-1).view(np.uint8))
            done = 0
            while done < len(view):
                done += os.pwrite(self.fd, view[done:], self.size + done)
            self.size += len(view)
            specs.append((name, array.shape, array.dtype))
        return offset, tuple(specs), self.size - offset

    def read(self, offset: int, specs: tuple) -> dict[str, np.ndarray]:
        """The arrays written at ``offset`` (fresh arrays, bit-identical).

        Raises:
            OSError: The file is shorter than recorded (removed or truncated by someone else).
        """
        out = {}
        for name, shape, dtype in specs:
            array = np.empty(shape, dtype)
            view = memoryview(array.reshape(-1).view(np.uint8))
            done = 0
            while done < len(view):
                got = os.preadv(self.fd, [view[done:]], offset + done)
                if got <= 0:
                    raise OSError(f"prefix-reuse spill file {self.path} is shorter than written")
                done += got
            offset += len(view)
            out[name] = array
        return out

    def close(self) -> None:
        """Close and delete the file."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self.path.unlink(missing_ok=True)


def _average(speed: float, nbytes: int, seconds: float) -> float:
    """Throughput in bytes/s from a moving average (weight 0.2 on the newest) of seconds per byte.

    Averaging time per byte, not bytes per second, weighs a slow write (the page cache full,
    the kernel writing back) as much as the time it takes.
    """
    return 1.0 / (0.8 / speed + 0.2 * max(seconds, 1e-9) / max(nbytes, 1))


def free_disk_bytes(folder: Path) -> int:
    """Free bytes on the file system of ``folder`` (what a spill write must leave :data:`DISK_RESERVE_BYTES` of).

    Raises:
        OSError: ``folder`` does not exist or cannot be queried.
    """
    return shutil.disk_usage(folder).free


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(root: Path) -> None:
    """Remove spill folders left by processes that no longer run (``<pid>-*``)."""
    for folder in root.glob("*-*"):
        pid = folder.name.split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


@dataclass
class CutStore:
    """Memory budget and spill files of one prefix runner's cuts.

    Args:
        limit_bytes: Most bytes the cut may hold in memory (device memory on the
            CUDA provider), all batches together.
        spill_dir: Folder for spill files (a private sub-folder is created on first
            use, removed with the store); ``None``: no disk, batches beyond the bound
            are recomputed in every trial.
        values: :class:`HostValues` or :class:`DeviceValues`.

    Attributes:
        kept_bytes: Bytes held in memory now; ``peak_bytes``: the most held at once.
        spilled_batches, spilled_bytes, read_bytes: Totals since creation.
        write_speed, read_speed: Disk throughput in bytes/s (moving average of the timed
            spill writes and reads, host-device copies included; priors until then).
        recompute_batches: Batches of cuts that found no room (kept nowhere) since creation.
        warnings: Lines the user must see (a batch without room to keep its cut).
    """

    limit_bytes: int
    spill_dir: Path | None
    values: HostValues | DeviceValues = field(default_factory=HostValues)
    kept_bytes: int = 0
    peak_bytes: int = 0
    spilled_batches: int = 0
    spilled_bytes: int = 0
    read_bytes: int = 0
    recompute_batches: int = 0
    write_speed: float = PRIOR_WRITE_SPEED
    read_speed: float = PRIOR_READ_SPEED
    warnings: list[str] = field(default_factory=list)
    _folder: Path | None = field(default=None, init=False, repr=False)
    _warned: set = field(default_factory=set, init=False, repr=False)

    def new_file(self) -> SpillFile | None:
        """A spill file for a new cut, or ``None`` when there is no spill folder (or it cannot be made)."""
        if self.spill_dir is None:
            return None
        if self._folder is None:
            try:
                root = Path(self.spill_dir)
                root.mkdir(parents=True, exist_ok=True)
                _remove_stale(root)
                self._folder = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))
            except OSError as exc:
                self._warn("folder", f"cannot create the prefix-reuse spill folder in {self.spill_dir}: {exc}")
                self.spill_dir = None
                return None
            weakref.finalize(self, shutil.rmtree, self._folder, True)
        return SpillFile(self._folder)

    def nbytes(self, values: dict) -> int:
        """Bytes of one batch's cut ``values``."""
        return sum(self.values.nbytes(v) for v in values.values())

    def fits(self, nbytes: int) -> bool:
        """Whether ``nbytes`` more can be kept in memory within the bound."""
        return self.kept_bytes + nbytes <= self.limit_bytes

    def put(self, values: dict, file: SpillFile | None, *, position: int, disk: bool = True) -> Slot:
        """Keep one batch's cut ``values``: in memory if within the bound, else on disk, else nowhere.

        Args:
            values: ``tensor name -> value`` (:attr:`values` kind).
            file: The cut's spill file (``None``: no disk; a batch beyond the bound is then
                kept nowhere, with a warning).
            position: The split's node position (for the warning).
            disk: ``False``: a batch beyond the bound is kept nowhere by choice (recomputing
                it is cheaper than the disk), without a warning.
        """
        nbytes = self.nbytes(values)
        if self.fits(nbytes):
            self.kept_bytes += nbytes
            self.peak_bytes = max(self.peak_bytes, self.kept_bytes)
            return Slot(MEMORY, values=values, nbytes=nbytes)
        if file is not None and not disk:
            self.recompute_batches += 1
            return Slot(RECOMPUTE, nbytes=nbytes)
        if file is not None:
            free = free_disk_bytes(file.path.parent)
            if free - nbytes >= DISK_RESERVE_BYTES:
                started = time.perf_counter()
                try:
                    offset, specs, written = file.write({n: self.values.to_host(v) for n, v in values.items()})
                except OSError as exc:
                    self._warn("write", f"writing the prefix-reuse spill file {file.path} failed: {exc}")
                else:
                    self.write_speed = _average(self.write_speed, written, time.perf_counter() - started)
                    self.spilled_batches += 1
                    self.spilled_bytes += written
                    return Slot(DISK, offset=offset, specs=specs, nbytes=nbytes)
            else:
                self._warn("disk", f"{free / 2**30:.1f} GiB free in {file.path.parent}, less than a batch "
                           f"({nbytes / 2**20:.1f} MiB) plus a {DISK_RESERVE_BYTES / 2**30:.0f} GiB reserve")
        self.recompute_batches += 1
        self._warn(("recompute", position), f"the clean activations before node {position} ({nbytes / 2**20:.1f} MiB per batch) do not fit "
                   f"in --prefix-memory ({self.limit_bytes / 2**30:.2f} GiB) nor on disk: some batches are "
                   "recomputed from the images in every trial (same counts, slower); raise --prefix-memory or free "
                   "disk space in the cache folder")
        return Slot(RECOMPUTE, nbytes=nbytes, forced=True)

    def load(self, slot: Slot, file: SpillFile | None) -> dict | None:
        """The values of a memory or disk slot (``None`` for :data:`RECOMPUTE`)."""
        if slot.kind == MEMORY:
            return slot.values
        if slot.kind == DISK:
            assert file is not None
            started = time.perf_counter()
            arrays = file.read(slot.offset, slot.specs)
            values = {n: self.values.from_host(a) for n, a in arrays.items()}
            self.read_speed = _average(self.read_speed, slot.nbytes, time.perf_counter() - started)
            self.read_bytes += slot.nbytes
            return values
        return None

    def release(self, slot: Slot) -> None:
        """Forget a slot's values (memory returns to the budget)."""
        if slot.kind == MEMORY and slot.values is not None:
            self.kept_bytes -= slot.nbytes
            slot.values = None

    def _warn(self, key: object, message: str) -> None:
        """Log ``message`` and keep it in :attr:`warnings`, once per ``key``."""
        if key not in self._warned:
            self._warned.add(key)
            self.warnings.append(message)
            log.warning("prefix reuse: %s", message)
