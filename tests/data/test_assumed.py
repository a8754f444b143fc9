"""Preprocessing for a model that states none: geometry from a static input (timm), a warning naming the rest."""

from __future__ import annotations

import json
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnxnoise.config import RunConfig
from onnxnoise.data import assumed_warning, input_geometry, resolve_data_config, static_size
from onnxnoise.engine.context import prepare_context
from onnxnoise.engine.evaluate import evaluate

from tests._checks import run_cli, strict_json
from tests._colour import CLASSES, colour_images, colour_model

TAIL = ("; if the model was trained otherwise, pass --preprocess PRESET (caffe, cifar, mnist, raw, tf, tf-lite, "
        "torchvision) or --mean/--std/--scale/--resize/--crop")
HEAD = "no preprocessing stored in the model (metadata `onnxnoise.preprocess`) and no --preprocess given: assumed "


def test_static_size_and_timm_geometry():
    assert static_size((None, 3, 32, 32)) == (32, 32) and static_size((1, 224, 224, 3)) == (224, 224)
    assert static_size((None, 3, None, None)) is None and static_size((None, 3, 32)) is None
    assert input_geometry((None, 3, 32, 32), {}) == ({"resize": 36, "crop": 32}, (32, 32))  # floor(32 / 0.875)
    assert input_geometry((None, 3, 299, 299), {}) == ({"resize": 341, "crop": 299}, (299, 299))
    assert input_geometry((1, 224, 224, 3), {}) == ({}, (224, 224))  # torchvision's own: nothing moves
    assert input_geometry((None, 3, 32, 48), {}) == ({}, (32, 48))  # not square: the preset's, refused later
    assert input_geometry((None, 3, 32, 32), {"crop": 28}) == ({}, (32, 32))  # geometry given: left alone


def test_assumed_warning_names_only_what_was_assumed():
    config = resolve_data_config(None)
    assert assumed_warning(config, {}, size=(224, 224)) == (
        HEAD + "torchvision's resize 256 bilinear, crop 224 (the model's 224x224 input), RGB, x/255, "
        "mean 0.485,0.456,0.406, std 0.229,0.224,0.225" + TAIL)
    given = {"mean": (0.0,), "std": (1.0,)}
    assert assumed_warning(resolve_data_config(None, **given), given) == (
        HEAD + "torchvision's resize 256 bilinear, crop 224, RGB, x/255" + TAIL)
    assert assumed_warning(config, {}, normalized=False) == HEAD + "torchvision's resize 256 bilinear, crop 224" + TAIL
    every = {"resize": 0, "crop": 0, "mean": (0.0,), "std": (1.0,), "scale": 1 / 255, "channel_order": "RGB"}
    assert assumed_warning(resolve_data_config(None, **every), every) is None


def _colour_at(size: int) -> onnx.ModelProto:
    """The colour classifier (GlobalAveragePool first, so any size) with a static ``size x size`` input."""
    model = colour_model()
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size]))
    return model


def _solid_npz(path, size: int):
    """5 solid images per class at ``size x size``: any resize and crop keeps their colour."""
    small = np.concatenate([colour_images(k, 5) for k in range(CLASSES)])
    images = np.ascontiguousarray(np.broadcast_to(small[:, :1, :1], (len(small), size, size, 3)))
    np.savez(path, images=images, labels=np.repeat(np.arange(CLASSES), 5))
    return path


def test_static_32x32_model_without_metadata_needs_no_geometry_and_is_warned(tmp_path, capsys):
    model = tmp_path / "m32.onnx"
    onnx.save(_colour_at(32), str(model))
    data = _solid_npz(tmp_path / "d.npz", 32)
    # mean 0 / std 1 given (the colour model reads x/255): geometry from the model, 100% by construction.
    config = RunConfig(model=model, data=data, device="cpu", preprocess={"mean": (0.0,), "std": (1.0,)})
    context = prepare_context(config)
    assert (context.data_config.resize, context.data_config.crop, context.preprocess_source) == (36, 32, "default")
    assert evaluate(context.factory.create(), context.data).top1_correct == 60
    assert context.warnings == [HEAD + "torchvision's resize 36 bilinear, crop 32 (the model's 32x32 input), RGB, "
                                "x/255" + TAIL]
    # The CLI, nothing given: it runs (it used to refuse "224x224 but the model expects 32x32") and says so.
    code, out, err = run_cli(capsys, "bench", model, "--data", data, "--snr", "100", "--seeds", "1", "--device",
                             "cpu", "--out", tmp_path / "run", "--json")
    assert code == 0, err
    expected = (HEAD + "torchvision's resize 36 bilinear, crop 32 (the model's 32x32 input), RGB, x/255, "
                "mean 0.485,0.456,0.406, std 0.229,0.224,0.225" + TAIL)
    assert strict_json(out)["warnings"] == [expected]
    assert strict_json((tmp_path / "run" / "bench.json").read_text())["warnings"] == [expected]
    assert "WARNING: " + expected in " ".join(err.split())


@pytest.mark.parametrize("given", [{"preset": "raw"}, {"metadata": True}])
def test_stated_preprocessing_is_neither_changed_nor_warned(given, tmp_path):
    raw = {"preset": "raw", "resize": None, "crop": None}
    model = tmp_path / "m.onnx"
    onnx.save(colour_model(metadata={"onnxnoise.preprocess": raw} if "metadata" in given else None), str(model))
    data = _solid_npz(tmp_path / "d.npz", 8)
    context = prepare_context(RunConfig(model=model, data=data, device="cpu", preset=given.get("preset")))
    assert context.data_config == resolve_data_config("raw") and context.warnings == []


def test_224_model_without_metadata_keeps_torchvision_exactly(tmp_path):
    model = tmp_path / "m224.onnx"
    onnx.save(_colour_at(224), str(model))
    context = prepare_context(RunConfig(model=model, data=_solid_npz(tmp_path / "d.npz", 224), device="cpu"))
    assert context.data_config.to_dict() == resolve_data_config("torchvision").to_dict()  # trial keys unchanged
    assert len(context.warnings) == 1 and context.warnings[0].startswith(HEAD + "torchvision's resize 256 bilinear")


PARTIAL = "the model's `onnxnoise.preprocess` metadata names no preset and leaves settings out and no --preprocess " \
          "given: assumed "


@pytest.mark.parametrize(("stored", "named"), [
    # mean/std/scale stated, no geometry: the 32x32 input gives it (was refused "224x224 but the model expects 32x32")
    ({"scale": 1 / 255, "mean": [0, 0, 0], "std": [1, 1, 1]}, "resize 36 bilinear, crop 32 (the model's 32x32 input), "
                                                               "RGB"),
    # geometry stated, no mean/std: torchvision's were taken without a word
    ({"resize": 40, "crop": 32}, "RGB, x/255, mean 0.485,0.456,0.406, std 0.229,0.224,0.225"),
    # the layout in lower case, as DataConfig accepts it
    ({"scale": 1 / 255, "mean": [0, 0, 0], "std": [1, 1, 1], "layout": "nchw"},
     "resize 36 bilinear, crop 32 (the model's 32x32 input), RGB"),
])
def test_metadata_without_a_preset_gets_the_same_geometry_and_warning_for_what_it_leaves_out(stored, named, tmp_path):
    model = tmp_path / "m.onnx"
    proto = _colour_at(32)
    helper.set_model_props(proto, {"onnxnoise.preprocess": json.dumps(stored)})
    onnx.save(proto, str(model))
    data = _solid_npz(tmp_path / "d.npz", 32)
    context = prepare_context(RunConfig(model=model, data=data, device="cpu"))
    assert (context.data_config.resize, context.data_config.crop) == (stored.get("resize", 36), 32)
    assert context.warnings == [PARTIAL + "torchvision's " + named + TAIL]
    if "mean" in stored:  # x/255 with mean 0, std 1: 100% by construction
        assert evaluate(context.factory.create(), context.data).top1_correct == 60
