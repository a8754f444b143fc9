"""scripts/export_models.py: CIFAR-10 ResNet export (graph shape, metadata, numerics, accuracy, errors)."""

from __future__ import annotations

import hashlib
import json
import pickle
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

CIFAR_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
CIFAR_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# Upstream README and ../shared/models/cifar10-resnet/MANIFEST.txt: ResNet20 91.73% top-1.
RESNET20_CORRECT = 9173


@pytest.fixture(scope="module")
def cifar10_test(shared_path) -> tuple[np.ndarray, np.ndarray]:
    """All 10,000 CIFAR-10 test images ``(N, 32, 32, 3) uint8 RGB`` and labels ``(N,) int64``.

    A minimal reader of the python batch format, on purpose independent of ``onnxnoise.data``.
    """
    path = shared_path("data/cifar-10-batches-py/test_batch", kind="file")
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    return np.ascontiguousarray(images), labels


def _preprocess(images: np.ndarray) -> np.ndarray:
    """``(N, 32, 32, 3) uint8`` -> ``(N, 3, 32, 32) float32``: (x / 255 - mean) / std (torchvision)."""
    x = images.astype(np.float32) / np.float32(255.0)
    x = (x - CIFAR_MEAN) / CIFAR_STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _op_counts(model: onnx.ModelProto) -> Counter[str]:
    return Counter(node.op_type for node in model.graph.node)


def _check_common_graph(model: onnx.ModelProto) -> None:
    graph = model.graph
    assert [i.name for i in graph.input] == ["input"]
    assert [o.name for o in graph.output] == ["logits"]
    in_dims = graph.input[0].type.tensor_type.shape.dim
    out_dims = graph.output[0].type.tensor_type.shape.dim
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert in_dims[0].dim_param and not in_dims[0].HasField("dim_value")
    assert [d.dim_value for d in in_dims[1:]] == [3, 32, 32]
    assert out_dims[0].dim_param == in_dims[0].dim_param
    assert out_dims[1].dim_value == 10
    assert "Constant" not in _op_counts(model)
    inits = {init.name for init in graph.initializer}
    for node in graph.node:
        if node.op_type in ("Conv", "BatchNormalization", "Gemm"):
            assert all(name in inits for name in node.input[1:]), node.name
    # parameter initializers are not shared between layers
    params = [
        name
        for node in graph.node
        if node.op_type in ("Conv", "Gemm", "BatchNormalization")
        for name in node.input[1:]
    ]
    assert len(params) == len(set(params))
    onnx.checker.check_model(model, full_check=True)


def test_folded_resnet20_has_19_conv_and_1_gemm(cifar_resnet_onnx):
    model = onnx.load(cifar_resnet_onnx(20))
    ops = _op_counts(model)
    assert ops["Conv"] == 19 and ops["Gemm"] == 1
    assert ops["BatchNormalization"] == 0 and ops["MatMul"] == 0
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    assert all(len(node.input) == 3 for node in convs)  # folded BatchNorm -> every conv has a bias
    assert convs[0].name == "conv1" and convs[0].input[1:] == ["conv1.weight", "conv1.bias"]
    _check_common_graph(model)


def test_kept_batchnorm_resnet20_has_19_conv_19_bn_and_1_gemm(cifar_resnet_onnx):
    model = onnx.load(cifar_resnet_onnx(20, keep_batchnorm=True))
    ops = _op_counts(model)
    assert (ops["Conv"], ops["BatchNormalization"], ops["Gemm"]) == (19, 19, 1)
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    assert all(len(node.input) == 2 for node in convs)  # no conv bias
    bn = next(node for node in model.graph.node if node.op_type == "BatchNormalization")
    assert list(bn.input[1:]) == ["bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"]
    _check_common_graph(model)


@pytest.mark.parametrize("keep_batchnorm", [False, True], ids=["folded", "bn-kept"])
def test_metadata(cifar_resnet_onnx, cifar_resnet_checkpoint, keep_batchnorm):
    model = onnx.load(cifar_resnet_onnx(20, keep_batchnorm=keep_batchnorm))
    props = {p.key: p.value for p in model.metadata_props}
    preprocess = json.loads(props["onnxnoise.preprocess"])
    assert preprocess["preset"] == "cifar"
    assert preprocess["mean"] == [0.485, 0.456, 0.406]
    assert preprocess["std"] == [0.229, 0.224, 0.225]
    assert preprocess["scale"] == pytest.approx(1 / 255)
    source = json.loads(props["onnxnoise.source"])
    checkpoint = cifar_resnet_checkpoint(20)
    assert source["checkpoint"] == "resnet20.th"
    assert source["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert source["batchnorm"] == ("kept" if keep_batchnorm else "folded")
    assert "ResNet20" in model.doc_string


@pytest.mark.parametrize("keep_batchnorm", [False, True], ids=["folded", "bn-kept"])
def test_onnxruntime_matches_torch(
    cifar_resnet_onnx, cifar_resnet_checkpoint, export_models, cifar10_test, keep_batchnorm
):
    import torch

    torch_model = export_models.load_cifar_resnet(20, cifar_resnet_checkpoint(20))
    session = _session(cifar_resnet_onnx(20, keep_batchnorm=keep_batchnorm))
    images, _ = cifar10_test
    for batch in (images[:1], images[1:8]):  # dynamic batch axis
        x = _preprocess(batch)
        (ort_logits,) = session.run(["logits"], {"input": x})
        with torch.no_grad():
            torch_logits = torch_model(torch.from_numpy(x)).numpy()
        assert ort_logits.shape == (len(batch), 10)
        np.testing.assert_allclose(ort_logits, torch_logits, rtol=0, atol=1e-4)


def test_folded_weights_match_batchnorm_formula(cifar_resnet_onnx):
    """conv1 of the folded export equals conv1 * gamma / sqrt(var + eps) of the BN-kept export."""
    folded_model = onnx.load(cifar_resnet_onnx(20))
    kept_model = onnx.load(cifar_resnet_onnx(20, keep_batchnorm=True))
    folded = {i.name: numpy_helper.to_array(i) for i in folded_model.graph.initializer}
    kept = {i.name: numpy_helper.to_array(i) for i in kept_model.graph.initializer}
    bn = next(node for node in kept_model.graph.node if node.name == "bn1")
    eps = next(a.f for a in bn.attribute if a.name == "epsilon")
    scale = kept["bn1.weight"] / np.sqrt(kept["bn1.running_var"] + eps)
    weight = kept["conv1.weight"] * scale[:, None, None, None]
    bias = kept["bn1.bias"] - kept["bn1.running_mean"] * scale
    np.testing.assert_allclose(folded["conv1.weight"], weight, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(folded["conv1.bias"], bias, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("keep_batchnorm", [False, True], ids=["folded", "bn-kept"])
def test_resnet20_top1_on_cifar10_test_set_is_91_73(cifar_resnet_onnx, cifar10_test, keep_batchnorm):
    session = _session(cifar_resnet_onnx(20, keep_batchnorm=keep_batchnorm))
    images, labels = cifar10_test
    assert len(labels) == 10_000
    correct = 0
    for start in range(0, len(labels), 1000):
        (logits,) = session.run(["logits"], {"input": _preprocess(images[start : start + 1000])})
        correct += int((logits.argmax(axis=1) == labels[start : start + 1000]).sum())
    assert correct == RESNET20_CORRECT


def test_export_is_deterministic(export_models, cifar_resnet_onnx, cifar_resnet_checkpoint, tmp_path):
    again = tmp_path / "again.onnx"
    export_models.export_cifar_resnet(20, cifar_resnet_checkpoint(20), again)
    assert again.read_bytes() == cifar_resnet_onnx(20).read_bytes()


def _bad_checkpoint_cases(shared_dir: Path, tmp_path: Path) -> dict[str, list[str]]:
    garbage = tmp_path / "garbage.th"
    garbage.write_bytes(b"not a checkpoint\n")
    return {
        "missing": ["--depth", "20", "--checkpoint", str(tmp_path / "nope.th")],
        "not-a-checkpoint": ["--depth", "20", "--checkpoint", str(garbage)],
        "depth-mismatch": [
            "--depth",
            "20",
            "--checkpoint",
            str(shared_dir / "models" / "cifar10-resnet" / "resnet32.th"),
        ],
    }


@pytest.mark.parametrize("case", ["missing", "not-a-checkpoint", "depth-mismatch"])
def test_bad_checkpoint_exits_2_with_one_line(export_models, shared_dir, tmp_path, capsys, case):
    args = _bad_checkpoint_cases(shared_dir, tmp_path)[case]
    out = tmp_path / "out.onnx"
    code = export_models.main(["cifar-resnet", *args, "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert not out.exists()
    if case == "depth-mismatch":
        assert "ResNet32" in lines[0]


def test_bad_checkpoint_cli_process(export_models, repo_root, tmp_path):
    """The real command line: exit status 2, one stderr line, no traceback."""
    proc = subprocess.run(
        [
            sys.executable,
            str(repo_root / "scripts" / "export_models.py"),
            "cifar-resnet",
            "--depth",
            "20",
            "--checkpoint",
            str(tmp_path / "missing.th"),
            "--out",
            str(tmp_path / "out.onnx"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: checkpoint not found")


# --- the shipped demo model (models/demo, written by scripts/train_demo_model.py; no torch needed) ---


def test_demo_model_and_subset_agree_with_metadata(demo_files):
    model_path, subset_path = demo_files
    assert subset_path.stat().st_size < 1_000_000
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    ops = _op_counts(model)
    assert (ops["Conv"], ops["BatchNormalization"], ops["Gemm"]) == (2, 2, 2)
    assert "Constant" not in ops
    props = {p.key: p.value for p in model.metadata_props}
    preprocess = json.loads(props["onnxnoise.preprocess"])
    assert preprocess["channels"] == 1 and len(preprocess["mean"]) == len(preprocess["std"]) == 1
    class_names = json.loads(props["onnxnoise.class_names"])
    reference = json.loads(props["onnxnoise.reference_accuracy"])
    assert json.loads(props["onnxnoise.demo"])["subset_file"] == subset_path.name

    with np.load(subset_path) as npz:
        images, labels, names = npz["images"], npz["labels"], npz["class_names"]
    assert images.shape == (1000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (1000,) and labels.dtype == np.int64
    assert names.tolist() == class_names and len(class_names) == 10
    assert np.bincount(labels, minlength=10).tolist() == [100] * 10

    mean, std = np.float32(preprocess["mean"][0]), np.float32(preprocess["std"][0])
    x = (images.astype(np.float32) / np.float32(255.0) - mean) / std
    (logits,) = _session(model_path).run(["logits"], {"input": x[:, None]})
    correct = int((logits.argmax(axis=1) == labels).sum())
    assert correct == reference["fashion_mnist_test1000"]["top1_correct"]
    assert reference["fashion_mnist_test"]["top1_acc"] >= 89.0
