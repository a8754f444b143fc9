"""The ``onnxnoise`` entry point: parse, dispatch, turn errors into one line and an exit code."""

from __future__ import annotations

import logging
import os
import sys

from rich.console import Console

from onnxnoise.cli.commands import COMMANDS
from onnxnoise.cli.parser import (EXIT_BASELINE_UNEXPECTED, EXIT_CLOSED_PIPE, EXIT_INTERRUPTED, EXIT_USAGE,
                                  build_parser)
from onnxnoise.cli.ray_driver import driver_channel, run_driver_process, wants_driver_process
from onnxnoise.errors import BaselineExpectationError, OnnxNoiseError, error_line

__all__ = ["main", "KEPT_AFTER_OS_ERROR"]

#: What a command's file-system error line says is left, by command: rows written before
#: it stay on disk for the sweep (its trial store) and bench (its trials table, rewritten
#: whole after each trial); `data` writes the registry last, whole or not at all; every
#: other output is written whole or not at all (onnxnoise.files), so the line promises only that.
#: "any": the first write may be the one that failed, and then nothing was kept.
_ROWS_KEPT = "any trial rows written before it are kept"
KEPT_AFTER_OS_ERROR = {"bench": _ROWS_KEPT, "sweep": _ROWS_KEPT, "data": "the dataset registry is as it was"}


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code.

    ``sweep --executor ray`` runs its Ray driver in a watched child process
    (:mod:`onnxnoise.cli.ray_driver`): this process returns the child's exit code, or
    one line and exit code 2 when Ray's core or a signal ended the child.

    A reader that closes stdout early (``onnxnoise layers model.onnx | head -1``) ends the
    command quietly with :data:`~onnxnoise.cli.parser.EXIT_CLOSED_PIPE` (141, as a shell
    reports a tool ended by SIGPIPE): no error line, no traceback, and nothing more is written
    to stdout (:func:`_closed_pipe`).
    """
    try:
        args = build_parser().parse_args(argv)  # `--help | head -1` writes here
        with driver_channel() as in_driver:
            if not in_driver and wants_driver_process(args):
                return run_driver_process(list(sys.argv[1:] if argv is None else argv), getattr(args, "out", None))
            return _run(args)
    except BrokenPipeError:
        return _closed_pipe()


class _PipeConsole(Console):
    """A rich console whose closed stdout raises :class:`BrokenPipeError` (rich's own handler exits 1)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError("stdout closed by its reader")


def _closed_pipe() -> int:
    """Stdout's reader went away: point stdout at the null device, so that Python's flush at exit
    writes nowhere instead of reporting the pipe again (the Python docs' note on SIGPIPE), and give
    :data:`~onnxnoise.cli.parser.EXIT_CLOSED_PIPE`."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (a test's capture): nothing to redirect
        pass
    return EXIT_CLOSED_PIPE


def _run(args) -> int:
    """The command of parsed ``args``, its errors as one line and an exit code."""
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    # With --json, stdout carries only the JSON; everything human goes to stderr.
    console = _PipeConsole(stderr=bool(getattr(args, "json", False)))
    try:
        return COMMANDS[args.command](args, console)
    except BrokenPipeError:
        raise  # not a file-system error: main() ends quietly
    except BaselineExpectationError as exc:
        print(f"onnxnoise: error: {error_line(str(exc))}", file=sys.stderr)
        return EXIT_BASELINE_UNEXPECTED
    except OnnxNoiseError as exc:
        print(f"onnxnoise: error: {error_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # the file system refused (disk full, permissions, a path that became a file)
        if args.verbose:
            logging.exception("file system error")
        where = f": {exc.filename}" if exc.filename else ""
        kept = KEPT_AFTER_OS_ERROR.get(args.command, "no file was left half-written")
        print(f"onnxnoise: error: {error_line(f'{exc.strerror or exc}{where}')} ({kept}; fix it and run the same "
              "command again)", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        where = f" ({out})" if out else ""
        print(f"onnxnoise: interrupted; trials finished so far are in the output folder{where}; run the same "
              "command again to resume a sweep", file=sys.stderr)
        return EXIT_INTERRUPTED
