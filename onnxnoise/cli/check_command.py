"""The ``onnxnoise check`` subcommand: parsed options in, one :class:`onnxnoise.check.job.CheckJob`, printed out.

Its options are the declared settings of ``RunConfig``, ``GateSettings`` and ``CheckRequest``
(:data:`onnxnoise.check.job.CHECK_SETTINGS`); the check itself (baseline, gate, search or protection
plan, the files) is :class:`~onnxnoise.check.job.CheckJob`, which :func:`onnxnoise.check_model` runs too;
what this command prints is :mod:`onnxnoise.cli.check_summary`.

Exit codes (:data:`EXIT_CODES`): 0 PASS, 1 FAIL (also a baseline outside
``--expect-top1``), 3 INCONCLUSIVE, 2 bad input (raised as :class:`OnnxNoiseError`
and printed as one line by :func:`onnxnoise.cli.app.main`). With ``--find-limit`` /
``--find-min-snr``: 0 when a passing strength was found, else the verdict at the quiet
end of the range. A protection plan is reported and does not change the exit code:
the model as given is what the gate judged.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from onnxnoise.check import job
from onnxnoise.check.gate import GateSettings
from onnxnoise.check.job import EXIT_CODES, METHOD, CheckJob, refuse_draw_options
from onnxnoise.check.request import CheckRequest
from onnxnoise.cli.check_summary import look_printer, print_summary
from onnxnoise.cli.flags import given_options
from onnxnoise.errors import error_line
from onnxnoise.files import output_folder
from onnxnoise.run_setup import default_out_dir
from onnxnoise.settings import config_values
from onnxnoise.strict_json import json_text

__all__ = ["EXIT_CODES", "METHOD", "run_check", "recheck_command"]


def recheck_command(args: argparse.Namespace, strength: float, noise_model, *,
                    protect_file: Path | None = None, first_seed: int | None = None) -> str:
    """The ``onnxnoise check`` command line that re-checks ``strength`` with the parsed ``args``' settings and seeds
    (:func:`onnxnoise.check.job.recheck_command` of ``vars(args)``)."""
    return job.recheck_command(args.model, vars(args), strength, noise_model, protect_file=protect_file,
                               first_seed=first_seed)


def run_check(args: argparse.Namespace, console: Console,
              run_config: Callable[[argparse.Namespace], Any]) -> int:
    """Run ``onnxnoise check`` with parsed ``args``; return the exit code.

    Args:
        args: The parsed ``check`` options.
        console: Where the human output goes.
        run_config: Builds the ``RunConfig`` of the run options ``check`` takes (the CLI's
            ``_run_config``).

    Raises:
        OnnxNoiseError: Bad input (exit 2 in the CLI).
    """
    refuse_draw_options(vars(args))
    settings = GateSettings(**config_values(GateSettings, given_options(args, "check", GateSettings)))
    config = run_config(args)
    request = CheckRequest(**config_values(CheckRequest, given_options(args, "check", CheckRequest)))
    out = output_folder(args.out or default_out_dir("check", config.model))
    with console.status("loading model and decoding images"):
        check = CheckJob(config, settings, request, vars(args), out,
                         on_look=look_printer(console, config.noise.noise_model, settings.metric))
    facts = check.report
    console.print(f"[bold]check[/] {facts['model']} on {facts['dataset']} ({facts['images']} images): "
                  f"{facts['question']}", highlight=False)
    report = check.run(on_plan=lambda spec: console.print(f"[bold]protection plan[/] ({spec})", highlight=False)).report
    if report["error"]:  # the baseline is off its --expect-top1: verdict FAIL, no noisy trial
        print(f"onnxnoise: error: {error_line(report['error'])}", file=sys.stderr)
        return report["exit_code"]
    print_summary(console, report)
    console.print(f"wrote {out / 'check.json'}, {out / 'junit.xml'}, {out / 'check.md'}, {out}/trials.parquet",
                  highlight=False)
    if args.json:
        print(json_text(report))
    return report["exit_code"]
