#!/usr/bin/env bash
# End-to-end check of the CUDA path, for a machine with an NVIDIA GPU and onnxruntime-gpu installed
# (pip uninstall -y onnxruntime && pip install '.[gpu]'). Run from the repository root with ../shared
# beside it (or SHARED=/path/to/shared). Prints:
#   1. the execution providers of this onnxruntime;
#   2. CPU vs GPU baseline, ResNet56 (CIFAR-10 test set) and efficientnet-lite0 (imagenette-val500): top-1 /
#      top-5 counts on the CPU, on the GPU in exact float32 (default, use_tf32=0) and on the GPU with --tf32,
#      the count differences and the largest logit difference against the CPU; the effective use_tf32 that
#      the trial key records;
#   3. clean vs sweep throughput on the GPU (scripts/bench_throughput.py, interleaved rounds with intervals),
#      ResNet56 whole-model and per-layer (prefix reuse with cuts on the device, and without), efficientnet-lite0;
#   4. the analog tile's stages (issue 23) on the GPU: ResNet56 with 8-bit DAC/ADC on 512-row tiles, weights
#      exact, CPU vs GPU top-1 and clip counts; with read noise 0.04 twice on the GPU (the same counts: the
#      CUDA RandomNormalLike repeats its sequence in a fresh session) and its seconds against the clean trial.
# Set REPEATS (default 3) for the throughput rounds.
set -euo pipefail
SHARED=${SHARED:-../shared}
OUT=${OUT:-/tmp/onnxnoise-cuda}
REPEATS=${REPEATS:-3}
mkdir -p "$OUT"
python -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
if [ ! -f "$OUT/resnet56-bn.onnx" ]; then
  python scripts/export_models.py cifar-resnet --depth 56 --keep-batchnorm \
    --checkpoint "$SHARED/models/cifar10-resnet/resnet56.th" --out "$OUT/resnet56-bn.onnx"
fi
R56="$OUT/resnet56-bn.onnx"; CIFAR="$SHARED/data/cifar-10-batches-py"
EFF="$SHARED/models/efficientnet-lite0/efficientnet_lite0.onnx"; IMAGENETTE="$SHARED/data/imagenette-val500"

baseline_cpu_vs_gpu() {  # MODEL DATA PRESET BATCH
  python - "$@" <<'PY'
import sys
from pathlib import Path

import numpy as np

from onnxnoise.config import RunConfig
from onnxnoise.engine.context import prepare_context
from onnxnoise.engine.plan import Trial
from onnxnoise.engine.trial import run_trial

model, data, preset, batch = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
runs = {}
for name, device, tf32 in (("cpu", "cpu", False), ("cuda fp32", "cuda", False), ("cuda tf32", "cuda", True)):
    context = prepare_context(RunConfig(model=model, data=data, preset=None if preset == "-" else preset,
                                        device=device, tf32=tf32, batch_size=batch))
    row = run_trial(context, Trial("baseline", None, (), None, None))
    assert row["error"] is None, row["error"]
    assert row["provider"] == ("CPUExecutionProvider" if device == "cpu" else "CUDAExecutionProvider"), row["provider"]
    session = context.factory.create()
    logits = np.concatenate([session.run(x)[: len(y)] for x, y in context.data.batches()])
    runs[name] = (row, logits, context.key_fields()["provider_options"])
cpu_row, cpu_logits, _ = runs["cpu"]
print(f"{model.name} baseline on {cpu_row['images']} images (CPU vs GPU):")
for name, (row, logits, options) in runs.items():
    d1, d5 = row["top1_correct"] - cpu_row["top1_correct"], row["top5_correct"] - cpu_row["top5_correct"]
    diff = float(np.abs(logits - cpu_logits).max())
    flips = int((logits.argmax(1) != cpu_logits.argmax(1)).sum())
    pct = 100 * row["top1_correct"] / row["images"]
    print(f"  {name:9}: top-1 {row['top1_correct']} ({pct:.2f}%), top-5 {row['top5_correct']}; "
          f"vs CPU: top-1 {d1:+d}, top-5 {d5:+d}, top-1 class differs on {flips} images, max |logit diff| "
          f"{diff:.3e}; provider options in the key {options}")
fp32 = runs["cuda fp32"][2].get("use_tf32")
tf32 = runs["cuda tf32"][2].get("use_tf32")
assert (fp32, tf32) == ("0", "1"), (fp32, tf32)
PY
}

baseline_cpu_vs_gpu "$R56" "$CIFAR" - 128
baseline_cpu_vs_gpu "$EFF" "$IMAGENETTE" tf-lite 100
B="python scripts/bench_throughput.py --device cuda --repeats $REPEATS --cache-repeats 0"
$B "$R56" --data "$CIFAR" --mode all --trials 10
$B "$R56" --data "$CIFAR" --mode per-layer
$B "$EFF" --data "$IMAGENETTE" --preprocess tf-lite --mode all --trials 10 --batch-size 100

stages_cpu_vs_gpu() {  # MODEL DATA
  for run in "cpu io" "cuda io" "cuda noise-a" "cuda noise-b"; do
    set -- $run; device=$1; name=$2; extra=""
    case $name in noise-*) extra="--read-noise 0.04";; esac
    python -m onnxnoise.cli bench "$R56" --data "$CIFAR" --device "$device" --noise none --dac-bits 8 --adc-bits 8 \
      --tile-rows 512 $extra --seeds 1 --json --out "$OUT/stages-$device-$name" > "$OUT/stages-$device-$name.json"
  done
  python - "$OUT" <<'PY'
import json
import sys
from pathlib import Path

import polars as pl

out = Path(sys.argv[1])
rows = {}
for name in ("cpu-io", "cuda-io", "cuda-noise-a", "cuda-noise-b"):
    table = pl.read_parquet(out / f"stages-{name}" / "trials.parquet")
    noisy, clean = table.filter(pl.col("mode") != "baseline").row(0, named=True), table.filter(
        pl.col("mode") == "baseline").row(0, named=True)
    rows[name] = noisy
    print(f"  {name:13}: top-1 {noisy['top1_correct']} (clean {clean['top1_correct']}), DAC clipped "
          f"{noisy['dac_clipped']}, ADC clipped {noisy['adc_clipped']}, {noisy['seconds']:.2f} s "
          f"(clean trial {clean['seconds']:.2f} s), provider {noisy['provider']}")
a, b = rows["cuda-noise-a"], rows["cuda-noise-b"]
assert (a["top1_correct"], a["adc_clipped"]) == (b["top1_correct"], b["adc_clipped"]), "read noise not reproducible"
print("  read noise on CUDA: two runs equal; CPU vs CUDA 8-bit I/O top-1 difference",
      rows["cuda-io"]["top1_correct"] - rows["cpu-io"]["top1_correct"])
PY
}
stages_cpu_vs_gpu
