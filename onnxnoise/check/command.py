"""The ``onnxnoise check`` subcommand: its options, the run, the terminal summary and the exit code.

Exit codes (:data:`EXIT_CODES`): 0 PASS, 1 FAIL (also a baseline outside
``--expect-top1``), 3 INCONCLUSIVE, 2 bad input (raised as :class:`OnnxNoiseError`
and printed as one line by :func:`onnxnoise.cli.app.main`). With ``--find-limit`` /
``--find-min-snr``: 0 when a passing strength was found, else the verdict at the quiet
end of the range. A protection plan is reported and does not change the exit code:
the model as given is what the gate judged.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel

from onnxnoise import __version__
from onnxnoise.check.gate import METRICS, CheckSession, GateResult, GateSettings
from onnxnoise.check.outputs import bound_points, points, write_outputs
from onnxnoise.cli.out_dir import output_folder
from onnxnoise.check.protect import layers_regex, plan_protection, protected_layers
from onnxnoise.check.sequential import FAIL, INCONCLUSIVE, MAX_DRAWS, MIN_DRAWS, PASS
from onnxnoise.check.tolerance import check_resolution, find_limit
from onnxnoise.errors import BaselineExpectationError, ConfigError

__all__ = ["EXIT_CODES", "METHOD", "add_check_parser", "run_check", "recheck_command", "strength_text"]

#: Verdict -> process exit code.
EXIT_CODES: dict[str, int] = {PASS: 0, FAIL: 1, INCONCLUSIVE: 3}

#: How the verdict is computed, for check.md and check.json (details: docs/check.md).
METHOD = (
    "Verdict: one-sided bounds of the accuracy drop, over noise draws (Student t over draws) plus over images "
    "(paired per-image variance from the lost/gained counts; images are shared, so this term does not shrink "
    "with draws), added under a union bound; PASS when the upper bound < budget, FAIL when the lower bound > "
    "budget, else one more draw up to --max-seeds (then INCONCLUSIVE). Repeated looks spend alpha with "
    "Bonferroni weights (repeated confidence intervals, Jennison & Turnbull 1989), so false-PASS and "
    "false-FAIL rates are each at most 1 - confidence. Minimum draws: "
    f"{MIN_DRAWS}. A draw flagged as collapsed withholds PASS."
)


def _add_if_missing(parser: argparse.ArgumentParser, group, flag: str, **kwargs) -> None:
    """Add ``flag`` unless the shared run options already define it (they grow over time)."""
    if flag not in parser._option_string_actions:  # argparse keeps no public lookup of defined options
        group.add_argument(flag, **kwargs)


def add_check_parser(sub, add_run_args) -> argparse.ArgumentParser:
    """Add the ``check`` subcommand to ``sub`` (the subparsers of ``onnxnoise``).

    Args:
        sub: ``build_parser``'s subparsers action.
        add_run_args: The function adding the options ``bench`` and ``sweep`` share.
    """
    check = sub.add_parser(
        "check", help="CI gate: is the accuracy drop under noise within budget? exit 0 pass, 1 fail, 3 inconclusive",
        description="Baseline, then noisy draws (seeds 0, 1, 2, ...) with noise in every selected layer until the "
        "accuracy drop's confidence bounds settle the verdict: PASS when the upper bound is below --max-drop, FAIL "
        "when the lower bound is above it, INCONCLUSIVE after --max-seeds draws. Writes check.json, junit.xml and "
        "check.md. Exit 0 PASS, 1 FAIL, 3 INCONCLUSIVE, 2 bad input.")
    check.add_argument("model", type=Path, help="ONNX classifier")
    add_run_args(check)
    gate = check.add_argument_group("gate")
    gate.add_argument("--max-drop", type=float, required=True, metavar="POINTS",
                      help="largest allowed accuracy drop, percentage points (e.g. 1.0)")
    gate.add_argument("--metric", choices=METRICS, help="top1 (default) or top5")
    gate.add_argument("--confidence", type=float, metavar="C",
                      help="confidence of each bound (default 0.95: false-pass rate at most 5%%)")
    max_seeds_help = f"most noisy draws before INCONCLUSIVE (default {MAX_DRAWS}, at least {MIN_DRAWS})"
    _add_if_missing(check, gate, "--max-seeds", type=int, metavar="N", help=max_seeds_help)
    check._option_string_actions["--max-seeds"].help = max_seeds_help  # the shared option means --seeds auto's cap
    gate.add_argument("--first-seed", type=int, metavar="S", help="seed of the first draw (default 0); "
                      "re-run with another to check that a verdict holds for other draws")
    _add_if_missing(check, gate, "--expect-top1", type=float, metavar="PCT",
                    help="expected clean top-1 in percent: a baseline outside PCT +- --tolerance exits 1 "
                    "before any noisy trial runs")
    _add_if_missing(check, gate, "--tolerance", type=float, metavar="POINTS",
                    help="allowed distance from --expect-top1 in percentage points (default 0.5)")
    search = check.add_argument_group("tolerance search and protection plan")
    search.add_argument("--find-limit", action="store_true",
                        help="search the noisiest strength that still passes (the lowest SNR, the longest time, the "
                        "highest rate), by bisection; the strength option gives the range as two values "
                        "(default: the model's default grid's extremes)")
    search.add_argument("--find-min-snr", action="store_true", help="--find-limit for gaussian-snr's SNR")
    search.add_argument("--find-resolution", type=float, metavar="F",
                        help="stop the search when its bracket's ratio is at most 1 + F (default 0.05)")
    search.add_argument("--protect", metavar="auto|REGEX",
                        help="when the gate does not pass: keep layers noise-free (digital) so it does; auto ranks "
                        "layers by sensitivity and keeps the fewest, REGEX keeps the matching layers")
    check.add_argument("--json", action="store_true", help="print check.json on stdout")
    check.set_defaults(check_parser=check)
    return check


def _strength_dests() -> set[str]:
    """Argument names that give strengths: ``strength`` and every model's own option (``snr``, ``t``...)."""
    try:
        from onnxnoise.options import strength_options
        flags = list(strength_options())
    except ImportError:  # before per-model strength options
        flags = ["snr", "noise-pct"]
    return {"strength", *(flag.replace("-", "_") for flag in flags)}


def _strength_flag(noise_model) -> str:
    """The option that gives one strength of ``noise_model`` as a plain number (``--snr``, ``--t``, else ``--strength``)."""
    try:
        from onnxnoise.noise.axis import axis_of
        flag = axis_of(noise_model).flag
    except ImportError:
        flag = "snr" if noise_model.name == "gaussian-snr" else None
    return f"--{flag}" if flag else "--strength"


def strength_text(noise_model, value: float) -> str:
    """``SNR 10 (10% noise)``, ``t = 1 d``: one strength as the reports show it (the model's ``format_strength``)."""
    return noise_model.format_strength(value)


def _text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def recheck_command(args: argparse.Namespace, strength: float, noise_model, *,
                    protect: str | None = None, first_seed: int | None = None) -> str:
    """The ``onnxnoise check`` command line that re-checks ``strength`` with the same settings and seeds.

    Rebuilt from the parsed options (the search and protection options and the output
    folder left out), with the strength as an exact number (``repr``) in the model's own
    option: the same trials, so the same verdict.

    Args:
        protect: A ``--protect`` regular expression to add (a protection plan's layers).
        first_seed: ``--first-seed`` instead of the parsed one (a plan's verification seeds).
    """
    skip = {"find_min_snr", "find_limit", "find_resolution", "protect", "out", "json", "seeds", *_strength_dests()}
    if first_seed is not None:
        args = argparse.Namespace(**{**vars(args), "first_seed": first_seed})
    parts = ["onnxnoise", "check", str(args.model)]
    for action in args.check_parser._actions:  # every option of the check parser, in definition order
        if not action.option_strings or action.dest in skip:
            continue
        value = getattr(args, action.dest, None)
        if value is None or value is False:
            continue
        option = next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])
        if value is True:
            parts.append(option)
        elif isinstance(value, list):
            for item in value:
                parts += [option, _text(item)]
        elif isinstance(value, tuple):
            parts += [option, ",".join(_text(v) for v in value)]
        else:
            parts += [option, _text(value)]
    if protect is not None:
        parts += ["--protect", protect]
    parts += [_strength_flag(noise_model), repr(float(strength))]
    return " ".join(shlex.quote(p) for p in parts)


def _settings(args: argparse.Namespace) -> GateSettings:
    values = {"budget": args.max_drop, "metric": args.metric, "confidence": args.confidence,
              "max_draws": getattr(args, "max_seeds", None), "first_seed": args.first_seed}
    return GateSettings(**{k: v for k, v in values.items() if v is not None})


def _range_or_strength(args: argparse.Namespace, config, find: bool) -> tuple[float, ...]:
    """The gate's one strength, or the search's two bounds (checked against what was given)."""
    noise = config.noise
    given = any(getattr(args, dest, None) is not None for dest in _strength_dests())
    example = f"{_strength_flag(noise.noise_model)} 10" if noise.model == "gaussian-snr" else "--strength VALUE"
    if find:
        values = tuple(sorted(noise.strengths))
        if given and len(values) != 2:
            raise ConfigError(f"the search range is two strengths, e.g. {_strength_flag(noise.noise_model)} LOW,HIGH; "
                              f"got {len(values)}")
        if len(values) < 2:
            raise ConfigError(f"give the search range as two strengths, {_strength_flag(noise.noise_model)} LOW,HIGH")
        return values[0], values[-1]
    if not given:
        raise ConfigError(f"give the one strength to check, e.g. {example} (or --find-limit to search for it)")
    if len(noise.strengths) != 1:
        raise ConfigError(f"check tests one strength; got {len(noise.strengths)}: give one value, e.g. {example}")
    return noise.strengths


def _printer(console: Console, noise_model, metric: str):
    label = "top-1" if metric == "top1" else "top-5"

    def on_look(result: GateResult) -> None:
        d, seed, b = result.draws[-1], result.seeds[-1], result.decision.bounds
        where = strength_text(noise_model, result.strength) + (f", {len(result.kept)} kept" if result.kept else "")
        budget = result.decision.budget  # enough digits that a bound next to the budget is not shown equal to it
        bounds = f" [{bound_points(b.lower, budget)}, {bound_points(b.upper, budget)}]" if b.upper == b.upper else ""
        console.print(f"  {where} seed {seed}: {label} {points(result.baseline - d.drop)}%, drop {points(d.drop)} "
                      f"(-{d.lost} +{d.gained}{', collapsed' if d.collapsed else ''}){bounds} "
                      f"{result.decision.verdict}", highlight=False)
    return on_look


def _verdict_style(verdict: str) -> str:
    return {PASS: "bold green", FAIL: "bold red"}.get(verdict, "bold yellow")


def _summary(console: Console, report: dict[str, Any]) -> None:
    lines = [f"[{_verdict_style(report['verdict'])}]{report['verdict']}[/]  {report['question']}"]
    base = report["baseline"]
    lines.append(f"clean top-1 {points(base.get('top1_acc'))}%, top-5 {points(base.get('top5_acc'))}% "
                 f"on {report['images']} images")
    gate = report.get("gate")
    if gate:
        b = gate["bounds"]
        lines.append(f"drop {points(b['mean'])} points, bounds [{bound_points(b['lower'], b['budget'])}, "
                     f"{bound_points(b['upper'], b['budget'])}] "
                     f"(one-sided {100 * b['confidence']:g}% each) vs budget {points(b['budget'])}; "
                     f"{gate['draws']} draws")
        if gate.get("error"):
            lines.append(f"[bold red]a noisy trial failed:[/] {gate['error']}")
        rate = gate.get("collapse_rate")
        flips = gate.get("flip_rate")
        lines.append(f"collapsed draws {gate['collapsed']}/{gate['draws']}"
                     + (f" ({100 * rate:.0f}%)" if rate is not None else "")
                     + (f"; prediction flip rate {100 * flips:.2f}%" if flips is not None else "")
                     + f"; McNemar p < 0.05 in {gate['mcnemar_significant']}/{gate['draws']} draws")
    search = report.get("search")
    if search:
        lines.append(f"search: {search['outcome']}; noisiest passing {search['found']}, bracket {search['bracket']}, "
                     f"{len(search['steps'])} gates")
    plan = report.get("protection")
    if plan:
        lines.append(f"protection plan ({plan['spec']}): [{_verdict_style(plan['verdict'])}]{plan['verdict']}[/] "
                     f"keeping {', '.join(plan['kept']) or '(none found)'} noise-free: {plan['kept_params']} "
                     f"parameters, {points(plan['kept_percent'])}% of all")
        if plan.get("recheck_command"):
            lines.append(f"re-check the plan: {plan['recheck_command']}")
    if report.get("recheck_command"):
        lines.append(f"re-check: {report['recheck_command']}")
    console.print(Panel("\n".join(lines), title="onnxnoise check", expand=False), highlight=False)
    for warning in report.get("warnings") or []:
        console.print(f"[bold red]WARNING:[/] {warning}", highlight=False)


def _image_term_warnings(report: dict[str, Any], budget: float) -> list[str]:
    """A warning when the gate's image term alone exceeds half the budget (too few images to settle it)."""
    gate = report.get("gate") or {}
    bounds = gate.get("bounds") or {}
    term = float(bounds.get("z_quantile") or 0.0) * float(bounds.get("se_images") or 0.0)
    if not term > budget / 2:
        return []
    return [f"with {report['images']} images the image term alone is ±{term:.2f} points, more than half the budget "
            f"({budget:g}); it does not shrink with more draws, so the verdict may stay INCONCLUSIVE however the "
            "model does: evaluate more images (a larger --limit or dataset) or check a larger --max-drop"]


def run_check(args: argparse.Namespace, console: Console,
              run_config: Callable[[argparse.Namespace], Any]) -> int:
    """Run ``onnxnoise check`` with parsed ``args``; return the exit code.

    Args:
        args: The parsed ``check`` options.
        console: Where the human output goes.
        run_config: Builds the ``RunConfig`` of the shared run options (the CLI's
            ``_run_config``); called with ``args`` less the gate's ``--max-seeds``, which
            for ``bench`` and ``sweep`` belongs to ``--seeds auto``.

    Raises:
        OnnxNoiseError: Bad input (exit 2 in the CLI).
    """
    from onnxnoise.cli.output import json_text
    from onnxnoise.engine.context import prepare_context
    from onnxnoise.report.tables import write_table

    started = time.perf_counter()
    for dest, option in (("seeds", "--seeds"), ("ci_halfwidth", "--ci-halfwidth")):
        if getattr(args, dest, None) is not None:
            raise ConfigError(f"check chooses its number of draws itself; drop {option} and use --max-seeds N "
                              "(and --first-seed S for other seeds)")
    settings = _settings(args)
    config = run_config(argparse.Namespace(**{**vars(args), "max_seeds": None}))
    find = bool(args.find_limit or args.find_min_snr)
    noise_model = config.noise.noise_model
    exact = argparse.Namespace(**{**vars(args), "data": config.data})  # re-check commands name the dataset path used
    if args.find_min_snr and config.noise.model != "gaussian-snr":
        raise ConfigError(f"--find-min-snr searches gaussian-snr's SNR; for {config.noise.model} use --find-limit")
    if find and args.protect:
        raise ConfigError("--protect goes with a gate at one strength, not with --find-limit")
    if args.find_resolution is not None:
        if not find:
            raise ConfigError("--find-resolution sets the search's stopping point; use it with --find-limit "
                              "(or --find-min-snr), or drop it")
        check_resolution(args.find_resolution)
    values = _range_or_strength(args, config, find)
    out = output_folder(args.out or Path("reports") / f"check-{Path(config.model).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    with console.status("loading model and decoding images"):
        context = prepare_context(config)
    if args.protect and args.protect != "auto":
        protected_layers(context.selected, args.protect)  # a bad REGEX is bad input before any trial runs
    session = CheckSession(context, settings, on_look=_printer(console, noise_model, settings.metric))
    label = "top-1" if settings.metric == "top1" else "top-5"
    where = (f"{strength_text(noise_model, values[0])}..{strength_text(noise_model, values[1])}" if find
             else strength_text(noise_model, values[0]))
    question = (f"noisiest strength with {label} drop < {settings.budget:g} points in {where}" if find
                else f"{label} drop < {settings.budget:g} points at {where}")
    facts = {k: v for k, v in context.facts().items() if k != "seeds"}  # the gate picks its own seeds
    report: dict[str, Any] = {
        "tool": "onnxnoise check", "version": __version__, "verdict": None, "exit_code": None, "question": question,
        "model": facts["model"], "model_sha256": facts["model_sha256"], "dataset": facts["dataset"],
        "images": facts["images"], "noise_model": config.noise.model, "noise_settings": json.dumps(config.noise.settings(), sort_keys=True),
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
        print(f"onnxnoise: error: {exc}", file=sys.stderr)
        return EXIT_CODES[FAIL]
    report["baseline"] = {"top1_acc": 100.0 * base["top1_correct"] / base["images"],
                          "top5_acc": 100.0 * base["top5_correct"] / base["images"]}
    if find:
        result = find_limit(session, values[0], values[1], **({} if args.find_resolution is None
                                                               else {"resolution": args.find_resolution}))
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
        if verdict != PASS and args.protect:
            console.print(f"[bold]protection plan[/] ({args.protect})", highlight=False)
            plan = plan_protection(session, values[0], args.protect)
            report["protection"] = plan.to_dict()
            if plan.verification is not None:
                seed = plan.verification.seeds[0] if plan.verification.seeds else None
                report["protection"]["recheck_command"] = recheck_command(
                    exact, values[0], noise_model, protect=layers_regex(plan.kept), first_seed=seed)
    report["warnings"] = session.warnings + _image_term_warnings(report, settings.budget)
    report.update(verdict=verdict, exit_code=EXIT_CODES[verdict], seconds=time.perf_counter() - started)
    paths = write_outputs(report, out)
    write_table(session.frame(), out, "trials")
    _summary(console, report)
    console.print(f"wrote {paths['json']}, {paths['junit']}, {paths['markdown']}, {out}/trials.parquet", highlight=False)
    if args.json:
        print(json_text(report))
    return EXIT_CODES[verdict]
