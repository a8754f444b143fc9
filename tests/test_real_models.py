"""Real models on real data (../shared): published baselines and the noise trend.

Exact checks on full test sets where they are cheap (CIFAR-10 ResNets), the ImageNet
models on the 500-image Imagenette validation subset as 1000-way classification.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from onnxnoise.bench import BenchConfig, prepare_bench, run_bench


def _baseline(model: Path, data: Path, **kwargs) -> tuple[float, float, int]:
    result = run_bench(BenchConfig(model=model, data=data, snrs=(), device="cpu", **kwargs))
    row = result.trials.row(0, named=True)
    assert row["kind"] == "baseline" and row["nan_count"] == 0
    return row["top1_acc"], row["top5_acc"], row["images"]


@pytest.mark.parametrize("depth, published, correct", [(20, 91.73, 9173), (56, 93.39, 9339)])
@pytest.mark.parametrize("layout", ["cifar-10-batches-py", "cifar10-test-png"])
def test_cifar_resnet_published_top1(depth, published, correct, layout, cifar_resnet_onnx, shared_dir):
    model = cifar_resnet_onnx(depth)
    result = run_bench(BenchConfig(model=model, data=shared_dir / "data" / layout, snrs=(), device="cpu"))
    row = result.trials.row(0, named=True)
    assert row["images"] == 10_000
    assert row["top1_correct"] == correct
    assert row["top1_acc"] == pytest.approx(published, abs=1e-9)


@pytest.mark.parametrize("model, preset, top1_ref, top5_ref", [
    ("efficientnet-lite0/efficientnet_lite0.onnx", "tf-lite", 69.2, 91.4),
    ("squeezenet1.0-deepcompression/squeezenet1_0_deepcompression.onnx", "caffe", 57.8, 80.4),
])
def test_imagenet_models_on_imagenette(model, preset, top1_ref, top5_ref, shared_dir):
    """1000-way classification of the 500 Imagenette val images; references from the models' MANIFESTs."""
    top1, top5, images = _baseline(shared_dir / "models" / model, shared_dir / "data/imagenette-val500",
                                   preset=preset)
    assert images == 500
    assert top1 == pytest.approx(top1_ref, abs=0.5)
    assert top5 == pytest.approx(top5_ref, abs=0.5)


def test_imagenet_flat_val_loads(shared_dir):
    model = shared_dir / "models/squeezenet1.0-deepcompression/squeezenet1_0_deepcompression.onnx"
    prepared = prepare_bench(BenchConfig(model=model, data=shared_dir / "data/imagenet-val1300",
                                         snrs=(), preset="caffe", limit=100))
    assert prepared.dataset.format == "imagenet-val"
    assert prepared.dataset.num_classes == 1000
    assert len(prepared.data) == 100


def test_resnet20_accuracy_falls_with_snr(cifar_resnet_onnx, shared_dir):
    """Noise in all layers, 3 seeds: mean top-1 decreases as SNR decreases (subset of 2,000 images)."""
    model = cifar_resnet_onnx(20)
    result = run_bench(BenchConfig(model=model, data=shared_dir / "data/cifar-10-batches-py",
                                   snrs=(100.0, 10.0, 5.0), seeds=3, limit=2000, device="cpu"))
    summary = result.summary
    assert summary["snr"].to_list()[1:] == [100.0, 10.0, 5.0]
    top1 = summary["top1_mean"].to_list()
    # Baseline vs SNR 100 (1% noise) differ by noise only; from there accuracy falls.
    assert top1[0] > 85 and abs(top1[0] - top1[1]) < 1.0
    assert top1[1] > top1[2] > top1[3]
    assert summary["seeds"].to_list()[1:] == [3, 3, 3]
    assert result.trials.height == 10


def test_keep_batchnorm_nan_logits_are_never_predictions(cifar_resnet_onnx, shared_dir):
    """BN kept as ops: at SNR 100 noise makes some running variances negative (paper setting).

    With ``clamp`` (default) they are set to 0 and counted, logits stay finite; with
    ``keep`` the negative variances give NaN logits that are counted and scored as wrong.
    """
    model = cifar_resnet_onnx(20, keep_batchnorm=True)
    data = shared_dir / "data/cifar-10-batches-py"
    clamp = run_bench(BenchConfig(model=model, data=data, snrs=(100.0, 5.0), seeds=1, limit=500, device="cpu"))
    noisy = clamp.trials.filter(clamp.trials["kind"] == "noisy")
    assert noisy["bn_variance_changed"].sum() > 0
    assert noisy["nan_count"].sum() == 0
    keep = run_bench(BenchConfig(model=model, data=data, snrs=(5.0,), seeds=1, limit=500, device="cpu",
                                 bn_variance="keep"))
    row = keep.trials.row(1, named=True)
    assert row["bn_variance_changed"] > 0
    assert row["nan_count"] > 0
    assert row["top1_correct"] <= row["images"] - row["nan_count"]
    assert row["top5_correct"] <= row["images"] - row["nan_count"]
