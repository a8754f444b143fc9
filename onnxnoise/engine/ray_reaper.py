"""The reaper of a local Ray instance: when the driver dies, every Ray process it started ends at once.

A local Ray instance (``ray.init()`` without an address) runs its GCS, raylet, dashboard,
monitors and, under the raylet, a ``DashboardAgent`` and a ``RuntimeEnvAgent``, all in the
driver's process group (measured with Ray 2.60; workers take process groups of their own
and end with the raylet). When the driver is killed (``kill -9``), Ray's fate sharing ends
the GCS and raylet, but the two agents, orphaned, keep reporting the raylet's death to the
dead GCS for about 60 s (docs/distributed.md).

:func:`start_reaper` starts a small watcher process in the driver's process group that
holds the read end of a pipe whose write end only the driver holds (it is close-on-exec,
so no Ray process inherits it). The read returns end-of-file the moment the driver
process ends, however it ends (a normal exit, Ray's C++ core ending it, ``kill -9``), and
the watcher then sends ``SIGKILL`` to the driver's process group: every process the driver
started there, the watcher included. It only runs where the driver leads its own session
(the CLI starts the Ray driver so: :mod:`onnxnoise.cli.ray_driver`), so it never signals a
group it shares with anything else (a script started from a shell leads its process group,
which a pipeline's other commands share, but not its session), and only for a local instance
started by this run (a cluster joined with ``--address`` is never touched).
"""

from __future__ import annotations

import os
import subprocess
import sys

__all__ = ["REAPER_CODE", "start_reaper"]

#: The watcher, run as ``python -I -S -c REAPER_CODE FD PGID``: it ignores SIGINT/SIGTERM
#: sent to the group, reads until end-of-file, then kills the process group ``PGID``.
REAPER_CODE = (
    "import os, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "fd, group = int(sys.argv[1]), int(sys.argv[2])\n"
    "while True:\n"
    "    try:\n"
    "        if not os.read(fd, 64):\n"
    "            break\n"
    "    except InterruptedError:\n"
    "        continue\n"
    "    except OSError:\n"
    "        break\n"
    "os.killpg(group, signal.SIGKILL)\n"
)

#: The write end of the pipe, kept open for the life of this process (its closing is the signal).
_held: list[int] = []


def start_reaper() -> int | None:
    """Start the watcher for this process's group, once; its pid, or None where it does not apply.

    Applies only on POSIX and where this process leads its own session, hence its process
    group (``os.getsid(0) == os.getpid()``); call it before ``ray.init()`` starts a local
    instance.

    Returns:
        The watcher's process id, or None when not started (not a session leader, not
        POSIX, or already started).
    """
    if os.name != "posix" or _held or os.getsid(0) != os.getpid():
        return None
    read, write = os.pipe()  # both close-on-exec (PEP 446); the watcher gets `read` through pass_fds
    try:
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", REAPER_CODE, str(read), str(os.getpgrp())],
                                pass_fds=(read,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    except OSError:
        os.close(write)
        return None
    finally:
        os.close(read)
    _held.append(write)
    return proc.pid
