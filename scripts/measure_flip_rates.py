#!/usr/bin/env python
"""Measure per-image flip outcomes of a model under noise: the population the gate simulation draws from.

Runs the clean model and ``--draws`` noisy draws (noise in every layer, seeds ``0 .. draws - 1``)
on ``--limit`` images through the trial engine (:class:`onnxnoise.check.gate.CheckSession`, the
same trials as ``onnxnoise check``), and writes ``OUT.npz`` with:

* ``clean``: ``(N,) bool`` top-1 right when clean;
* ``noisy``: ``(S, N) bool`` top-1 right in each noisy draw;
* ``snr``, ``model``: what was measured.

Per image, the loss rate over draws is ``mean(clean & ~noisy)`` (clean-right images) and the gain
rate ``mean(~clean & noisy)`` (clean-wrong images); ``scripts/simulate_gate.py`` fits its
populations to them (docs/check.md, "Simulation").

Usage (ResNet20, BN folded, exported with ``scripts/export_models.py`` into ``build/``)::

    python scripts/measure_flip_rates.py build/resnet20.onnx --data ../shared/data/cifar-10-batches-py \
        --snr 10 --draws 20 --out docs/data/resnet20-snr10-flips.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from onnxnoise.check.gate import CheckSession, GateSettings
from onnxnoise.config import NoiseConfig, RunConfig
from onnxnoise.engine.context import prepare_context
from onnxnoise.engine.plan import Trial


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--snr", type=float, default=10.0)
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    config = RunConfig(model=args.model, data=args.data, limit=args.limit, device="cpu",
                       noise=NoiseConfig(strengths=(args.snr,), seeds=(0,)))
    context = prepare_context(config)
    session = CheckSession(context, GateSettings(budget=1.0))
    session.baseline()
    clean = context.clean_outcomes.top1_hit.copy()
    names = session.layer_names()
    noisy = []
    for seed in range(args.draws):
        row = session.run(Trial("all", None, names, args.snr, seed))
        noisy.append(session.hits(row))
        lost = int(np.count_nonzero(clean & ~noisy[-1]))
        print(f"seed {seed}: lost {lost}, gained {int(np.count_nonzero(~clean & noisy[-1]))}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, clean=clean, noisy=np.array(noisy), snr=args.snr, model=str(args.model))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
