#!/usr/bin/env python3
"""The Python steps of scripts/check_cuda.sh: GPU checks whose figures go into docs/performance.md.

Usage::

    python scripts/cuda_check.py baseline MODEL DATA [--preset P] [--batch-size B] [--devices cpu,cuda] --out FILE
    python scripts/cuda_check.py trials MODEL DATA [--preset P] [--batch-size B] [--device cuda] [--rounds R]
        [--snr S] [--limit N] --out FILE
    python scripts/cuda_check.py stages FOLDER --out FILE
    python scripts/cuda_check.py write-doc FOLDER [--doc docs/performance.md] [--dry-run]

- ``baseline``: the clean trial on each device (CPU, CUDA in exact float32, CUDA with TF32): top-1 / top-5
  counts, their differences and the largest logit difference against the CPU, the ``use_tf32`` the key records.
- ``trials``: the engine's own trials on ``--device`` (CUDA: batches uploaded once and bound with IOBinding,
  per-layer cut activations kept on the device), in ``--rounds`` interleaved rounds after one untimed
  warm-up round. Each round: the clean trial (session build included, as in the trial table), one
  whole-model noisy trial (``gaussian-snr`` at ``--snr``, seed = round) split into draw (host), session
  build (the noisy weights handed over as ``OrtValue`` s and copied to the device once) and inference,
  and one per-layer pass (every selected layer, prefix reuse in lockstep). Ratios per round: whole-model
  = clean trial s / noisy trial s (issue 24 target >= 0.9 on ResNet-50-sized models), per-layer = clean
  trial s / mean per-layer trial s (target >= 1.5); mean with a two-sided 95% Student t interval.
- ``stages``: the analog tile's stages (8-bit DAC/ADC on 512-row tiles, read noise 0.04 twice) from the
  trial tables check_cuda.sh wrote with ``onnxnoise bench``: counts, CPU vs CUDA, read noise repeatable.
- ``write-doc``: the figures of every ``*.json`` in FOLDER as a Markdown block between the markers
  ``<!-- check_cuda: begin -->`` and ``<!-- check_cuda: end -->`` of the doc (``--dry-run``: printed only).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from onnxnoise.config import NoiseConfig, RunConfig  # noqa: E402
from onnxnoise.engine.context import prepare_context  # noqa: E402
from onnxnoise.engine.evaluate import evaluate  # noqa: E402
from onnxnoise.engine.plan import Trial  # noqa: E402
from onnxnoise.engine.executor import LocalExecutor  # noqa: E402
from onnxnoise.engine.layout import run_side_by_side  # noqa: E402
from onnxnoise.engine.trial import run_trial, run_trials  # noqa: E402
from onnxnoise.intervals import t_half_width  # noqa: E402
from onnxnoise.noise import draw_noise  # noqa: E402

BEGIN, END = "<!-- check_cuda: begin -->", "<!-- check_cuda: end -->"
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and two-sided 95% Student t half-width (NaN for fewer than two values)."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), t_half_width(float(v.std(ddof=1)), v.size, 0.95) if v.size > 1 else float("nan")


def machine() -> dict:
    """GPU name and memory (``nvidia-smi``, when there is one), CPU count, load average, onnxruntime version."""
    import onnxruntime  # noqa: PLC0415 (a script: the library is what is measured)

    gpu = None
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"gpu": gpu, "cpus": os.cpu_count(), "load": list(os.getloadavg()), "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "providers": onnxruntime.get_available_providers(),
            "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def _config(args, device: str, tf32: bool = False, snr: float = 10.0) -> RunConfig:
    return RunConfig(model=args.model, data=args.data, preset=None if args.preset in (None, "-") else args.preset,
                     device=device, tf32=tf32, batch_size=args.batch_size, limit=getattr(args, "limit", None) or None,
                     noise=NoiseConfig(strengths=(snr,), seeds=1))


def cmd_baseline(args) -> dict:
    runs = {}
    for name, device, tf32 in (("cpu", "cpu", False), ("cuda fp32", "cuda", False), ("cuda tf32", "cuda", True)):
        if device not in args.devices:
            continue
        context = prepare_context(_config(args, device, tf32))
        row = run_trial(context, Trial("baseline", None, (), None, None))
        assert row["error"] is None, row["error"]
        assert row["provider"] == PROVIDERS[device], row["provider"]
        session = context.factory.create()
        logits = np.concatenate([session.run(x)[: len(y)] for x, y in context.data.batches()])
        runs[name] = (row, logits, context.key_fields()["provider_options"])
    reference_row, reference_logits, _ = next(iter(runs.values()))
    out = {"model": args.model.name, "images": reference_row["images"], "devices": {}}
    for name, (row, logits, options) in runs.items():
        out["devices"][name] = {
            "top1": row["top1_correct"], "top5": row["top5_correct"],
            "top1_vs_first": row["top1_correct"] - reference_row["top1_correct"],
            "top5_vs_first": row["top5_correct"] - reference_row["top5_correct"],
            "class_differs": int((logits.argmax(1) != reference_logits.argmax(1)).sum()),
            "max_logit_diff": float(np.abs(logits - reference_logits).max()), "provider_options": options}
        print(f"  {name:9}: top-1 {row['top1_correct']}, top-5 {row['top5_correct']}; vs {next(iter(runs))}: "
              f"top-1 {out['devices'][name]['top1_vs_first']:+d}, class differs on "
              f"{out['devices'][name]['class_differs']} images, max |logit diff| "
              f"{out['devices'][name]['max_logit_diff']:.3e}; provider options {options}")
    if "cuda fp32" in runs and "cuda tf32" in runs:
        flags = (runs["cuda fp32"][2].get("use_tf32"), runs["cuda tf32"][2].get("use_tf32"))
        assert flags == ("0", "1"), flags
    return out


def _noisy_split(context, seed: int, snr: float) -> dict[str, float]:
    """One whole-model noisy trial's steps, timed around the engine's own calls (as bench_trial_breakdown.py)."""
    noise = context.config.noise
    t0 = time.perf_counter()
    arrays = draw_noise(noise.noise_model, snr, seed, context.selected, context.initializers, noise.policies,
                        model_layers=context.layers, stats=context.noise_stats).arrays
    t1 = time.perf_counter()
    session = context.factory.create(arrays)
    t2 = time.perf_counter()
    evaluate(session, context.data)
    t3 = time.perf_counter()
    assert session.provider == context.provider, (session.provider, context.provider)
    return {"draw": t1 - t0, "build": t2 - t1, "infer": t3 - t2, "trial": t3 - t0}


def _round(context, seed: int, snr: float) -> dict[str, float]:
    layers = context.selected
    clean = run_trial(context, Trial("baseline", None, (), None, None))
    noisy = run_trial(context, Trial("all", None, tuple(layer.name for layer in layers), snr, seed))
    split = _noisy_split(context, seed, snr)
    # three whole-model trials in the engine's layout (on a GPU: one at a time, each draw made while the trial
    # before runs, when memory allows): what bench's trial table shows per noisy trial
    names = tuple(layer.name for layer in layers)
    layout = LocalExecutor().trial_layout(context)
    t0 = time.perf_counter()
    ahead = run_side_by_side(context, [Trial("all", None, names, snr, 3 * seed + 100 + j) for j in range(3)], layout)
    in_layout = (time.perf_counter() - t0) / 3
    t0 = time.perf_counter()
    rows = run_trials(context, [Trial("per-layer", layer.index, (layer.name,), snr, seed) for layer in layers],
                      prefix_reuse=True)
    per_layer = (time.perf_counter() - t0) / len(layers)
    for row in (clean, noisy, *ahead, *rows):
        assert row["error"] is None, row["error"]
        assert row["provider"] == context.provider, row["provider"]
    return {"clean_s": clean["seconds"], "noisy_s": noisy["seconds"], "per_layer_s": per_layer,
            **{f"noisy_{k}_s": v for k, v in split.items()},
            "whole_ratio": clean["seconds"] / noisy["seconds"], "layout_s": in_layout,
            "layout_ratio": clean["seconds"] / in_layout, "draw_ahead": float(layout.draw_ahead),
            "per_layer_ratio": clean["seconds"] / per_layer}


def cmd_trials(args) -> dict:
    context = prepare_context(_config(args, args.device, snr=args.snr))
    assert context.provider == PROVIDERS[args.device], context.provider
    _round(context, 1000, args.snr)  # warm-up: first sessions, device allocator, kernels
    rounds = []
    for r in range(args.rounds):
        rounds.append(_round(context, r, args.snr))
        print(f"  round {r}: " + ", ".join(f"{k} {v:.3f}" for k, v in rounds[-1].items()), flush=True)
    summary = {k: mean_ci([r[k] for r in rounds]) for k in rounds[0]}
    return {"model": args.model.name, "images": len(context.data), "device": args.device, "provider": context.provider,
            "layers": len(context.selected), "parameters": int(sum(layer.num_params for layer in context.selected)),
            "rounds": rounds, "summary": summary}


def cmd_stages(args) -> dict:
    import polars as pl  # noqa: PLC0415

    rows = {}
    for name in ("cpu-io", "cuda-io", "cuda-noise-a", "cuda-noise-b"):
        path = args.folder / f"stages-{name}" / "trials.parquet"
        if not path.is_file():
            continue
        table = pl.read_parquet(path)
        noisy = table.filter(pl.col("mode") != "baseline").row(0, named=True)
        clean = table.filter(pl.col("mode") == "baseline").row(0, named=True)
        rows[name] = {k: noisy[k] for k in ("top1_correct", "dac_clipped", "adc_clipped", "seconds", "provider")}
        rows[name]["clean_top1"], rows[name]["clean_seconds"] = clean["top1_correct"], clean["seconds"]
        print(f"  {name:13}: " + ", ".join(f"{k} {v}" for k, v in rows[name].items()))
    if "cuda-noise-a" in rows and "cuda-noise-b" in rows:
        a, b = rows["cuda-noise-a"], rows["cuda-noise-b"]
        assert (a["top1_correct"], a["adc_clipped"]) == (b["top1_correct"], b["adc_clipped"]), "read noise differs"
    return {"stages": rows}


def _fmt(pair) -> str:
    return f"{pair[0]:.3f} +- {pair[1]:.3f}"


def doc_block(folder: Path) -> str:
    """The Markdown of every figure file in ``folder`` (``machine.json`` first)."""
    lines = [BEGIN]
    facts = json.loads((folder / "machine.json").read_text()) if (folder / "machine.json").is_file() else {}
    lines.append(f"Written by `scripts/check_cuda.sh` on {facts.get('when', '?')}: GPU {facts.get('gpu') or 'none'}, "
                 f"{facts.get('cpus', '?')} CPUs, load average {facts.get('load', '?')}, onnxruntime "
                 f"{facts.get('onnxruntime', '?')}. Means over interleaved rounds with a two-sided 95% t interval.")
    lines.append("")
    for path in sorted(folder.glob("baseline-*.json")):
        got = json.loads(path.read_text())
        lines.append(f"- **Baseline {got['model']}** ({got['images']} images): " + "; ".join(
            f"{name} top-1 {d['top1']} ({d['top1_vs_first']:+d}), top-5 {d['top5']} ({d['top5_vs_first']:+d}), "
            f"class differs on {d['class_differs']}, max logit diff {d['max_logit_diff']:.2e}"
            for name, d in got["devices"].items()))
    trials = sorted(folder.glob("trials-*.json"))
    if trials:
        lines += ["", "| model | images | device | clean trial s | whole-model noisy s (draw / build / infer) | "
                  "clean/noisy (target >= 0.9) | 3 noisy trials in the engine's layout, s each (draws ahead) | "
                  "clean/that | per-layer s | clean/per-layer (target >= 1.5) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for path in trials:
            got = json.loads(path.read_text())
            s = got["summary"]
            lines.append(f"| {got['model']} ({got['parameters']:,} parameters) | {got['images']} | {got['provider']} | "
                         f"{_fmt(s['clean_s'])} | {_fmt(s['noisy_s'])} ({s['noisy_draw_s'][0]:.3f} / "
                         f"{s['noisy_build_s'][0]:.3f} / {s['noisy_infer_s'][0]:.3f}) | {_fmt(s['whole_ratio'])} | "
                         f"{_fmt(s['layout_s'])} ({'yes' if s['draw_ahead'][0] else 'no'}) | {_fmt(s['layout_ratio'])} | "
                         f"{_fmt(s['per_layer_s'])} | {_fmt(s['per_layer_ratio'])} |")
    stages = folder / "stages.json"
    if stages.is_file():
        lines.append("")
        for name, row in json.loads(stages.read_text())["stages"].items():
            lines.append(f"- **Tile stages, {name}**: top-1 {row['top1_correct']} (clean {row['clean_top1']}), DAC "
                         f"clipped {row['dac_clipped']}, ADC clipped {row['adc_clipped']}, {row['seconds']:.2f} s "
                         f"(clean trial {row['clean_seconds']:.2f} s), {row['provider']}")
    lines.append(END)
    return "\n".join(lines)


def cmd_write_doc(args) -> dict:
    block = doc_block(args.folder)
    if args.dry_run:
        print(block)
        return {}
    text = args.doc.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        sys.exit(f"cuda_check: {args.doc} has no {BEGIN} ... {END} markers; add them where the figures go")
    head, rest = text.split(BEGIN, 1)
    args.doc.write_text(head + block + rest.split(END, 1)[1], encoding="utf-8")
    print(f"wrote the figures into {args.doc}")
    return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("baseline", "trials"):
        p = sub.add_parser(name)
        p.add_argument("model", type=Path)
        p.add_argument("data", type=Path)
        p.add_argument("--preset", default=None)
        p.add_argument("--batch-size", type=int, default=128)
        p.add_argument("--out", type=Path, required=True, help="JSON file of the figures")
    sub.choices["baseline"].add_argument("--devices", type=lambda s: s.split(","), default=["cpu", "cuda"])
    trials = sub.choices["trials"]
    trials.add_argument("--device", default="cuda", choices=sorted(PROVIDERS))
    trials.add_argument("--rounds", type=int, default=3)
    trials.add_argument("--snr", type=float, default=10.0)
    trials.add_argument("--limit", type=int, default=0, help="images (0: all)")
    stages = sub.add_parser("stages")
    stages.add_argument("folder", type=Path)
    stages.add_argument("--out", type=Path, required=True)
    doc = sub.add_parser("write-doc")
    doc.add_argument("folder", type=Path)
    doc.add_argument("--doc", type=Path, default=Path("docs/performance.md"))
    doc.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    result = {"baseline": cmd_baseline, "trials": cmd_trials, "stages": cmd_stages, "write-doc": cmd_write_doc}[
        args.command](args)
    if getattr(args, "out", None) is not None:
        args.out.write_text(json.dumps(result, indent=1))
        machine_file = args.out.parent / "machine.json"
        if not machine_file.is_file():
            machine_file.write_text(json.dumps(machine(), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
