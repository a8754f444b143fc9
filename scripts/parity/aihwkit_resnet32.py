#!/usr/bin/env python
"""aihwkit 1.2.0 run on onnxnoise's ResNet32 weights: PCM drift with global drift compensation.

Runs only where IBM's aihwkit is installed (a venv of its own, never onnxnoise's environment or CI:
../shared/PARITY.md, "building aihwkit here"). It puts aihwkit's own numbers beside onnxnoise's on
one model, the same images and the same inputs:

- model: the akamaster ResNet32 checkpoint ``../shared/models/cifar10-resnet/resnet32.th``, built with
  ``scripts/_cifar_resnet.py`` and BatchNorm folded into the convs by its ``fold_batchnorm`` (the
  default variant of ``scripts/export_models.py cifar-resnet``, the ONNX file onnxnoise measures:
  every conv gets weight and bias; the bias stays digital in the preset, ``digital_bias=True``);
- images: the first N of ``../shared/data/cifar-10-batches-py/test_batch`` (original order), RGB,
  ``(x / 255 - mean) / std`` with ImageNet mean/std (``CIFAR_PREPROCESS`` of export_models.py, the
  preprocessing stored in the ONNX metadata), float32, batch 128;
- setting: ``convert_to_analog(model, StandardHWATrainingPreset())`` (variant ``full``: 8-bit input
  and output, output noise, PCM read noise, tiles of 512 inputs, learned input ranges left at their
  initial value, see ``input_range_note`` in the settings JSON) and the same preset with
  ``rpu_config.forward.is_perfect = True`` (variant ``weight-only``: programming noise, drift, drift
  read noise and global drift compensation only);
- protocol (IBM/aihwkit ``notebooks/tutorial/hw_aware_training.ipynb``, last cell): ``model.eval()``,
  ``drift_analog_weights(t)`` for t = 60 s, 1 h, 1 d, 30 d, 360 d, then the test images. One
  difference, on purpose: the notebook converts once and only calls ``drift_analog_weights(t)``, which
  in aihwkit >= 0.9 programs the weights only on its first call (``InferenceTileWithPeriphery.
  drift_weights``: ``if self.programmed_weights is None: self.program_weights()``), so its five
  repetitions share one programming-noise draw. Here draw d calls ``torch.manual_seed(d)`` then
  ``program_analog_weights()`` (programming noise and drift exponents drawn anew from the reference
  weights) then ``drift_analog_weights(t)``: each draw is a new chip, and draw d is the same chip at
  every t.

Output: ``--out`` (CSV, one row per variant, t, draw: correct, images, top-1), rewritten atomically
after every pass and resumable (rows already there are skipped), and ``<out stem>.settings.json``
beside it (versions, the printed rpu_configs, FP count, protocol, input-range note).

Usage (from the repository root, with aihwkit's Python)::

    /work/aihwkit-venv/bin/python scripts/parity/aihwkit_resnet32.py --images 1000 --draws 5 \\
        --out reports/parity/aihwkit/resnet32-first1000.csv

Exit codes: 0 done, 2 bad arguments or aihwkit / torch / files missing (one ``error:`` line).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = ROOT / ".." / "shared" / "models" / "cifar10-resnet" / "resnet32.th"
TIMES = {"60s": 60.0, "1h": 3600.0, "1d": 86400.0, "30d": 2592000.0, "360d": 31104000.0}
VARIANTS = ("weight-only", "full")
FIELDS = ("variant", "t_label", "t_seconds", "draw", "seed", "images", "correct", "top1", "seconds")

try:
    import numpy as np
    import torch
    from aihwkit import __version__ as AIHWKIT_VERSION
    from aihwkit.nn.conversion import convert_to_analog
    from aihwkit.simulator.presets import StandardHWATrainingPreset
except ImportError as exc:  # the one-line answer where aihwkit is not installed
    print(f"error: this script needs aihwkit 1.2.0 and torch ({exc}); build them in a venv of their own as "
          "../shared/PARITY.md's last note says, then run it with that venv's python", file=sys.stderr)
    sys.exit(2)

sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "scripts" / "parity")]
from _cifar10_first import load_first, normalize  # noqa: E402
from _cifar_resnet import build_cifar_resnet, fold_batchnorm  # noqa: E402


def load_folded_resnet32(checkpoint: Path) -> torch.nn.Module:
    """akamaster ResNet32, eval mode, BatchNorm folded as export_models.py's default ONNX export.

    The checkpoint is ``{'state_dict': ...}`` with a ``module.`` prefix (DataParallel), read with
    ``weights_only=True``; ``export_models.load_cifar_resnet`` does the same but needs onnx, which
    this environment does not have.
    """
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = build_cifar_resnet(32)
    model.load_state_dict(state, strict=True)
    return fold_batchnorm(model.eval())


def rpu_config(variant: str) -> StandardHWATrainingPreset:
    """StandardHWATrainingPreset; ``weight-only`` sets ``forward.is_perfect = True``."""
    config = StandardHWATrainingPreset()
    if variant == "weight-only":
        config.forward.is_perfect = True
    return config


def all_fields(value: object) -> object:
    """A dataclass (an rpu_config and its parts) as nested dicts with every field, defaults included;
    other values as ``str``. ``str(rpu_config)`` shows only the fields that differ from their defaults."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: all_fields(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [all_fields(v) for v in value]
    return value if isinstance(value, (bool, int, float, type(None))) else str(value)


def count_correct(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, batch: int) -> int:
    """Top-1 hits of ``model`` on ``x`` ``(N, 3, 32, 32) float32``, ``batch`` images per call."""
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += int((model(x[i : i + batch]).argmax(1) == labels[i : i + batch]).sum())
    return correct


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def write_rows(path: Path, rows: list[dict[str, object]]) -> None:
    order = {v: i for i, v in enumerate(VARIANTS)}
    rows = sorted(rows, key=lambda r: (order[str(r["variant"])], float(r["t_seconds"]), int(r["draw"])))
    lines = [",".join(FIELDS)] + [",".join(str(r[k]) for k in FIELDS) for r in rows]
    write_atomic(path, "\n".join(lines) + "\n")


INPUT_RANGE_NOTE = (
    "StandardHWATrainingPreset enables learned input ranges (pre_post.input_range: enable=True, "
    "init_value=3.0, init_from_data=100, init_std_alpha=3.0). Each tile's range starts at 3.0; the "
    "data-based initialisation (a running mean of 3 * std of the tile's inputs over its first 100 "
    "batches) runs only in training mode (TileWithPeriphery.pre_forward calls apply_input_range(x, "
    "update_from_data=not is_test)), and no calibrate_input_ranges call is made here, so after "
    "convert_to_analog + eval() every tile clips its inputs to [-3.0, 3.0] and quantizes them with "
    "254 levels over that range (step 6/254 = 0.0236 in the units of the layer's input activations). "
    "In the weight-only variant (forward.is_perfect=True) the tile forward is exact, but the "
    "clamp to [-3.0, 3.0] of apply_input_range still runs before it."
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="first N CIFAR-10 test images (default 1000)")
    parser.add_argument("--draws", type=int, default=5, help="draws per variant and time (default 5)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="weight-only,full")
    parser.add_argument("--times", default=",".join(TIMES), help="of " + ",".join(TIMES))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, required=True, help="results CSV (resumed if it exists)")
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    times = args.times.split(",")
    bad = [v for v in variants if v not in VARIANTS] + [t for t in times if t not in TIMES]
    if bad or not 1 <= args.images <= 10_000 or args.draws < 1:
        print(f"error: bad --variants/--times/--images/--draws ({bad or 'ranges'}); variants: "
              f"{','.join(VARIANTS)}, times: {','.join(TIMES)}, images 1..10000, draws >= 1", file=sys.stderr)
        return 2
    if not CHECKPOINT.is_file():
        print(f"error: checkpoint not found: {CHECKPOINT} (the ../shared folder beside the repository)",
              file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)

    images, labels = load_first(args.images)
    x = torch.from_numpy(normalize(images))
    y = torch.from_numpy(labels)
    model = load_folded_resnet32(CHECKPOINT)
    fp_correct = count_correct(model, x, y, args.batch_size)
    print(f"FP (torch, BN folded): {fp_correct}/{args.images} = {100 * fp_correct / args.images:.2f}%", flush=True)

    settings_path = args.out.with_suffix(".settings.json")
    settings = {
        "versions": {"aihwkit": AIHWKIT_VERSION, "torch": torch.__version__, "numpy": np.__version__,
                     "python": platform.python_version(), "machine": platform.machine()},
        "torch_threads": torch.get_num_threads(),
        "model": {"checkpoint": "../shared/models/cifar10-resnet/resnet32.th",
                  "sha256": hashlib.sha256(CHECKPOINT.read_bytes()).hexdigest(),
                  "architecture": "scripts/_cifar_resnet.py build_cifar_resnet(32)",
                  "batchnorm": "folded into the convs (scripts/_cifar_resnet.py fold_batchnorm, "
                               "torch.nn.utils.fusion.fuse_conv_bn_eval), as export_models.py's default ONNX export"},
        "data": {"source": "../shared/data/cifar-10-batches-py/test_batch, first N in file order",
                 "images": args.images,
                 "preprocess": "RGB, (x / 255 - mean) / std, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)",
                 "batch_size": args.batch_size},
        "fp": {"correct": fp_correct, "images": args.images, "top1": round(100 * fp_correct / args.images, 2)},
        "protocol": ("per variant: convert_to_analog(folded model, rpu_config) once, model.eval(); per draw d "
                     "and time t: torch.manual_seed(d); model.program_analog_weights(); "
                     "model.drift_analog_weights(t); top-1 on the images. seed = d."),
        "times_s": TIMES,
        "rpu_config": {v: str(rpu_config(v)) for v in VARIANTS},
        "rpu_config_all_fields": {v: all_fields(rpu_config(v)) for v in VARIANTS},
        "input_range_note": INPUT_RANGE_NOTE,
    }
    write_atomic(settings_path, json.dumps(settings, indent=2) + "\n")

    rows: list[dict[str, object]] = read_rows(args.out)
    done = {(r["variant"], r["t_label"], int(r["draw"]), int(r["images"])) for r in rows}
    for variant in variants:
        todo = [(t, d) for d in range(args.draws) for t in times if (variant, t, d, args.images) not in done]
        if not todo:
            continue
        analog = convert_to_analog(load_folded_resnet32(CHECKPOINT), rpu_config(variant))
        analog.eval()
        for t, draw in todo:
            start = time.perf_counter()
            torch.manual_seed(draw)
            analog.program_analog_weights()
            analog.drift_analog_weights(TIMES[t])
            correct = count_correct(analog, x, y, args.batch_size)
            seconds = time.perf_counter() - start
            rows.append({"variant": variant, "t_label": t, "t_seconds": TIMES[t], "draw": draw, "seed": draw,
                         "images": args.images, "correct": correct,
                         "top1": round(100 * correct / args.images, 2), "seconds": round(seconds, 1)})
            write_rows(args.out, rows)
            print(f"{variant} t={t} draw {draw}: {correct}/{args.images} = {100 * correct / args.images:.2f}% "
                  f"({seconds:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
