"""Command-line interface: ``onnxnoise bench|sweep|check|report|compare|layers|data|noise-models``.

The CLI turns arguments into config dataclasses, makes one library call per
subcommand, and owns printing, logging and exit codes: 0 success, 1 a trial failed or
the baseline missed ``--expect-top1``, 2 bad input (one line on stderr, no traceback),
130 interrupted (``check``: 0 PASS, 1 FAIL, 3 INCONCLUSIVE). Every JSON it writes is
strict: non-finite numbers become ``null``.

Modules: :mod:`~onnxnoise.cli.parser` (subcommands), :mod:`~onnxnoise.cli.flags` (the run flags
from the declared settings, and back), :mod:`~onnxnoise.cli.commands` (one function per
subcommand), :mod:`~onnxnoise.cli.check_command` and :mod:`~onnxnoise.cli.check_summary`
(``check``), :mod:`~onnxnoise.cli.data_command` (``data``), :mod:`~onnxnoise.cli.output` (notes,
progress), :mod:`~onnxnoise.cli.options_doc` (docs/options.md), :mod:`~onnxnoise.cli.ray_driver` (the Ray driver of
``sweep --executor ray`` in a watched child process), :mod:`~onnxnoise.cli.app` (``main``).
"""

from onnxnoise.cli.app import main
from onnxnoise.cli.output import json_text
from onnxnoise.cli.parser import build_parser

__all__ = ["main", "build_parser", "json_text"]
