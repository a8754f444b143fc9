"""One function per subcommand: parsed arguments -> one library call -> printed results and an exit code."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Mapping
from pathlib import Path

from rich.console import Console

from onnxnoise.bench import bench_files, bench_in_folder
from onnxnoise.check.job import DRAW_SETTINGS_REFUSED
from onnxnoise.cli.check_command import run_check
from onnxnoise.cli.data_command import cmd_data
from onnxnoise.cli.flags import command_settings, given_options
from onnxnoise.cli.output import RichProgress, intervals_note, json_text, written_lines
from onnxnoise.cli.parser import CHECK_SETTINGS, EXIT_FAILED_TRIALS
from onnxnoise.config import RunConfig, SweepConfig
from onnxnoise.demo import demo_paths
from onnxnoise.engine.context import prepare_context
from onnxnoise.errors import ConfigError, OnnxNoiseError
from onnxnoise.experiment import load_experiment, load_settings_file
from onnxnoise.files import output_folder
from onnxnoise.model import layer_report, load_model
from onnxnoise.model.quant import describe_quantization
from onnxnoise.noise import axis_label, axis_of
from onnxnoise.noise_catalog import noise_model_list, preset_list, tile_stages
from onnxnoise.report.blame_view import blame_console
from onnxnoise.report.console import (a_avr_table, bench_caption, layers_table, paired_table, summary_table,
                                     verdicts_table)
from onnxnoise.report.comparison import INTERVAL_NOTE, comparison_json, write_comparison
from onnxnoise.report.results import report_json
from onnxnoise.report.study import collect_runs, collect_trials, write_report
from onnxnoise.run_setup import default_out_dir, run_setup, sweep_config, sweep_overrides
from onnxnoise.store import STORE_NAME, run_store
from onnxnoise.sweep import make_executor, run_sweep


def _run_config(args: argparse.Namespace, model: Path, data: Path | None) -> RunConfig:
    """The RunConfig of parsed arguments (:func:`onnxnoise.run_setup.run_setup`); its notes and warnings on stderr.

    ``data`` may be a registered name, or None for the registered dataset matching the
    model's outputs (:func:`onnxnoise.data.registry.resolve_data`).
    """
    setup = run_setup(model, data, given_options(args, args.command, RunConfig), command=args.command)
    for line in setup.notes:
        print(f"onnxnoise: {line}", file=sys.stderr)
    for line in setup.warnings:
        print(f"onnxnoise: WARNING: {line}", file=sys.stderr)
    return setup.config


def with_settings_file(args: argparse.Namespace, *classes: type,
                       refused: Mapping[str, str] | None = None) -> argparse.Namespace:
    """``args`` with the values of ``--config FILE`` where no flag was given (flags override the file).

    Raises:
        ExperimentError: A bad settings file (:func:`onnxnoise.experiment.load_settings_file`).
        ConfigError: A required setting given neither way.
    """
    if getattr(args, "config", None) is not None:
        values = load_settings_file(args.config, args.command, *classes, refused=refused)
        args = argparse.Namespace(**{**vars(args), **{k: v for k, v in values.items()
                                                      if v is not None and getattr(args, k, None) is None}})
    missing = [s for s in command_settings(args.command, *classes) if s.required and getattr(args, s.key) is None]
    if missing:
        raise ConfigError(f"{args.command} needs {missing[0].flag} {missing[0].metavar or 'VALUE'} (or "
                          f"`{missing[0].key} = ...` in its --config file)")
    return args


def cmd_bench(args: argparse.Namespace, console: Console) -> int:
    args = with_settings_file(args, RunConfig)
    demo = args.model is None
    if demo:
        if args.data is not None:
            raise OnnxNoiseError("`--data` given without MODEL; pass the ONNX model too (or neither for the demo)")
        model, data = demo_paths()
        console.print(f"[bold]onnxnoise demo[/]: no MODEL given, benchmarking the built-in Fashion-MNIST "
                      f"demo classifier ({model.name}) on its {data.name} test subset.")
    else:
        model, data = args.model, args.data  # no --data: the registered dataset matching the model's outputs
    config = _run_config(args, model, data)
    out = output_folder(args.out or default_out_dir("bench", model))
    with console.status("loading model and decoding images"):
        context = prepare_context(config, calibration_dir=out)
    progress = RichProgress(console, config.noise.noise_model)
    try:
        result, summary = bench_in_folder(config, out, progress=progress, context=context, demo=demo)
    finally:
        progress.stop()
    console.print(summary_table(result.summary, title=f"{result.meta['model']} on {result.meta['dataset']}"))
    paired = paired_table(result.summary)
    if paired is not None:
        console.print(paired)
    console.print(bench_caption(result.meta))
    if result.scope_check is not None:
        console.print(f"[bold]scope check[/] (--scope-check {config.scope_check}: the worst strengths again with "
                      f"sigma per output channel, same seeds and images; paired 95% interval):")
        for line in result.scope_check.lines:
            console.print(f"  {line}", highlight=False, markup=False)
    for line in result.meta.get("seeds_auto", {}).get("short_of_target", []):
        console.print(f"[yellow]stopped at --max-seeds short of --ci-halfwidth:[/] {line}", highlight=False)
    for line in written_lines(out, bench_files(result, out), width=console.width):
        console.print(line, soft_wrap=True, highlight=False, markup=False)
    if args.json:
        print(json_text(summary))
    return failed_exit(result.meta["failed"], console)


def failed_exit(failed: int, console: Console) -> int:
    """Exit 1 when a trial failed: its numbers are missing and the run must not look complete."""
    if failed:
        console.print(f"[red]{failed} trial(s) failed[/]; their rows carry the error (column `error`)")
        return EXIT_FAILED_TRIALS
    return 0


def _run_one_sweep(config: SweepConfig, out: Path, console: Console) -> int:
    noise, axis = config.run.noise, axis_of(config.run.noise.noise_model)
    strengths = (f"({', '.join(axis.text_of(v) for v in noise.strengths)})" if not axis.flags  # none: weights exact
                 else f"{axis_label(noise.noise_model)} {', '.join(axis.format_value(v) for v in noise.strengths)}")
    console.print(f"[bold]sweep[/] {config.run.model.name} on {config.run.data}: modes {', '.join(config.modes)}, "
                  f"{noise.model} {strengths}, "
                  + (f"seeds auto (95% half-width < {noise.ci_halfwidth:g} points, 3 to {noise.max_seeds} draws)"
                     if noise.seeds == "auto" else f"seeds {', '.join(map(str, noise.seed_list))}")
                  + f" -> {out}/{STORE_NAME}")
    executor = make_executor(config)  # before loading anything: `--executor ray` without Ray is one line
    with console.status("loading model and decoding images"):
        context = prepare_context(config.run, calibration_dir=out)
    for warning in context.warnings:
        console.print(f"[bold red]WARNING:[/] {warning}")
    with run_store(out / STORE_NAME) as store:
        progress = RichProgress(console, noise.noise_model)
        try:
            result = run_sweep(config, store, progress=progress, context=context, executor=executor)
        finally:
            progress.stop()
            executor.close()
    console.print(f"{result.planned} trials planned: {result.done} already done"
                  + (f" ({result.adopted} adopted from a version 1 store)" if result.adopted else "")
                  + f", {result.ran} run now"
                  + (f", {result.taken} recorded meanwhile by another process" if result.taken else "")
                  + (f", [red]{result.failed} failed[/]" if result.failed else "")
                  + (f", {result.settled} draws not needed (--seeds auto)" if result.settled else ""))
    for line in result.short_of_target:
        console.print(f"[yellow]stopped at --max-seeds short of --ci-halfwidth:[/] {line}", highlight=False)
    for line in result.stages:
        console.print(line, highlight=False, markup=False)
    for warning in result.warnings:
        console.print(f"[bold red]WARNING:[/] {warning}", highlight=False)
    return failed_exit(result.failed, console)


def cmd_sweep(args: argparse.Namespace, console: Console) -> int:
    if args.config is not None:
        if args.model is not None or args.data is not None:
            raise OnnxNoiseError("give either `--config FILE.toml` or MODEL with `--data`, not both")
        experiment = load_experiment(args.config)
        where = sweep_overrides(vars(args))  # --executor, --address...: not in the file
        for name, _ in experiment.sweeps:
            output_folder(args.out / name if args.out else experiment.run_dir(name))
        codes = [_run_one_sweep(dataclasses.replace(config, **where), args.out / name if args.out
                                else experiment.run_dir(name), console)
                 for name, config in experiment.sweeps]
        console.print(f"report: onnxnoise report {args.out or experiment.out}")
        return max(codes, default=0)
    if args.model is None:
        raise OnnxNoiseError("`sweep` needs MODEL (with `--data`, or a registered dataset), or `--config FILE.toml`")
    run = _run_config(args, args.model, args.data)
    config = sweep_config(run, given_options(args, "sweep", SweepConfig))
    out = output_folder(args.out or default_out_dir("sweep", args.model))
    code = _run_one_sweep(config, out, console)
    console.print(f"report: onnxnoise report {out}")
    return code


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    out = output_folder(args.out or args.run_dir[0])
    trials = collect_trials(args.run_dir)
    files = write_report(trials, collect_runs(args.run_dir), out, title=args.title)
    for table in blame_console(files.blame, args.top) if files.blame is not None else ():
        console.print(table)
    models = files.summary["model"].unique().sort().to_list()
    console.print(summary_table(files.summary, title=f"whole-model and baseline trials: {', '.join(models)}"))
    paired = paired_table(files.summary)
    if paired is not None:
        console.print(paired)
    a_avr = files.a_avr is not None and not files.a_avr.is_empty()
    if a_avr:
        console.print(a_avr_table(files.a_avr))
    console.print(intervals_note(a_avr=a_avr), markup=False, highlight=False)
    for warning in files.warnings:
        console.print(f"[bold red]WARNING:[/] {warning}", highlight=False)
    console.print(f"wrote {files.markdown}, {len(files.tables)} files of tables, {len(files.figures)} figure files "
                  f"in {out}")
    if len(models) > 1:
        console.print(f"differences with intervals and a verdict: onnxnoise compare "
                      f"{' '.join(str(d) for d in args.run_dir)}", highlight=False, markup=False)
    if args.json:
        print(json_text(report_json(files.results, files.a_avr, files.warnings, out,
                                    [*files.tables, *files.figures, files.markdown])))
    return 0


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    out = output_folder(args.out or default_out_dir("compare"))
    files = write_comparison(collect_trials(args.run_dir), collect_runs(args.run_dir), out)
    if files.a_avr is not None:
        console.print(a_avr_table(files.a_avr))
    if files.summary.is_empty():
        console.print("one model, or none sharing a strength: no difference to give (compare.md says so)")
    else:
        console.print(verdicts_table(files.summary))
        for sentence in files.summary["sentence"].to_list():
            console.print(f"- {sentence}", markup=False, highlight=False)
        console.print(INTERVAL_NOTE, markup=False, highlight=False)
    console.print(f"wrote {files.markdown}, {len(files.tables)} files of tables, {len(files.figures)} figure files "
                  f"in {out}")
    if args.json:
        print(json_text(comparison_json(files.summary)))
    return 0


def cmd_layers(args: argparse.Namespace, console: Console) -> int:
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


def _print_presets(args: argparse.Namespace, console: Console) -> int:
    presets = preset_list()
    if args.json:
        print(json_text({"presets": presets}, indent=2))
        return 0
    for p in presets:
        console.print(f"[bold]{p['name']}[/]: {p['summary']}", highlight=False)
        console.print(f"  = {p['flags']}", highlight=False, markup=False)
        console.print(f"  source: {p['source']}", highlight=False, markup=False)
        for key, text in p["cites"].items():
            console.print(f"  {key}: {text}", highlight=False, markup=False)
    console.print("use one with --analog-preset NAME (bench, sweep, check); flags given explicitly override its "
                  "settings", highlight=False)
    return 0


def cmd_noise_models(args: argparse.Namespace, console: Console) -> int:
    if getattr(args, "presets", False):
        return _print_presets(args, console)
    models = noise_model_list()
    stages = tile_stages()
    if args.json:
        print(json_text({"noise_models": models, "tile_stages": stages}, indent=2))
        return 0
    for m in models:
        axis = m["strength"]
        defaults = m["default_strengths_text"] or [f"{v:g}" for v in m["default_strengths"]]
        console.print(f"[bold]{m['name']}[/]: {m['source']}", highlight=False)
        if m["name"] == "none":  # one fixed strength and no option of its own: nothing to give
            console.print(f"  strength: none to give (its one strength is 0: {defaults[0]})", highlight=False,
                          markup=False)
            console.print(f"  e.g. {stages['alone']}", highlight=False, markup=False)
        else:
            console.print(f"  strength: {axis['name']} ({axis['label']}), given with {' or '.join(axis['options'])}"
                          + ("; takes time units s, min, h, d, w, y" if axis["time"] else "")
                          + f"; unit {axis['unit'] or '-'}, {'log' if axis['log'] else 'linear'} axis, "
                          f"more noise when {axis['more_noise_when']}", highlight=False, markup=False)
        if m["example"] and m["name"] != "none":
            console.print(f"  e.g. --noise {m['name']} {m['example']}", highlight=False, markup=False)
        console.print(f"  default strengths: {', '.join(defaults)}", highlight=False)
        params = ", ".join(f"{k}={json.dumps(v)}" for k, v in m["params"].items()) or "(none)"
        console.print(f"  parameters: {params}", highlight=False, markup=False)
    console.print("choose one with --noise MODEL[:key=value,...] and give its strengths with its own option "
                  "(or --strength), e.g. --noise pcm:compensation=global --t 1s,1h,1d,30d,1y", highlight=False)
    console.print(f"[bold]tile stages[/]: {stages['note']}; flags {', '.join(stages['flags'])}; alone: "
                  f"{stages['alone']}", highlight=False)
    return 0


def cmd_check(args: argparse.Namespace, console: Console) -> int:
    """``onnxnoise check``: the CI gate (:func:`onnxnoise.cli.check_command.run_check`); exit 0 / 1 / 3."""
    args = with_settings_file(args, *CHECK_SETTINGS, refused=DRAW_SETTINGS_REFUSED)
    if args.model is None:
        raise OnnxNoiseError("`check` needs MODEL (or `model = \"FILE.onnx\"` in its --config file)")
    return run_check(args, console, lambda options: _run_config(options, options.model, options.data))


#: Subcommand name -> its function ``(args, console) -> exit code``.
COMMANDS = {"bench": cmd_bench, "sweep": cmd_sweep, "report": cmd_report, "compare": cmd_compare,
            "layers": cmd_layers, "noise-models": cmd_noise_models, "data": cmd_data, "check": cmd_check}
