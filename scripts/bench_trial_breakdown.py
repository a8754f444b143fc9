#!/usr/bin/env python3
"""Where the seconds of one whole-model trial go: noise draw, session build, inference (big models).

Usage::

    python scripts/bench_trial_breakdown.py MODEL --data DATA [--limit N (default 32, 0: all)] [--snr S] [--repeats R]
        [--batch-size B] [--threads T] [--preprocess P] [--json]

The run context is prepared once (:func:`onnxnoise.engine.context.prepare_context`); then, for
``--repeats`` rounds, a clean trial (no noise) and a noisy whole-model trial (``gaussian-snr`` at
``--snr``, seed = round) run in an order alternating from round to round. Each is split into the
engine's own steps, timed around the engine's own calls:

- ``draw``: :func:`onnxnoise.noise.draw_noise` with the context's per-run statistics
  (``context.noise_stats``), as :func:`onnxnoise.engine.trial.run_trial` calls it;
- ``build``: ``context.factory.create(arrays)``, the ONNX Runtime session with the noisy
  weights handed over (:class:`onnxnoise.engine.runtime.SessionFactory`);
- ``infer``: :func:`onnxnoise.engine.evaluate.evaluate` over the data;
- ``trial``: their sum, and ``noisy/clean`` its ratio per round.

Every figure is the mean over rounds with a two-sided 95% Student t interval. The trial table's
``seconds`` of ``onnxnoise bench`` spans the same three steps (plus row bookkeeping), except that a trial
whose draw was made ahead while the trial before ran (:attr:`onnxnoise.engine.layout.TrialLayout.draw_ahead`)
counts only the part of its draw that did not overlap; here every draw is timed whole.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_measure import machine, mean_ci  # noqa: E402
from onnxnoise.cli.output import json_text  # noqa: E402
from onnxnoise.config import NoiseConfig, RunConfig  # noqa: E402
from onnxnoise.engine.context import prepare_context  # noqa: E402
from onnxnoise.engine.evaluate import evaluate  # noqa: E402
from onnxnoise.noise import draw_noise  # noqa: E402

STEPS = ("draw", "build", "infer", "trial")


def one_trial(context, seed: int | None, snr: float) -> dict[str, float]:
    """Seconds of each step of one trial (``seed`` ``None``: the clean trial, no draw)."""
    noise = context.config.noise
    t0 = time.perf_counter()
    arrays = {}
    if seed is not None:
        stats = getattr(context, "noise_stats", None)  # absent before issue 24: lets the script time older trees
        arrays = draw_noise(noise.noise_model, snr, seed, context.selected, context.initializers, noise.policies,
                            model_layers=context.layers, **({} if stats is None else {"stats": stats})).arrays
    t1 = time.perf_counter()
    session = context.factory.create(arrays)
    t2 = time.perf_counter()
    evaluate(session, context.data)
    t3 = time.perf_counter()
    return {"draw": t1 - t0, "build": t2 - t1, "infer": t3 - t2, "trial": t3 - t0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=32, help="images (class-stratified subset; 0: all)")
    parser.add_argument("--snr", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--preprocess", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    config = RunConfig(model=args.model, data=args.data, noise=NoiseConfig(strengths=(args.snr,), seeds=1),
                       batch_size=args.batch_size, threads=args.threads, preset=args.preprocess, limit=args.limit or None)
    t0 = time.perf_counter()
    context = prepare_context(config)
    prepare = time.perf_counter() - t0
    rounds: dict[str, dict[str, list[float]]] = {side: {s: [] for s in STEPS} for side in ("clean", "noisy")}
    ratios = []
    for r in range(args.repeats):
        order = ("clean", "noisy") if r % 2 == 0 else ("noisy", "clean")
        got = {side: one_trial(context, None if side == "clean" else r, args.snr) for side in order}
        for side, steps in got.items():
            for step, seconds in steps.items():
                rounds[side][step].append(seconds)
        ratios.append(got["noisy"]["trial"] / got["clean"]["trial"])
        if not args.json:
            print(f"round {r}: " + "; ".join(f"{side} " + " ".join(f"{s} {v:.2f}" for s, v in got[side].items())
                                             for side in ("clean", "noisy")), flush=True)
    summary = {side: {s: mean_ci(v) for s, v in steps.items()} for side, steps in rounds.items()}
    ratio = mean_ci(ratios)
    if args.json:
        print(json_text({"model": str(args.model), "images": len(context.data), "prepare_s": prepare,
                         "machine": machine(), "rounds": rounds, "summary": summary, "noisy_over_clean": ratio}))
        return 0
    print(f"{args.model.name}: {len(context.data)} images, prepare {prepare:.1f} s, {args.repeats} rounds "
          "(mean +- 95% t half-width, seconds)")
    print(f"{'side':<6} " + " ".join(f"{s:>15}" for s in STEPS))
    for side in ("clean", "noisy"):
        print(f"{side:<6} " + " ".join(f"{m:7.2f} +- {h:5.2f}" for m, h in (summary[side][s] for s in STEPS)))
    print(f"noisy/clean trial seconds: {ratio[0]:.3f} +- {ratio[1]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
