#!/usr/bin/env python
"""Train the small Fashion-MNIST CNN that onnxnoise ships as its built-in demo, and export it.

Needs the ``export`` extra (torch, onnxscript). Runs on CPU in a few minutes with a fixed seed.

Data: the four IDX files of Fashion-MNIST (``train-images-idx3-ubyte[.gz]``,
``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``)
in ``--data`` (default: Debian's ``dataset-fashion-mnist`` package, /usr/share/datasets/fashion-mnist).

Writes, into ``--out-dir`` (default ``models/demo``, shipped in the wheel as ``onnxnoise/_demo``):

- ``fashion_mnist_cnn.onnx``: input ``input`` ``(N, 1, 28, 28) float32 NCHW``, output ``logits``
  ``(N, 10) float32``; BatchNormalization kept as separate ops (6 parameter layers: conv1, bn1,
  conv2, bn2, fc1, fc2). ``metadata_props``: ``onnxnoise.preprocess`` (``(x / 255 - mean) / std``,
  one channel), ``onnxnoise.class_names``, ``onnxnoise.demo``, ``onnxnoise.reference_accuracy``.
- ``fashion_mnist_test1000.npz``: the first 100 test images of each class, in test-set order
  (``images`` ``(1000, 28, 28) uint8``, ``labels`` ``(1000,) int64``, ``class_names`` ``(10,) str``).

Example::

    python scripts/train_demo_model.py            # ~2-4 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

_SCRIPTS_DIR = Path(__file__).resolve().parent
if str(_SCRIPTS_DIR) not in sys.path:
    sys.path.insert(0, str(_SCRIPTS_DIR))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _onnx_export import DEFAULT_OPSET, count_ops, export_onnx, save_model  # noqa: E402
from torch import nn  # noqa: E402

__all__ = [
    "CLASS_NAMES",
    "DemoCNN",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "PREPROCESS",
    "load_fashion_mnist",
    "main",
    "read_idx",
    "stratified_subset",
]

DEFAULT_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_OUT_DIR = _SCRIPTS_DIR.parent / "models" / "demo"
MODEL_FILE = "fashion_mnist_cnn.onnx"
SUBSET_FILE = "fashion_mnist_test1000.npz"

#: Fashion-MNIST label order (Xiao et al. 2017, github.com/zalandoresearch/fashion-mnist).
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: Mean and std of the 60,000 training images' pixels after x / 255, rounded to 4 digits
#: (exact: 0.28604, 0.35302); training and the ONNX metadata use these rounded values.
FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530

#: ``onnxnoise.preprocess`` of the demo model: ``(x / 255 - mean) / std`` on one grayscale channel.
PREPROCESS: dict[str, object] = {
    "preset": "mnist",
    "channels": 1,
    "scale": 1 / 255,
    "mean": [FASHION_MNIST_MEAN],
    "std": [FASHION_MNIST_STD],
    "channel_order": "RGB",
}

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format), gzip-compressed or not, into a NumPy array."""
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        msg = f"not an IDX file: {str(path)!r}"
        raise ValueError(msg)
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    data = np.frombuffer(raw, dtype, count=int(np.prod(shape)), offset=4 + 4 * ndim)
    return data.reshape(shape).astype(dtype.newbyteorder("="), copy=True)


def _find(data_dir: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (data_dir / name).is_file():
            return data_dir / name
    msg = f"{stem}[.gz] not found in {str(data_dir)!r}"
    raise FileNotFoundError(msg)


def load_fashion_mnist(data_dir: str | Path) -> dict[str, np.ndarray]:
    """Load the four Fashion-MNIST IDX files.

    Returns:
        ``train_images`` ``(60000, 28, 28) uint8``, ``train_labels`` ``(60000,) int64``,
        ``test_images`` ``(10000, 28, 28) uint8``, ``test_labels`` ``(10000,) int64``.
    """
    data_dir = Path(data_dir)
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        out[f"{split}_images"] = read_idx(_find(data_dir, f"{prefix}-images-idx3-ubyte"))
        out[f"{split}_labels"] = read_idx(_find(data_dir, f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
    return out


def stratified_subset(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first ``per_class`` samples of every class, sorted (original order kept)."""
    picked = [np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(picked))


def normalize(images: np.ndarray) -> np.ndarray:
    """``(N, 28, 28) uint8`` -> ``(N, 1, 28, 28) float32``: ``(x / 255 - mean) / std``."""
    x = images.astype(np.float32) / np.float32(255.0)
    x = (x - np.float32(FASHION_MNIST_MEAN)) / np.float32(FASHION_MNIST_STD)
    return x[:, None, :, :]


class DemoCNN(nn.Module):
    """Two conv blocks (3x3 conv, BatchNorm, ReLU, 2x2 max pool) and two dense layers; 55,386 weights."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc1 = nn.Linear(32 * 7 * 7, 32)
        self.fc2 = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


def train(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> None:
    """Adam + one-cycle LR schedule, random horizontal flips; shuffling from ``seed``."""
    rng = np.random.default_rng(seed)
    x_all = torch.from_numpy(normalize(images))
    y_all = torch.from_numpy(labels)
    steps = epochs * ((len(labels) + batch_size - 1) // batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    model.train()
    for epoch in range(epochs):
        start = time.perf_counter()
        order = torch.from_numpy(rng.permutation(len(labels)))
        flips = torch.from_numpy(rng.random(len(labels)) < 0.5)
        total_loss = 0.0
        for i in range(0, len(labels), batch_size):
            idx = order[i : i + batch_size]
            x = x_all[idx]
            x = torch.where(flips[idx, None, None, None], x.flip(-1), x)
            loss = F.cross_entropy(model(x), y_all[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.item() * len(idx)
        print(
            f"epoch {epoch + 1}/{epochs}: loss {total_loss / len(labels):.4f} "
            f"({time.perf_counter() - start:.1f} s)",
            flush=True,
        )
    model.eval()


def count_correct_onnx(model: onnx.ModelProto, images: np.ndarray, labels: np.ndarray) -> int:
    """Top-1 correct count of ``model`` under ONNX Runtime (CPU) on ``(N, 28, 28) uint8`` images."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    correct = 0
    for i in range(0, len(labels), 1000):
        (logits,) = session.run(["logits"], {"input": normalize(images[i : i + 1000])})
        correct += int((logits.argmax(axis=1) == labels[i : i + 1000]).sum())
    return correct


def _accuracy_entry(correct: int, images: int) -> dict[str, object]:
    return {"images": images, "top1_correct": correct, "top1_acc": round(100.0 * correct / images, 2)}


def main(argv: list[str] | None = None) -> int:
    """Train, export and evaluate the demo model; returns the exit code."""
    parser = argparse.ArgumentParser(prog="train_demo_model.py", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="folder with the IDX(.gz) files")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="output folder")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=4e-3, help="peak learning rate (one-cycle)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    args = parser.parse_args(argv)

    try:
        data = load_fashion_mnist(args.data)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    model = DemoCNN()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"DemoCNN: {n_params:,} trainable parameters, {torch.get_num_threads()} threads", flush=True)
    start = time.perf_counter()
    train(
        model,
        data["train_images"],
        data["train_labels"],
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
    )
    train_seconds = time.perf_counter() - start

    doc = (
        "onnxnoise demo: small CNN (conv-BN-ReLU-maxpool x2, dense 1568->32->10) trained on "
        "Fashion-MNIST (Xiao et al. 2017) by scripts/train_demo_model.py; BatchNormalization kept as "
        "separate ops. Input 'input' (N, 1, 28, 28) float32 NCHW, (x / 255 - "
        f"{FASHION_MNIST_MEAN}) / {FASHION_MNIST_STD}; output 'logits' (N, 10) float32, classes in "
        "onnxnoise.class_names order."
    )
    proto = export_onnx(model, torch.zeros(2, 1, 28, 28), opset=args.opset, doc_string=doc)

    test_images, test_labels = data["test_images"], data["test_labels"]
    subset = stratified_subset(test_labels, per_class=100)
    full_correct = count_correct_onnx(proto, test_images, test_labels)
    subset_correct = count_correct_onnx(proto, test_images[subset], test_labels[subset])
    reference = {
        "runtime": "onnxruntime CPUExecutionProvider",
        "fashion_mnist_test": _accuracy_entry(full_correct, len(test_labels)),
        "fashion_mnist_test1000": _accuracy_entry(subset_correct, len(subset)),
    }
    demo = {
        "dataset": "fashion-mnist",
        "subset_file": SUBSET_FILE,
        "subset": "first 100 test images of each class (t10k), in test-set order",
        "training": {
            "script": "scripts/train_demo_model.py",
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "optimizer": f"Adam, one-cycle LR max {args.lr}",
            "augmentation": "random horizontal flip",
            "seed": args.seed,
            "torch": torch.__version__,
        },
    }
    metadata = {
        "onnxnoise.preprocess": json.dumps(PREPROCESS, sort_keys=True),
        "onnxnoise.class_names": json.dumps(list(CLASS_NAMES)),
        "onnxnoise.demo": json.dumps(demo, sort_keys=True),
        "onnxnoise.reference_accuracy": json.dumps(reference, sort_keys=True),
    }
    onnx.helper.set_model_props(proto, dict(sorted(metadata.items())))

    out_dir = args.out_dir
    model_path = save_model(proto, out_dir / MODEL_FILE)
    subset_path = out_dir / SUBSET_FILE
    np.savez_compressed(
        subset_path,
        images=np.ascontiguousarray(test_images[subset]),
        labels=test_labels[subset].astype(np.int64),
        class_names=np.array(CLASS_NAMES),
    )
    layers = {op: n for op, n in count_ops(proto).items() if op in ("Conv", "BatchNormalization", "Gemm")}
    print(f"trained in {train_seconds:.0f} s")
    print(
        f"wrote {model_path} ({model_path.stat().st_size / 1024:.0f} KiB; "
        f"{', '.join(f'{n} {op}' for op, n in layers.items())})"
    )
    print(f"wrote {subset_path} ({subset_path.stat().st_size / 1024:.0f} KiB; {len(subset)} images)")
    print(
        f"ONNX Runtime top-1: {100 * full_correct / len(test_labels):.2f}% on the 10,000 test images, "
        f"{100 * subset_correct / len(subset):.2f}% on the 1,000-image subset"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
