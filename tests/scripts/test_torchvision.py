"""scripts/export_models.py torchvision|timm: the paper's ImageNet families, their layer tables and weights.

Random weights throughout (no download): the layer and parameter counts do not depend on the values.
Each BN-kept architecture is exported once per module (VGG16 writes a ~550 MB file into a temporary
folder); ``onnxnoise layers --json`` then reads the counts as a user would.

The paper's layer tables (../shared/PAPER.md) count a Conv or Gemm weight with its bias as one layer
and one BatchNormalization (scale, bias, running mean, running variance) as one layer; onnxnoise's
layers (onnxnoise/model/layers.py) are the same groups. Ours equal the paper's counts except one:
ShuffleNetV2 1.0x has 2,294,784 parameters in torchvision and 2,295,940 in the paper (+1,156), from a
different first unit of stage 2 (reports/imagenet/layer-counts.md has the per-op arithmetic).
"""

from __future__ import annotations

import contextlib
import email.message
import hashlib
import io
import json
import socket
import sys
from collections import Counter
from pathlib import Path
from urllib.error import URLError

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

from onnxnoise.cli import main as onnxnoise_main
from onnxnoise.config import RunConfig
from onnxnoise.engine.context import prepare_context

# (family, arch) -> (layers, parameters, {op type: layers}) of the BN-kept export.
BN_KEPT = {
    # 20 Conv (11,166,912 weights, no bias) + 20 BN (4 x 4,800 channels = 19,200) + fc 512,000 + 1,000
    # = 41 layers, 11,699,112 = torchvision's 11,689,512 trainable + 9,600 running mean/var. Paper: same.
    ("torchvision", "resnet18"): (41, 11_699_112, {"Conv": 20, "BatchNormalization": 20, "Gemm": 1}),
    # 36 Conv (21,267,648) + 36 BN (4 x 8,512 = 34,048) + fc 513,000. Paper: 73 / 21,814,696.
    ("torchvision", "resnet34"): (73, 21_814_696, {"Conv": 36, "BatchNormalization": 36, "Gemm": 1}),
    # 53 Conv (23,454,912) + 53 BN (4 x 26,560 = 106,240) + fc 2,049,000. Paper: 107 / 25,610,152.
    ("torchvision", "resnet50"): (107, 25_610_152, {"Conv": 53, "BatchNormalization": 53, "Gemm": 1}),
    # 13 Conv (14,710,464 + 4,224 bias) + 3 Gemm (123,633,664 + 9,192 bias), no BN. Paper: 16 / 138,357,544.
    # (A random VGG16's biases are all zero; they stay in the graph as parameters.)
    ("torchvision", "vgg16"): (16, 138_357_544, {"Conv": 13, "Gemm": 3}),
    # 56 Conv (333,840) + 56 BN (4 x 3,976 = 15,904) + fc 1,025,000. Paper: 113 / 1,374,744.
    ("torchvision", "shufflenet_v2_x0_5"): (113, 1_374_744, {"Conv": 56, "BatchNormalization": 56, "Gemm": 1}),
    # 56 Conv (1,237,424) + 56 BN (4 x 8,090 = 32,360) + fc 1,025,000 = 2,294,784. Paper: 113 / 2,295,940:
    # its stage-2 first unit is Megvii's (main branch 24->58->58->92 plus a 24-channel projection,
    # 6,376 parameters) where torchvision's has two 58-channel branches (5,220): 6,376 - 5,220 = 1,156.
    ("torchvision", "shufflenet_v2_x1_0"): (113, 2_294_784, {"Conv": 56, "BatchNormalization": 56, "Gemm": 1}),
    # 53 Conv + 32 SE 1x1 Conv with bias (25,969,856 + 16,048) + 53 BN (106,240) + fc 2,049,000.
    # Paper (ResNet50-SE): 139 / 28,141,144.
    ("timm", "legacy_seresnet50"): (139, 28_141_144, {"Conv": 85, "BatchNormalization": 53, "Gemm": 1}),
}

TORCHVISION_PREPROCESS = {
    "preset": "torchvision", "resize": 256, "crop": 224, "interpolation": "bilinear",
    "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "scale": 1 / 255,
}


def _export(export_models, argv: list[str]) -> tuple[int, str, str]:
    """Run ``export_models.main(argv)``; returns ``(exit code, stdout, stderr)``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = export_models.main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def bn_kept(export_models, tmp_path_factory):
    """Factory: ``bn_kept(family, arch)`` -> ``(path, stdout, stderr)`` of the random-weight BN-kept export."""
    folder = tmp_path_factory.mktemp("imagenet_onnx")
    cache: dict[tuple[str, str], tuple[Path, str, str]] = {}

    def get(family: str, arch: str) -> tuple[Path, str, str]:
        if (family, arch) not in cache:
            path = folder / f"{arch}_bn.onnx"
            code, out, err = _export(export_models, [family, "--arch", arch, "--keep-batchnorm", "--out", str(path)])
            assert code == 0, err
            cache[family, arch] = (path, out, err)
        return cache[family, arch]

    return get


def _layers_json(path: Path, capsys) -> dict:
    capsys.readouterr()
    assert onnxnoise_main(["layers", "--json", str(path)]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("family", "arch"), list(BN_KEPT), ids=[arch for _, arch in BN_KEPT])
def test_bn_kept_layer_table(bn_kept, family, arch, capsys):
    layers, params, ops = BN_KEPT[family, arch]
    path, out, _ = bn_kept(family, arch)
    table = _layers_json(path, capsys)
    assert (table["total_layers"], table["total_params"]) == (layers, params)
    assert Counter(layer["op_type"] for layer in table["layers"]) == ops
    assert table["set_aside"] == [] and table["left_out"] == []
    # The exporter's own summary counts the same initializers.
    assert f": {layers} parameter layers" in out and f"{params:,} parameters" in out
    bn = [layer for layer in table["layers"] if layer["op_type"] == "BatchNormalization"]
    assert all(layer["roles"] == ["scale", "bias", "mean", "var"] for layer in bn)


def test_random_weights_say_so(bn_kept):
    path, out, err = bn_kept("torchvision", "shufflenet_v2_x0_5")
    assert err.startswith("note: no --weights: shufflenet_v2_x0_5 is exported with random weights")
    assert out.rstrip().endswith("weights: random")
    model = onnx.load(path, load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    source = json.loads(props["onnxnoise.source"])
    assert source["weights"] == "random" and source["batchnorm"] == "kept"
    assert (source["family"], source["architecture"]) == ("torchvision", "shufflenet_v2_x0_5")
    assert "RANDOM weights" in model.doc_string


def test_metadata_read_by_preprocessing_loader(bn_kept, tmp_path):
    path, _, _ = bn_kept("torchvision", "shufflenet_v2_x0_5")
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert json.loads(props["onnxnoise.preprocess"]) == TORCHVISION_PREPROCESS
    rng = np.random.default_rng(0)
    for label in ("0", "1"):  # whole-number class folders are their labels
        (tmp_path / "data" / label).mkdir(parents=True)
        pixels = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "data" / label / "a.png")
    context = prepare_context(RunConfig(model=path, data=tmp_path / "data", device="cpu", cache=False))
    assert context.preprocess_source == "model metadata"
    config = context.data_config
    assert (config.resize, config.crop, config.interpolation) == (256, 224, "bilinear")
    assert config.mean == pytest.approx((0.485, 0.456, 0.406)) and config.std == pytest.approx((0.229, 0.224, 0.225))
    assert config.scale == pytest.approx(1 / 255)
    assert context.data.images.shape == (2, 224, 224, 3)  # 300x400 -> short side 256 -> center crop 224


def _random_state_dict(export_models, arch: str, path: Path):
    """A random ``arch`` state dict with non-trivial BatchNorm statistics, saved to ``path``; returns the model."""
    import torch

    tv = sys.modules["_torchvision"].torchvision_models()  # imported by export_models
    torch.manual_seed(1)
    model = tv.get_model(arch, weights=None).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    torch.save(model.state_dict(), path)
    return model


def test_weights_file_round_trip_folded(export_models, tmp_path, capsys):
    import torch

    weights = tmp_path / "resnet18_random.pth"
    model = _random_state_dict(export_models, "resnet18", weights)
    out = tmp_path / "resnet18.onnx"
    code, stdout, err = _export(export_models, ["torchvision", "--arch", "resnet18", "--weights", str(weights),
                                                "--out", str(out)])
    assert (code, err) == (0, "")
    assert stdout.rstrip().endswith("weights: resnet18_random.pth")
    x = np.random.default_rng(7).standard_normal((3, 3, 224, 224), dtype=np.float32)
    (onnx_logits,) = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(x)).numpy()
    assert torch_logits.std() > 0.1  # logits large enough for 1e-4 to tell a wrong fold apart
    np.testing.assert_allclose(onnx_logits, torch_logits, rtol=0, atol=1e-4)
    # Folded: 20 Conv with weight and bias (11,166,912 + 4,800) + fc 513,000 = 21 layers, 11,684,712.
    table = _layers_json(out, capsys)
    assert (table["total_layers"], table["total_params"]) == (21, 11_684_712)
    assert {layer["op_type"] for layer in table["layers"]} == {"Conv", "Gemm"}
    source = json.loads({p.key: p.value for p in onnx.load(out).metadata_props}["onnxnoise.source"])
    assert source["weights"] == "resnet18_random.pth" and source["batchnorm"] == "folded"
    assert source["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()


def test_weights_file_of_another_arch_is_one_line(export_models, tmp_path):
    import torch

    weights = tmp_path / "tiny.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, weights)
    out = tmp_path / "x.onnx"
    code, stdout, err = _export(export_models, ["torchvision", "--arch", "resnet18", "--weights", str(weights),
                                                "--out", str(out)])
    assert code == 2 and stdout == "" and not out.exists()
    assert err.count("\n") == 1
    assert err.startswith(f"error: weights file {str(weights)!r} does not fit a resnet18: ")
    assert "missing keys" in err


def _no_network(monkeypatch, tmp_path, response=None):
    """``torch.hub``'s cache in ``tmp_path``; its ``urlopen`` fails like a machine without DNS (or returns ``response``)."""
    import torch

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    urls = []

    def urlopen(request, *args, **kwargs):
        urls.append(request.full_url)
        if response is None:
            raise URLError(socket.gaierror(-3, "Temporary failure in name resolution"))
        return response

    monkeypatch.setattr(torch.hub, "urlopen", urlopen)
    return urls


def test_weights_default_without_internet_is_one_line(export_models, tmp_path, monkeypatch):
    urls = _no_network(monkeypatch, tmp_path)
    out = tmp_path / "resnet18.onnx"
    code, stdout, err = _export(export_models, ["torchvision", "--arch", "resnet18", "--weights", "default",
                                                "--out", str(out)])
    url = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    assert urls == [url]
    assert code == 2 and stdout == "" and not out.exists()
    assert err.count("\n") == 1
    assert err.startswith(f"error: could not download the published resnet18 IMAGENET1K_V1 weights from {url} "
                          "([Errno -3] Temporary failure in name resolution); without internet, fetch that file "
                          "elsewhere and pass `--weights FILE`")
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints") in err


class _Response(io.BytesIO):
    """What ``urlopen`` returns: a readable body with a ``Content-Length`` header."""

    def info(self) -> email.message.Message:
        message = email.message.Message()
        message["Content-Length"] = str(len(self.getvalue()))
        return message


def test_stalled_download_times_out_in_one_line(export_models, tmp_path, monkeypatch):
    """torch.hub's urlopen passes no timeout: the export sets the socket default around the download."""
    seen = []

    def stalled(request, *args, **kwargs):
        seen.append(socket.getdefaulttimeout())
        raise URLError(TimeoutError("timed out"))  # what a read past the socket timeout raises

    _no_network(monkeypatch, tmp_path)
    import torch

    monkeypatch.setattr(torch.hub, "urlopen", stalled)
    code, stdout, err = _export(export_models, ["torchvision", "--arch", "resnet18", "--weights", "default",
                                                "--out", str(tmp_path / "x.onnx")])
    assert seen == [60.0] and socket.getdefaulttimeout() is None
    assert code == 2 and stdout == "" and err.count("\n") == 1
    assert err.startswith("error: could not download the published resnet18 IMAGENET1K_V1 weights from "
                          "https://download.pytorch.org/models/resnet18-f37072fd.pth (timed out)")


def test_corrupted_download_is_one_line_and_not_cached(export_models, tmp_path, monkeypatch):
    _no_network(monkeypatch, tmp_path, response=_Response(b"not the published weights\n"))
    code, stdout, err = _export(export_models, ["torchvision", "--arch", "shufflenet_v2_x0_5", "--weights",
                                                "IMAGENET1K_V1", "--out", str(tmp_path / "x.onnx")])
    assert code == 2 and stdout == ""
    error = err.splitlines()[-1]  # after torch.hub's progress bar
    assert err.count("error:") == 1
    assert error.startswith("error: the shufflenet_v2_x0_5 IMAGENET1K_V1 weights downloaded from "
                          "https://download.pytorch.org/models/shufflenetv2_x0.5-f707e7126e.pth do not match the hash")
    assert list((tmp_path / "torch_home" / "hub" / "checkpoints").iterdir()) == []


def test_cached_file_that_is_not_the_published_one_is_refused(export_models, tmp_path, monkeypatch):
    urls = _no_network(monkeypatch, tmp_path)
    cached = tmp_path / "torch_home" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"someone else's state dict\n")
    out = tmp_path / "x.onnx"
    code, stdout, err = _export(export_models, ["torchvision", "--arch", "resnet18", "--weights", "default",
                                                "--out", str(out)])
    assert code == 2 and stdout == "" and err.count("\n") == 1 and not out.exists() and urls == []
    assert err.startswith(f"error: {cached} does not match the SHA-256 prefix f37072fd in its name")
    assert "it is not the published resnet18 IMAGENET1K_V1 file" in err


@pytest.mark.parametrize(("weights", "expected"), [
    ("IMAGENET1K_V9", "error: weights file not found: 'IMAGENET1K_V9'; `--weights` takes default, IMAGENET1K_V1 "
                      "or a state_dict file"),
    ("no/such/file.pth", "error: weights file not found: 'no/such/file.pth'; `--weights` takes default, "
                         "IMAGENET1K_V1 or a state_dict file"),
])
def test_unknown_weights_are_one_line(export_models, tmp_path, weights, expected):
    code, stdout, err = _export(export_models, ["torchvision", "--arch", "resnet18", "--weights", weights,
                                                "--out", str(tmp_path / "x.onnx")])
    assert code == 2 and stdout == "" and err.count("\n") == 1
    assert err.startswith(expected)
