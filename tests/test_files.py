"""files.py: a file is replaced whole or not at all (exception, full disk, kill -9), the lock, safe folder names."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import onnxnoise.files as files
from onnxnoise.files import atomic_write, check_folder_name, folder_name, locked, write_text

ROOT = Path(__file__).resolve().parents[1]


def _left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_replaces_the_file_whole_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "bench.json"
    write_text(target, "old\n")
    write_text(target, "new\n")
    assert target.read_text() == "new\n" and _left(tmp_path) == ["bench.json"]


def test_exception_after_partial_output_keeps_the_previous_file(tmp_path):
    target = tmp_path / "report.md"
    target.write_text("previous report\n")
    with pytest.raises(RuntimeError, match="renderer failed"), atomic_write(target, text=True) as fh:
        fh.write("half of the new rep")
        raise RuntimeError("renderer failed")
    assert target.read_text() == "previous report\n" and _left(tmp_path) == ["report.md"]


def test_full_disk_keeps_the_previous_file_or_none(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    target = tmp_path / "summary.csv"
    target.write_bytes(b"a,b\n1,2\n")
    with pytest.raises(OSError, match="No space left"):
        write_text(target, "a,b\n1,2\n3,4\n")
    assert target.read_bytes() == b"a,b\n1,2\n" and _left(tmp_path) == ["summary.csv"]
    monkeypatch.undo()
    with pytest.raises(OSError) as err, atomic_write(target) as fh:  # polars' OSError has no errno
        fh.write(b"a,b\n")
        raise OSError("No space left on device (os error 28)")
    assert (err.value.errno, err.value.strerror, err.value.filename) == (
        errno.ENOSPC, "No space left on device (os error 28)", str(target))
    assert target.read_bytes() == b"a,b\n1,2\n" and _left(tmp_path) == ["summary.csv"]
    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        write_text(tmp_path / "new.json", "{}")
    assert _left(tmp_path) == ["summary.csv"]  # no new file at all, never an empty one


@pytest.mark.skipif(os.name == "nt", reason="POSIX mode bits")
def test_a_new_file_gets_the_umask_mode_and_a_replaced_file_keeps_its_mode(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "_UMASK", 0o027)  # the umask read at import
    write_text(tmp_path / "report.md", "x\n")  # mkstemp alone would give 0o600
    assert stat.S_IMODE((tmp_path / "report.md").stat().st_mode) == 0o640
    (tmp_path / "datasets.json").write_text("{}")
    (tmp_path / "datasets.json").chmod(0o604)
    write_text(tmp_path / "datasets.json", "{}\n")
    assert stat.S_IMODE((tmp_path / "datasets.json").stat().st_mode) == 0o604
    assert files._read_umask() == files._read_umask()  # reading it leaves it as it was


def test_a_target_that_is_a_folder_is_named_in_the_error_not_the_temporary_file(tmp_path):
    (tmp_path / "bench.json").mkdir()
    with pytest.raises(OSError) as err:
        write_text(tmp_path / "bench.json", "{}")
    assert err.value.filename == str(tmp_path / "bench.json") and err.value.filename2 is None
    assert isinstance(err.value, IsADirectoryError)
    assert files.TEMP_PREFIX not in str(err.value) and _left(tmp_path) == ["bench.json"]


_WRITER = textwrap.dedent("""
    import sys
    from onnxnoise.files import atomic_write
    block = sys.argv[2].encode() * (1 << 20)
    with atomic_write(sys.argv[1]) as fh:
        for _ in range(400):          # 400 MiB, written slowly enough to be killed midway
            fh.write(block)
            fh.flush()
            print("wrote", flush=True)
""")


def test_kill_9_mid_write_leaves_the_old_file_whole(tmp_path):
    target = tmp_path / "trials.parquet"
    old = b"O" * (3 << 20)
    target.write_bytes(old)
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target), "N"], cwd=ROOT, stdout=subprocess.PIPE)
    try:
        for _ in range(3):  # at least 3 MiB of the new content written to the temporary file
            assert proc.stdout.readline() == b"wrote\n"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == old  # never a cut new file
    temps = [p for p in tmp_path.iterdir() if p.name.startswith(files.TEMP_PREFIX)]
    assert len(temps) == 1 and temps[0].stat().st_size >= 3 << 20  # killed mid-write: no cleanup could run
    write_text(target, "the next run\n")  # the next write of that file removes the dead writer's leftover
    assert _left(tmp_path) == ["trials.parquet"] and target.read_text() == "the next run\n"


def test_lock_serializes_read_modify_write_across_processes(tmp_path):
    counter = tmp_path / "count.txt"
    counter.write_text("0")
    script = textwrap.dedent("""
        import sys, time
        from pathlib import Path
        from onnxnoise.files import locked, write_text
        path = Path(sys.argv[1])
        for _ in range(20):
            with locked(path):
                value = int(path.read_text())
                time.sleep(0.001)
                write_text(path, str(value + 1))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(counter)], cwd=ROOT) for _ in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    assert counter.read_text() == "80"  # 4 x 20 increments, none lost


def test_lock_held_elsewhere_times_out_with_one_line(tmp_path):
    with locked(tmp_path / "datasets.json"):
        start = time.monotonic()
        script = ("import sys\nfrom onnxnoise.files import locked\n"
                  "try:\n    with locked(sys.argv[1], timeout=0.3): pass\n"
                  "except TimeoutError as exc:\n    print(exc)\n")
        out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "datasets.json")], cwd=ROOT,
                             capture_output=True, text=True, timeout=60).stdout
    assert out == f"{tmp_path / 'datasets.json.lock'} stayed locked by another onnxnoise process for 0.3 s\n"
    assert time.monotonic() - start < 30


@pytest.mark.parametrize(("model", "name"), [
    ("resnet20.onnx", "resnet20"),
    ("/a/b/../VGG16.ONNX", "VGG16"),
    ("...onnx", "model"),
    (".onnx", "model"),
    ("..", "model"),
    ("resnet 20 (v2).onnx", "resnet-20-v2"),
    ("modèle-µ.onnx", "modèle-µ"),
    (".hidden.onnx", "hidden"),
    ("a\\b.onnx", "a-b"),
    ("tf_model.pb.onnx", "tf_model.pb"),
])
def test_folder_name_of_odd_model_file_names(model, name):
    assert folder_name(model) == name
    assert Path("runs", folder_name(model)).resolve().parent == Path("runs").resolve()


@pytest.mark.parametrize("name", ["../../../x", "..", ".", "", " ", "/abs/x", "a/b", "a\\b", "C:x", ".hidden",
                                  "-rf", "a\0b"])
def test_names_that_would_leave_their_folder_are_refused(name):
    with pytest.raises(ValueError, match=r"^\[models\] key .* would not stay one folder inside the output folder; "):
        check_folder_name(name, "[models] key")


@pytest.mark.parametrize("name", ["resnet20", "my study", "vgg16.v2", "modèle_1"])
def test_plain_names_are_kept(name):
    assert check_folder_name(name, "name") == name
