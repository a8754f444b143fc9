"""Downloading public dataset archives by name: resumable, sha256-verified, extracted, registered.

``onnxnoise data get NAME`` runs :func:`get_dataset`:

1. download ``CATALOGUE[NAME].url`` to ``<cache>/datasets/<archive>.part``; an existing
   ``.part`` is resumed with an HTTP ``Range: bytes=N-`` request (a server that answers
   200 instead of 206 is downloaded again from the start);
2. check the file's sha256 (and size): a mismatch deletes it, registers nothing and raises
   :class:`~onnxnoise.errors.DataError`;
3. extract only the archive's dataset folder (``Archive.folder``) into
   ``<cache>/datasets/<NAME>/`` (through a temporary folder renamed into place; members with
   absolute paths, ``..`` or links leaving the folder are refused), delete the archive;
4. register ``<cache>/datasets/<NAME>/<folder>`` with
   :func:`onnxnoise.data.registry.register_dataset`.

``<cache>`` is the decoded-image cache's root (:func:`onnxnoise.data.cache.get_cache_dir`:
``$ONNXNOISE_CACHE_DIR``, else ``~/.cache/onnxnoise``). ``$ONNXNOISE_DATA_MIRROR`` (or the
``base_url`` argument) replaces the folder part of every catalogue URL, e.g. a local mirror
``http://host/datasets/`` serving ``cifar-10-python.tar.gz``; the checksums still apply.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from onnxnoise import __version__
from onnxnoise.data.cache import get_cache_dir
from onnxnoise.data.registry import RegisteredDataset, check_name, load_registry, register_dataset
from onnxnoise.errors import DataError

__all__ = ["Archive", "CATALOGUE", "MIRROR_ENV", "archive_url", "datasets_dir", "download_file", "extract_folder",
           "get_dataset", "sha256_file"]

#: Environment variable replacing the folder part of every catalogue URL (mirrors, tests).
MIRROR_ENV = "ONNXNOISE_DATA_MIRROR"
_CHUNK = 1 << 20
#: Slowest transfer kept up, in bytes per second, averaged over each ``timeout`` seconds: a
#: server that drips a byte within every socket timeout would otherwise keep ``data get``
#: waiting for ever (170 MB at 1 byte a second is five years).
MIN_RATE = 1024


@dataclass(frozen=True)
class Archive:
    """A public dataset archive that ``onnxnoise data get`` can fetch.

    Attributes:
        name: Registry name it is registered under.
        url: Official download URL.
        sha256: Expected sha256 hex digest of the archive file.
        size: Expected size in bytes (progress total, early check), or None.
        folder: POSIX path inside the archive of the folder to extract and register.
        description: One line for ``onnxnoise data list``.
    """

    name: str
    url: str
    sha256: str
    size: int | None
    folder: str
    description: str

    @property
    def filename(self) -> str:
        """The archive's file name (last URL segment)."""
        return self.url.rstrip("/").rsplit("/", 1)[-1]


# The sha256 values below were not computed here (this machine cannot reach the hosts); each
# was cross-checked against several independent published records that agree: CIFAR-10 and
# CIFAR-100 as checked by Keras (`keras.datasets.cifar100` file_hash) and torchvision's
# prototype datasets (`_SHA256`), with the sizes 170,498,071 and 169,001,437 bytes; Imagenette
# (fast.ai's imagenette2-320.tgz, 341,663,724 bytes) as in tensorflow-datasets'
# imagenette checksums.tsv and FastAI.jl's data dependencies. torchvision checks CIFAR by MD5
# (c58f30108f718f92721af3b95e74349a, eb9058c3a382ffc7106e4002c42a8d85) and Imagenette 320px by
# MD5 3df6f0d01a2c9592104656642f5e78a3; those are not used here.
#: Built-in archives by registry name.
CATALOGUE: dict[str, Archive] = {
    "cifar10": Archive(
        "cifar10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce", 170_498_071,
        "cifar-10-batches-py", "CIFAR-10, python version (test split: 10,000 images, 10 classes)"),
    "cifar100": Archive(
        "cifar100", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7", 169_001_437,
        "cifar-100-python", "CIFAR-100, python version (test split: 10,000 images, 100 fine classes)"),
    "imagenette": Archive(
        "imagenette", "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz",
        "569b4497c98db6dd29f335d1f109cf315fe127053cedf69010d047f0188e158c", 341_663_724,
        "imagenette2-320/val", "Imagenette 320 px, fast.ai (val split: 3,925 images of 10 ImageNet classes, "
        "labelled in the 1000-class ImageNet index)"),
}

#: ``progress(done_bytes, total_bytes or None)``.
ProgressFn = Callable[[int, "int | None"], None]


def datasets_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``<cache root>/datasets``: downloads (``.part``) and extracted datasets."""
    return get_cache_dir(cache_dir) / "datasets"


def archive_url(archive: Archive, base_url: str | None = None) -> str:
    """The URL to fetch: ``base_url`` (or ``$ONNXNOISE_DATA_MIRROR``) + the file name, else ``archive.url``."""
    base = base_url or os.environ.get(MIRROR_ENV)
    return f"{base.rstrip('/')}/{archive.filename}" if base else archive.url


def sha256_file(path: Path) -> str:
    """sha256 hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _open(url: str, start: int, timeout: float) -> http.client.HTTPResponse | None:
    """The response for ``url`` from byte ``start``, or None when the server says the range is already complete."""
    headers = {"User-Agent": f"onnxnoise/{__version__}"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)  # noqa: S310
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # nothing left to send: the partial file is complete
            return None
        raise DataError(f"download of {url} failed: HTTP {exc.code} {exc.reason}; check the URL or "
                        f"${MIRROR_ENV}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(f"cannot download {url}: {reason}; check the network (or set ${MIRROR_ENV} to a mirror) "
                        "and run the command again") from None


def _offered(response: http.client.HTTPResponse, have: int) -> tuple[int | None, int | None]:
    """(bytes this response announces, whole file size it announces), each None when not said.

    The first is ``Content-Length``; the second is ``have`` + that for a full (200) response,
    or the total after ``/`` in a 206 response's ``Content-Range: bytes a-b/total``.
    """
    length = response.headers.get("Content-Length", "").strip()
    body = int(length) if length.isdigit() else None
    if response.status == 206:
        total = re.fullmatch(r"bytes \d+-\d+/(\d+)", response.headers.get("Content-Range", "").strip())
        return body, int(total[1]) if total else (have + body if body is not None else None)
    return body, body


def _wrong_file(url: str, what: str, part: Path, advice: str) -> DataError:
    """The error for a server sending another file than the catalogue's; deletes ``part``."""
    part.unlink(missing_ok=True)
    return DataError(f"download of {url} refused: {what}, so the server sends another file or another build of the "
                     f"archive; nothing was kept or registered; {advice}")


def _check_rate(url: str, part: Path, window: tuple[float, int], done: int, timeout: float) -> tuple[float, int]:
    """The rate window after ``done`` bytes: unchanged until ``timeout`` seconds have passed, then restarted.

    Raises:
        DataError: Fewer than :data:`MIN_RATE` bytes per second came in the window that ended
            (the partial file is kept for the next try).
    """
    started, at_start = window
    now = time.monotonic()
    if now - started < timeout:
        return window
    if done - at_start < MIN_RATE * (now - started):
        raise DataError(f"download of {url} stalled: {done - at_start:,} bytes in {now - started:.0f} s, under "
                        f"{MIN_RATE:,} bytes per second; the partial file {part} is kept: run the same command again "
                        f"to resume, or set ${MIRROR_ENV} to a faster mirror")
    return now, done


def download_file(url: str, dest: Path, *, sha256: str, size: int | None = None,
                  progress: ProgressFn | None = None, timeout: float = 60.0,
                  advice: str = "check the URL") -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming a partial file, and verify it.

    With ``size`` known the download is bounded: a response announcing another size
    (``Content-Length``, or a 206's ``Content-Range`` total) is refused before its body is
    read, and a response without a length is read to ``size`` bytes and one more at most
    (one more is refused). Every socket wait (connect, each read) lasts at most ``timeout``,
    and a transfer slower than :data:`MIN_RATE` bytes per second over ``timeout`` seconds stops.

    Args:
        url: http(s) URL.
        dest: Final file path; ``dest.part`` holds the bytes while downloading.
        sha256: Expected sha256 hex digest of the whole file.
        size: Expected size in bytes, or None (then neither the announced size nor the
            number of bytes read is bounded).
        progress: Called as ``progress(done, total)`` after every chunk (total None if unknown).
        timeout: Socket timeout in seconds, and the window over which the rate is measured.
        advice: What to do when the server sends another file (size or checksum mismatch),
            the tail of that error.

    Returns:
        ``dest``, complete and verified.

    Raises:
        DataError: Network or HTTP error, a transfer cut short or stalled (``dest.part`` is
            kept and resumed by the next call), another size announced or sent, or a checksum
            mismatch (``dest.part`` is deleted, the message ends with ``advice``).
    """
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    fresh = False  # whether every byte of the file comes from this call's response
    if size is None or have < size:
        response = _open(url, have, timeout)
        if response is not None:
            with response:
                if have and response.status != 206:  # the server ignored Range: start again
                    have = 0
                elif have and not re.match(rf"bytes {have}-", response.headers.get("Content-Range", "")):
                    raise DataError(f"download of {url}: the server resumed at the wrong place "
                                    f"({response.headers.get('Content-Range')!r} for byte {have}); delete {part} "
                                    "and run the command again")
                fresh = have == 0
                body, whole = _offered(response, have)
                if size is not None and whole is not None and whole != size:
                    raise _wrong_file(url, f"it offers {whole:,} bytes where the catalogue's archive has {size:,}",
                                      part, advice)
                total = have + body if body is not None else size
                done, overflow = have, False
                window = (time.monotonic(), done)  # start of the current rate window: time, bytes
                try:
                    with open(part, "ab" if have else "wb") as fh:
                        # read1: what one socket read brings, so a dripping server is seen between reads
                        while chunk := response.read1(_CHUNK if size is None else min(_CHUNK, size - done + 1)):
                            if size is not None and done + len(chunk) > size:  # read at most one byte too many
                                overflow = True
                                break
                            fh.write(chunk)
                            done += len(chunk)
                            if progress is not None:
                                progress(done, total)
                            window = _check_rate(url, part, window, done, timeout)
                except (http.client.IncompleteRead, ConnectionError, TimeoutError, OSError) as exc:
                    of = f"{total:,}" if total is not None else "?"
                    raise DataError(f"download of {url} stopped at {done:,} of {of} bytes "
                                    f"({type(exc).__name__}); the partial file {part} is kept: run the same "
                                    "command again to resume") from None
                if overflow:
                    raise _wrong_file(url, f"it sends more than the catalogue's {size:,} bytes", part, advice)
                if total is not None and done < total:
                    raise DataError(f"download of {url} stopped at {done:,} of {total:,} bytes; the partial file "
                                    f"{part} is kept: run the same command again to resume")
    got_size = part.stat().st_size
    digest = sha256_file(part)
    if digest != sha256.lower() or (size is not None and got_size != size):
        part.unlink(missing_ok=True)
        expected = f"expected {sha256}" + (f" ({size:,} bytes)" if size is not None else "")
        if not fresh:  # bytes from an earlier try: a stale partial file may be the cause
            raise DataError(f"download of {url} is corrupt: sha256 {digest} ({got_size:,} bytes), {expected}; it "
                            "was resumed from an earlier partial download, now deleted, and nothing was registered: "
                            f"run the command again to download it whole; if that fails the same way, {advice}")
        raise DataError(f"download of {url} is corrupt: sha256 {digest} ({got_size:,} bytes), {expected}: the server "
                        "sends another build of the archive (or it was damaged on the way); the file was deleted "
                        f"and nothing was registered; {advice}")
    os.replace(part, dest)
    return dest


def _member_path(name: str) -> str:
    """A member name without leading ``./`` (``tar -C dir .`` writes them)."""
    while name.startswith("./"):
        name = name[2:]
    return name


def _inside(folder: str, name: str) -> bool:
    return name == folder or name.startswith(folder + "/")


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    """Refuse members that would write outside the extraction folder (for Pythons without tar filters)."""
    path = PurePosixPath(member.name)
    bad = path.is_absolute() or ".." in path.parts
    if member.issym() or member.islnk():
        link = PurePosixPath(member.linkname)
        bad = bad or link.is_absolute() or ".." in link.parts
    if bad or not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise DataError(f"archive {archive} has an unsafe member `{member.name}`; refusing to extract it")


def extract_folder(archive: Path, folder: str, into: Path) -> Path:
    """Extract the members of ``archive`` under ``folder`` into ``into`` (created; must not exist).

    Args:
        archive: A tar archive (gzip, bz2 or xz compressed, or plain).
        folder: POSIX path inside the archive (e.g. ``imagenette2-320/val``).
        into: Destination; it is written through a temporary sibling folder renamed into place.

    Returns:
        ``into / folder``.

    Raises:
        DataError: Not a readable tar archive, no member under ``folder``, or an unsafe member.
    """
    folder = folder.strip("/")
    tmp = Path(tempfile.mkdtemp(prefix=f".{into.name}-", dir=into.parent))
    try:
        try:
            with tarfile.open(archive, "r:*") as tf:
                members = [m for m in tf.getmembers() if _inside(folder, _member_path(m.name))]
                if not members:
                    raise DataError(f"archive {archive} has no `{folder}` folder; it is not the expected dataset "
                                    "archive, delete it and run the command again")
                for member in members:
                    _check_member(member, archive)
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(tmp, members=members, filter="data")
                else:  # pragma: no cover - Python without PEP 706 filters; members were checked above
                    tf.extractall(tmp, members=members)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise DataError(f"cannot extract archive {archive} ({type(exc).__name__}: {exc}); delete it and run "
                            "the command again") from None
        os.replace(tmp, into)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return into / folder


def get_dataset(name: str, *, force: bool = False, base_url: str | None = None,
                cache_dir: str | os.PathLike[str] | None = None, progress: ProgressFn | None = None,
                catalogue: dict[str, Archive] | None = None) -> tuple[RegisteredDataset, bool]:
    """Download, verify, extract and register the catalogue dataset ``name``.

    Args:
        name: A key of ``catalogue`` (default :data:`CATALOGUE`).
        force: Download and extract again even when ``name`` is registered or extracted,
            discarding a partial download.
        base_url: Mirror replacing the URL's folder part (default ``$ONNXNOISE_DATA_MIRROR``).
        cache_dir: Cache root (default :func:`onnxnoise.data.cache.get_cache_dir`).
        progress: ``progress(done_bytes, total_bytes)`` during the download.
        catalogue: Archives by name (tests pass their own).

    Returns:
        (the registry entry, whether anything was downloaded).

    Raises:
        DataError: Unknown name, download / checksum / extraction failure (see
            :func:`download_file`, :func:`extract_folder`), or a folder the dataset loader
            cannot open.
    """
    catalogue = CATALOGUE if catalogue is None else catalogue
    if name not in catalogue:
        check_name(name)
        raise DataError(f"`{name}` is not a dataset onnxnoise can download; choose from "
                        f"{', '.join(sorted(catalogue))}, or register a folder with `onnxnoise data add {name} PATH`")
    archive = catalogue[name]
    root = datasets_dir(cache_dir)
    target = root / name
    dataset_path = target.joinpath(*archive.folder.strip("/").split("/"))
    dest = root / archive.filename
    if force:
        shutil.rmtree(target, ignore_errors=True)
        dest.unlink(missing_ok=True)
        dest.with_name(dest.name + ".part").unlink(missing_ok=True)
    else:
        entry = load_registry().get(name)
        if entry is not None and Path(entry.path) == dataset_path and dataset_path.exists():
            return entry, False
        if dataset_path.exists():  # extracted earlier, not (or no longer) registered
            return register_dataset(name, dataset_path, source=_source(archive, base_url), replace=True), False
    url = archive_url(archive, base_url)
    if not (dest.exists() and sha256_file(dest) == archive.sha256):
        advice = (f"if that file is the dataset in another packaging, extract it yourself and register its "
                  f"`{archive.folder}` folder with `onnxnoise data add {name} PATH`, or set --mirror / ${MIRROR_ENV} "
                  "to a server with the catalogue's archive")
        download_file(url, dest, sha256=archive.sha256, size=archive.size, progress=progress, advice=advice)
    shutil.rmtree(target, ignore_errors=True)
    extract_folder(dest, archive.folder, target)
    try:
        entry = register_dataset(name, dataset_path, source=_source(archive, base_url), replace=True)
    except DataError:
        shutil.rmtree(target, ignore_errors=True)
        raise
    dest.unlink(missing_ok=True)
    return entry, True


def _source(archive: Archive, base_url: str | None) -> str:
    return f"downloaded from {archive_url(archive, base_url)} (sha256 {archive.sha256[:12]}...)"
