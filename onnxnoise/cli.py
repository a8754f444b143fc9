"""Command-line interface: ``onnxnoise bench|sweep|report|compare|layers|noise-models``.

The CLI turns arguments into config dataclasses, makes one library call per
subcommand, and owns printing, logging and exit codes: 0 success, 1 a trial failed or
the baseline missed ``--expect-top1``, 2 bad input (one line on stderr, no traceback),
130 interrupted. Every JSON it writes is strict: non-finite numbers become ``null``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import polars as pl

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from onnxnoise import __version__
from onnxnoise.bench import BaselineExpectationError, run_bench
from onnxnoise.config import NoiseConfig, RunConfig, SweepConfig, given, parse_names
from onnxnoise.data import PREPROCESS_KEYS, list_presets
from onnxnoise.demo import demo_paths
from onnxnoise.engine.context import prepare_context
from onnxnoise.engine.executor import Progress as _Progress
from onnxnoise.engine.runtime import DEVICES
from onnxnoise.errors import OnnxNoiseError
from onnxnoise.experiment import load_experiment
from onnxnoise.model import layer_report, load_model
from onnxnoise.model.quant import describe_quantization
from onnxnoise.noise import BN_VARIANCE_POLICIES, NOISE_MODELS, NoiseModel
from onnxnoise.report.console import a_avr_table, bench_caption, layers_table, summary_table
from onnxnoise.report.study import collect_runs, collect_trials, write_comparison, write_report
from onnxnoise.report.tables import write_table
from onnxnoise.store import STORE_NAME, open_store
from onnxnoise.store.schema import JSON_COLUMNS
from onnxnoise.sweep import run_sweep

__all__ = ["main", "build_parser"]

#: What ± means in the report and compare tables.
_INTERVALS = ("± = 95% Student t interval over seeds ([low, high] when it leaves the possible range: below 0, above 100%); "
              "A_avr = mean over layers of a/a0 with noise in one layer at a time (paper eq. 3)")

EXIT_FAILED_TRIALS = 1
EXIT_BASELINE_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _finite(obj):
    """``obj`` with every non-finite float (NaN, inf; numpy scalars too) replaced by None, recursively."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item") and hasattr(obj, "dtype") and getattr(obj, "ndim", None) == 0:
        return _finite(obj.item())
    return obj


def json_text(obj, *, indent: int | None = None) -> str:
    """Strict JSON text of ``obj``: non-finite numbers become ``null`` (never a bare ``NaN`` token)."""
    return json.dumps(_finite(obj), indent=indent, allow_nan=False)


def _add_preprocess_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("preprocessing (each overrides the preset and the model's defaults)")
    group.add_argument("--preprocess", metavar="PRESET", choices=list_presets(),
                       help=f"preset: {', '.join(list_presets())} (default: the model's own, else torchvision)")
    group.add_argument("--resize", type=int, metavar="PX", help="resize the short side to PX pixels")
    group.add_argument("--crop", type=int, metavar="PX", help="center crop PX x PX")
    group.add_argument("--crop-pct", type=float, metavar="F", help="resize = crop / F (timm convention)")
    group.add_argument("--interpolation", choices=["bilinear", "bicubic", "nearest", "lanczos"])
    group.add_argument("--scale", type=float, help="multiply uint8 pixels by this before mean/std (e.g. 0.00392)")
    group.add_argument("--mean", type=_floats, metavar="M[,M,M]", help="per-channel mean, model channel order")
    group.add_argument("--std", type=_floats, metavar="S[,S,S]", help="per-channel std, model channel order")
    group.add_argument("--channel-order", choices=["RGB", "BGR"])
    group.add_argument("--layout", choices=["NCHW", "NHWC"], help="input layout (default: from the model's input)")
    group.add_argument("--force-preprocess", action="store_true", default=None,
                       help="run mean/std whose units disagree with --scale (0..255 values with x/255, "
                       "or 0..1 values with --scale 1) instead of refusing them")


def _add_run_args(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by ``bench`` and ``sweep``; defaults live in onnxnoise.config, not here."""
    parser.add_argument("--data", type=Path, help="dataset: CIFAR batch folder, class folders, "
                        "ImageNet flat val folder, or .npz")
    noise = parser.add_argument_group("noise")
    noise.add_argument("--noise", metavar="MODEL[:KEY=VALUE,...]",
                       help=f"noise model and its parameters, e.g. pcm:compensation=global or "
                       f"gaussian-snr:scope=channel; models: {', '.join(sorted(NOISE_MODELS))} (default gaussian-snr; "
                       "`onnxnoise noise-models` lists their parameters)")
    noise.add_argument("--noise-model", metavar="NAME", help=argparse.SUPPRESS)  # older spelling of --noise MODEL
    noise.add_argument("--noise-param", action="append", metavar="NAME=VALUE", help=argparse.SUPPRESS)
    noise.add_argument("--snr", help="gaussian-snr: linear SNR list sigma_w/sigma_noise, e.g. 100,10,5")
    noise.add_argument("--noise-pct", help="gaussian-snr: noise std in percent of sigma_w, e.g. 1,2,5,10 "
                       "(the default grid)")
    noise.add_argument("--strength", help="the noise model's strength values, e.g. 0.001,0.01 (stuck-at); "
                       "a time strength (pcm) takes units s, min, h, d, w, y: 1s,1h,1d,30d,1y")
    noise.add_argument("--seeds", help="noise draws per strength: a count N (seeds 0..N-1) or seeds like 40,30 "
                       "(default 3)")
    noise.add_argument("--layer-regex", metavar="REGEX", help="noise only layers whose name or op type matches")
    noise.add_argument("--op-types", help="comma-separated op types to noise, e.g. Conv,Gemm")
    noise.add_argument("--include-preprocessing", action="store_true", default=None,
                       help="also noise input-normalization constants inside the graph (preprocessing by default)")
    noise.add_argument("--bn-variance", choices=BN_VARIANCE_POLICIES,
                       help="negative BatchNormalization variance under noise: clamp to 0 (default), "
                       "abs, or keep (gives NaN logits)")
    noise.add_argument("--keep-zeros", action="store_true", default=None,
                       help="keep exactly-zero (pruned) weights at zero")
    data = parser.add_argument_group("data")
    data.add_argument("--limit", type=int, help="evaluate a class-stratified subset of N images")
    data.add_argument("--ground-truth", type=Path, help="ImageNet val ground-truth file (flat val folders)")
    data.add_argument("--strict", action="store_true", default=None,
                      help="fail on unreadable images instead of skipping")
    _add_preprocess_args(parser)
    run = parser.add_argument_group("runtime and output")
    run.add_argument("--device", choices=DEVICES, help="execution provider (default auto)")
    run.add_argument("--batch-size", type=int, help="images per ONNX Runtime call (default 128)")
    run.add_argument("--threads", type=int, help="CPU threads (default: onnxruntime's choice)")
    run.add_argument("--no-cache", action="store_true",
                     help="do not keep decoded images in the on-disk cache ($ONNXNOISE_CACHE_DIR or ~/.cache/onnxnoise)")
    run.add_argument("--score-output", metavar="NAME", help="name of the model's score output (default: the first)")
    run.add_argument("--label-offset", type=int, help="add to every label to index the model's outputs "
                     "(default: 1 for 1001-output models with a background class on 1000-class data, else 0)")
    run.add_argument("--out", type=Path, help="output folder (bench: reports/<model>-<timestamp>/, "
                     "sweep: runs/<model>/)")


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
    _add_run_args(bench)
    bench.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    bench.add_argument("--expect-top1", type=float, metavar="PCT",
                       help="expected clean top-1 in percent: a baseline outside PCT +- --tolerance exits 1 "
                       "before any noisy trial runs")
    bench.add_argument("--tolerance", type=float, metavar="POINTS",
                       help="allowed distance from --expect-top1 in percentage points (default 0.5)")

    sweep = sub.add_parser("sweep", help="the paper's experiments, resumable: all / per-layer / cumulative",
                           description="Run a sweep into a durable trial store (RUN_DIR/trials.sqlite). Running "
                           "the same command again resumes: finished trials are skipped.")
    sweep.add_argument("model", nargs="?", type=Path, help="ONNX classifier (or give --config)")
    sweep.add_argument("--config", type=Path, metavar="FILE.toml",
                       help="experiment file with models, data, preprocessing, modes, SNRs and seeds")
    sweep.add_argument("--mode",
                       help="comma-separated: all (noise in every layer), per-layer (one layer at a time), "
                       "cumulative (layers 1..L); default all")
    sweep.add_argument("--no-prefix-reuse", action="store_true",
                       help="evaluate per-layer trials on the full model instead of reusing clean activations "
                       "before the noised layer (same predictions, slower)")
    _add_run_args(sweep)

    report = sub.add_parser("report", help="tables, figures and report.md from sweep run folders")
    report.add_argument("run_dir", type=Path, nargs="+", help="run folder(s) holding trials.sqlite")
    report.add_argument("--out", type=Path, help="where to write (default: the first RUN_DIR)")
    report.add_argument("--title", help="report title")

    compare = sub.add_parser("compare", help="models side by side: A_avr and degradation per SNR")
    compare.add_argument("run_dir", type=Path, nargs="+", help="run folders with per-layer sweeps")
    compare.add_argument("--out", type=Path, help="where to write (default: reports/compare-<timestamp>/)")

    layers = sub.add_parser("layers", help="list the parameter layers of a model")
    layers.add_argument("model", type=Path)
    layers.add_argument("--json", action="store_true", help="print the layer list as JSON")

    models = sub.add_parser("noise-models", help="list the registered noise models, their strength axis and parameters")
    models.add_argument("--json", action="store_true", help="print the list as JSON")
    return parser


class _RichProgress(_Progress):
    def __init__(self, console: Console, noise_model: NoiseModel) -> None:
        self.noise_model = noise_model
        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, transient=True,
        )
        self.task = None

    def start(self, trials: int, images_per_trial: int) -> None:
        self.bar.start()
        self.task = self.bar.add_task("trials", total=trials, status="")
        self.images = self.bar.add_task("images", total=images_per_trial, status="")

    def advance(self, images: int) -> None:
        self.bar.advance(self.images, images)

    def _log(self, text: str) -> None:
        """Without a terminal (logs, pipes) rich shows no bar: print a line every ~10% instead."""
        done = int(self.bar.tasks[0].completed)
        total = int(self.bar.tasks[0].total or 0)
        if not self.bar.console.is_terminal and (done == total or done % max(1, total // 10) == 0):
            self.bar.console.print(f"{done}/{total} trials, {self.bar.tasks[0].elapsed:.0f} s; last {text}")

    def trial_done(self, row: dict) -> None:
        label = self.noise_model.format_strength(row["strength"])
        if row["seed"] is not None:
            label += f" seed {row['seed']}"
        if row.get("mode") in ("per-layer", "cumulative"):
            label = f"{row['mode']} {row['layer_index']} {label}"
        status = (f"[red]failed: {row['error']}[/]" if row.get("error")
                  else f"top-1 {100.0 * row['top1_correct'] / row['images']:.2f}%")
        self.bar.update(self.task, advance=1, status=f"{label}: {status}")
        self._log(f"{label}: {status}")
        self.bar.reset(self.images)

    def stop(self) -> None:
        self.bar.stop()


def _run_config(args: argparse.Namespace, model: Path, data: Path) -> RunConfig:
    """The RunConfig of parsed arguments; options not given are left to the config's defaults."""
    noise = NoiseConfig.from_options(
        noise=args.noise, model=args.noise_model, params=args.noise_param, snr=args.snr, noise_pct=args.noise_pct,
        strength=args.strength, seeds=args.seeds, bn_variance=args.bn_variance, keep_zeros=args.keep_zeros)
    preprocess = {key: getattr(args, key) for key in PREPROCESS_KEYS if getattr(args, key, None) is not None}
    return RunConfig(model=model, data=data, noise=noise, **given(
        layer_regex=args.layer_regex, op_types=parse_names(args.op_types),
        include_preprocessing=args.include_preprocessing, limit=args.limit, device=args.device,
        batch_size=args.batch_size, threads=args.threads, preset=args.preprocess, preprocess=preprocess,
        ground_truth=args.ground_truth, score_output=args.score_output, label_offset=args.label_offset,
        strict=args.strict, cache=False if args.no_cache else None, force_preprocess=args.force_preprocess,
        expect_top1=getattr(args, "expect_top1", None), tolerance=getattr(args, "tolerance", None)))


def _cmd_bench(args: argparse.Namespace, console: Console) -> int:
    demo = args.model is None
    if demo:
        if args.data is not None:
            raise OnnxNoiseError("`--data` given without MODEL; pass the ONNX model too (or neither for the demo)")
        model, data = demo_paths()
        console.print(f"[bold]onnxnoise demo[/]: no MODEL given, benchmarking the built-in Fashion-MNIST "
                      f"demo classifier ({model.name}) on its {data.name} test subset.")
    else:
        if args.data is None:
            raise OnnxNoiseError("`--data` is required with MODEL (a dataset folder, CIFAR batch folder or .npz)")
        model, data = args.model, args.data
    config = _run_config(args, model, data)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or Path("reports") / f"{Path(model).stem}-{stamp}"
    with console.status("loading model and decoding images"):
        context = prepare_context(config)
    progress = _RichProgress(console, config.noise.noise_model)
    try:
        result = run_bench(config, progress=progress, context=context,
                           on_trial=lambda frame: write_table(frame, out, "trials"))
    finally:
        progress.stop()
    write_table(result.summary, out, "summary")
    base = result.summary.filter(pl.col("mode") == "baseline")
    summary = {
        "demo": demo,
        **result.meta,
        "out_dir": str(out),
        "baseline": {"top1_acc": base["top1_acc_mean"][0] if base.height else None,
                     "top5_acc": base["top5_acc_mean"][0] if base.height else None},
        "results": [
            {k: (json.loads(v) if k in JSON_COLUMNS and isinstance(v, str) else v) for k, v in row.items()}
            for row in result.summary.iter_rows(named=True)
        ],
    }
    (Path(out) / "bench.json").write_text(json_text(summary, indent=2) + "\n")
    console.print(summary_table(result.summary, title=f"{result.meta['model']} on {result.meta['dataset']}"))
    console.print(bench_caption(result.meta))
    console.print(f"trial table: {out}/trials.parquet, {out}/trials.csv")
    if args.json:
        print(json_text(summary))
    return _failed_exit(result.meta["failed"], console)


def _failed_exit(failed: int, console: Console) -> int:
    """Exit 1 when a trial failed: its numbers are missing and the run must not look complete."""
    if failed:
        console.print(f"[red]{failed} trial(s) failed[/]; their rows carry the error (column `error`)")
        return EXIT_FAILED_TRIALS
    return 0


def _run_one_sweep(config: SweepConfig, out: Path, console: Console) -> int:
    noise = config.run.noise
    console.print(f"[bold]sweep[/] {config.run.model.name} on {config.run.data}: modes {', '.join(config.modes)}, "
                  f"{noise.model} {noise.noise_model.strength_label} {', '.join(f'{v:g}' for v in noise.strengths)}, "
                  f"seeds {', '.join(map(str, noise.seed_list))} -> {out}/{STORE_NAME}")
    with console.status("loading model and decoding images"):
        context = prepare_context(config.run)
    for warning in context.warnings:
        console.print(f"[bold red]WARNING:[/] {warning}")
    with open_store(out / STORE_NAME) as store:
        progress = _RichProgress(console, noise.noise_model)
        try:
            result = run_sweep(config, store, progress=progress, context=context)
        finally:
            progress.stop()
    console.print(f"{result.planned} trials planned: {result.done} already done"
                  + (f" ({result.adopted} adopted from a version 1 store)" if result.adopted else "")
                  + f", {result.ran} run now"
                  + (f", {result.taken} recorded meanwhile by another process" if result.taken else "")
                  + (f", [red]{result.failed} failed[/]" if result.failed else ""))
    return _failed_exit(result.failed, console)


def _cmd_sweep(args: argparse.Namespace, console: Console) -> int:
    if args.config is not None:
        if args.model is not None or args.data is not None:
            raise OnnxNoiseError("give either `--config FILE.toml` or MODEL with `--data`, not both")
        experiment = load_experiment(args.config)
        codes = [_run_one_sweep(config, args.out / name if args.out else experiment.run_dir(name), console)
                 for name, config in experiment.sweeps]
        console.print(f"report: onnxnoise report {args.out or experiment.out}")
        return max(codes, default=0)
    if args.model is None or args.data is None:
        raise OnnxNoiseError("`sweep` needs MODEL and `--data`, or `--config FILE.toml`")
    config = SweepConfig(_run_config(args, args.model, args.data), **given(
        modes=parse_names(args.mode), prefix_reuse=False if args.no_prefix_reuse else None))
    out = args.out or Path("runs") / args.model.stem
    code = _run_one_sweep(config, out, console)
    console.print(f"report: onnxnoise report {out}")
    return code


def _cmd_report(args: argparse.Namespace, console: Console) -> int:
    out = args.out or args.run_dir[0]
    trials = collect_trials(args.run_dir)
    files = write_report(trials, collect_runs(args.run_dir), out, title=args.title)
    models = files.summary["model"].unique().sort().to_list()
    console.print(summary_table(files.summary, title=f"whole-model and baseline trials: {', '.join(models)}"))
    if files.a_avr is not None and not files.a_avr.is_empty():
        console.print(a_avr_table(files.a_avr))
    console.print(_INTERVALS)
    console.print(f"wrote {files.markdown}, {len(files.tables)} files of tables, {len(files.figures)} figure files "
                  f"in {out}")
    return 0


def _cmd_compare(args: argparse.Namespace, console: Console) -> int:
    out = args.out or Path("reports") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    files = write_comparison(collect_trials(args.run_dir), collect_runs(args.run_dir), out)
    console.print(a_avr_table(files.summary))
    console.print(_INTERVALS)
    console.print(f"wrote {len(files.tables)} files of tables, {len(files.figures)} figure files in {out}")
    return 0


def _cmd_layers(args: argparse.Namespace, console: Console) -> int:
    report = layer_report(load_model(args.model))
    layers = report.layers
    if args.json:
        print(json_text({
            "model": str(args.model),
            "layers": [layer.to_dict() for layer in layers],
            "total_layers": len(layers),
            "total_params": sum(layer.num_params for layer in layers),
            "set_aside": [entry.to_dict() for entry in report.set_aside],
            "left_out": report.left_out,
        }, indent=2))
    else:
        console.print(layers_table(layers, title=str(args.model)))
        quantized = describe_quantization(layers)
        if quantized:
            console.print(quantized)
        for line in report.set_aside_lines():
            console.print(line, markup=False, highlight=False)
    for line in report.left_out:
        console.print(f"[bold red]WARNING:[/] weight left out (not listed, not noised): {line}", highlight=False)
    return 0


def noise_model_list() -> list[dict]:
    """Every registered noise model: name, strength axis, default strengths, parameters with defaults, source.

    ``source`` is the first line of the class docstring (formula family and source).
    """
    from dataclasses import MISSING, fields

    from onnxnoise.config import is_time_strength
    from onnxnoise.noise import get_noise_model, make_noise_model

    get_noise_model("gaussian-snr")  # loads the built-in models
    out = []
    for name in sorted(NOISE_MODELS):
        cls = NOISE_MODELS[name]
        try:
            instance = make_noise_model(name)
        except OnnxNoiseError:
            instance = None
        params = {}
        for f in fields(cls):
            if instance is not None:
                value = getattr(instance, f.name)
            elif f.default is not MISSING:
                value = f.default
            elif f.default_factory is not MISSING:  # type: ignore[misc]
                value = f.default_factory()  # type: ignore[misc]
            else:
                value = None
            params[f.name] = list(value) if isinstance(value, tuple) else value
        doc = (cls.__doc__ or "").strip().splitlines()
        strengths = list(cls.default_strengths)
        out.append({
            "name": name,
            "strength": {"name": cls.strength_name, "label": cls.strength_label,
                         "more_noise_when": cls.more_noise_when, "time": is_time_strength(cls)},
            "default_strengths": strengths,
            "default_strengths_text": [instance.format_strength(v) for v in strengths] if instance else [],
            "params": params,
            "source": doc[0].strip() if doc else "",
        })
    return out


def _cmd_noise_models(args: argparse.Namespace, console: Console) -> int:
    models = noise_model_list()
    if args.json:
        print(json_text({"noise_models": models}, indent=2))
        return 0
    for m in models:
        axis = m["strength"]
        console.print(f"[bold]{m['name']}[/]: {m['source']}", highlight=False)
        console.print(f"  strength: {axis['name']} ({axis['label']}), more noise when {axis['more_noise_when']}"
                      + ("; takes time units s, min, h, d, w, y" if axis["time"] else ""), highlight=False)
        defaults = m["default_strengths_text"] or [f"{v:g}" for v in m["default_strengths"]]
        console.print(f"  default strengths: {', '.join(defaults)}", highlight=False)
        params = ", ".join(f"{k}={json.dumps(v)}" for k, v in m["params"].items()) or "(none)"
        console.print(f"  parameters: {params}", highlight=False, markup=False)
    console.print("choose one with --noise MODEL[:key=value,...], e.g. --noise pcm:compensation=global "
                  "--strength 1s,1h,1d,30d,1y", highlight=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    # With --json, stdout carries only the JSON; everything human goes to stderr.
    console = Console(stderr=bool(getattr(args, "json", False)))
    commands = {"bench": _cmd_bench, "sweep": _cmd_sweep, "report": _cmd_report, "compare": _cmd_compare,
                "layers": _cmd_layers, "noise-models": _cmd_noise_models}
    try:
        return commands[args.command](args, console)
    except BaselineExpectationError as exc:
        print(f"onnxnoise: error: {exc}", file=sys.stderr)
        return EXIT_BASELINE_UNEXPECTED
    except OnnxNoiseError as exc:
        print(f"onnxnoise: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        where = f" ({out})" if out else ""
        print(f"onnxnoise: interrupted; trials finished so far are in the output folder{where}; run the same "
              "command again to resume a sweep", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
