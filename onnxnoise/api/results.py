"""What the Python API's functions return: frozen dataclasses holding Polars DataFrames and the paths written.

Accuracies are in percent (0 to 100) and counts in images, as in the trial store
(:mod:`onnxnoise.store.schema`); strengths in the noise model's own unit (SNR linear for
``gaussian-snr``, seconds for ``pcm``'s ``t``; ``noise_models()`` says each unit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxnoise.bench import ScopeCheck
from onnxnoise.check.gate import GateResult, GateSettings
from onnxnoise.check.protect import ProtectionPlan
from onnxnoise.check.tolerance import SearchResult
from onnxnoise.config import RunConfig, SweepConfig
from onnxnoise.experiment import Experiment
from onnxnoise.lazy import lazy_module
from onnxnoise.model import Layer, SetAside

pl = lazy_module("polars")

__all__ = ["BenchRun", "SweepRun", "ExperimentRun", "CheckRun", "ReportRun", "CompareRun", "LayerList",
           "NoiseModelInfo", "baseline_top1"]


def baseline_top1(summary: pl.DataFrame) -> float | None:
    """The clean model's top-1 accuracy in percent from a summary (its ``baseline`` row), or ``None``."""
    base = summary.filter(pl.col("mode") == "baseline")
    return float(base["top1_acc_mean"][0]) if base.height else None


@dataclass(frozen=True)
class BenchRun:
    """The outcome of :func:`onnxnoise.bench_model`: the clean baseline and noise in all selected layers.

    Attributes:
        config: The run's settings (the dataset resolved to its path).
        trials: One row per trial, the baseline first: the trial store's columns
            (:data:`onnxnoise.store.TRIAL_COLUMNS`: ``mode``, ``strength`` Float64, ``seed`` Int64,
            ``images``/``top1_correct``/``top5_correct`` Int64 counts, ...) plus ``top1_acc``/``top5_acc``
            (Float64, percent).
        summary: One row per (mode, strength): ``top1_acc_mean`` (percent), its 95% interval over seeds,
            ``seeds``, paired statistics against the clean model (:func:`onnxnoise.report.stats.summarize_trials`).
        meta: Run facts (model, dataset, images, layers, provider...) and ``warnings``
            (:class:`onnxnoise.bench.BenchResult`).
        record: What ``bench.json`` holds (:func:`onnxnoise.bench.bench_record`).
        results: One row per strength, the baseline first, in timm's columns (``model``, ``top1``,
            ``top1_err``, ``top5``, ``top5_err`` in percent, ``param_count``, ``img_size``, ``crop_pct``,
            ``interpolation``, ``noise``, ``strength``...: :func:`onnxnoise.report.results.results_table`);
            what ``results.parquet`` holds and ``report --json`` gives.
        notes: How settings were chosen (a registered dataset, an analog preset's expansion).
        warnings: What the run measures when that is less than it seems, and ``meta["warnings"]``.
        out: The folder written, or ``None`` (``out`` not given: nothing written).
        files: The files written in ``out`` (``results``, ``summary``, ``trials`` as Parquet and CSV, with
            ``scope_check`` ``scope-check`` too, ``bench.json``, and ``calibration.json`` with the tile stages:
            :func:`onnxnoise.bench.bench_files`).
        scope_check: The ``scope_check=N`` re-run with ``scope=channel``, or ``None``.
    """

    config: RunConfig
    trials: pl.DataFrame
    summary: pl.DataFrame
    meta: dict[str, Any]
    record: dict[str, Any]
    results: pl.DataFrame
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    out: Path | None = None
    files: tuple[Path, ...] = ()
    scope_check: ScopeCheck | None = None

    @property
    def baseline_top1(self) -> float | None:
        """Clean top-1 accuracy in percent (the ``baseline`` row of :attr:`summary`)."""
        return baseline_top1(self.summary)

    @property
    def failed(self) -> int:
        """Trials that ended with an error (their rows carry it in column ``error``)."""
        return int(self.meta["failed"])


@dataclass(frozen=True)
class SweepRun:
    """The outcome of :func:`onnxnoise.sweep_model`: a resumable sweep recorded in ``out/trials.sqlite``.

    Attributes:
        config: The sweep's settings (``config.run``: the run's, dataset resolved).
        trials: The store's rows of this sweep's plan (run now or before), trial-table schema.
        summary: One row per (mode, layer, strength): mean top-1/top-5 in percent with 95% intervals.
        out: The run folder.
        store: The trial store file (``out/trials.sqlite``).
        planned, done, ran, failed, taken: Trial counts: in the plan, already in the store, run now, ended
            with an error now, recorded meanwhile by another process.
        notes: How settings were chosen (a registered dataset, an analog preset's expansion).
        warnings: Baseline and unchanged-layer warnings, and what the run measures when that is less than it seems.
    """

    config: SweepConfig
    trials: pl.DataFrame
    summary: pl.DataFrame
    out: Path
    store: Path
    planned: int
    done: int
    ran: int
    failed: int
    taken: int
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def baseline_top1(self) -> float | None:
        """Clean top-1 accuracy in percent (the ``baseline`` row of :attr:`summary`)."""
        return baseline_top1(self.summary)


@dataclass(frozen=True)
class ExperimentRun:
    """The outcome of :func:`onnxnoise.sweep_experiment`: every sweep of an experiment file, in file order.

    Attributes:
        experiment: The parsed file (:class:`onnxnoise.experiment.Experiment`: ``name``, ``models``, ``out``...).
        runs: One :class:`SweepRun` per (model, ``[[sweeps]]`` entry), file order; a model's sweeps share its
            run folder (``out/<model>/trials.sqlite``).
        out: The folder holding the run folders (the file's ``out``, or the ``out`` given).
    """

    experiment: Experiment
    runs: tuple[SweepRun, ...]
    out: Path

    @property
    def trials(self) -> pl.DataFrame:
        """Every run's trials in one frame (trial-table schema, missing columns null)."""
        frames = [run.trials for run in self.runs if run.trials.height]
        return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()

    @property
    def failed(self) -> int:
        """Trials that ended with an error, over all runs."""
        return sum(run.failed for run in self.runs)


@dataclass(frozen=True)
class CheckRun:
    """The outcome of :func:`onnxnoise.check_model`: the CI gate's verdict on the accuracy drop under noise.

    The drop is the clean accuracy of the gate's metric minus the noisy one, in percentage points (positive:
    noise costs accuracy); its bounds are one-sided at ``settings.confidence`` each (docs/check.md).

    Attributes:
        verdict: ``PASS`` (upper bound < budget), ``FAIL`` (lower bound > budget, or a baseline off
            ``expect_top1``) or ``INCONCLUSIVE`` (``max_seeds`` draws could not decide). With a search, ``PASS``
            when a passing strength was found.
        exit_code: What ``onnxnoise check`` exits with: 0 PASS, 1 FAIL, 3 INCONCLUSIVE.
        question: What was checked, in words (``top-1 drop < 5 points at SNR 100 (1% noise)``).
        config: The run's settings (dataset resolved to its path).
        settings: The gate's settings (``budget`` = ``max_drop`` in points, ``metric``, ``confidence``...).
        trials: Every trial run (baseline, draws, search and plan gates), trial-table columns.
        per_draw: One row per draw of :attr:`gate`: ``seed``, ``images`` (Int64), ``top1_acc`` (Float64,
            percent), ``drop`` (Float64, points), ``lost``/``gained`` (Int64: images right clean and wrong noisy,
            and the opposite), ``flips`` (Int64, null when not counted), ``mcnemar_p`` (Float64),
            ``collapsed`` (Boolean); empty without a gate.
        report: What ``check.json`` holds (written or not).
        out: The folder written, or ``None`` (``out`` not given: nothing written).
        files: ``trials`` Parquet and CSV, ``check.json``, ``junit.xml``, ``check.md`` (and the plan's
            ``protect-layers.txt``) in ``out``.
        gate: The deciding gate (with a search: the found strength's), or ``None``.
        search: The strength search (``find_limit=True`` / ``find_min_snr=True``), or ``None``.
        protection: The protection plan (``protect=`` / ``protect_file=``, when the gate did not pass), or ``None``.
        recheck_command: The ``onnxnoise check`` command line that re-checks the gate's strength (with a search in
            which nothing passed: the least noisy strength's), or ``None``.
        next_command: With a search in which nothing passed, the ``onnxnoise check --find-limit`` command line that
            searches the next, quieter range (:func:`onnxnoise.check.tolerance.quieter_range`); ``None`` otherwise
            or when the noise model takes nothing quieter.
        error: Why the check stopped before any noisy draw (a baseline off ``expect_top1``), or ``None``.
        notes: How settings were chosen (a registered dataset, an analog preset's expansion).
        warnings: What the verdict rests on when that is less than it seems (collapsed draws, too few images).
    """

    verdict: str
    exit_code: int
    question: str
    config: RunConfig
    settings: GateSettings
    trials: pl.DataFrame
    per_draw: pl.DataFrame
    report: dict[str, Any]
    out: Path | None = None
    files: tuple[Path, ...] = ()
    gate: GateResult | None = None
    search: SearchResult | None = None
    protection: ProtectionPlan | None = None
    recheck_command: str | None = None
    next_command: str | None = None
    error: str | None = None
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def strength(self) -> float | None:
        """The gate's strength in the noise model's unit (SNR linear for ``gaussian-snr``), or ``None``."""
        return None if self.gate is None else self.gate.strength

    @property
    def baseline_top1(self) -> float | None:
        """Clean top-1 accuracy in percent, or ``None`` (the baseline missed ``expect_top1``)."""
        return self.report["baseline"].get("top1_acc")

    @property
    def draws(self) -> int:
        """Noisy draws the gate took (0 without a gate)."""
        return 0 if self.gate is None else len(self.gate.draws)

    @property
    def drop(self) -> float | None:
        """The gate's mean drop over its draws, percentage points, or ``None``."""
        return None if self.gate is None else self.gate.decision.bounds.mean

    @property
    def lower(self) -> float | None:
        """The drop's lower bound (one-sided, ``settings.confidence``), percentage points, or ``None``."""
        return None if self.gate is None else self.gate.decision.bounds.lower

    @property
    def upper(self) -> float | None:
        """The drop's upper bound (one-sided, ``settings.confidence``), percentage points, or ``None``."""
        return None if self.gate is None else self.gate.decision.bounds.upper


@dataclass(frozen=True)
class ReportRun:
    """The outcome of :func:`onnxnoise.make_report`: tables, figures and ``report.md`` of one or more run folders.

    Attributes:
        trials: Every trial of the run folders (trial-table schema plus ``top1_acc``/``top5_acc``).
        summary: One row per (model, noise model, mode, layer, strength), percent with 95% intervals.
        a_avr: ``A_avr`` (paper eq. 3) per (model, noise model, strength); empty without per-layer trials.
        blame: Layers ranked by their top-1 drop; empty without per-layer trials.
        results: One row per model and whole-model strength in timm's columns
            (:func:`onnxnoise.report.results.results_table`; ``results.parquet``, ``report --json``).
        out: The folder written.
        markdown: ``report.md``.
        tables: Parquet/CSV files written.
        figures: PNG/SVG files written.
        warnings: Baselines at chance level, failed trials, collapsed draws.
    """

    trials: pl.DataFrame
    summary: pl.DataFrame
    a_avr: pl.DataFrame
    blame: pl.DataFrame
    results: pl.DataFrame
    out: Path
    markdown: Path
    tables: tuple[Path, ...] = ()
    figures: tuple[Path, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class CompareRun:
    """The outcome of :func:`onnxnoise.compare_runs`: paired differences of two or more models with a verdict.

    Attributes:
        trials: Every trial of the run folders; the first model is the reference.
        verdicts: One row per (model, noise setting, strength) shared with the reference: difference in
            percentage points with its 95% interval and ``sentence``; with one model no rows, the same typed
            columns (:func:`onnxnoise.report.versus.verdict_schema`).
        a_avr: Per-layer ``A_avr`` table, or an empty frame.
        json: What ``compare --json`` prints (:func:`onnxnoise.report.comparison.comparison_json`).
        out, markdown, tables, figures: The folder and files written (``compare.md``...).
    """

    trials: pl.DataFrame
    verdicts: pl.DataFrame
    a_avr: pl.DataFrame
    json: dict[str, Any]
    out: Path
    markdown: Path
    tables: tuple[Path, ...] = ()
    figures: tuple[Path, ...] = ()


@dataclass(frozen=True)
class LayerList:
    """The outcome of :func:`onnxnoise.model_layers`: a model's parameter layers, as ``onnxnoise layers`` lists them.

    Attributes:
        model: The ONNX file.
        table: One row per layer in graph order: ``index`` (Int64), ``name``, ``op_type`` (String),
            ``num_params`` (Int64, elements), ``sigma_w`` (Float64, the layer's weight standard deviation),
            ``tensors`` (List(String)), ``quantization_policy`` (String or null).
        layers: The same layers as :class:`onnxnoise.model.Layer` objects (shapes, roles, channel axes).
        set_aside: Float initializers that are not parameters, with the reason.
        left_out: Weights stored where discovery does not look (not listed, not noised).
    """

    model: Path
    table: pl.DataFrame
    layers: tuple[Layer, ...]
    set_aside: tuple[SetAside, ...] = ()
    left_out: tuple[str, ...] = ()

    @property
    def total_params(self) -> int:
        """Parameters (elements) over all layers."""
        return sum(layer.num_params for layer in self.layers)


@dataclass(frozen=True)
class NoiseModelInfo:
    """One registered noise model (:func:`onnxnoise.noise_models`), as ``noise-models --json`` gives it.

    Attributes:
        name: The ``noise=`` name (``gaussian-snr``, ``pcm``...).
        strength: Its strength axis: ``name``, ``label``, ``unit``, ``log``, ``more_noise_when``, ``options``.
        default_strengths: Strengths run when none is given, in the axis's unit.
        params: Parameters (``noise="NAME:key=value"``) with their defaults.
        source: The formula family and its source (first line of the class docstring).
        example: A strength option as given on the command line (``--snr 10,100``).
    """

    name: str
    strength: dict[str, Any]
    default_strengths: tuple[float, ...]
    params: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    example: str = ""
