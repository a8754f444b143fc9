#!/usr/bin/env bash
# End-to-end check of the CUDA path, for a machine with an NVIDIA GPU and onnxruntime-gpu installed
# (pip uninstall -y onnxruntime && pip install '.[gpu]'). Run from the repository root with ../shared
# beside it (or SHARED=/path/to/shared). Prints: the EP that ran, baseline accuracies equal to the CPU
# figures (ResNet56 93.39%, efficientnet-lite0 69.2/91.4), and clean vs sweep throughput on the GPU.
set -euo pipefail
SHARED=${SHARED:-../shared}
OUT=${OUT:-/tmp/onnxnoise-cuda}
mkdir -p "$OUT"
python -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
if [ ! -f "$OUT/resnet56-bn.onnx" ]; then
  python scripts/export_models.py cifar-resnet --depth 56 --keep-batchnorm \
    --checkpoint "$SHARED/models/cifar10-resnet/resnet56.th" --out "$OUT/resnet56-bn.onnx"
fi
onnxnoise bench "$OUT/resnet56-bn.onnx" --data "$SHARED/data/cifar-10-batches-py" --device cuda \
  --snr 100,10 --seeds 2 --json --out "$OUT/bench-r56" > "$OUT/bench-r56.json"
python - "$OUT/bench-r56.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["provider"] == "CUDAExecutionProvider", d["provider"]
assert abs(d["baseline"]["top1_acc"] - 93.39) < 1e-9, d["baseline"]
print("resnet56 on CUDA: baseline", d["baseline"], "EP", d["provider"])
PY
python scripts/bench_throughput.py "$OUT/resnet56-bn.onnx" --data "$SHARED/data/cifar-10-batches-py" \
  --device cuda --mode all --trials 10
python scripts/bench_throughput.py "$OUT/resnet56-bn.onnx" --data "$SHARED/data/cifar-10-batches-py" \
  --device cuda --mode per-layer --trials 111
python scripts/bench_throughput.py "$SHARED/models/efficientnet-lite0/efficientnet_lite0.onnx" \
  --data "$SHARED/data/imagenette-val500" --preprocess tf-lite --device cuda --mode all --trials 10 --batch-size 100
