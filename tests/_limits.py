"""Run a command under a memory limit (``RLIMIT_AS``), to show a hostile input is refused before its memory is taken."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

__all__ = ["LIMIT_BYTES", "run_limited"]

#: Address space a refused hostile input must stay under (numpy, onnx and onnxruntime import in about 1 GiB).
LIMIT_BYTES = 3 << 30
ROOT = Path(__file__).resolve().parent.parent


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_BYTES, LIMIT_BYTES))


def run_limited(args: list[str], *, code: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -m onnxnoise.cli ARGS`` (or ``python -c CODE``) from the worktree root with at most
    :data:`LIMIT_BYTES` of address space and ``timeout`` seconds; returns the finished process (text output)."""
    command = [sys.executable, "-c", code] if code is not None else [sys.executable, "-m", "onnxnoise.cli", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=_limit, check=False)
