#!/usr/bin/env python
"""Markdown table of scripts/parity/aihwkit_resnet32.py's CSV: per variant and time, top-1 and a/a0.

Cells: mean +- sample std over the draws (n-1 in the denominator, as the aihwkit notebook's
``torch.std``), the draws' values, and ``a/a0 = mean / FP`` with FP the torch count of the
settings JSON beside the CSV. Standard library only.

Usage: python scripts/parity/aihwkit_table.py reports/parity/aihwkit/resnet32-first1000.csv
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path

TIMES = ("60s", "1h", "1d", "30d", "360d")
VARIANTS = ("weight-only", "full")


def cell(values: list[float], fp: float) -> str:
    """``mean +- std (v1, v2, ...); a/a0`` of ``values`` (top-1 %), or ``-`` when there are none."""
    if not values:
        return "-"
    mean = statistics.fmean(values)
    spread = f" +- {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    listed = ", ".join(f"{v:.1f}" for v in values)
    return f"{mean:.2f}{spread} ({listed}); {mean / fp:.3f}"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: aihwkit_table.py RESULTS.csv", file=sys.stderr)
        return 2
    path = Path(argv[0])
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    fp = json.loads(path.with_suffix(".settings.json").read_text())["fp"]["top1"]
    print("| aihwkit 1.2.0 variant | " + " | ".join(f"t = {t}" for t in TIMES) + " |")
    print("|---|" + "---|" * len(TIMES))
    for variant in VARIANTS:
        cells = []
        for t in TIMES:
            draws = sorted((int(r["draw"]), float(r["top1"])) for r in rows if (r["variant"], r["t_label"]) == (variant, t))
            cells.append(cell([v for _, v in draws], fp))
        print(f"| {variant} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
