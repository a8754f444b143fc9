"""`onnxnoise data get` against a loopback HTTP server (never the internet): good archive, bad checksum,
interrupted then resumed with a Range request, a server that ignores Range, and unsafe archives."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onnxnoise.cli import main
from onnxnoise.data import download, open_dataset
from onnxnoise.data.download import Archive, download_file, extract_folder
from onnxnoise.data.registry import load_registry
from onnxnoise.errors import DataError

from tests._checks import one_line


class _Server:
    """Serves ``files`` (URL path -> bytes) on 127.0.0.1; honours ``Range: bytes=N-`` unless told not to.

    ``cut_next``: URL paths whose next full (non-Range) response announces the whole length but
    sends only the first half, then closes the connection. ``requests`` records (path, Range header).
    ``announce``: URL path -> the Content-Length to announce instead of the true one. ``unsized``: URL
    paths sent without a Content-Length (the end is the connection's close); ``endless``: of those, the
    ones whose body is sent 100 times over (as good as endless for a client that does not stop itself).
    ``redirect``: URL path -> the Location of a 302 sent instead of the file. ``drip``: URL paths whose
    body is sent 10 bytes every 0.05 s (200 bytes per second).
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_next: set[str] = set()
        self.honour_range = True
        self.requests: list[tuple[str, str | None]] = []
        self.announce: dict[str, int] = {}
        self.unsized: set[str] = set()
        self.endless: set[str] = set()
        self.redirect: dict[str, str] = {}
        self.drip: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:  # noqa: N802
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                if self.path in server.redirect:
                    self.send_response(302)
                    self.send_header("Location", server.redirect[self.path])
                    self.end_headers()
                    return
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = int(rng.removeprefix("bytes=").rstrip("-")) if rng and server.honour_range else 0
                if start >= len(body) and rng and server.honour_range:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.end_headers()
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                if self.path in server.unsized:
                    self.close_connection = True
                else:
                    self.send_header("Content-Length", str(server.announce.get(self.path, len(body) - start)))
                self.end_headers()
                if self.path in server.endless:
                    try:
                        for _ in range(100):
                            self.wfile.write(body)
                    except OSError:  # the client hung up
                        pass
                    return
                if self.path in server.drip:
                    try:
                        for at in range(start, len(body), 10):
                            self.wfile.write(body[at:at + 10])
                            self.wfile.flush()
                            time.sleep(0.05)
                    except OSError:  # the client hung up
                        pass
                    return
                if not start and self.path in server.cut_next:
                    server.cut_next.discard(self.path)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    srv = _Server()
    yield srv
    srv.close()


@pytest.fixture()
def dirs(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A private config folder (registry) and cache folder (downloads) for the test."""
    config, cache = tmp_path / "config", tmp_path / "cache"
    monkeypatch.setenv("ONNXNOISE_CONFIG_DIR", str(config))
    monkeypatch.setenv("ONNXNOISE_CACHE_DIR", str(cache))
    monkeypatch.delenv(download.MIRROR_ENV, raising=False)
    return config, cache


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _tinyset() -> bytes:
    """tinyset/val/{cat,dog}/ with 3 PNGs each (registered), tinyset/train/ with 2 (not extracted)."""
    members = {f"tinyset/val/{cls}/{i}.png": _png(10 * c + i) for c, cls in enumerate(("cat", "dog")) for i in range(3)}
    members.update({f"tinyset/train/cat/{i}.png": _png(100 + i) for i in range(2)})
    return _tar_gz(members)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _get(capsys, *argv) -> tuple[int, str, str]:
    code = main(["data", "get", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _catalogue(monkeypatch, server: _Server, body: bytes, *, sha256: str | None = None) -> Archive:
    server.files["/tinyset.tar.gz"] = body
    archive = Archive("tinyset", f"{server.base}/tinyset.tar.gz", sha256 or hashlib.sha256(body).hexdigest(),
                      len(body), "tinyset/val", "a test archive")
    monkeypatch.setitem(download.CATALOGUE, "tinyset", archive)
    return archive


def test_good_archive_is_verified_extracted_registered_and_loadable(server, dirs, monkeypatch, capsys):
    _, cache = dirs
    _catalogue(monkeypatch, server, _tinyset())
    code, out, err = _get(capsys, "tinyset")
    assert code == 0, err
    entry = load_registry()["tinyset"]
    target = cache / "datasets" / "tinyset" / "tinyset" / "val"
    assert Path(entry.path) == target.resolve()
    assert (entry.num_classes, entry.images, entry.format) == (2, 6, "image-folder")
    assert entry.source.startswith(f"downloaded from {server.base}/tinyset.tar.gz")
    ds = open_dataset(entry.path)
    assert ds.class_names == ("cat", "dog") and ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    # Only the registered folder is extracted; the archive and the .part are gone.
    assert [p.relative_to(cache / "datasets").as_posix() for p in _files(cache / "datasets")] == [
        f"tinyset/tinyset/val/{cls}/{i}.png" for cls in ("cat", "dog") for i in range(3)]
    assert "downloaded, verified and registered `tinyset`" in out
    assert server.requests == [("/tinyset.tar.gz", None)]
    # A second `get` finds it registered: no request.
    code, out, _ = _get(capsys, "tinyset")
    assert code == 0 and "already there" in out and len(server.requests) == 1
    # --force downloads again.
    code, _, err = _get(capsys, "tinyset", "--force")
    assert code == 0, err
    assert len(server.requests) == 2 and load_registry()["tinyset"].images == 6


#: The advice a mirror serving another file gets for the real cifar10 entry (not "run the command again").
CIFAR_ADVICE = ("if that file is the dataset in another packaging, extract it yourself and register its "
                "`cifar-10-batches-py` folder with `onnxnoise data add cifar10 PATH`, or set --mirror / "
                "$ONNXNOISE_DATA_MIRROR to a server with the catalogue's archive")


def test_announced_size_other_than_the_catalogue_is_refused_before_downloading(server, dirs, monkeypatch, capsys):
    """The real cifar10 catalogue entry (170,498,071 bytes) through a mirror that serves another file."""
    _, cache = dirs
    server.files["/mirror/cifar-10-python.tar.gz"] = b"not the cifar archive" * 1000
    monkeypatch.setenv(download.MIRROR_ENV, f"{server.base}/mirror/")
    opened = []
    monkeypatch.setattr(download, "open", lambda *a, **k: opened.append(a) or open(*a, **k), raising=False)
    code, out, err = _get(capsys, "cifar10")
    assert code == 2
    assert one_line(err) == (f"onnxnoise: error: download of {server.base}/mirror/cifar-10-python.tar.gz refused: "
                             "it offers 21,000 bytes where the catalogue's archive has 170,498,071, so the server "
                             "sends another file or another build of the archive; nothing was kept or registered; "
                             + CIFAR_ADVICE)
    assert opened == []  # not one byte written
    assert load_registry() == {} and _files(cache / "datasets") == []
    assert not (dirs[0] / "datasets.json").exists()


def test_same_size_other_checksum_is_another_build_with_the_data_add_advice(server, dirs, monkeypatch, capsys):
    """A mirror's file of the right size but other bytes: deleted, nothing registered, advice to `data add`."""
    _, cache = dirs
    body = _tinyset()
    archive = _catalogue(monkeypatch, server, body, sha256="0" * 64)
    code, _, err = _get(capsys, "tinyset")
    assert code == 2
    assert one_line(err) == (
        f"onnxnoise: error: download of {archive.url} is corrupt: sha256 {hashlib.sha256(body).hexdigest()} "
        f"({len(body):,} bytes), expected {'0' * 64} ({len(body):,} bytes): the server sends another build of the "
        "archive (or it was damaged on the way); the file was deleted and nothing was registered; if that file is "
        "the dataset in another packaging, extract it yourself and register its `tinyset/val` folder with "
        "`onnxnoise data add tinyset PATH`, or set --mirror / $ONNXNOISE_DATA_MIRROR to a server with the "
        "catalogue's archive")
    assert "run the command again" not in err
    assert _files(cache / "datasets") == [] and load_registry() == {}


def test_stream_without_a_length_stops_after_the_expected_size(server, dirs, monkeypatch, capsys):
    """No Content-Length and a body 100 times too long: at most one byte past the catalogue size is read."""
    _, cache = dirs
    body = _tinyset()
    archive = _catalogue(monkeypatch, server, body)
    server.unsized.add("/tinyset.tar.gz")
    server.endless.add("/tinyset.tar.gz")
    started = time.monotonic()
    code, _, err = _get(capsys, "tinyset")
    assert code == 2 and time.monotonic() - started < 30
    assert one_line(err) == (f"onnxnoise: error: download of {archive.url} refused: it sends more than the "
                             f"catalogue's {len(body):,} bytes, so the server sends another file or another build of "
                             "the archive; nothing was kept or registered; if that file is the dataset in another "
                             "packaging, extract it yourself and register its `tinyset/val` folder with `onnxnoise "
                             "data add tinyset PATH`, or set --mirror / $ONNXNOISE_DATA_MIRROR to a server with the "
                             "catalogue's archive")
    assert _files(cache / "datasets") == [] and load_registry() == {}


def test_stream_without_a_length_of_the_right_bytes_is_accepted(server, dirs, monkeypatch, capsys):
    body = _tinyset()
    _catalogue(monkeypatch, server, body)
    server.unsized.add("/tinyset.tar.gz")
    code, _, err = _get(capsys, "tinyset")
    assert code == 0, err
    assert load_registry()["tinyset"].images == 6


def test_interrupted_download_is_resumed_with_a_range_request(server, dirs, monkeypatch, capsys):
    _, cache = dirs
    body = _tinyset()
    _catalogue(monkeypatch, server, body)
    server.cut_next.add("/tinyset.tar.gz")
    code, _, err = _get(capsys, "tinyset")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "stopped at" in lines[0] and "run the same command again to resume" in lines[0], err
    part = cache / "datasets" / "tinyset.tar.gz.part"
    assert part.stat().st_size == len(body) // 2
    assert part.read_bytes() == body[: len(body) // 2]
    assert load_registry() == {}
    code, _, err = _get(capsys, "tinyset")
    assert code == 0, err
    assert server.requests == [("/tinyset.tar.gz", None), ("/tinyset.tar.gz", f"bytes={len(body) // 2}-")]
    assert load_registry()["tinyset"].images == 6
    assert not part.exists() and not (cache / "datasets" / "tinyset.tar.gz").exists()


def test_server_ignoring_range_restarts_from_zero(server, dirs, monkeypatch, capsys):
    _, cache = dirs
    body = _tinyset()
    _catalogue(monkeypatch, server, body)
    part = cache / "datasets" / "tinyset.tar.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 100)  # stale bytes that do not belong to the archive
    server.honour_range = False
    code, _, err = _get(capsys, "tinyset")
    assert code == 0, err
    assert server.requests == [("/tinyset.tar.gz", "bytes=100-")]
    assert load_registry()["tinyset"].images == 6


def test_resumed_download_with_wrong_bytes_fails_checksum(server, dirs, monkeypatch, capsys):
    """A stale .part from another file resumes into a corrupt whole: deleted, nothing registered."""
    _, cache = dirs
    body = _tinyset()
    _catalogue(monkeypatch, server, body)
    part = cache / "datasets" / "tinyset.tar.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 100)
    code, _, err = _get(capsys, "tinyset")
    assert code == 2 and "is corrupt: sha256" in err and len(err.strip().splitlines()) == 1
    assert server.requests == [("/tinyset.tar.gz", "bytes=100-")]
    assert _files(cache / "datasets") == [] and load_registry() == {}


def test_archive_without_the_folder_or_with_unsafe_members_is_refused(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_tar_gz({"other/x.png": _png(0)}))
    with pytest.raises(DataError, match=r"has no `tinyset/val` folder"):
        extract_folder(archive, "tinyset/val", tmp_path / "out")
    archive.write_bytes(_tar_gz({"tinyset/val/../../../evil.png": _png(0)}))
    with pytest.raises(DataError, match=r"unsafe member `tinyset/val/\.\./\.\./\.\./evil\.png`"):
        extract_folder(archive, "tinyset/val", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "evil.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz"]  # no temporary folder left


def test_unknown_name_and_unreachable_server_are_one_line(dirs, capsys):
    code, _, err = _get(capsys, "mnist")
    assert code == 2
    assert err.strip() == ("onnxnoise: error: `mnist` is not a dataset onnxnoise can download; choose from cifar10, "
                           "cifar100, imagenette, or register a folder with `onnxnoise data add mnist PATH`")
    code, _, err = _get(capsys, "cifar10", "--mirror", "http://127.0.0.1:9/")  # discard port: refused
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("onnxnoise: error: cannot download http://127.0.0.1:9/cifar-10-python.tar.gz")


def test_a_redirect_loop_or_a_redirect_to_a_local_file_is_one_line(server, dirs, monkeypatch, capsys):
    archive = _catalogue(monkeypatch, server, _tinyset())
    server.redirect["/tinyset.tar.gz"] = "/tinyset.tar.gz"
    code, _, err = _get(capsys, "tinyset")
    assert code == 2 and one_line(err) == (
        f"onnxnoise: error: download of {archive.url} failed: HTTP 302 The HTTP server returned a redirect error that "
        "would lead to an infinite loop. The last 30x error message was: Found; check the URL or "
        "$ONNXNOISE_DATA_MIRROR")
    server.redirect["/tinyset.tar.gz"] = "file:///etc/passwd"
    code, _, err = _get(capsys, "tinyset")
    assert code == 2 and "Redirection to url 'file:///etc/passwd' is not allowed" in one_line(err)
    assert load_registry() == {} and _files(dirs[1] / "datasets") == []


def test_a_server_dripping_bytes_within_every_timeout_is_stopped_and_resumable(server, dirs, monkeypatch):
    body = bytes(range(256)) * 40  # 10,240 bytes: 51 s at the drip's 200 bytes per second
    server.files["/slow.bin"] = body
    server.drip.add("/slow.bin")
    dest = dirs[1] / "slow.bin"
    started = time.monotonic()
    with pytest.raises(DataError, match=r"^download of .*/slow\.bin stalled: \d+ bytes in \d+ s, under 1,024 bytes per "
                                        r"second; the partial file .*slow\.bin\.part is kept: run the same command "
                                        r"again to resume, or set \$ONNXNOISE_DATA_MIRROR to a faster mirror$"):
        download_file(f"{server.base}/slow.bin", dest, sha256=hashlib.sha256(body).hexdigest(), size=len(body),
                      timeout=0.6)
    assert time.monotonic() - started < 5 and not dest.exists()
    kept = dest.with_name("slow.bin.part").read_bytes()
    assert 0 < len(kept) < len(body) and body.startswith(kept)
    server.drip.clear()
    assert download_file(f"{server.base}/slow.bin", dest, sha256=hashlib.sha256(body).hexdigest(),
                         size=len(body)).read_bytes() == body
    assert server.requests[-1] == ("/slow.bin", f"bytes={len(kept)}-")
