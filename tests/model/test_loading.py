"""onnxnoise.model: loading, layer enumeration, safety of external data, damaged models."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxnoise.config import RunConfig
from onnxnoise.engine.context import prepare_context
from onnxnoise.engine.evaluate import evaluate
from onnxnoise.errors import DataError, GraphError
from onnxnoise.model import get_initializers, get_model_io, list_layers, load_model, select_layers

from tests._builders import tiny_cnn
from tests._checks import one_line, run_cli
from tests._colour import CLASSES, colour_model, colour_npz


def _save(model: onnx.ModelProto, path) -> str:
    onnx.save(model, str(path))
    return str(path)


def test_tiny_cnn_layers(tmp_path):
    layers = list_layers(load_model(_save(tiny_cnn(), tmp_path / "m.onnx")))
    assert [(l.index, l.name, l.op_type) for l in layers] == [
        (0, "conv", "Conv"), (1, "bn", "BatchNormalization"), (2, "fc", "Gemm")]
    assert layers[0].tensors == ("conv.weight", "conv.bias")
    assert layers[1].roles == ("scale", "bias", "mean", "var")
    assert [l.num_params for l in layers] == [4 * 3 * 9 + 4, 16, 10 * 4 + 10]
    # int64 shape tensor and the float scalar are not parameters
    owned = {t for l in layers for t in l.tensors}
    assert "flat.shape" not in owned and "one" not in owned
    w = numpy_helper.to_array(next(t for t in tiny_cnn().graph.initializer if t.name == "conv.weight"))
    assert layers[0].sigma_w == pytest.approx(float(w.std()), rel=1e-6)


def _matmul_model(*, tied: bool = False, constant: bool = False) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 4)).astype(np.float32)
    b = rng.normal(size=(4,)).astype(np.float32)
    nodes = []
    inits = [numpy_helper.from_array(b, "b")]
    if constant:
        nodes.append(helper.make_node("Constant", [], ["W"], value=numpy_helper.from_array(w, "W")))
    else:
        inits.append(numpy_helper.from_array(w, "W"))
    nodes += [
        helper.make_node("MatMul", ["x", "W"], ["h"], name="mm1"),
        helper.make_node("Add", ["h", "b"], ["h2"], name="add1"),
    ]
    if tied:
        nodes.append(helper.make_node("MatMul", ["h2", "W"], ["y"], name="mm2"))
    else:
        nodes.append(helper.make_node("Relu", ["h2"], ["y"]))
    resize_scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    inits.append(resize_scales)
    nodes.append(helper.make_node("Identity", ["y"], ["out"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_matmul_add_pair_is_one_layer(tmp_path):
    layers = list_layers(load_model(_save(_matmul_model(), tmp_path / "m.onnx")))
    assert len(layers) == 1
    assert layers[0].op_type == "MatMul" and layers[0].tensors == ("W", "b")
    assert layers[0].roles == ("weight", "bias")


def test_tied_weight_is_one_layer(tmp_path):
    layers = list_layers(load_model(_save(_matmul_model(tied=True), tmp_path / "m.onnx")))
    assert [l.tensors for l in layers] == [("W", "b")]


def test_constant_node_weights_are_lifted(tmp_path):
    model = load_model(_save(_matmul_model(constant=True), tmp_path / "m.onnx"))
    assert not any(n.op_type == "Constant" for n in model.graph.node)
    layers = list_layers(model)
    assert layers[0].tensors == ("W", "b")


def test_resize_scales_are_not_parameters(tmp_path):
    model = _matmul_model()
    model.graph.node.append(helper.make_node("Resize", ["out", "", "scales"], ["out2"], name="rs"))
    layers = list_layers(load_model(_save(model, tmp_path / "m.onnx")))
    assert all("scales" not in l.tensors for l in layers)


def test_missing_file():
    with pytest.raises(GraphError, match="model file not found: nope.onnx"):
        load_model("nope.onnx")


def test_not_onnx(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a model\n" * 10)
    with pytest.raises(GraphError, match="is not an ONNX model"):
        load_model(path)


def test_external_data_escaping_folder_is_refused(tmp_path):
    model = tiny_cnn()
    (tmp_path / "sub").mkdir()
    onnx.save(model, str(tmp_path / "sub" / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    # Rewrite the location to escape the model folder.
    m = onnx.load(str(tmp_path / "sub" / "m.onnx"), load_external_data=False)
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../weights.bin"
    (tmp_path / "weights.bin").write_bytes((tmp_path / "sub" / "weights.bin").read_bytes())
    onnx.save(m, str(tmp_path / "sub" / "evil.onnx"))
    with pytest.raises(GraphError, match="escapes the model's folder"):
        load_model(tmp_path / "sub" / "evil.onnx")
    # The well-formed one loads relative to the model file, not the working directory.
    layers = list_layers(load_model(tmp_path / "sub" / "m.onnx"))
    assert len(layers) == 3


def test_select_layers():
    layers = list_layers(tiny_cnn())
    assert [l.name for l in select_layers(layers, "Batch|fc")] == ["bn", "fc"]
    assert select_layers(layers, "all") == layers
    with pytest.raises(GraphError, match="matches no layer"):
        select_layers(layers, "nothing_like_this")
    with pytest.raises(GraphError, match="not a valid regular expression"):
        select_layers(layers, "(")


def test_model_io():
    io = get_model_io(tiny_cnn(batch=1))
    assert (io.input_name, io.output_name, io.num_classes, io.batch_size) == ("input", "logits", 10, 1)
    assert get_model_io(tiny_cnn()).batch_size is None


# ------------------------------------------------------------------ damaged models: one-line errors


def test_model_without_outputs_is_a_graph_error():
    model = tiny_cnn()
    del model.graph.output[:]
    with pytest.raises(GraphError, match="the model has no graph output"):
        get_model_io(model)


def test_untyped_image_input_is_a_graph_error():
    model = tiny_cnn()
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.UNDEFINED
    with pytest.raises(GraphError, match="image input 'input' has no usable tensor element type"):
        get_model_io(model)


def test_damaged_initializer_is_a_graph_error(tmp_path):
    model = tiny_cnn()
    weight = next(t for t in model.graph.initializer if t.name == "conv.weight")
    weight.raw_data = weight.raw_data[:10]  # truncated: not a whole number of float32 values
    with pytest.raises(GraphError, match=r"^tensor 'conv.weight' of shape \[4, 3, 3, 3\] needs 432 bytes of data but "
                       "the model holds 10; the model file is damaged"):
        load_model(_save(model, tmp_path / "m.onnx"))  # refused at load (model/sizes.py) ...
    with pytest.raises(GraphError, match="initializer 'conv.weight' .* cannot be read"):
        get_initializers(model)  # ... and where a model not loaded by load_model is read
    with pytest.raises(GraphError, match="initializer 'conv.weight' .* cannot be read"):
        list_layers(model)


def _qdq_matmul(zero: np.ndarray) -> onnx.ModelProto:
    q = np.arange(-8, 8, dtype=np.int8).reshape(4, 4)
    inits = [
        numpy_helper.from_array(q, "Wq"),
        numpy_helper.from_array(np.full(4, 0.1, np.float32), "Wq_scale"),
        numpy_helper.from_array(zero, "Wq_zp"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["Wq", "Wq_scale", "Wq_zp"], ["W"], axis=1, name="dq"),
        helper.make_node("MatMul", ["x", "W"], ["out"], name="mm"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_qdq_zero_point_of_wrong_size_is_not_a_layer():
    # A per-axis scale of 4 with a zero point of 3: malformed, skipped like blocked quantization
    # (it used to crash with numpy's broadcast ValueError).
    assert list_layers(_qdq_matmul(np.zeros(3, np.int8))) == []
    # A scalar zero point with a per-axis scale still broadcasts, so it stays a layer.
    (layer,) = list_layers(_qdq_matmul(np.zeros((), np.int8)))
    assert layer.tensors == ("Wq",) and layer.quant[0].axis == 1
    (layer,) = list_layers(_qdq_matmul(np.zeros(4, np.int8)))
    assert layer.quant[0].zero_point == "Wq_zp"


@pytest.mark.parametrize("package", ["onnxnoise.model", "onnxnoise.data"])
def test_exception_classes_live_in_errors(package):
    import importlib
    import inspect
    import pkgutil

    root = importlib.import_module(package)
    for info in pkgutil.iter_modules(root.__path__, f"{package}."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                pytest.fail(f"{info.name}.{name} is an exception class; define it in onnxnoise/errors.py")


# ------------------------------------------------------------------ score outputs not shaped [N, C]


def _colour_with_outputs(layout: str, *, ids_first: bool) -> onnx.ModelProto:
    """The colour classifier (100% top-1 by construction) with its scores in ``layout``, optionally after
    an int64 class-id output (``ids [N]``, as TF serving signatures put first)."""
    model = colour_model()
    shape = {"NC": [0, CLASSES], "NC11": [0, CLASSES, 1, 1], "N11C": [0, 1, 1, CLASSES]}[layout]
    model.graph.initializer.append(numpy_helper.from_array(np.array(shape, np.int64), "score.shape"))
    model.graph.node.extend([
        helper.make_node("Reshape", ["logits", "score.shape"], ["scores"], name="to_layout"),
        helper.make_node("ArgMax", ["logits"], ["ids"], axis=1, keepdims=0, name="class_ids"),
    ])
    dims = ["N", *shape[1:]]
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, dims)]
    if ids_first:
        outputs.insert(0, helper.make_tensor_value_info("ids", TensorProto.INT64, ["N"]))
    del model.graph.output[:]
    model.graph.output.extend(outputs)
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("ids_first", [False, True])
@pytest.mark.parametrize("layout", ["NC", "NC11", "N11C"])
def test_score_output_layouts_are_squeezed_and_integer_outputs_skipped(layout, ids_first, tmp_path):
    model = _colour_with_outputs(layout, ids_first=ids_first)
    io = get_model_io(model)
    assert (io.output_name, io.num_classes) == ("scores", CLASSES)
    path = _save(model, tmp_path / "m.onnx")
    for shift, expected in ((0, 60), (1, 0)):  # right labels: every image; shifted labels: none
        data = colour_npz(tmp_path / f"d{shift}.npz", shift=shift)
        context = prepare_context(RunConfig(model=path, data=data, preset="raw", device="cpu"))
        counts = evaluate(context.factory.create(), context.data)
        assert (counts.images, counts.top1_correct) == (60, expected)
        assert context.key_fields()["score_output"] == "scores"


def test_score_output_messages_name_the_float_outputs(tmp_path):
    model = _colour_with_outputs("NC11", ids_first=True)
    with pytest.raises(GraphError) as info:
        get_model_io(model, output="ids")
    assert str(info.value) == ("`--score-output` ids [N] is int64, not class scores (class ids?); choose a float "
                               "output: scores [N, 12, 1, 1]")
    ids_only = _colour_with_outputs("NC", ids_first=True)
    ids_only.graph.output.pop()
    with pytest.raises(GraphError, match=r"^the model has no float output to read class scores from \(its outputs: "
                       r"ids \[N\] \(int64\)\); export it with its logits or probabilities as an output$"):
        get_model_io(ids_only)
    feature_map = _colour_with_outputs("NC", ids_first=False)
    feature_map.graph.output[0].CopyFrom(helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 7, 7, 12]))
    with pytest.raises(GraphError, match=r"score output scores \[N, 7, 7, 12\] has more than one dimension above 1"):
        get_model_io(feature_map)
    # A [N, 1] float output first (a single logit) and the class scores second: the label check names the other.
    two = _colour_with_outputs("NC", ids_first=False)
    two.graph.node.append(helper.make_node("ReduceMax", ["logits"], ["best"], keepdims=1, axes=[1], name="best"))
    two.graph.output.insert(0, helper.make_tensor_value_info("best", TensorProto.FLOAT, ["N", 1]))
    path = _save(two, tmp_path / "two.onnx")
    data = colour_npz(tmp_path / "d.npz")
    with pytest.raises(DataError) as info:
        prepare_context(RunConfig(model=path, data=data, preset="raw", device="cpu"))
    assert str(info.value) == ("the dataset has labels up to 11 (12 classes) but the model's score output `best` has 1 "
                               "outputs; use a dataset of the model's classes; other float outputs: scores [N, 12]; "
                               "choose one with --score-output NAME")
    context = prepare_context(RunConfig(model=path, data=data, preset="raw", device="cpu", score_output="scores"))
    assert evaluate(context.factory.create(), context.data).top1_correct == 60


@pytest.mark.parametrize(("good", "bad", "field"), [
    (b"conv.weight", b"conv.weig\xff\xfe", "TensorProto.name"),  # an initializer and the Conv input naming it
    (b"fc_node", b"fc_no\xc3\x28", "NodeProto.name"),
])
def test_a_name_that_is_not_utf8_is_one_line_exit_2(tmp_path, tiny_float_int8, capsys, good, bad, field):
    # protobuf hands such a string over as bytes; every noisy trial used to fail with an AttributeError
    model = tiny_cnn()
    for node in model.graph.node:
        if node.op_type == "Gemm":
            node.name = "fc_node"
    raw = model.SerializeToString()
    assert raw.count(good) >= 1 and len(good) == len(bad)
    path = tmp_path / "latin.onnx"
    path.write_bytes(raw.replace(good, bad))
    with pytest.raises(GraphError, match=rf"^{path} holds a {field} that is not valid UTF-8 \(b'"):
        load_model(path)
    code, _, err = run_cli(capsys, "bench", path, "--data", tiny_float_int8[2], "--snr", "10", "--crop", "8",
                           "--resize", "0")
    assert code == 2
    assert one_line(err) == (f"onnxnoise: error: {path} holds a {field} that is not valid UTF-8 ({bad!r}); ONNX names "
                             "and text are UTF-8: rename it where the model is exported and save it again")
