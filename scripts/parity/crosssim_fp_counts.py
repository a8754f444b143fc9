#!/usr/bin/env python
"""CrossSim's CIFAR-10 ResNet14/20/32/56 exported to ONNX: clean top-1 counts vs their MANIFEST.

For each depth: export ``../shared/models/crosssim-cifar10-resnet/resnet<d>_cifar10.pth`` with
``scripts/export_models.py crosssim-resnet`` (BatchNorm folded), then count the clean top-1 hits on
the first 5,000 and on all 10,000 CIFAR-10 test images twice: with ``onnxnoise bench`` (the clean
baseline row of its trial table; preprocessing from the model's metadata) and with a plain ONNX
Runtime loop over the independent reader in ``_cifar10_first.py``. Both must equal the counts
measured with CrossSim's weights in torch (``MANIFEST.txt``). Prints one table and exits 1 on any
mismatch; reports/parity/crosssim/fp-counts.txt is its output.

Usage (from the repository root, onnxnoise's environment with the ``export`` extra)::

    python scripts/parity/crosssim_fp_counts.py > reports/parity/crosssim/fp-counts.txt
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "scripts" / "parity")]

from _cifar10_first import DEFAULT_TEST_BATCH, load_first, normalize, write_npz  # noqa: E402
from export_models import export_crosssim_resnet  # noqa: E402

MODELS = ROOT / ".." / "shared" / "models" / "crosssim-cifar10-resnet"

#: ../shared/models/crosssim-cifar10-resnet/MANIFEST.txt: (first 5,000, all 10,000) top-1 hits.
MANIFEST_COUNTS = {14: (4438, 8964), 20: (4471, 9065), 32: (4550, 9214), 56: (4547, 9219)}


def onnxnoise_clean_count(model: Path, data: Path, out: Path) -> tuple[int, int]:
    """(top-1 hits, images) of ``onnxnoise bench``'s clean baseline (one near-noiseless trial rides along)."""
    cmd = [sys.executable, "-m", "onnxnoise.cli", "bench", str(model), "--data", str(data),
           "--snr", "1e12", "--seeds", "1", "--out", str(out), "--json", "--no-cache"]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    with open(out / "trials.csv", newline="") as f:
        (row,) = [r for r in csv.DictReader(f) if r["mode"] == "baseline"]
    return int(row["top1_correct"]), int(row["images"])


def ort_counts(model: Path, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-image top-1 hits ``(N,) bool`` with plain ONNX Runtime, batches of 1,000."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    preds = [session.run(["logits"], {"input": x[i : i + 1000]})[0].argmax(1) for i in range(0, len(x), 1000)]
    return np.concatenate(preds) == labels


def main() -> int:
    images, labels = load_first(10_000)
    x = normalize(images)
    print("CrossSim CIFAR-10 ResNets exported to ONNX (BN folded): clean top-1 hits")
    print("first 5,000 / all 10,000 CIFAR-10 test images (cifar-10-batches-py/test_batch order)")
    print(f"{'model':<9} {'MANIFEST':>11} {'onnxnoise bench':>16} {'ORT loop':>11}  max|ORT-torch|  ok")
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        first5000 = write_npz(5000, tmp / "first5000.npz")
        for depth, expected in MANIFEST_COUNTS.items():
            onnx_path = tmp / f"resnet{depth}.onnx"
            summary = export_crosssim_resnet(depth, MODELS / f"resnet{depth}_cifar10.pth", onnx_path)
            hits = ort_counts(onnx_path, x, labels)
            ort_pair = (int(hits[:5000].sum()), int(hits.sum()))
            bench = []
            for data, n in ((first5000, 5000), (DEFAULT_TEST_BATCH.parent, 10_000)):
                correct, seen = onnxnoise_clean_count(onnx_path, data, tmp / f"bench{depth}-{n}")
                assert seen == n, (seen, n)
                bench.append(correct)
            ok = tuple(bench) == ort_pair == expected
            failures += not ok
            print(f"ResNet{depth:<3} {expected[0]:>5}/{expected[1]:<5} {bench[0]:>10}/{bench[1]:<5} "
                  f"{ort_pair[0]:>5}/{ort_pair[1]:<5}  {summary.max_abs_diff:.2e}        {'yes' if ok else 'NO'}")
    print("all equal" if not failures else f"{failures} model(s) differ")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
