"""Command-line interface: ``onnxnoise bench|sweep|report|compare|layers|noise-models``.

The CLI turns arguments into config dataclasses, makes one library call per
subcommand, and owns printing, logging and exit codes: 0 success, 1 a trial failed or
the baseline missed ``--expect-top1``, 2 bad input (one line on stderr, no traceback),
130 interrupted. Every JSON it writes is strict: non-finite numbers become ``null``.

Modules: :mod:`~onnxnoise.cli.parser` (flags), :mod:`~onnxnoise.cli.commands` (one function per
subcommand), :mod:`~onnxnoise.cli.output` (strict JSON, progress), :mod:`~onnxnoise.cli.app` (``main``).
"""

from onnxnoise.cli.app import main
from onnxnoise.cli.output import json_text
from onnxnoise.cli.parser import build_parser

__all__ = ["main", "build_parser", "json_text"]
