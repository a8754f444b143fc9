"""graph.py: loading, layer enumeration, safety of external data."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from _builders import tiny_cnn
from onnx import TensorProto, helper, numpy_helper

from onnxnoise.errors import GraphError
from onnxnoise.model.graph import get_model_io, list_layers, load_model, select_layers


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
