"""The ``onnxnoise`` argument parser: subcommands, flags, help texts, exit codes.

Flags default to ``None`` (not given): defaults live in :mod:`onnxnoise.config`.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from onnxnoise import __version__
from onnxnoise.config import EXECUTORS
from onnxnoise.cli.data_command import add_data_parser
from onnxnoise.data import list_presets
from onnxnoise.engine.runtime import DEVICES
from onnxnoise.noise import BN_VARIANCE_POLICIES, NOISE_MODELS
from onnxnoise.options import strength_options

#: Exit codes: a trial failed / the baseline missed ``--expect-top1`` (1), bad input (2), interrupted (130).
EXIT_FAILED_TRIALS = 1
EXIT_BASELINE_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2.

    A value starting with ``-`` and a digit (``--t -1s``, ``--ber -1e-3``) is a value, not
    an option (no option starts so; Python 3.13's argparse reads them the same way), so it
    reaches the option's own range check instead of ``expected one argument``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


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
                        "ImageNet flat val folder, .npz, or a name from `onnxnoise data list` (default: the "
                        "registered dataset whose class count matches the model's outputs)")
    noise = parser.add_argument_group("noise")
    noise.add_argument("--noise", metavar="MODEL[:KEY=VALUE,...]",
                       help=f"noise model and its parameters, e.g. pcm:compensation=global or "
                       f"gaussian-snr:scope=channel; models: {', '.join(sorted(NOISE_MODELS))} (default gaussian-snr; "
                       "`onnxnoise noise-models` lists their parameters)")
    noise.add_argument("--noise-model", metavar="NAME", help=argparse.SUPPRESS)  # older spelling of --noise MODEL
    noise.add_argument("--noise-param", action="append", metavar="NAME=VALUE", help=argparse.SUPPRESS)
    for flag, help_text in strength_options().items():  # each model's own strength option: --snr, --t, --rate...
        noise.add_argument(f"--{flag}", metavar="LIST", help=help_text)
    noise.add_argument("--strength", metavar="LIST", help="any noise model's strengths, the generic spelling of "
                       "its own option (e.g. --strength 1s,1h,1d,30d,1y for pcm = --t 1s,1h,1d,30d,1y); "
                       "default: the model's grid (`onnxnoise noise-models`)")
    noise.add_argument("--seeds", help="noise draws per strength: a count N (seeds 0..N-1), seeds like 40,30, "
                       "or auto: seeds 0,1,... until the 95%% interval of the mean top-1 is under --ci-halfwidth "
                       "(default 3)")
    noise.add_argument("--ci-halfwidth", type=float, metavar="POINTS",
                       help="--seeds auto: target 95%% t-interval half-width of the mean top-1, accuracy points")
    noise.add_argument("--max-seeds", type=int, metavar="N",
                       help="--seeds auto: most draws per strength and layer, >= 3 (default 20)")
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
    run.add_argument("--threads", type=int, help="CPU threads: intra-op threads of each session (default: "
                     "onnxruntime's choice); per-layer trials with prefix reuse run this many single-threaded "
                     "suffix sessions side by side instead (default: one per usable CPU)")
    run.add_argument("--tf32", action="store_true", default=None,
                     help="CUDA: let float32 convolutions and matrix products run in TF32 (faster on Ampere and "
                     "newer GPUs, not float32; recorded in every trial row and key); default exact float32")
    run.add_argument("--no-cache", action="store_true",
                     help="do not keep decoded images in the on-disk cache ($ONNXNOISE_CACHE_DIR or ~/.cache/onnxnoise)")
    run.add_argument("--score-output", metavar="NAME", help="name of the model's score output (default: the first)")
    run.add_argument("--label-offset", type=int, help="add to every label to index the model's outputs "
                     "(default: 1 for 1001-output models with a background class on 1000-class data, else 0)")
    run.add_argument("--out", type=Path, help="output folder (bench: reports/<model>-<timestamp>/, "
                     "sweep: runs/<model>/)")
    check = parser.add_argument_group("baseline check")
    check.add_argument("--expect-top1", type=float, metavar="PCT",
                       help="expected clean top-1 in percent: a baseline outside PCT +- --tolerance exits 1 "
                       "before any noisy trial runs")
    check.add_argument("--tolerance", type=float, metavar="POINTS",
                       help="allowed distance from --expect-top1 in percentage points (default 0.5)")


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
    sweep.add_argument("--prefix-memory", type=float, metavar="GIB",
                       help="most memory prefix reuse keeps clean activations in, whatever the dataset size "
                       "(GPU memory on CUDA); the rest goes to disk in the cache folder or is recomputed, whichever "
                       "is cheaper; same counts (default 4)")
    where = sweep.add_argument_group("executor (where trials run; see docs/distributed.md)")
    where.add_argument("--executor", choices=EXECUTORS,
                       help="local: this process (default); ray: Ray workers on this machine or a cluster, same "
                       "counts (pip install 'onnxnoise[ray]')")
    where.add_argument("--address", metavar="ADDR",
                       help="Ray cluster to join: host:port printed by `ray start --head`, or auto "
                       "(default: start a local Ray instance)")
    where.add_argument("--workers", type=int, metavar="N",
                       help="Ray workers, each single-threaded unless --threads (default: as many as the "
                       "cluster's CPUs, or GPUs with --gpus-per-trial, hold)")
    where.add_argument("--gpus-per-trial", type=float, metavar="F",
                       help="GPUs each Ray worker requests, e.g. 1 or 0.5 (runs the CUDA execution provider)")
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

    add_data_parser(sub)

    from onnxnoise.check.command import add_check_parser  # check: the CI gate (onnxnoise/check/)

    add_check_parser(sub, _add_run_args)

    models = sub.add_parser("noise-models", help="list the registered noise models, their strength axis and parameters")
    models.add_argument("--json", action="store_true", help="print the list as JSON")
    return parser
