"""``sweep --executor ray``: the Ray driver runs in a child process that the command watches.

Ray's C++ core ends its driver process itself when a Ray process it depends on dies (the
raylet, which dies with its dashboard agent): ``exit 1`` with Ray's own lines, no Python
exception that could become one line (measured with Ray 2.60, docs/distributed.md). So the
``onnxnoise sweep ... --executor ray`` process (the *watcher*) runs the same command line
again in a child process (the *driver*: it prepares the run, starts or joins Ray, records
every trial row in the store, as before), in a session and process group of its own, and
waits for it:

- The driver tells the watcher that its Python code finished (:func:`driver_channel`,
  written in a ``finally``) and the watcher returns the driver's exit code as it is (0, 1
  for failed trials, 2 for bad input, 130 for Ctrl-C, which the watcher forwards).
- A driver that ended without saying so was ended outside Python: by Ray's core, or by a
  signal. The watcher prints one line (the rows recorded so far are kept; the same
  command resumes) and returns exit code 2, after sending ``SIGKILL`` to the driver's
  process group (the Ray processes a local instance started there; a cluster joined with
  ``--address`` runs in other groups and is never touched).
- The driver gets ``SIGKILL`` when the watcher dies (``prctl(PR_SET_PDEATHSIG)`` on Linux),
  and its reaper (:mod:`onnxnoise.engine.ray_reaper`) then ends the Ray processes of its
  group: a ``kill -9`` of the command leaves no Ray process behind.

The store is still written by one process only (the driver), so resuming and the
``kill -9`` guarantees are those of a local sweep.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib.util
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import onnxnoise
from onnxnoise.cli.parser import EXIT_USAGE
from onnxnoise.engine.ray_worker import RAY_MISSING
from onnxnoise.errors import error_line

__all__ = ["DRIVER_ENV", "wants_driver_process", "run_driver_process", "driver_channel"]

#: Set in the driver's environment: ``"<watcher pid>:<status fd>"``.
DRIVER_ENV = "ONNXNOISE_RAY_DRIVER"
#: What the driver writes on its status descriptor when its Python code is done.
_DONE = b"done"
#: Signals the watcher passes on to the driver (the terminal's Ctrl-C reaches only the watcher).
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


def wants_driver_process(args: argparse.Namespace) -> bool:
    """Whether this command runs its Ray driver in a watched child: ``sweep --executor ray`` on POSIX."""
    return (os.name == "posix" and args.command == "sweep" and getattr(args, "executor", None) == "ray"
            and DRIVER_ENV not in os.environ)


def run_driver_process(argv: list[str], out: Path | None) -> int:
    """Run ``onnxnoise *argv`` as the driver child, forward signals to it, and turn its end into an exit code.

    Args:
        argv: The command line (without the program name), run again as it is.
        out: ``--out`` as given (named in the line printed when the driver was ended).

    Returns:
        The driver's exit code when its Python code finished, else ``2`` after one line
        on stderr (also when Ray is not installed: then no child starts).
    """
    if importlib.util.find_spec("ray") is None:
        print(f"onnxnoise: error: {RAY_MISSING}", file=sys.stderr)
        return EXIT_USAGE
    read, write = os.pipe()
    root = str(Path(onnxnoise.__file__).resolve().parents[1])  # the child imports this same onnxnoise
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, DRIVER_ENV: f"{os.getpid()}:{write}",
           "PYTHONPATH": root + (os.pathsep + path if path else "")}
    try:
        proc = subprocess.Popen([sys.executable, "-m", "onnxnoise.cli", *argv], env=env, pass_fds=(write,),
                                start_new_session=True)
    finally:
        os.close(write)
    previous = ({sig: signal.signal(sig, lambda signum, _frame: _forward(proc, signum)) for sig in _FORWARDED}
                if threading.current_thread() is threading.main_thread() else {})  # handlers: main thread only
    try:
        status = b""
        with os.fdopen(read, "rb") as channel:
            while chunk := channel.read(64):  # end-of-file when the driver has ended
                status += chunk
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # ended, not reaped: its pid stays taken
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # what it left in its group (a local Ray instance)
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if status.endswith(_DONE):
        return code
    where = f" ({out})" if out else ""
    if code < 0:
        cause = (f"the sweep's Ray driver process (pid {proc.pid}) was ended by {signal.Signals(-code).name} "
                 "(out of memory?)")
    else:
        cause = (f"Ray stopped under this sweep: Ray's core ended its driver process with exit code {code} "
                 "(a Ray process died: the raylet, its dashboard agent or the GCS; see "
                 "/tmp/ray/session_latest/logs)")
    print(f"onnxnoise: error: {error_line(cause)}; trials finished so far are in the output folder{where}; run "
          "the same command again to resume", file=sys.stderr)
    return EXIT_USAGE


def _forward(proc: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signum)


@contextlib.contextmanager
def driver_channel() -> Iterator[bool]:
    """In the driver child: die with the watcher, and tell it when this process's Python code is done.

    Yields ``True`` in a driver started by :func:`run_driver_process`, ``False``
    elsewhere (then it does nothing). On leaving (a return, an exception, a traceback
    even) the status descriptor gets :data:`_DONE`.
    """
    spec = os.environ.pop(DRIVER_ENV, None)
    if spec is None:
        yield False
        return
    watcher, _, fd_text = spec.partition(":")
    fd = int(fd_text)
    os.set_inheritable(fd, False)  # no Ray process keeps it open after this one ends
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != int(watcher):  # the watcher died before the line above took effect
        os._exit(EXIT_USAGE)
    try:
        yield True
    finally:
        with contextlib.suppress(OSError):
            os.write(fd, _DONE)
            os.close(fd)
