"""The Python API's runs: :func:`bench` and :func:`sweep`, on the functions the CLI's commands call.

Each takes what the command line takes: a model path, a dataset path or a registered dataset name
(``onnxnoise data list``; ``None``: the registered dataset matching the model's outputs), and every
option by its setting key (docs/options.md: ``noise="pcm:compensation=global"``, ``snr="10,100"`` or
``snr=[10, 100]``, ``seeds=3``, ``limit=500``...). They are silent: nothing is printed, the notes the CLI
would print are returned; ``progress=True`` shows rich progress bars on stderr. Bad input raises an
:class:`onnxnoise.errors.OnnxNoiseError` subclass with the one-line message the CLI would print.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console

from onnxnoise.api.results import BenchRun, ExperimentRun, SweepRun
from onnxnoise.bench import bench_files, bench_in_folder, bench_record, run_bench
from onnxnoise.config import RunConfig, SweepConfig
from onnxnoise.demo import demo_paths
from onnxnoise.engine.context import prepare_context
from onnxnoise.engine.executor import Progress
from onnxnoise.errors import ConfigError
from onnxnoise.experiment import load_experiment
from onnxnoise.files import output_folder
from onnxnoise.noise import NoiseModel
from onnxnoise.report.progress import RichProgress
from onnxnoise.report.results import facts_by_model, results_table
from onnxnoise.run_setup import (default_out_dir, in_setting_keys, keyword_options, run_setup, sweep_config,
                                 sweep_file_free_settings, sweep_overrides)
from onnxnoise.store import STORE_NAME, run_store
from onnxnoise.sweep import run_sweep

__all__ = ["bench_model", "sweep_model", "sweep_experiment"]

PathLike = str | os.PathLike[str]


@contextmanager
def _progress(progress: bool | Progress, noise_model: NoiseModel) -> Iterator[Progress | None]:
    """The progress receiver ``progress`` asks for: none (``False``), rich bars on stderr (``True``), or its own."""
    if progress is False or progress is None:
        yield None
        return
    if progress is True:
        bars = RichProgress(Console(stderr=True), noise_model)
        try:
            yield bars
        finally:
            bars.stop()
        return
    yield progress


@in_setting_keys("bench", RunConfig)
def bench_model(model: PathLike | None = None, data: PathLike | None = None, *, out: PathLike | None = None,
          progress: bool | Progress = False, **options: Any) -> BenchRun:
    """Bench one model: the clean baseline, then noise in all selected layers, for each strength and seed.

    As ``onnxnoise bench`` (same trials, same counts, same trial keys): the trial table and summary
    the command writes, returned as Polars DataFrames.

    Args:
        model: ONNX classifier file; ``None`` (with ``data`` ``None``): the built-in Fashion-MNIST demo
            (:func:`onnxnoise.demo.demo_paths`).
        data: Dataset path (CIFAR batch folder, class folders, ImageNet flat val, ``.npz``), a registered
            dataset name, or ``None`` for the registered dataset whose class count matches the model.
        out: Folder to write ``trials``, ``summary``, ``results`` (Parquet and CSV) and ``bench.json`` in, as the CLI;
            ``None``: write nothing.
        progress: ``True``: progress bars on stderr; an :class:`onnxnoise.engine.executor.Progress`: yours.
        **options: Any ``bench`` option by setting key (docs/options.md), e.g. ``noise="gaussian-snr"``,
            ``snr="10,100"`` (linear SNR), ``seeds=5`` (seeds 0 to 4) or
            ``seeds=[40, 30]`` (those seeds), ``limit=500`` (images), ``device="cpu"``.

    Returns:
        The :class:`~onnxnoise.api.results.BenchRun`.

    Raises:
        ConfigError: An option ``bench`` does not take, or a bad value; ``data`` without ``model``.
        NoiseConfigError, DataError, GraphError, SessionError: Bad noise settings, dataset or model.
        BaselineExpectationError: ``expect_top1`` is set and the clean top-1 is outside its tolerance.

    Examples:
        >>> import onnxnoise
        >>> run = onnxnoise.bench_model(snr=10, seeds=1)  # the demo: 1,000 Fashion-MNIST images, seed 0
        >>> run.trials["top1_correct"].to_list()           # clean, then SNR 10
        [932, 903]
        >>> run.baseline_top1
        93.2
    """
    demo = model is None
    if demo:
        if data is not None:
            raise ConfigError("`data` given without `model`; pass the ONNX model too (or neither for the demo)")
        model, data = demo_paths()
    setup = run_setup(model, data, keyword_options("bench", options, RunConfig), command="bench")
    config = setup.config
    folder = None if out is None else output_folder(out, option="out")
    with _progress(progress, config.noise.noise_model) as receiver, setup.naming_the_picked_data():
        if folder is None:
            result = run_bench(config, progress=receiver)
            record = bench_record(result, config, None, demo=demo)
        else:
            result, record = bench_in_folder(config, folder, progress=receiver, demo=demo)
    files = () if folder is None else bench_files(result, folder)
    results = results_table(result.summary, facts_by_model([result.meta]))  # what results.parquet holds
    return BenchRun(config=config, trials=result.trials, summary=result.summary, meta=result.meta, record=record,
                    results=results,
                    notes=setup.notes, warnings=(*setup.warnings, *result.meta["warnings"]), out=folder,
                    files=files, scope_check=result.scope_check)


@in_setting_keys("sweep", SweepConfig)
def sweep_model(model: PathLike, data: PathLike | None = None, *, out: PathLike | None = None,
          progress: bool | Progress = False, **options: Any) -> SweepRun:
    """Run a resumable sweep into ``out/trials.sqlite``: modes ``all``, ``per-layer``, ``cumulative``.

    As ``onnxnoise sweep MODEL``: trials already in the store are not run again; a change to a setting
    that can change a count gives new trials. Modes after Fagbohungbe & Qian (arXiv 2011.11840, Sec. IV).

    Args:
        model: ONNX classifier file.
        data: Dataset path, registered dataset name, or ``None`` (the registered dataset matching the model).
        out: Run folder (default ``runs/<model>``, as the CLI).
        progress: ``True``: progress bars on stderr; an :class:`onnxnoise.engine.executor.Progress`: yours.
        **options: Any ``sweep`` option by setting key (docs/options.md), e.g. ``modes="all,per-layer"``,
            ``snr="10,100"``, ``seeds=3``, ``executor="local"``.

    Returns:
        The :class:`~onnxnoise.api.results.SweepRun`.

    Raises:
        ConfigError, NoiseConfigError, DataError, GraphError, SessionError: Bad input (before any trial runs).
        StoreError: The store cannot be written, or belongs to another experiment.
        BaselineExpectationError, BaselineError: The clean baseline is off or failed.

    Examples:
        >>> import onnxnoise, tempfile
        >>> model, data = onnxnoise.demo_paths()
        >>> tmp = tempfile.TemporaryDirectory()
        >>> options = {"modes": "per-layer", "snr": 10, "seeds": 1, "limit": 100}  # 100 images, seed 0
        >>> run = onnxnoise.sweep_model(model, data, out=tmp.name, **options)
        >>> run.planned, run.ran       # the baseline, then noise in each of the demo's 6 layers alone
        (7, 7)
        >>> again = onnxnoise.sweep_model(model, data, out=tmp.name, **options)
        >>> again.done, again.ran      # resumed: every trial is in the store already
        (7, 0)
        >>> tmp.cleanup()
    """
    given = keyword_options("sweep", options, SweepConfig)
    setup = run_setup(model, data, given, command="sweep")
    config = sweep_config(setup.config, given)
    folder = output_folder(out if out is not None else default_out_dir("sweep", model), option="out")
    with setup.naming_the_picked_data():
        return _sweep_into(config, folder, progress, notes=setup.notes, warnings=setup.warnings)


def _sweep_into(config: SweepConfig, folder: Path, progress: bool | Progress, *, notes: tuple[str, ...] = (),
                warnings: tuple[str, ...] = ()) -> SweepRun:
    """Run ``config`` into ``folder/trials.sqlite`` (checked already): the :class:`SweepRun`."""
    context = prepare_context(config.run, calibration_dir=folder)
    with run_store(folder / STORE_NAME) as store, _progress(progress, config.run.noise.noise_model) as receiver:
        result = run_sweep(config, store, progress=receiver, context=context)
    return SweepRun(config=config, trials=result.trials, summary=result.summary, out=folder,
                    store=folder / STORE_NAME, planned=result.planned, done=result.done, ran=result.ran,
                    failed=result.failed, taken=result.taken, notes=notes,
                    warnings=(*warnings, *context.warnings, *result.warnings))


@in_setting_keys("sweep", SweepConfig)
def sweep_experiment(path: PathLike, *, out: PathLike | None = None, progress: bool | Progress = False,
                     **options: Any) -> ExperimentRun:
    """Run every sweep of an experiment TOML file, as ``onnxnoise sweep --config FILE.toml``.

    The file gives the models, the dataset, the preprocessing and each sweep's modes, noise, strengths and
    seeds (:mod:`onnxnoise.experiment`; ``experiments/*.toml``); each model's trials go to its run folder
    ``<out>/<model>/trials.sqlite`` (resumable: the same trials and keys as the command on the same file).

    Args:
        path: The experiment ``.toml`` file (relative paths in it are read from its folder).
        out: The folder holding one run folder per model, instead of the file's ``out``.
        progress: ``True``: progress bars on stderr; an :class:`onnxnoise.engine.executor.Progress`: yours.
        **options: The sweep options a file cannot hold, by setting key: ``executor``, ``address``,
            ``workers``, ``gpus_per_trial`` (docs/options.md); the run's settings come from the file.

    Returns:
        The :class:`~onnxnoise.api.results.ExperimentRun`: one :class:`SweepRun` per (model, sweep).

    Raises:
        ExperimentError: The file is missing, not TOML, or holds an unknown key or a bad setting.
        ConfigError: An option a file can hold (give it in the file) or a bad one; a run folder that cannot be
            written (checked for every model before any trial runs).
        DataError, GraphError, SessionError, StoreError, BaselineExpectationError: As :func:`sweep_model`.

    Examples:
        >>> import onnxnoise, tempfile
        >>> from pathlib import Path
        >>> model, data = onnxnoise.demo_paths()
        >>> tmp = tempfile.TemporaryDirectory()
        >>> folder = Path(tmp.name)
        >>> _ = (folder / "demo.toml").write_text(f'''
        ... [data]
        ... path = "{data.as_posix()}"
        ... limit = 200
        ... [models.demo]
        ... path = "{model.as_posix()}"
        ... [[sweeps]]
        ... modes = ["all"]
        ... snr = [10, 100]
        ... seeds = 1
        ... ''')
        >>> done = onnxnoise.sweep_experiment(folder / "demo.toml", out=folder / "runs")
        >>> [(run.planned, run.ran) for run in done.runs]        # the baseline and two strengths
        [(3, 3)]
        >>> done.runs[0].store == folder / "runs" / "demo" / "trials.sqlite"
        True
        >>> tmp.cleanup()
    """
    own = {s.key for s in sweep_file_free_settings()}
    extra = sorted(set(options) - own)
    if extra:
        raise ConfigError(f"sweep_experiment takes no option {', '.join(map(repr, extra))}: the experiment file "
                          f"gives the run's settings; its options are {', '.join(sorted(own))}")
    overrides = sweep_overrides(keyword_options("sweep", options, SweepConfig))
    experiment = load_experiment(path)
    base = None if out is None else Path(out)
    folders = [output_folder(base / name if base is not None else experiment.run_dir(name), option="out")
               for name, _ in experiment.sweeps]  # every run folder checked before any trial runs
    runs = tuple(_sweep_into(dataclasses.replace(config, **overrides), folder, progress)
                 for (_, config), folder in zip(experiment.sweeps, folders))
    return ExperimentRun(experiment=experiment, runs=runs, out=experiment.out if base is None else base)
