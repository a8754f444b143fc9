"""The Python API's CI gate: :func:`check_model`, as ``onnxnoise check`` (:class:`onnxnoise.check.job.CheckJob`).

Takes what the command takes (a model path, a dataset path or registered name, every option by its setting
key: ``max_drop=1.0``, ``snr=100``, ``max_seeds=10``, ``protect="auto"``...), prints nothing unless asked,
and returns a :class:`~onnxnoise.api.results.CheckRun` with the verdict, the bounds and the trials as Polars
DataFrames. The verdict rule and its sources: docs/check.md (Owen 2007 crossed random factors, Jennison &
Turnbull 1989 repeated confidence intervals).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from rich.console import Console

from onnxnoise.api.results import CheckRun
from onnxnoise.check.gate import GateResult, GateSettings
from onnxnoise.check.job import CHECK_SETTINGS, CheckJob, refuse_draw_options
from onnxnoise.check.outputs import look_line
from onnxnoise.check.request import CheckRequest
from onnxnoise.engine.executor import Progress
from onnxnoise.errors import ConfigError
from onnxnoise.files import output_folder
from onnxnoise.lazy import lazy_module
from onnxnoise.run_setup import in_setting_keys, keyword_options, run_setup
from onnxnoise.settings import config_values

pl = lazy_module("polars")

__all__ = ["check_model"]

PathLike = str | os.PathLike[str]

#: Columns of :attr:`CheckRun.per_draw <onnxnoise.api.results.CheckRun.per_draw>` (``report["gate"]["per_draw"]``).
PER_DRAW_SCHEMA = {"seed": pl.Int64, "images": pl.Int64, "top1_acc": pl.Float64, "drop": pl.Float64,
                   "lost": pl.Int64, "gained": pl.Int64, "flips": pl.Int64, "mcnemar_p": pl.Float64,
                   "collapsed": pl.Boolean}


def _look_printer(noise_model, metric: str) -> Callable[[GateResult], None]:
    """``progress=True``: the command's line per draw, on stderr."""
    console = Console(stderr=True)

    def on_look(result: GateResult) -> None:
        console.print(look_line(result, noise_model, metric), highlight=False, markup=False)
    return on_look


@in_setting_keys("check", *CHECK_SETTINGS)
def check_model(model: PathLike, data: PathLike | None = None, *, out: PathLike | None = None,
                progress: bool | Progress = False, **options: Any) -> CheckRun:
    """Gate the accuracy drop under noise: PASS, FAIL or INCONCLUSIVE, as ``onnxnoise check MODEL``.

    Runs the clean baseline, then noisy draws (seeds ``first_seed``, ``first_seed + 1``...) until one-sided
    bounds of the paired drop (clean minus noisy accuracy, percentage points) decide: PASS when the upper bound
    is below ``max_drop``, FAIL when the lower bound is above it, INCONCLUSIVE after ``max_seeds`` draws
    (docs/check.md). The same trials, verdict and files as the command with the same options.

    Args:
        model: ONNX classifier file.
        data: Dataset path, registered dataset name, or ``None`` (the registered dataset matching the model).
        out: Folder to write ``check.json``, ``junit.xml``, ``check.md`` and ``trials`` (Parquet and CSV) in, as
            the command; ``None``: write nothing (then a protection plan has no layers file to re-check with).
        progress: ``True``: the command's line per draw on stderr; an
            :class:`onnxnoise.engine.executor.Progress`: every trial's progress events.
        **options: Any ``check`` option by setting key (docs/options.md): ``max_drop`` (required, points),
            one strength (``snr=100`` linear, ``t="1d"``, ``strength=...``) or two with ``find_limit=True``,
            ``metric="top5"``, ``confidence=0.99``, ``max_seeds=20``, ``first_seed=1000``, ``protect="auto"``
            or a layer regular expression, ``protect_file=PATH``, ``noise`` as text or a noise model object,
            ``limit`` (images)...

    Returns:
        The :class:`~onnxnoise.api.results.CheckRun`.

    Raises:
        ConfigError: An option ``check`` does not take, ``max_drop`` missing, ``seeds``/``ci_halfwidth`` given
            (the gate picks its draws), no strength or several, ``protect`` with a search.
        NoiseConfigError, DataError, GraphError, SessionError: Bad noise settings, dataset or model.

    Examples:
        >>> import onnxnoise
        >>> model, data = onnxnoise.demo_paths()
        >>> run = onnxnoise.check_model(model, data, snr=100, max_drop=5)  # 1,000 images, SNR 100 linear
        >>> run.verdict, run.exit_code, run.draws       # the minimum of 5 draws settles it
        ('PASS', 0, 5)
        >>> run.lower < run.drop < run.upper < 5        # one-sided 95% bounds, percentage points
        True
        >>> run.per_draw["lost"].to_list()              # images right when clean, wrong under noise, per draw
        [2, 0, 5, 1, 2]
    """
    given = keyword_options("check", options, *CHECK_SETTINGS)
    refuse_draw_options(given)
    if given.get("max_drop") is None:
        raise ConfigError("check needs max_drop: the largest allowed accuracy drop in percentage points "
                          "(e.g. max_drop=1.0)")
    settings = GateSettings(**config_values(GateSettings, given))
    setup = run_setup(model, data, given, command="check")
    config = setup.config
    request = CheckRequest(**config_values(CheckRequest, given))
    folder = None if out is None else output_folder(out, option="out")
    noise_model = config.noise.noise_model
    on_look = _look_printer(noise_model, settings.metric) if progress is True else None
    receiver = progress if isinstance(progress, Progress) else None
    with setup.naming_the_picked_data():
        outcome = CheckJob(config, settings, request, given, folder, progress=receiver, on_look=on_look).run()
    report = outcome.report
    rows = (report["gate"] or {}).get("per_draw") or []
    per_draw = pl.DataFrame([{k: row.get(k) for k in PER_DRAW_SCHEMA} for row in rows], schema=PER_DRAW_SCHEMA)
    return CheckRun(verdict=report["verdict"], exit_code=report["exit_code"], question=report["question"],
                    config=config, settings=settings, trials=outcome.trials, per_draw=per_draw, report=report,
                    gate=outcome.gate, search=outcome.search, protection=outcome.plan,
                    recheck_command=report["recheck_command"], next_command=report["next_command"], notes=setup.notes,
                    warnings=(*setup.warnings, *report["warnings"]), out=folder, files=outcome.files,
                    error=report["error"])
