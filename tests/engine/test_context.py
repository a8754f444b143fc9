"""Input and output adapters: label offset (1001 outputs), softmax vs logits, several outputs,
uint8 inputs, fixed batch, NHWC layout."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxnoise.bench import run_bench
from onnxnoise.config import RunConfig
from onnxnoise.data import resolve_data_config
from onnxnoise.data.registry import register_dataset
from onnxnoise.engine.context import prepare_context
from onnxnoise.engine.evaluate import EvalSet, evaluate
from onnxnoise.engine.labels import resolve_label_offset, shift_labels
from onnxnoise.engine.metrics import Counts
from onnxnoise.engine.runtime import SessionFactory
from onnxnoise.errors import DataError, GraphError
from onnxnoise.model import get_model_io
from onnxnoise.noise_config import NoiseConfig

from tests._builders import tiny_cnn
from tests._checks import flat, one_line, run_cli, strict_json
from tests._colour import colour_images, colour_model
from tests._limits import run_limited

#: x / 255 with no mean/std: the float twin of the uint8 model below.
RAW = resolve_data_config("cifar", mean=(0.0,), std=(1.0,), scale=1 / 255, resize=None, crop=None)


def _session(model: onnx.ModelProto, output: str = "logits", input_name: str = "input"):
    return SessionFactory(model, [], input_name=input_name, output_name=output, device="cpu").create()


def _images(n=40, size=8, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def _labels_from(model: onnx.ModelProto, images: np.ndarray, config=RAW, output="logits") -> np.ndarray:
    """Labels that make about half the images correct (the model's own top-1 on even rows)."""
    data = EvalSet(images, np.zeros(len(images), np.int64), config)
    scores = np.concatenate([_session(model, output).run(x)[: len(y)] for x, y in data.batches()])
    labels = scores.argmax(1)
    labels[1::2] = (labels[1::2] + 3) % scores.shape[1]
    return labels


# ------------------------------------------------------------------ label offset


def test_resolve_label_offset():
    assert resolve_label_offset(1001, 1000) == 1
    assert resolve_label_offset(1000, 1000) == 0
    assert resolve_label_offset(11, 10) == 0  # only the TF ImageNet case is detected
    assert resolve_label_offset(None, 1000) == 0
    assert resolve_label_offset(1001, 1000, 0) == 0  # explicit wins
    assert resolve_label_offset(12, 10, 2) == 2
    with pytest.raises(DataError, match=r"`--label-offset` must be a non-negative integer, got -1"):
        resolve_label_offset(1001, 1000, -1)
    with pytest.raises(DataError, match=r"`--label-offset` 2 puts the dataset's 1000 classes at outputs 2\.\.1001, "
                                        r"beyond the model's 1001 outputs"):
        resolve_label_offset(1001, 1000, 2)
    np.testing.assert_array_equal(shift_labels(np.array([0, 999]), 1), [1, 1000])


def _background_model(num_classes=1000) -> onnx.ModelProto:
    """(N, 3, 2, 2) -> Flatten -> Gemm to 1 + num_classes outputs; output 0 is a weak background."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(1 + num_classes, 12)).astype(np.float32)
    b = np.zeros(1 + num_classes, np.float32)
    b[0] = -100.0
    nodes = [helper.make_node("Flatten", ["input"], ["f"]),
             helper.make_node("Gemm", ["f", "W", "b"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "bg", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 2, 2])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1 + num_classes])],
                              [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_background_class_offset_matches_model_without_background():
    model = _background_model()
    io = get_model_io(model)
    assert io.num_classes == 1001
    offset = resolve_label_offset(io.num_classes, 1000)
    assert offset == 1
    # The same classifier without its background row: labels 0..999 directly.
    plain = onnx.ModelProto()
    plain.CopyFrom(model)
    w = numpy_helper.to_array(plain.graph.initializer[0])[1:]
    b = numpy_helper.to_array(plain.graph.initializer[1])[1:]
    plain.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, "W"))
    plain.graph.initializer[1].CopyFrom(numpy_helper.from_array(b, "b"))
    plain.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 1000
    images = _images(60, size=2)
    labels = _labels_from(plain, images)
    expected = evaluate(_session(plain), EvalSet(images, labels, RAW))
    assert 20 <= expected.top1_correct <= 40
    got = evaluate(_session(model), EvalSet(images, labels, RAW, label_offset=offset))
    assert got == expected
    wrong = evaluate(_session(model), EvalSet(images, labels, RAW))  # no offset: every label off by one
    assert wrong.top1_correct < expected.top1_correct // 4
    with pytest.raises(DataError, match=r"label 1000 \(label offset 1\) is beyond the model's 1000 outputs"):
        evaluate(_session(plain), EvalSet(images, np.full(60, 999), RAW, label_offset=1))
    with pytest.raises(DataError, match="`label_offset` must be a non-negative integer, got -1"):
        EvalSet(images, labels, RAW, label_offset=-1)


# ------------------------------------------------------------------ softmax vs logits, several outputs


def _with_softmax() -> onnx.ModelProto:
    model = tiny_cnn()
    model.graph.node.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=-1, name="softmax"))
    model.graph.output.insert(0, helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10]))
    onnx.checker.check_model(model)
    return model


def test_softmax_output_counts_equal_logits_and_output_choice():
    model = _with_softmax()
    assert get_model_io(model).output_name == "probs"  # first graph output by default
    io = get_model_io(model, output="logits")
    assert (io.output_name, io.num_classes) == ("logits", 10)
    with pytest.raises(GraphError, match=r"`--score-output` 'nope' is not a graph output; choose one of \['logits', 'probs'\]"):
        get_model_io(model, output="nope")
    images = _images(64)
    labels = _labels_from(model, images, output="logits")
    data = EvalSet(images, labels, RAW, batch_size=16)
    from_logits = evaluate(_session(model, "logits"), data)
    from_probs = evaluate(_session(model, "probs"), data)
    assert from_logits == from_probs
    assert from_logits.top1_correct == 32 and from_logits.images == 64


# ------------------------------------------------------------------ uint8 image input (preprocessing in the graph)


def _uint8_nhwc_model() -> onnx.ModelProto:
    """uint8 (N, 8, 8, 3) NHWC -> Cast -> /255 -> NCHW -> tiny_cnn."""
    model = tiny_cnn()
    pre = [
        helper.make_node("Cast", ["image_u8"], ["xf"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Div", ["xf", "k255"], ["xs"], name="div"),
        helper.make_node("Transpose", ["xs"], ["input"], perm=[0, 3, 1, 2], name="to_nchw"),
    ]
    nodes = pre + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.append(numpy_helper.from_array(np.array(255.0, np.float32), "k255"))
    del model.graph.input[:]
    model.graph.input.append(helper.make_tensor_value_info("image_u8", TensorProto.UINT8, ["N", 8, 8, 3]))
    onnx.checker.check_model(model)
    return model


def test_uint8_input_gets_raw_pixels():
    model = _uint8_nhwc_model()
    io = get_model_io(model)
    assert (io.input_name, io.input_dtype, io.input_shape) == ("image_u8", np.dtype(np.uint8), (None, 8, 8, 3))
    images = _images(50)
    config = resolve_data_config("cifar", layout="NHWC", resize=None, crop=None)  # normalization must be ignored
    data = EvalSet(images, np.zeros(50, np.int64), config, batch_size=16, input_dtype=io.input_dtype)
    x, _ = next(data.batches())
    assert x.dtype == np.uint8 and x.shape == (16, 8, 8, 3)
    np.testing.assert_array_equal(x, images[:16])
    labels = _labels_from(tiny_cnn(), images)
    got = evaluate(_session(model, input_name="image_u8"),
                   EvalSet(images, labels, config, batch_size=16, input_dtype=io.input_dtype))
    assert got == evaluate(_session(tiny_cnn()), EvalSet(images, labels, RAW))
    assert got.top1_correct == 25


# ------------------------------------------------------------------ fixed batch


@pytest.mark.parametrize("fixed", [1, 4, 64])
def test_fixed_batch_pads_last_batch_and_drops_padding(fixed):
    images = _images(10)
    labels = _labels_from(tiny_cnn(), images)
    expected = evaluate(_session(tiny_cnn()), EvalSet(images, labels, RAW))
    model = tiny_cnn(batch=fixed)
    assert get_model_io(model).batch_size == fixed
    data = EvalSet(images, labels, RAW, batch_size=128, fixed_batch=fixed)
    shapes = [(x.shape[0], len(y)) for x, y in data.batches()]
    assert all(n == fixed for n, _ in shapes) and sum(k for _, k in shapes) == 10
    assert evaluate(_session(model), data) == expected == Counts(10, 5, expected.top5_correct, 0)


def test_a_fixed_batch_beyond_the_bound_is_refused_before_padding(tmp_path, tiny_float_int8):
    with pytest.raises(DataError, match=r"^the model's input has a fixed batch of 4097 images, more than the 4096 "
                       r"allowed; export it with a dynamic \(or smaller\) batch dimension$"):
        EvalSet(_images(3), np.zeros(3, np.int64), RAW, fixed_batch=4097)
    assert EvalSet(_images(3), np.zeros(3, np.int64), RAW, fixed_batch=4096).batch_size == 4096
    onnx.save(tiny_cnn(batch=2_000_000_000), tmp_path / "m.onnx")  # 2e9 images of 3x8x8 float32 once padded
    done = run_limited(["bench", str(tmp_path / "m.onnx"), "--data", str(tiny_float_int8[2]), "--snr", "10",
                        "--preprocess", "raw"])
    assert done.returncode == 2, done.stderr
    assert one_line(done.stderr) == ("onnxnoise: error: the model's input has a fixed batch of 2000000000 images, "
                                     "more than the 4096 allowed; export it with a dynamic (or smaller) batch "
                                     "dimension")


# ------------------------------------------------------------------ NHWC layout chosen from the input shape


def test_nhwc_layout_detected_from_model_input(tmp_path):
    images = _images(20)
    labels = _labels_from(tiny_cnn(), images)
    np.savez(tmp_path / "d.npz", images=images, labels=labels)
    model = tiny_cnn()
    nodes = [helper.make_node("Transpose", ["image"], ["input"], perm=[0, 3, 1, 2], name="to_nchw")]
    nodes += list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    del model.graph.input[:]
    model.graph.input.append(helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 8, 8, 3]))
    onnx.save(model, str(tmp_path / "nhwc.onnx"))
    context = prepare_context(RunConfig(model=tmp_path / "nhwc.onnx", data=tmp_path / "d.npz", device="cpu",
                                        preset="cifar", preprocess={"mean": (0.0,), "std": (1.0,),
                                                                    "scale": 1 / 255}))
    assert context.data_config.layout == "NHWC"
    assert context.facts()["input_layout"] == "NHWC"
    x, _ = next(context.data.batches())
    assert x.shape == (20, 8, 8, 3)
    assert evaluate(context.factory.create(), context.data).top1_correct == 10


@pytest.mark.parametrize(("stored", "line"), [
    ('{"resize": 100000, "crop": 224}', "invalid preprocessing setting `resize`=100000: 100000 pixels is more than "
     "the 8192 allowed"),
    ('{"crop": 224, "crop_pct": 1e-7}', "invalid preprocessing setting `resize`=2240000000: 2240000000 pixels "
     "(floor(crop 224 / crop_pct 1e-07)) is more than the 8192 allowed"),
    ('{"a": ' * 100_000 + "1" + "}" * 100_000, "the model's `onnxnoise.preprocess` metadata is not a JSON object of "
     "preprocessing settings; name a preset with `--preprocess` to ignore it"),
])
def test_hostile_preprocessing_metadata_is_one_line_exit_2_under_a_memory_limit(tmp_path, tiny_float_int8, stored,
                                                                                line):
    _, _, data = tiny_float_int8
    model = tiny_cnn()
    helper.set_model_props(model, {"onnxnoise.preprocess": stored})
    onnx.save(model, tmp_path / "m.onnx")
    done = run_limited(["bench", str(tmp_path / "m.onnx"), "--data", str(data), "--snr", "10"])
    assert done.returncode == 2, done.stderr
    assert one_line(done.stderr).startswith(f"onnxnoise: error: {line}")


# ------------------------------------------------------------------ score width the graph never states


def test_score_width_no_shape_inference_can_tell_is_read_from_the_clean_scores(tmp_path, capsys):
    """A 5-output model whose class count only exists at run time (``Reshape`` by its own ``Shape``, output
    ``[N, C]``): top-5 cannot change, so bench warns and ``check --metric top5`` refuses, as for a stated width."""
    model = colour_model()
    nodes = [helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(v, np.int64)))
             for name, v in (("st", [0]), ("en", [5]), ("ax", [1]))]
    nodes += [helper.make_node("Slice", ["logits", "st", "en", "ax"], ["five"]),
              helper.make_node("Shape", ["five"], ["shape"]),
              helper.make_node("Reshape", ["five", "shape"], ["scores"])]
    model.graph.node.extend(nodes)
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", "C"]))
    onnx.save(model, str(tmp_path / "five.onnx"))
    images = np.concatenate([colour_images(k, 4) for k in range(5)])
    np.savez(tmp_path / "d.npz", images=images, labels=np.repeat(np.arange(5), 4))
    assert get_model_io(onnx.shape_inference.infer_shapes(model)).num_classes is None  # inference cannot tell
    raw = {"mean": (0.0,), "std": (1.0,), "scale": 1 / 255}
    context = prepare_context(RunConfig(model=tmp_path / "five.onnx", data=tmp_path / "d.npz", device="cpu",
                                        preset="raw", preprocess=raw))
    assert context.score_width == 5 and context.facts()["model_outputs"] == 5
    assert [w for w in context.warnings if w.startswith("top-5 cannot change: the model has 5 outputs")]
    common = ["--data", tmp_path / "d.npz", "--preprocess", "raw", "--snr", "0.5", "--device", "cpu"]
    code, out, err = run_cli(capsys, "bench", tmp_path / "five.onnx", *common, "--seeds", "1", "--out", tmp_path / "b")
    assert code == 0 and "WARNING: top-5 cannot change: the model has 5 outputs" in flat(out + err)
    code, _, err = run_cli(capsys, "check", tmp_path / "five.onnx", *common, "--max-drop", "1", "--metric", "top5",
                           "--out", tmp_path / "c")
    assert code == 2 and "--metric top5 cannot gate this model: top-5 cannot change" in one_line(err)


def test_a_non_square_static_input_is_refused_with_advice_that_works(tmp_path, capsys):
    """A 32x48 (H x W) model: ``--crop`` makes square images only, so the advice is images of that size with no
    resize or crop (it was ``--crop 32``, refused again the same way); following it gives 100% by construction."""
    model = colour_model()
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 48]))
    onnx.save(model, str(tmp_path / "rect.onnx"))
    small = np.concatenate([colour_images(k, 5) for k in range(12)])
    images = np.ascontiguousarray(np.broadcast_to(small[:, :1, :1], (60, 32, 48, 3)))
    np.savez(tmp_path / "d.npz", images=images, labels=np.repeat(np.arange(12), 5))
    common = ["bench", tmp_path / "rect.onnx", "--data", tmp_path / "d.npz", "--mean", "0", "--std", "1",
              "--snr", "1000", "--seeds", "1", "--device", "cpu", "--out", tmp_path / "o"]
    advice = ("--crop gives square images only, so give images of 32x48 pixels (height x width) and pass "
              "`--resize 0 --crop 0`")
    for extra, got in (([], "224x224"), (["--crop", "32"], "32x32")):
        code, _, err = run_cli(capsys, *common, *extra)
        assert code == 2
        assert one_line(err) == f"onnxnoise: error: preprocessing gives {got} images but the model expects 32x48; " \
                                + advice
    code, out, err = run_cli(capsys, *common, "--resize", "0", "--crop", "0", "--json")
    assert code == 0, err
    assert strict_json(out)["baseline"]["top1_acc"] == 100.0


def test_a_registered_dataset_name_in_run_config_is_resolved(demo_files, tmp_path, monkeypatch):
    """``run_bench(RunConfig(model, NAME))`` runs as ``bench MODEL --data NAME`` does (issue 22): the context
    opens the registered path (:func:`onnxnoise.data.registry.resolve_data`)."""
    monkeypatch.setenv("ONNXNOISE_CONFIG_DIR", str(tmp_path))
    model, data = demo_files
    register_dataset("fm-demo", data)
    config = RunConfig(model=model, data="fm-demo", noise=NoiseConfig(strengths=(10.0,), seeds=1))
    assert prepare_context(config).config.data == data.resolve()
    assert run_bench(config).trials["top1_correct"].to_list() == [932, 903]  # the demo's counts with its path
    with pytest.raises(DataError, match="`fm-other` does not exist as a path and is not a registered dataset name"):
        prepare_context(RunConfig(model=model, data="fm-other"))
