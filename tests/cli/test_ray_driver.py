"""`sweep --executor ray` runs its Ray driver in a watched child (real processes, a real local Ray instance):
Ray's core ending the driver is one line and exit 2, and a killed command or driver leaves no Ray process.
Linux: the process table is read from /proc (as CI runs it; Ray is in the test extra)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest

from tests._builders import conv_bn_resnet, labeled_npz
from tests._checks import stored_rows

REPO = Path(__file__).resolve().parents[2]


def _processes() -> dict[int, tuple[int, int, str]]:
    """Every live process (zombies left out): pid -> (parent pid, process group, command line)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
        if fields[0] != "Z":
            table[int(entry)] = (int(fields[1]), int(fields[2]), cmdline)
    return table


def _descendants(root: int, table: dict[int, tuple[int, int, str]]) -> set[int]:
    found, grew = {root}, True
    while grew:
        more = {pid for pid, (ppid, _, _) in table.items() if ppid in found} - found
        found |= more
        grew = bool(more)
    return found - {root}


def _wait_for(predicate, seconds: float, step: float = 0.2):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("driver")
    model = conv_bn_resnet()
    onnx.save(model, folder / "model.onnx")
    labeled_npz(model, folder / "data.npz", n=200)
    return folder / "model.onnx", folder / "data.npz"


def _start_sweep(files, out: Path) -> tuple[subprocess.Popen, int, dict[int, tuple[int, int, str]]]:
    """A long `sweep --executor ray` on a local Ray instance, once its first rows are stored and its
    dashboard agent runs: (the command's process, its driver's pid, the driver's Ray processes)."""
    model, data = files
    cmd = [sys.executable, "-m", "onnxnoise.cli", "sweep", str(model), "--data", str(data), "--preprocess", "raw",
           "--device", "cpu", "--mode", "per-layer", "--snr", "10,5,3,2", "--seeds", "40", "--executor", "ray",
           "--workers", "1", "--out", str(out)]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)

    def ready():
        table = _processes()
        drivers = [pid for pid, (ppid, _, cmd) in table.items() if ppid == proc.pid and "onnxnoise.cli" in cmd]
        if not drivers or stored_rows(out / "trials.sqlite") < 3:
            return None
        ray = {pid: table[pid] for pid in _descendants(drivers[0], table)}
        return (drivers[0], ray) if any("ray::DashboardAgent" in cmd for _, _, cmd in ray.values()) else None

    found = _wait_for(ready, 180)
    if not found:
        proc.kill()
        pytest.fail(f"the sweep did not start on Ray: {proc.communicate()[1][-2000:]}")
    return proc, *found


def _left(pids) -> set[int]:
    table = _processes()
    return {pid for pid in pids if pid in table}


def test_a_dead_dashboard_agent_is_one_line_exit_2_and_leaves_no_ray_process(files, tmp_path):
    proc, driver, ray = _start_sweep(files, tmp_path / "out")
    assert all(pgid == driver for pid, (_, pgid, cmd) in ray.items() if "ray::" not in cmd or "Agent" in cmd)
    agent = next(pid for pid, (_, _, cmd) in ray.items() if "ray::DashboardAgent" in cmd)
    os.kill(agent, signal.SIGKILL)  # the raylet dies with it, and Ray's C++ core ends the driver: exit 1
    _, err = proc.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.startswith("onnxnoise")]
    assert proc.returncode == 2
    assert lines == [f"onnxnoise: error: Ray stopped under this sweep: Ray's core ended its driver process with exit "
                     "code 1 (a Ray process died: the raylet, its dashboard agent or the GCS; see "
                     "/tmp/ray/session_latest/logs); trials finished so far are in the output folder "
                     f"({tmp_path / 'out'}); run the same command again to resume"]
    assert _wait_for(lambda: not _left([driver, *ray]), 10), _left([driver, *ray])
    assert stored_rows(tmp_path / "out" / "trials.sqlite") >= 3  # the rows recorded before are kept


@pytest.mark.parametrize("target", ["command", "driver"])
def test_kill_9_leaves_no_ray_process(files, tmp_path, target):
    """Before: the two agents of a killed driver outlived it by about 60 s (Ray 2.60)."""
    proc, driver, ray = _start_sweep(files, tmp_path / "out")
    os.kill(proc.pid if target == "command" else driver, signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    killed = time.monotonic()
    assert _wait_for(lambda: not _left([driver, *ray]), 10), _left([driver, *ray])
    assert time.monotonic() - killed < 10
    if target == "command":
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 2
        assert [line for line in err.splitlines() if line.startswith("onnxnoise")] == [
            f"onnxnoise: error: the sweep's Ray driver process (pid {driver}) was ended by SIGKILL (out of memory?); "
            f"trials finished so far are in the output folder ({tmp_path / 'out'}); run the same command again to "
            "resume"]


def test_the_reaper_ends_its_group_when_the_leader_dies():
    """A group leader that started the reaper and a `sleep` in its group is killed: the `sleep` ends too."""
    leader = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time\n"
         "from onnxnoise.engine.ray_reaper import start_reaper\n"
         "print(start_reaper(), subprocess.Popen(['sleep', '300']).pid, flush=True)\n"
         "time.sleep(300)\n"],
        env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True, start_new_session=True)
    reaper, sleeper = map(int, leader.stdout.readline().split())
    assert _processes()[sleeper][1] == _processes()[reaper][1] == leader.pid  # both in the leader's group
    leader.kill()
    leader.wait()
    assert _wait_for(lambda: not _left([reaper, sleeper]), 10), _left([reaper, sleeper])


def test_the_reaper_is_not_started_outside_a_session_of_its_own():
    """A process that does not lead its own session (started by pytest here) never gets a reaper."""
    code = ("from onnxnoise.engine.ray_reaper import start_reaper\nprint(start_reaper())")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "None"
