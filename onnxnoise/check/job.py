"""One check from its settings to its verdict and files: what ``onnxnoise check`` and :func:`onnxnoise.check_model` run.

A :class:`CheckJob` takes the run's ``RunConfig``, the gate's :class:`~onnxnoise.check.gate.GateSettings`,
the :class:`~onnxnoise.check.request.CheckRequest` and the options as given (setting key -> value, for the
re-check command line), checks what the check needs before any trial (one strength, or two for a search;
``--find-min-snr`` only for a model whose strength is the SNR; a ``--protect`` expression, a
``--protect-file``), prepares the model and images, and :meth:`CheckJob.run` runs the baseline, then the
gate (:meth:`~onnxnoise.check.gate.CheckSession.gate`), the strength search
(:func:`~onnxnoise.check.tolerance.find_limit`) or a protection plan
(:func:`~onnxnoise.check.protect.plan_protection`) and writes ``trials.parquet``/``.csv``, ``check.json``,
``junit.xml`` and ``check.md`` (:mod:`onnxnoise.check.outputs`) when it has a folder. It prints nothing: the
CLI passes its printer as ``on_look`` / ``on_plan`` and prints the report; the API returns it.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxnoise import __version__
from onnxnoise.check.gate import CheckSession, GateResult, GateSettings
from onnxnoise.check.outputs import write_outputs
from onnxnoise.check.protect import (LAYERS_FILE, ProtectionPlan, plan_protection, protected_layers,
                                     read_layers_file, write_layers_file)
from onnxnoise.check.request import CheckRequest
from onnxnoise.check.sequential import FAIL, INCONCLUSIVE, MIN_DRAWS, PASS
from onnxnoise.check.tolerance import SearchResult, find_limit, quieter_range
from onnxnoise.config import RunConfig
from onnxnoise.engine.context import prepare_context
from onnxnoise.engine.executor import Progress
from onnxnoise.errors import BaselineExpectationError, ConfigError
from onnxnoise.lazy import lazy_module
from onnxnoise.noise import axis_of
from onnxnoise.noise_config import strength_settings
from onnxnoise.options import strength_example, strength_flag, strength_flag_models
from onnxnoise.report.tables import write_table
from onnxnoise.run_setup import flag_words, option_settings

pl = lazy_module("polars")

__all__ = ["CHECK_SETTINGS", "DRAW_SETTINGS_REFUSED", "EXIT_CODES", "METHOD", "CheckJob", "CheckOutcome",
           "refuse_draw_options", "recheck_command", "image_term_warnings"]

#: The settings classes whose options ``check`` takes.
CHECK_SETTINGS: tuple[type, ...] = (RunConfig, GateSettings, CheckRequest)

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
    f"rates are each at most 1 - confidence (simulated: docs/check.md). Minimum draws: {MIN_DRAWS} (one when every "
    "draw is the same trial: --noise none without --read-noise). A draw flagged as collapsed (far below the others, "
    "or at chance) withholds PASS."
)


#: Run settings ``check`` refuses, by key, with why and what to use instead (the file key's wording for
#: ``check --config``; :func:`refuse_draw_options` names the flag).
DRAW_SETTINGS_REFUSED: dict[str, str] = {
    key: "check chooses its number of draws itself; use max_seeds = N (and first_seed = S for other seeds)"
    for key in ("seeds", "ci_halfwidth")}


def refuse_draw_options(given: Mapping[str, Any]) -> None:
    """Refuse ``seeds`` / ``ci_halfwidth``: a check chooses its number of draws itself.

    Raises:
        ConfigError: One of them is given (not ``None``).
    """
    for key, flag in (("seeds", "--seeds"), ("ci_halfwidth", "--ci-halfwidth")):
        if given.get(key) is not None:
            raise ConfigError(f"check chooses its number of draws itself; drop {flag} and use --max-seeds N "
                              "(and --first-seed S for other seeds)")


def recheck_command(model: str | os.PathLike[str], given: Mapping[str, Any], strength: float, noise_model, *,
                    protect_file: Path | None = None, first_seed: int | None = None,
                    search_to: float | None = None) -> str:
    """The ``onnxnoise check`` command line that re-checks ``strength`` with the same settings and seeds.

    Rebuilt from the options as given (setting key -> value as a flag parses it; ``None``: not given) of every
    setting ``check`` takes (:mod:`onnxnoise.settings`; those marked ``recheck=False``, the search and
    protection options, the strength options and ``--seeds``, left out, and ``--out`` / ``--json``), with the
    strength as an exact number (``repr``) in the model's own option: the same trials, so the same verdict.
    With ``search_to``, the command searches ``[strength, search_to]`` instead (``--find-limit``, the
    strength option with both values, ``--find-resolution`` as given): what to run after a search in which
    nothing passed (:func:`onnxnoise.check.tolerance.quieter_range`).

    Args:
        model: The ONNX file.
        given: The options by setting key (``data``: the dataset path used).
        strength: The strength to re-check, in the noise model's unit.
        noise_model: The :class:`~onnxnoise.noise.NoiseModel` (names the strength option).
        protect_file: A ``--protect-file`` to add (a protection plan's layers, one name per line).
        first_seed: ``--first-seed`` instead of the given one (a plan's verification seeds).
        search_to: The other end of a range to search, or ``None`` (re-check one strength).
    """
    if first_seed is not None:
        given = {**given, "first_seed": first_seed}
    parts = ["onnxnoise", "check", str(model)]
    for setting in option_settings("check", *CHECK_SETTINGS):
        if setting.recheck or (search_to is not None and setting.key == "find_resolution"):
            parts += flag_words(setting, given.get(setting.key))
    if protect_file is not None:
        parts += ["--protect-file", str(protect_file)]
    values = (strength,) if search_to is None else (strength, search_to)
    parts += [*(["--find-limit"] if search_to is not None else []), strength_flag(noise_model),
              ",".join(repr(float(v)) for v in values)]
    return " ".join(shlex.quote(p) for p in parts)


def image_term_warnings(report: dict[str, Any], budget: float) -> list[str]:
    """A warning when an INCONCLUSIVE gate's image term alone exceeds half the budget (too few images).

    The term is the upper bound's: ``max(t_upper * se_images, floor_upper)``
    (:class:`~onnxnoise.check.sequential.Bounds`), so a sample with nothing discordant is said too.
    A PASS or FAIL settled the question, so it gets no such warning.
    """
    gate = report.get("gate") or {}
    if gate.get("verdict") != INCONCLUSIVE:
        return []
    bounds = gate.get("bounds") or {}
    term = max(float(bounds.get("t_upper") or 0.0) * float(bounds.get("se_images") or 0.0),
               float(bounds.get("floor_upper") or 0.0))
    if not term > budget / 2:
        return []
    return [f"with {report['images']} images the image term alone is ±{term:.2f} points, more than half the budget "
            f"({budget:g}); it shrinks with more images, not with more draws: evaluate more images (a larger --limit "
            "or dataset) or check a larger --max-drop"]


def _strengths(config: RunConfig, given: Mapping[str, Any], find: bool) -> tuple[float, ...]:
    """The gate's one strength, or the search's two bounds (checked against what was given)."""
    noise = config.noise
    model = noise.noise_model
    named = any(given.get(s.key) is not None for s in strength_settings())  # strength, snr, t...
    example = strength_example(model, model.default_strengths[-1:]) if model.default_strengths else "--strength VALUE"
    if find:
        values = tuple(sorted(noise.strengths))
        if named and len(values) != 2:
            raise ConfigError(f"the search range is two strengths, e.g. {strength_flag(model)} LOW,HIGH; "
                              f"got {len(values)}")
        if len(values) < 2:
            raise ConfigError(f"give the search range as two strengths, {strength_flag(model)} LOW,HIGH")
        return values[0], values[-1]
    fixed = not axis_of(model).flags and len(model.default_strengths) == 1  # `none`: its one strength, nothing to give
    if not named and not fixed:
        raise ConfigError(f"give the one strength to check, e.g. {example} (or --find-limit to search for it)")
    if len(noise.strengths) != 1:
        raise ConfigError(f"check tests one strength; got {len(noise.strengths)}: give one value, e.g. {example}")
    return noise.strengths


@dataclass(frozen=True)
class CheckOutcome:
    """What one check found and wrote.

    Attributes:
        report: What ``check.json`` holds (``verdict``, ``exit_code``, ``baseline``, ``gate``, ``search``,
            ``protection``, ``recheck_command`` (with a search in which nothing passed: the least noisy
            strength's), ``next_command`` (that search's next range, :func:`~onnxnoise.check.tolerance.quieter_range`,
            else ``None``), ``warnings``, ``error``...; :mod:`onnxnoise.check.outputs`).
        trials: Every trial run (baseline, draws, search and plan gates), trial-table columns.
        gate: The deciding gate (the search's found strength's), or ``None``.
        search: The strength search, or ``None``.
        plan: The protection plan, or ``None``.
        files: The files written (none without a folder).
    """

    report: dict[str, Any]
    trials: pl.DataFrame
    gate: GateResult | None = None
    search: SearchResult | None = None
    plan: ProtectionPlan | None = None
    files: tuple[Path, ...] = ()


class CheckJob:
    """One check, prepared: the model and images loaded, the gate session ready.

    Args:
        config: The run settings (``config.data`` the dataset path).
        settings: What the gate tests.
        request: A gate, a search or a protection plan.
        given: The options as given, by setting key (strengths and ``data`` included): which strength options
            were given, and the re-check command lines.
        out: The folder to write in (checked: :func:`onnxnoise.files.output_folder`), or ``None``: write nothing
            (calibration in memory, no protection layers file, so no plan re-check command).
        progress: Receives every trial's progress events.
        on_look: Called after every noisy draw with the :class:`GateResult` so far.

    Raises:
        ConfigError: No strength, several strengths for a gate, not two for a search, ``--find-min-snr`` for a
            model whose strength is not the SNR, a bad ``--protect`` expression or ``--protect-file``.
        DataError, GraphError, SessionError: The data or model cannot be prepared
            (:func:`onnxnoise.engine.context.prepare_context`); fewer than 2 images.
    """

    def __init__(self, config: RunConfig, settings: GateSettings, request: CheckRequest, given: Mapping[str, Any],
                 out: Path | None, *, progress: Progress | None = None,
                 on_look: Callable[[GateResult], None] | None = None) -> None:
        self.started = time.perf_counter()
        self.noise_model = config.noise.noise_model
        owners = strength_flag_models("snr")
        if request.find_min_snr and config.noise.model not in owners:
            raise ConfigError(f"--find-min-snr searches {', '.join(owners)}'s SNR; "
                              f"for {config.noise.model} use --find-limit")
        self.config, self.settings, self.request, self.out = config, settings, request, out
        self.given = {**given, "data": config.data}  # re-check commands name the dataset path used
        self.strengths = _strengths(config, given, request.search)
        self.context = prepare_context(config, calibration_dir=out)
        if request.protect and request.protect != "auto":
            protected_layers(self.context.selected, request.protect)  # a bad REGEX is bad input before any trial
        self.from_file = (None if request.protect_file is None
                          else read_layers_file(request.protect_file, self.context.selected))
        self.session = CheckSession(self.context, settings, progress=progress, on_look=on_look)
        self.report = self._start_report()

    @property
    def question(self) -> str:
        """What the check answers, in words (``top-1 drop < 1 points at SNR 100``)."""
        label = "top-1" if self.settings.metric == "top1" else "top-5"
        fmt, values = self.noise_model.format_strength, self.strengths
        if self.request.search:
            return f"noisiest strength with {label} drop < {self.settings.budget:g} points in " \
                   f"{fmt(values[0])}..{fmt(values[1])}"
        return f"{label} drop < {self.settings.budget:g} points at {fmt(values[0])}"

    def _start_report(self) -> dict[str, Any]:
        facts = {k: v for k, v in self.context.facts().items() if k != "seeds"}  # the gate picks its own seeds
        noise = self.config.noise
        return {
            "tool": "onnxnoise check", "version": __version__, "verdict": None, "exit_code": None,
            "question": self.question, "model": facts["model"], "model_sha256": facts["model_sha256"],
            "dataset": facts["dataset"], "images": facts["images"], "noise_model": noise.model,
            "noise_settings": noise.settings(),
            "strength_name": self.noise_model.strength_name, "settings": self.settings.to_dict(), "baseline": {},
            "gate": None, "search": None, "protection": None, "recheck_command": None, "next_command": None,
            "warnings": [],
            "error": None, "method": METHOD, "facts": facts, "out_dir": None if self.out is None else str(self.out),
        }

    def _recheck(self, strength: float, **kwargs: Any) -> str:
        return recheck_command(self.config.model, self.given, strength, self.noise_model, **kwargs)

    def _finish(self, verdict: str, **kwargs: Any) -> CheckOutcome:
        """The report's verdict and time; the trial tables, then the verdict files, written."""
        report = self.report
        report.update(verdict=verdict, exit_code=EXIT_CODES[verdict], seconds=time.perf_counter() - self.started)
        trials, files = self.session.frame(), ()
        if self.out is not None:
            # The trial tables first: a write that fails leaves the previous verdict files with their own trial
            # tables, or (failing at the verdict files) the new tables beside the previous verdict, never a
            # verdict without its rows. A baseline off its expectation writes the verdict files only.
            tables = [] if report["error"] else write_table(trials, self.out, "trials")
            layers = (report.get("protection") or {}).get("layers_file")
            files = (*tables, *write_outputs(report, self.out).values(), *([Path(layers)] if layers else []))
        return CheckOutcome(report=report, trials=trials, files=files, **kwargs)

    def run(self, *, on_plan: Callable[[str], None] | None = None) -> CheckOutcome:
        """The baseline, then the gate, the search or the protection plan; the files written.

        A baseline outside ``--expect-top1`` is verdict FAIL with the message as the report's ``error``
        (no noisy trial runs).

        Args:
            on_plan: Called with the plan's spec (``auto``, the expression, ``file PATH``) before a protection
                plan runs.

        Raises:
            BaselineError: The baseline trial failed.
            ConfigError: ``out`` cannot be written.
        """
        report = self.report
        try:
            base = self.session.baseline()
        except BaselineExpectationError as exc:
            report["error"] = str(exc)
            return self._finish(FAIL)
        report["baseline"] = {"top1_acc": 100.0 * base["top1_correct"] / base["images"],
                              "top5_acc": 100.0 * base["top5_correct"] / base["images"]}
        gate = search = plan = None
        if self.request.search:
            search = find_limit(self.session, *self.strengths, resolution=self.request.resolution)
            report["search"] = search.to_dict()
            verdict = PASS if search.found is not None else search.steps[0].verdict
            if search.found is not None:
                report["recheck_command"] = self._recheck(search.found)
                gate = next(g for g in search.steps if g.strength == search.found)
                report["gate"] = gate.to_dict()
            else:  # the quiet end did not pass: re-check it, and search beyond it next (when the model goes there)
                report["recheck_command"] = self._recheck(search.bracket[1])
                beyond = quieter_range(search, self.noise_model)
                if beyond is not None:
                    report["next_command"] = self._recheck(beyond[0], search_to=beyond[1])
        else:
            strength = self.strengths[0]
            gate = self.session.gate(strength)
            report["gate"], verdict = gate.to_dict(), gate.verdict
            report["recheck_command"] = self._recheck(strength)
            if verdict != PASS and (self.request.protect or self.from_file):
                spec = self.request.protect or f"file {self.request.protect_file}"
                if on_plan is not None:
                    on_plan(spec)
                plan = plan_protection(self.session, strength, spec, kept=self.from_file, unprotected=gate)
                report["protection"] = plan.to_dict()
                if plan.verification is not None and self.out is not None:
                    seed = plan.verification.seeds[0] if plan.verification.seeds else None
                    layers = write_layers_file(self.out / LAYERS_FILE, plan.kept)
                    report["protection"]["layers_file"] = str(layers)
                    report["protection"]["recheck_command"] = self._recheck(strength, protect_file=layers,
                                                                            first_seed=seed)
        report["warnings"] = self.session.warnings + image_term_warnings(report, self.settings.budget)
        return self._finish(verdict, gate=gate, search=search, plan=plan)
