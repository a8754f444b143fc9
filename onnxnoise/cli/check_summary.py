"""What ``onnxnoise check`` prints: one line per draw, the result panel, and the image-term warning."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from onnxnoise.check.gate import GateResult
from onnxnoise.check.job import image_term_warnings
from onnxnoise.check.outputs import bound_points, look_line, next_step_text, points, search_text
from onnxnoise.check.sequential import FAIL, PASS

__all__ = ["look_printer", "print_summary", "image_term_warnings"]


def look_printer(console: Console, noise_model, metric: str) -> Callable[[GateResult], None]:
    """The ``on_look`` of a check session: one line per draw (:func:`onnxnoise.check.outputs.look_line`)."""
    def on_look(result: GateResult) -> None:
        console.print(look_line(result, noise_model, metric), highlight=False)
    return on_look


def _verdict_style(verdict: str) -> str:
    return {PASS: "bold green", FAIL: "bold red"}.get(verdict, "bold yellow")


def print_summary(console: Console, report: dict[str, Any]) -> None:
    """The check's result panel (verdict, baseline, bounds, search, plan), its re-check commands under it (each
    printed whole, for the terminal to wrap: a command folded inside the panel's border could not be copied),
    and its warnings."""
    lines = [f"[{_verdict_style(report['verdict'])}]{report['verdict']}[/]  {report['question']}"]
    commands: list[str] = []
    base = report["baseline"]
    lines.append(f"clean top-1 {points(base.get('top1_acc'))}%, top-5 {points(base.get('top5_acc'))}% "
                 f"on {report['images']} images")
    gate = report.get("gate")
    if gate:
        b = gate["bounds"]
        lines.append(f"drop {points(b['mean'])} points, bounds [{bound_points(b['lower'], b['budget'])}, "
                     f"{bound_points(b['upper'], b['budget'])}] "
                     f"(one-sided {100 * b['confidence']:g}% each) vs budget {points(b['budget'])}; "
                     f"{gate['draws']} draw{'s' if gate['draws'] != 1 else ''}")
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
        lines.append(f"search: {escape(search_text(report))}")  # its [..] is text, not markup
    plan = report.get("protection")
    if plan:
        kept = plan["kept"]
        listed = f" ({plan['layers_file']})" if plan.get("layers_file") else ""
        more = f" and {len(kept) - 5} more{listed}" if len(kept) > 5 else ""
        shown = ", ".join(kept[:5]) + more
        lines.append(f"protection plan ({plan['spec']}): [{_verdict_style(plan['verdict'])}]{plan['verdict']}[/] "
                     + (f"keeping {len(kept)} layer(s) noise-free: {shown}; {plan['kept_params']} parameters, "
                        f"{points(plan['kept_percent'])}% of all" if kept else plan.get("note") or "no plan"))
        if plan.get("recheck_command"):
            commands.append(f"re-check the plan: {plan['recheck_command']}")
    if report.get("recheck_command"):
        commands.append(f"re-check: {report['recheck_command']}")
    if next_step_text(report):
        commands.append(next_step_text(report))
    console.print(Panel("\n".join(lines), title="onnxnoise check", expand=False), highlight=False)
    for line in commands:  # whole lines, never broken inside the panel: the terminal wraps them, a copy is one line
        console.print(line, soft_wrap=True, highlight=False, markup=False)
    for warning in report.get("warnings") or []:
        console.print(f"[bold red]WARNING:[/] {warning}", highlight=False)
