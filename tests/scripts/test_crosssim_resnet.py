"""scripts/_crosssim_resnet.py via ``export_models.py crosssim-resnet``: CrossSim's ResNet14 exported to ONNX.

The clean count on the first 5,000 CIFAR-10 test images must be exactly the one measured with
CrossSim's weights in torch (../shared/models/crosssim-cifar10-resnet/MANIFEST.txt: ResNet14
4438/5000). ResNet20/32/56 and all 10,000 images: scripts/parity/crosssim_fp_counts.py, output in
reports/parity/crosssim/fp-counts.txt.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxnoise.data.cifar import load_cifar
from tests._checks import one_line, run_cli

#: MANIFEST.txt: ResNet14, first 5,000 test images, top-1 hits in torch with CrossSim's weights.
RESNET14_FIRST5000_CORRECT = 4438
CHECKPOINT = "models/crosssim-cifar10-resnet/resnet{depth}_cifar10.pth"


@pytest.fixture(scope="module")
def resnet14(export_models, shared_path, tmp_path_factory) -> tuple[Path, Path]:
    """(exported BN-folded ResNet14 .onnx, its checkpoint)."""
    checkpoint = shared_path(CHECKPOINT.format(depth=14), kind="file")
    out = tmp_path_factory.mktemp("crosssim") / "resnet14.onnx"
    export_models.export_crosssim_resnet(14, checkpoint, out)
    return out, checkpoint


def test_folded_resnet14_has_15_conv_with_bias_and_1_gemm(resnet14):
    model = onnx.load(resnet14[0])
    ops = Counter(node.op_type for node in model.graph.node)
    assert (ops["Conv"], ops["Gemm"], ops["BatchNormalization"]) == (15, 1, 0)
    convs = {node.name: node for node in model.graph.node if node.op_type == "Conv"}
    assert all(len(node.input) == 3 for node in convs.values())
    assert {"res2.0.downsample.0", "res3.0.downsample.0"} <= set(convs)
    assert "res1.0.downsample.0" not in convs  # identity shortcut: no parameters
    (gemm,) = [node for node in model.graph.node if node.op_type == "Gemm"]
    assert gemm.name == "classifier.2"
    props = {p.key: p.value for p in model.metadata_props}
    preprocess = json.loads(props["onnxnoise.preprocess"])
    assert (preprocess["mean"], preprocess["std"]) == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert preprocess["scale"] == pytest.approx(1 / 255)
    source = json.loads(props["onnxnoise.source"])
    assert (source["architecture"], source["batchnorm"]) == ("crosssim-resnet14", "folded")
    assert source["checkpoint"] == "resnet14_cifar10.pth"


def test_stem_folds_with_eps_0_001_and_blocks_with_1e_5(resnet14):
    """conv1 = w * gamma / sqrt(var + 0.001) (MANIFEST's bn1 eps); res1.0.conv1 uses 1e-5."""
    import torch

    path, checkpoint = resnet14
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    folded = {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    for prefix, bn, eps in (("conv1", "bn1", 1e-3), ("res1.0.conv1", "res1.0.bn1", 1e-5)):
        sd = {k: state[f"{bn}.{k}"].double().numpy() for k in ("weight", "bias", "running_mean", "running_var")}
        scale = sd["weight"] / np.sqrt(sd["running_var"] + eps)
        weight = state[f"{prefix}.weight"].double().numpy() * scale[:, None, None, None]
        np.testing.assert_allclose(folded[f"{prefix}.weight"], weight, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(folded[f"{prefix}.bias"], sd["bias"] - sd["running_mean"] * scale,
                                   rtol=1e-5, atol=1e-6)


def test_resnet14_clean_count_on_first_5000_is_manifests_4438(resnet14, shared_path, tmp_path, capsys):
    """`onnxnoise bench`'s clean baseline on the first 5,000 test images, exactly MANIFEST's count."""
    contents = load_cifar(shared_path("data/cifar-10-batches-py", kind="dir"))
    data = tmp_path / "first5000.npz"
    np.savez(data, images=contents.images[:5000], labels=contents.labels[:5000])
    code, out, err = run_cli(capsys, "bench", resnet14[0], "--data", data, "--snr", "1e12", "--seeds", "1",
                             "--out", tmp_path / "bench", "--json", "--no-cache")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["images"] == 5000
    assert summary["baseline"]["top1_acc"] == pytest.approx(100 * RESNET14_FIRST5000_CORRECT / 5000)


def test_depth_mismatch_exits_2_with_one_line(export_models, shared_path, tmp_path, capsys):
    checkpoint = shared_path(CHECKPOINT.format(depth=20), kind="file")
    out = tmp_path / "out.onnx"
    code = export_models.main(["crosssim-resnet", "--depth", "14", "--checkpoint", str(checkpoint),
                               "--out", str(out)])
    err = one_line(capsys.readouterr().err)
    assert code == 2 and not out.exists()
    assert err.startswith("error: ") and "ResNet20" in err and "`--depth` is 14" in err
