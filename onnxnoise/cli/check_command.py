"""The ``onnxnoise check`` subcommand: the run, the report, the re-check command line and the exit code.

Its options are the declared settings of ``RunConfig``, ``GateSettings`` and ``CheckRequest``
(:data:`onnxnoise.cli.parser.CHECK_SETTINGS`); what it prints is :mod:`onnxnoise.cli.check_summary`.

Exit codes (:data:`EXIT_CODES`): 0 PASS, 1 FAIL (also a baseline outside
``--expect-top1``), 3 INCONCLUSIVE, 2 bad input (raised as :class:`OnnxNoiseError`
and printed as one line by :func:`onnxnoise.cli.app.main`). With ``--find-limit`` /
``--find-min-snr``: 0 when a passing strength was found, else the verdict at the quiet
end of the range. A protection plan is reported and does not change the exit code:
the model as given is what the gate judged.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from onnxnoise import __version__
from onnxnoise.check.gate import CheckSession, GateSettings
from onnxnoise.check.outputs import write_outputs
from onnxnoise.check.protect import LAYERS_FILE, plan_protection, protected_layers, read_layers_file, write_layers_file
from onnxnoise.check.request import CheckRequest
from onnxnoise.check.sequential import FAIL, INCONCLUSIVE, MIN_DRAWS, PASS
from onnxnoise.check.tolerance import find_limit
from onnxnoise.cli.check_summary import image_term_warnings, look_printer, print_summary
from onnxnoise.cli.flags import command_settings, flag_words, given_options
from onnxnoise.cli.parser import CHECK_SETTINGS
from onnxnoise.engine.context import prepare_context
from onnxnoise.errors import BaselineExpectationError, ConfigError, error_line
from onnxnoise.files import output_folder
from onnxnoise.noise import axis_of
from onnxnoise.noise_config import strength_settings
from onnxnoise.options import strength_example, strength_flag, strength_flag_models
from onnxnoise.report.tables import write_table
from onnxnoise.run_setup import default_out_dir
from onnxnoise.settings import config_values
from onnxnoise.strict_json import json_text

__all__ = ["EXIT_CODES", "METHOD", "run_check", "recheck_command"]

#: Verdict -> process exit code.
EXIT_CODES: dict[str, int] = {PASS: 0, FAIL: 1, INCONCLUSIVE: 3}

#: How the verdict is computed, for check.md and check.json (details: docs/check.md).
METHOD = (
    "Verdict: one-sided bounds of the paired accuracy drop with images and noise draws as crossed random factors: "
    "variance var_i(m_i)/n + var_s(D_s)/S (m_i each image's mean difference over the draws, D_s each draw's drop; "
    "Owen 2007), Welch-Satterthwaite t quantile, exact Clopper-Pearson floors when few images ever change, clipped "
    "to the possible range [-(100 - clean), clean]; PASS when the upper bound < budget, FAIL when the lower bound > "
    "budget, else one more draw up to --max-seeds (then INCONCLUSIVE). Repeated looks spend alpha = 1 - confidence "
    "with Bonferroni weights (repeated confidence intervals, Jennison & Turnbull 1989), so false-PASS and false-FAIL "
    f"rates are each at most 1 - confidence (simulated: docs/check.md). Minimum draws: {MIN_DRAWS} (one when every draw is "
    "the same trial: --noise none without --read-noise). A draw flagged "
    "as collapsed (far below the others, or at chance) withholds PASS."
)


def _strength_keys() -> set[str]:
    """Argument names that give strengths: ``strength`` and every model's own option (``snr``, ``t``...)."""
    return {s.key for s in strength_settings()}


def recheck_command(args: argparse.Namespace, strength: float, noise_model, *,
                    protect_file: Path | None = None, first_seed: int | None = None) -> str:
    """The ``onnxnoise check`` command line that re-checks ``strength`` with the same settings and seeds.

    Rebuilt from the parsed options of every setting ``check`` takes (:mod:`onnxnoise.settings`;
    those marked ``recheck=False``, the search and protection options, the strength options and
    ``--seeds``, left out, and ``--out`` / ``--json``), with the strength as an exact number
    (``repr``) in the model's own option: the same trials, so the same verdict.

    Args:
        protect_file: A ``--protect-file`` to add (a protection plan's layers, one name per line).
        first_seed: ``--first-seed`` instead of the parsed one (a plan's verification seeds).
    """
    if first_seed is not None:
        args = argparse.Namespace(**{**vars(args), "first_seed": first_seed})
    parts = ["onnxnoise", "check", str(args.model)]
    for setting in command_settings("check", *CHECK_SETTINGS):
        if setting.recheck:
            parts += flag_words(setting, getattr(args, setting.key, None))
    if protect_file is not None:
        parts += ["--protect-file", str(protect_file)]
    parts += [strength_flag(noise_model), repr(float(strength))]
    return " ".join(shlex.quote(p) for p in parts)


def _range_or_strength(args: argparse.Namespace, config, find: bool) -> tuple[float, ...]:
    """The gate's one strength, or the search's two bounds (checked against what was given)."""
    noise = config.noise
    given = any(getattr(args, key, None) is not None for key in _strength_keys())
    model = noise.noise_model
    example = strength_example(model, model.default_strengths[-1:]) if model.default_strengths else "--strength VALUE"
    if find:
        values = tuple(sorted(noise.strengths))
        if given and len(values) != 2:
            raise ConfigError(f"the search range is two strengths, e.g. {strength_flag(model)} LOW,HIGH; "
                              f"got {len(values)}")
        if len(values) < 2:
            raise ConfigError(f"give the search range as two strengths, {strength_flag(model)} LOW,HIGH")
        return values[0], values[-1]
    fixed = not axis_of(model).flags and len(model.default_strengths) == 1  # `none`: its one strength, nothing to give
    if not given and not fixed:
        raise ConfigError(f"give the one strength to check, e.g. {example} (or --find-limit to search for it)")
    if len(noise.strengths) != 1:
        raise ConfigError(f"check tests one strength; got {len(noise.strengths)}: give one value, e.g. {example}")
    return noise.strengths


def _check_min_snr(config) -> None:
    """``--find-min-snr`` searches the SNR: only for a model whose own option is ``--snr``."""
    owners = strength_flag_models("snr")
    if config.noise.model not in owners:
        raise ConfigError(f"--find-min-snr searches {', '.join(owners)}'s SNR; "
                          f"for {config.noise.model} use --find-limit")


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
    started = time.perf_counter()
    for dest, option in (("seeds", "--seeds"), ("ci_halfwidth", "--ci-halfwidth")):
        if getattr(args, dest, None) is not None:
            raise ConfigError(f"check chooses its number of draws itself; drop {option} and use --max-seeds N "
                              "(and --first-seed S for other seeds)")
    settings = GateSettings(**config_values(GateSettings, given_options(args, "check", GateSettings)))
    config = run_config(args)
    noise_model = config.noise.noise_model
    exact = argparse.Namespace(**{**vars(args), "data": config.data})  # re-check commands name the dataset path used
    if args.find_min_snr:
        _check_min_snr(config)
    request = CheckRequest(**config_values(CheckRequest, given_options(args, "check", CheckRequest)))
    find = request.search
    values = _range_or_strength(args, config, find)
    out = output_folder(args.out or default_out_dir("check", config.model))
    with console.status("loading model and decoding images"):
        context = prepare_context(config, calibration_dir=out)
    if request.protect and request.protect != "auto":
        protected_layers(context.selected, request.protect)  # a bad REGEX is bad input before any trial runs
    from_file = None if request.protect_file is None else read_layers_file(request.protect_file, context.selected)
    session = CheckSession(context, settings, on_look=look_printer(console, noise_model, settings.metric))
    label = "top-1" if settings.metric == "top1" else "top-5"
    where = (f"{noise_model.format_strength(values[0])}..{noise_model.format_strength(values[1])}" if find
             else noise_model.format_strength(values[0]))
    question = (f"noisiest strength with {label} drop < {settings.budget:g} points in {where}" if find
                else f"{label} drop < {settings.budget:g} points at {where}")
    facts = {k: v for k, v in context.facts().items() if k != "seeds"}  # the gate picks its own seeds
    report: dict[str, Any] = {
        "tool": "onnxnoise check", "version": __version__, "verdict": None, "exit_code": None, "question": question,
        "model": facts["model"], "model_sha256": facts["model_sha256"], "dataset": facts["dataset"],
        "images": facts["images"], "noise_model": config.noise.model, "noise_settings": config.noise.settings(),
        "strength_name": noise_model.strength_name, "settings": settings.to_dict(), "baseline": {},
        "gate": None, "search": None, "protection": None, "recheck_command": None, "warnings": [], "error": None,
        "method": METHOD, "facts": facts, "out_dir": str(out),
    }
    console.print(f"[bold]check[/] {facts['model']} on {facts['dataset']} ({facts['images']} images): {question}",
                  highlight=False)
    try:
        base = session.baseline()
    except BaselineExpectationError as exc:
        report.update(verdict=FAIL, exit_code=EXIT_CODES[FAIL], error=str(exc), seconds=time.perf_counter() - started)
        write_outputs(report, out)
        print(f"onnxnoise: error: {error_line(str(exc))}", file=sys.stderr)
        return EXIT_CODES[FAIL]
    report["baseline"] = {"top1_acc": 100.0 * base["top1_correct"] / base["images"],
                          "top5_acc": 100.0 * base["top5_correct"] / base["images"]}
    if find:
        result = find_limit(session, values[0], values[1], resolution=request.resolution)
        report["search"] = result.to_dict()
        verdict = PASS if result.found is not None else result.steps[0].verdict
        if result.found is not None:
            report["recheck_command"] = recheck_command(exact, result.found, noise_model)
            report["gate"] = next(g for g in result.steps if g.strength == result.found).to_dict()
    else:
        gate = session.gate(values[0])
        report["gate"] = gate.to_dict()
        verdict = gate.verdict
        report["recheck_command"] = recheck_command(exact, values[0], noise_model)
        if verdict != PASS and (request.protect or from_file):
            spec = request.protect or f"file {request.protect_file}"
            console.print(f"[bold]protection plan[/] ({spec})", highlight=False)
            plan = plan_protection(session, values[0], spec, kept=from_file, unprotected=gate)
            report["protection"] = plan.to_dict()
            if plan.verification is not None:
                seed = plan.verification.seeds[0] if plan.verification.seeds else None
                layers = write_layers_file(out / LAYERS_FILE, plan.kept)
                report["protection"]["layers_file"] = str(layers)
                report["protection"]["recheck_command"] = recheck_command(
                    exact, values[0], noise_model, protect_file=layers, first_seed=seed)
    report["warnings"] = session.warnings + image_term_warnings(report, settings.budget)
    report.update(verdict=verdict, exit_code=EXIT_CODES[verdict], seconds=time.perf_counter() - started)
    # The trial tables first: a write that fails leaves the previous verdict files with their own trial tables,
    # or (failing at the verdict files) the new tables beside the previous verdict, never a verdict without its rows.
    write_table(session.frame(), out, "trials")
    paths = write_outputs(report, out)
    print_summary(console, report)
    console.print(f"wrote {paths['json']}, {paths['junit']}, {paths['markdown']}, {out}/trials.parquet", highlight=False)
    if args.json:
        print(json_text(report))
    return EXIT_CODES[verdict]
