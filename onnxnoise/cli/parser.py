"""The ``onnxnoise`` argument parser: subcommands, flags, help texts, exit codes.

The flags of ``bench``, ``sweep`` and ``check`` come from the declared settings
(:mod:`onnxnoise.settings`, :mod:`onnxnoise.cli.flags`); they default to ``None`` (not
given): defaults live in :mod:`onnxnoise.config`.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from onnxnoise import __version__
from onnxnoise.check.job import CHECK_SETTINGS
from onnxnoise.cli.data_command import add_data_parser
from onnxnoise.cli.flags import add_settings
from onnxnoise.config import RunConfig, SweepConfig
from onnxnoise.settings import RUNTIME

#: Exit codes: a trial failed / the baseline missed ``--expect-top1`` (1), bad input (2), interrupted (130),
#: stdout closed by its reader (141 = 128 + SIGPIPE, as a shell reports a tool that SIGPIPE ended:
#: ``onnxnoise layers model.onnx | head -1``; nothing is printed about it).
EXIT_FAILED_TRIALS = 1
EXIT_BASELINE_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_CLOSED_PIPE = 141


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2.

    A value starting with ``-`` and a digit (``--t -1s``, ``--ber -1e-3``) is a value, not
    an option (no option starts so; Python 3.13's argparse reads them the same way), so it
    reaches the option's own range check instead of ``expected one argument``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _positive_int(text: str) -> int:
    """An integer >= 1 (``report --top``); argparse turns the error into one line and exit 2."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


#: Where each run command writes when ``--out`` is not given.
_OUT = {"bench": "reports/<model>-<timestamp>/", "check": "reports/check-<model>-<timestamp>/",
        "sweep": "runs/<model>/; with --config, the file's `out`, one folder per model"}


def _add_run_args(parser: argparse.ArgumentParser, command: str, *classes: type) -> None:
    """The settings ``command`` takes (:mod:`onnxnoise.settings`), then ``--out``."""
    groups = add_settings(parser, command, *classes)
    groups[RUNTIME].add_argument("--out", type=Path, help=f"output folder (default {_OUT[command]})")


def _add_config(parser: argparse.ArgumentParser, command: str) -> None:
    """``--config FILE.toml``: the command's settings from a file (:func:`onnxnoise.experiment.load_settings_file`).

    A required setting (check's ``--max-drop``) may come from the file, so argparse does not require its flag;
    :func:`onnxnoise.cli.commands.with_settings_file` does, once the file is read.
    """
    for action in parser._actions:
        action.required = action.required and not action.option_strings
    parser.add_argument("--config", type=Path, metavar="FILE.toml",
                        help=f"settings from a TOML file: the setting keys of {command} (docs/options.md), `model` and "
                        "`out`, e.g. snr = [100, 10]; flags given on the command line override the file")


def build_parser() -> argparse.ArgumentParser:
    """Return the ``onnxnoise`` argument parser."""
    parser = _Parser(prog="onnxnoise", description="Accuracy of ONNX classifiers under SNR-scaled weight noise.")
    parser.add_argument("--version", action="version", version=f"onnxnoise {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug information to stderr")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    bench = sub.add_parser("bench", help="baseline and noisy top-1/top-5 of one model on one dataset",
                           description="Baseline and noisy accuracy of MODEL on --data, noise in all selected "
                           "layers at once. With no MODEL, runs the built-in Fashion-MNIST demo.")
    bench.add_argument("model", nargs="?", type=Path, help="ONNX classifier (omit for the demo)")
    _add_run_args(bench, "bench", RunConfig)
    _add_config(bench, "bench")
    bench.add_argument("--json", action="store_true", help="print one JSON summary on stdout")

    sweep = sub.add_parser("sweep", help="the paper's experiments, resumable: all / per-layer / cumulative",
                           description="Run a sweep into a durable trial store (RUN_DIR/trials.sqlite). Running "
                           "the same command again resumes: finished trials are skipped.")
    sweep.add_argument("model", nargs="?", type=Path, help="ONNX classifier (or give --config)")
    sweep.add_argument("--config", type=Path, metavar="FILE.toml",
                       help="experiment file with models, data, preprocessing, modes, SNRs and seeds")
    _add_run_args(sweep, "sweep", SweepConfig)

    report = sub.add_parser("report", help="tables, figures and report.md from sweep run folders")
    report.add_argument("run_dir", type=Path, nargs="+", help="run folder(s) holding trials.sqlite")
    report.add_argument("--out", type=Path, help="where to write (default: the first RUN_DIR)")
    report.add_argument("--title", help="report title")
    report.add_argument("--top", type=_positive_int, default=10, metavar="N",
                        help="layers shown in the terminal's blame table of a per-layer sweep (report.md has all; "
                        "default 10)")
    report.add_argument("--json", action="store_true", help="print the results table, A_avr, warnings and the files "
                        "written as one JSON object on stdout (the tables go to stderr)")

    compare = sub.add_parser("compare", help="models side by side: the difference per strength to the first model, "
                             "with a paired interval and a verdict (whole-model and per-layer sweeps)")
    compare.add_argument("run_dir", type=Path, nargs="+", help="run folders of two or more models (whole-model "
                         "and/or per-layer sweeps); the first model is the reference")
    compare.add_argument("--json", action="store_true", help="print compare.json on stdout")
    compare.add_argument("--out", type=Path, help="where to write (default: reports/compare-<timestamp>/)")

    layers = sub.add_parser("layers", help="list the parameter layers of a model")
    layers.add_argument("model", type=Path)
    layers.add_argument("--json", action="store_true", help="print the layer list as JSON")

    add_data_parser(sub)

    check = sub.add_parser(
        "check", help="CI gate: is the accuracy drop under noise within budget? exit 0 pass, 1 fail, 3 inconclusive",
        description="Baseline, then noisy draws (seeds 0, 1, 2, ...) with noise in every selected layer until the "
        "accuracy drop's confidence bounds settle the verdict: PASS when the upper bound is below --max-drop, FAIL "
        "when the lower bound is above it, INCONCLUSIVE after --max-seeds draws. Writes check.json, junit.xml and "
        "check.md. Exit 0 PASS, 1 FAIL, 3 INCONCLUSIVE, 2 bad input.")
    check.add_argument("model", nargs="?", type=Path, help="ONNX classifier (or `model` in --config FILE)")
    _add_run_args(check, "check", *CHECK_SETTINGS)
    _add_config(check, "check")
    check.add_argument("--json", action="store_true", help="print check.json on stdout")

    models = sub.add_parser("noise-models", help="list the registered noise models, their strength axis and parameters")
    models.add_argument("--json", action="store_true", help="print the list as JSON")
    models.add_argument("--presets", action="store_true",
                        help="list the --analog-preset presets instead: each one's settings and their sources")
    return parser
