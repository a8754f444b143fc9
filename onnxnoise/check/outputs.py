"""What ``onnxnoise check`` writes: ``check.json``, ``junit.xml`` and ``check.md``, from one report dict.

The report dict is built by :class:`onnxnoise.check.job.CheckJob` (keys: ``verdict``,
``exit_code``, ``question``, ``model``, ``dataset``, ``images``, ``settings``,
``baseline``, ``gate``, ``search``, ``protection``, ``recheck_command``, ``next_command``,
``warnings``, ``error``, ``seconds``...). JSON is strict (NaN and infinities become ``null``).

The JUnit XML follows the schema most CI systems read (Jenkins / Ant ``junit`` task,
GitHub and GitLab test reports): ``<testsuites><testsuite><testcase>``, a test case with
a ``<failure>`` child failed, one with an ``<error>`` child could not reach a result.
One test case for the gate (or the tolerance search): PASS has no child, FAIL a
``<failure>``, INCONCLUSIVE an ``<error type="INCONCLUSIVE">`` (the gate could not show
a pass: it must not look green). A protection plan adds a second test case.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from onnxnoise.files import write_text
from onnxnoise.report.stages import stages_text
from onnxnoise.report.strength import noise_model_for
from onnxnoise.strict_json import json_text

__all__ = ["write_outputs", "junit_xml", "markdown", "points", "bound_points", "look_line", "search_text",
           "next_step_text"]


def points(value: float | None, digits: int = 2) -> str:
    """A number of percentage points for text (``-`` for None / NaN)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return _fixed(value, digits)


def _fixed(value: float, digits: int) -> str:
    """``value`` with ``digits`` decimals, never ``-0.00`` (a small negative that rounds to zero reads ``0.00``)."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text


def bound_points(value: float | None, budget: float) -> str:
    """A confidence bound in points, with enough decimals (2 to 6) to show which side of the budget it is on.

    ``0.9987`` against a budget of 1 reads ``0.999``, not ``1.00``.
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    digits = 2
    while digits < 6 and value != budget and f"{value:.{digits}f}" == f"{budget:.{digits}f}":
        digits += 1
    return _fixed(value, digits)


def look_line(result, noise_model, metric: str) -> str:
    """One draw of a gate as a line: strength (and layers kept), seed, accuracy, drop, lost and gained images, the
    bounds once there are any, and the rule's answer (``  SNR 100 seed 4: top-1 93.20%, drop 0.00 (-2 +2)
    [-0.31, 0.38] PASS``).

    Args:
        result: The :class:`~onnxnoise.check.gate.GateResult` so far (its last draw is the one told).
        noise_model: The :class:`~onnxnoise.noise.NoiseModel` (formats the strength).
        metric: ``top1`` or ``top5``.
    """
    label = "top-1" if metric == "top1" else "top-5"
    d, seed, b = result.draws[-1], result.seeds[-1], result.decision.bounds
    where = noise_model.format_strength(result.strength) + (f", {len(result.kept)} kept" if result.kept else "")
    budget = result.decision.budget  # enough digits that a bound next to the budget is not shown equal to it
    bounds = f" [{bound_points(b.lower, budget)}, {bound_points(b.upper, budget)}]" if b.upper == b.upper else ""
    return (f"  {where} seed {seed}: {label} {points(result.baseline - d.drop)}%, drop {points(d.drop)} "
            f"(-{d.lost} +{d.gained}{', collapsed' if d.collapsed else ''}){bounds} {result.decision.verdict}")


def search_text(report: dict[str, Any]) -> str:
    """The tolerance search of a check report in words, strengths in the noise model's unit: ``no strength in
    [t = 1 s, t = 10 y] passes (t = 1 s, the least noisy, is INCONCLUSIVE); 1 gate``, ``t = 1 d passes, t = 30 d
    does not; 6 gates`` or ``every strength in [SNR 10, SNR 100] passes; 1 gate``.

    Args:
        report: The check report (its ``search``, ``noise_model`` and ``noise_settings``).
    """
    search = report["search"]
    fmt = noise_model_for(report.get("noise_model"), report.get("noise_settings")).format_strength
    quiet, noisy = ((search["low"], search["high"]) if search["more_noise_when"] == "higher"
                    else (search["high"], search["low"]))
    span = f"[{fmt(quiet)}, {fmt(noisy)}]"
    steps = search.get("steps") or []
    if search["found"] is None:
        verdicts = [step["verdict"] for step in steps if step["strength"] == quiet]
        told = f" ({fmt(quiet)}, the least noisy, is {verdicts[-1]})" if verdicts else ""
        text = f"no strength in {span} passes{told}"
    elif search["bracket"][1] is None:
        text = f"every strength in {span} passes"
    else:
        text = f"{fmt(search['found'])} passes, {fmt(search['bracket'][1])} does not"
    return f"{text}; {len(steps)} gate{'' if len(steps) == 1 else 's'}"


def next_step_text(report: dict[str, Any]) -> str | None:
    """What to run after a search in which no strength passed, in one line; ``None`` for any other check.

    ``no strength passes; search a quieter range next: onnxnoise check ... --find-limit --snr 100.0,1000.0``
    (the report's ``next_command``), or, when the noise model takes nothing quieter than the searched quiet end
    (a fault rate searched from 0), ``no strength passes, and stuck-at takes no strength quieter than p = 0%
    faulty devices: no quieter range to search``.
    """
    search = report.get("search")
    if not search or search.get("found") is not None or "next_command" not in report:  # (a check.json before it)
        return None
    if report.get("next_command"):
        return f"no strength passes; search a quieter range next: {report['next_command']}"
    model = noise_model_for(report.get("noise_model"), report.get("noise_settings"))
    quiet = search["high"] if search["more_noise_when"] == "lower" else search["low"]
    return (f"no strength passes, and {model.name} takes no strength quieter than {model.format_strength(quiet)}: "
            "no quieter range to search")


def _case(parent: ET.Element, classname: str, name: str, verdict: str, message: str, detail: str,
          seconds: float) -> None:
    case = ET.SubElement(parent, "testcase", classname=classname, name=name, time=f"{seconds:.3f}")
    if verdict == "FAIL":
        ET.SubElement(case, "failure", message=message, type="FAIL").text = detail
    elif verdict != "PASS":
        ET.SubElement(case, "error", message=message, type=verdict).text = detail
    ET.SubElement(case, "system-out").text = detail


def _bounds_line(gate: dict[str, Any] | None) -> str:
    if not gate:
        return ""
    b = gate["bounds"]
    failed = f"a noisy trial failed ({gate['error']}); " if gate.get("error") else ""
    return (f"{failed}drop {points(b['mean'])} points, one-sided {100 * b['confidence']:g}% bounds "
            f"[{bound_points(b['lower'], b['budget'])}, {bound_points(b['upper'], b['budget'])}] vs budget {points(b['budget'])}, "
            f"{gate['draws']} draw{'s' if gate['draws'] != 1 else ''} (seeds {', '.join(map(str, gate['seeds']))}), "
            f"collapsed {gate['collapsed']}")


def junit_xml(report: dict[str, Any]) -> str:
    """The JUnit XML text of a check report (one testsuite)."""
    classname = f"onnxnoise.check.{Path(str(report['model'])).stem}"
    cases: list[tuple[str, str, str, str]] = []
    if report.get("search") is not None:
        s = report["search"]
        detail = f"{s['outcome']}: {search_text(report)}; re-check: {report.get('recheck_command')}"
        detail += f"; {next_step_text(report)}" if next_step_text(report) else ""
        cases.append((report["question"], report["verdict"], f"{report['verdict']}: {s['outcome']}", detail))
    else:
        detail = report.get("error") or _bounds_line(report.get("gate"))
        cases.append((report["question"], report["verdict"], f"{report['verdict']}: {detail}", detail))
    plan = report.get("protection")
    if plan is not None and plan.get("note") and not plan.get("verification"):
        detail = plan["note"]
        cases.append((f"protection plan ({plan['spec']})", plan["verdict"], f"{plan['verdict']}: {detail}", detail))
    elif plan is not None:
        detail = (f"keep {len(plan['kept'])} layers noise-free ({plan['kept_params']} parameters, "
                  f"{points(plan['kept_percent'])}% of all): {', '.join(plan['kept']) or '-'}; "
                  + (_bounds_line(plan["verification"]) if plan.get("verification") else "no configuration passed")
                  + (f"; re-check: {plan['recheck_command']}" if plan.get("recheck_command") else ""))
        cases.append((f"protection plan ({plan['spec']})", plan["verdict"], f"{plan['verdict']}: {detail}", detail))
    suites = ET.Element("testsuites")
    failures = sum(v == "FAIL" for _, v, _, _ in cases)
    errors = sum(v not in ("PASS", "FAIL") for _, v, _, _ in cases)
    seconds = float(report.get("seconds") or 0.0)
    suite = ET.SubElement(suites, "testsuite", name="onnxnoise check", tests=str(len(cases)), failures=str(failures),
                          errors=str(errors), skipped="0", time=f"{seconds:.3f}")
    props = ET.SubElement(suite, "properties")
    for key in ("model", "dataset", "images", "noise_model", "verdict"):
        ET.SubElement(props, "property", name=key, value=str(report.get(key)))
    for name, verdict, message, detail in cases:
        _case(suite, classname, name, verdict, message, detail, seconds / len(cases))
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def markdown(report: dict[str, Any]) -> str:
    """The ``check.md`` summary of a check report."""
    settings = report.get("noise_settings", "")  # an object; JSON text in check.json files written before
    settings = settings if isinstance(settings, str) else json.dumps(settings, sort_keys=True)
    lines = [f"# onnxnoise check: {report['verdict']}", "",
             f"**{report['question']}** — {report['model']} on {report['dataset']} ({report['images']} images), "
             f"noise {report['noise_model']} {settings}".rstrip(), ""]
    stages = stages_text((report.get("facts") or {}).get("stages") or {})
    if stages:
        lines += [f"Input/output stages in every noisy trial: {stages}.", ""]
    if report.get("error"):
        lines += [f"Stopped: {report['error']}", ""]
    base = report.get("baseline") or {}
    lines += [f"Clean baseline: top-1 {points(base.get('top1_acc'))}%, top-5 {points(base.get('top5_acc'))}%.", ""]
    gate = report.get("gate")
    if gate:
        lines += ["## Gate", "", _bounds_line(gate) + ".", "",
                  "| seed | top-1 % | drop (points) | lost | gained | flips | McNemar p | collapsed |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {d['seed']} | {points(d['top1_acc'])} | {points(d['drop'])} | {d['lost']} | {d['gained']} | "
                  f"{d['flips']} | {d['mcnemar_p']:.3g} | {'yes' if d['collapsed'] else ''} |" for d in gate["per_draw"]]
        lines.append("")
    search = report.get("search")
    if search:
        lines += ["## Tolerance search", "",
                  f"Outcome: **{search['outcome']}**: {search_text(report)} "
                  f"(more noise when the strength is {search['more_noise_when']}; "
                  f"{'geometric' if search['log_scale'] else 'arithmetic'} bisection, resolution {search['resolution']}).",
                  "", "| strength | verdict | draws | lower | upper |", "|---|---|---|---|---|"]
        lines += [f"| {s['strength']:g} | {s['verdict']} | {s['draws']} | {points(s['lower'])} | {points(s['upper'])} |"
                  for s in search["steps"]]
        lines.append("")
    plan = report.get("protection")
    if plan:
        lines += ["## Protection plan", ""]
        if plan.get("verification"):
            lines += [f"Keep noise-free: {', '.join(plan['kept'])} — {plan['kept_params']} of {plan['total_params']} "
                      f"parameters ({points(plan['kept_percent'])}%). "
                      + ("Verified with new seeds" if plan.get("steps") else "Gate with these layers kept")
                      + f": **{plan['verdict']}** ({_bounds_line(plan['verification'])}).", ""]
            if plan.get("undecided"):
                lines += [f"Keeping {plan['undecided'][0]} to {plan['undecided'][1]} layers was inconclusive: fewer "
                          "might suffice, more images would tell.", ""]
        else:
            note = plan.get("note")  # the note says "no plan proposed" and why; without one, say it here
            lines += [f"**{plan['verdict']}**: {note}." if note else
                      f"No plan proposed (**{plan['verdict']}**): no configuration passed.", ""]
        if plan["ranking"]:
            level = f"{100 * (plan.get('rank_confidence') or 0.95):g}%"
            lines += [f"| layer | drop alone (points) | {level} interval |", "|---|---|---|"]
            lines += [f"| {r['layer']} | {points(r['drop'])} | [{points(r.get('lower'))}, {points(r.get('upper'))}] |"
                      for r in plan["ranking"]]
            lines.append("")
        if plan.get("steps"):
            lines += [f"Search (bisection over the number of layers kept, most sensitive first; each gate tests a "
                      f"budget of {points(plan['search_budget'])} points):", "",
                      "| layers kept | verdict | draws | mean drop | lower | upper |", "|---|---|---|---|---|---|"]
            lines += [f"| {s['kept']} | {s['verdict']} | {s['draws']} | {points(s['mean'])} | {points(s['lower'])} | "
                      f"{points(s['upper'])} |" for s in plan["steps"]]
            lines.append("")
        if plan.get("recheck_command"):
            lines += ["Re-check the plan (the verification gate):", "", "```bash", plan["recheck_command"], "```", ""]
    if report.get("recheck_command"):
        lines += ["Re-check:", "", "```bash", report["recheck_command"], "```", ""]
    if report.get("next_command"):
        lines += ["No strength passes; search a quieter range next:", "", "```bash", report["next_command"], "```", ""]
    elif next_step_text(report):
        lines += [f"Next: {next_step_text(report)}.", ""]
    for warning in report.get("warnings") or []:
        lines.append(f"- WARNING: {warning}")
    lines += ["", report.get("method", ""), ""]
    return "\n".join(lines)


def write_outputs(report: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write ``check.json``, ``junit.xml`` and ``check.md`` into ``out`` (created); their paths by name."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "check.json", "junit": out / "junit.xml", "markdown": out / "check.md"}
    write_text(paths["json"], json_text(report, indent=2) + "\n")
    write_text(paths["junit"], junit_xml(report))
    write_text(paths["markdown"], markdown(report))
    return paths
