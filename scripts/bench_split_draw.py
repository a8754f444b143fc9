#!/usr/bin/env python3
"""ns per value of a split draw: the Box-Muller chunks (key version 4) against numpy's ziggurat (version 3).

Usage::

    python scripts/bench_split_draw.py [--chunk-log2 22] [--split-log2 24] [--repeats 7] [--threads 1 2] [--json]

Two comparisons, each side timed ``--repeats`` times, the two sides alternating, the minimum kept:

- one chunk of ``2^chunk-log2`` values in a warm buffer, float32 and float64:
  :func:`onnxnoise.noise.rng.box_muller_fill` against ``Generator.standard_normal(out=...)`` of the same
  chunk generator (:func:`onnxnoise.noise.rng.chunk_rng`);
- a whole split draw of ``2^split-log2`` float32 values (a new buffer each time, as in a trial), per thread
  count: :class:`onnxnoise.noise.rng.SplitNormal` against the same chunks drawn by ``standard_normal``
  (:func:`ziggurat_split`, the version-3 draw).

Figures: ns per value of each side and ``ratio`` = ziggurat / Box-Muller (above 1: Box-Muller is faster).
docs/performance.md, "Box-Muller chunks (key version 4)", has the figures of this machine.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from onnxnoise.cli.output import json_text  # noqa: E402
from onnxnoise.noise.rng import SPLIT_CHUNK_ELEMENTS, SplitNormal, box_muller_fill, chunk_rng  # noqa: E402


def ziggurat_split(seed: int, name: str, size: int, threads: int) -> np.ndarray:
    """The version-3 split draw: chunk ``i`` of ``size`` float32 values is ``chunk_rng(seed, name, i)``'s
    ``standard_normal``, chunks in ``threads`` threads."""
    out = np.empty(size, np.float32)
    chunks = math.ceil(size / SPLIT_CHUNK_ELEMENTS)

    def fill(i: int) -> None:
        part = out[i * SPLIT_CHUNK_ELEMENTS : (i + 1) * SPLIT_CHUNK_ELEMENTS]
        chunk_rng(seed, name, i).standard_normal(dtype=np.float32, out=part)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fill, range(chunks)))
    return out


def interleaved_min(sides: dict, repeats: int, values: int) -> dict[str, float]:
    """Minimum ns per value of each ``name -> call(repeat)`` over ``repeats`` alternating rounds, and ``ratio``
    (``ziggurat`` over ``box_muller``)."""
    best = dict.fromkeys(sides, math.inf)
    for r in range(repeats):
        for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
            start = time.perf_counter()
            sides[name](r)
            best[name] = min(best[name], time.perf_counter() - start)
    ns = {name: seconds / values * 1e9 for name, seconds in best.items()}
    return {**ns, "ratio": ns["ziggurat"] / ns["box_muller"]}


def measure(chunk: int, split: int, repeats: int, threads: tuple[int, ...]) -> dict[str, dict[str, float]]:
    """``{label: {"box_muller": ns, "ziggurat": ns, "ratio": r}}`` of the comparisons in the module docstring."""
    result = {}
    for dtype in (np.float32, np.float64):
        out = np.zeros(chunk, dtype)
        result[f"chunk {np.dtype(dtype).name}"] = interleaved_min({
            "box_muller": lambda r: box_muller_fill(chunk_rng(0, "w", r), out),
            "ziggurat": lambda r: chunk_rng(0, "w", r).standard_normal(dtype=out.dtype, out=out),
        }, repeats, chunk)
    for t in threads:
        result[f"split float32, {t} thread(s)"] = interleaved_min({
            "box_muller": lambda r, t=t: SplitNormal(r, "w", t).standard_normal(split, dtype=np.float32),
            "ziggurat": lambda r, t=t: ziggurat_split(r, "w", split, t),
        }, repeats, split)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--chunk-log2", type=int, default=22, help="values per chunk: 2^N (default 22)")
    parser.add_argument("--split-log2", type=int, default=24, help="values per split draw: 2^N (default 24)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure(1 << args.chunk_log2, 1 << args.split_log2, args.repeats, tuple(args.threads))
    if args.json:
        print(json_text(result))
        return 0
    for label, row in result.items():
        print(f"{label:28s} box_muller {row['box_muller']:6.2f} ns/value  ziggurat {row['ziggurat']:6.2f} ns/value"
              f"  ratio {row['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
