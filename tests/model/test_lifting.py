"""model/lifting.py: weights outside the plain initializer list (sparse initializers, Constant
``value_floats``, If / Loop subgraph initializers) are lifted, listed and noised, or refused with a reason."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxnoise.errors import GraphError
from onnxnoise.model import get_initializers, layer_report, list_layers, load_model

from tests._graphs import (
    float_init,
    graph_model,
    if_model,
    int_init,
    noisy_run,
    run_onnx,
    save_model,
    xy_model,
)


X = np.random.default_rng(5).normal(size=(8, 4)).astype(np.float32)


def test_sparse_initializer_is_densified_listed_and_noised(tmp_path, caplog):
    w = np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32)
    w[w < 0] = 0  # a pruned weight
    flat = np.flatnonzero(w)
    sparse = helper.make_sparse_tensor(float_init("W", w.reshape(-1)[flat]), int_init("W_idx", flat), [4, 4])
    inputs, outputs = xy_model()
    model = graph_model([helper.make_node("Gemm", ["x", "W", "b"], ["logits"], name="fc")], inputs, outputs,
                   [float_init("b", np.arange(4))], sparse_initializer=[sparse])
    with caplog.at_level(logging.WARNING, logger="onnxnoise.model"):
        assert [l.tensors for l in list_layers(model)] == [("b",)]  # not loaded: W is not seen ...
    assert "weight left out (not listed, not noised): sparse_initializer 'W' in the main graph" in caplog.text
    loaded = load_model(save_model(model, tmp_path / "sparse.onnx"))  # ... load_model densifies it
    assert len(loaded.graph.sparse_initializer) == 0
    np.testing.assert_array_equal(get_initializers(loaded)["W"], w)
    (layer,) = list_layers(loaded)
    assert layer.tensors == ("W", "b") and layer.num_params == 20
    np.testing.assert_allclose(run_onnx(loaded, {"x": X}), run_onnx(model, {"x": X}), rtol=1e-6)
    noisy, draw = noisy_run(loaded, [layer], 2.0, 0, {"x": X})
    assert (draw.arrays["W"] != w).all()
    np.testing.assert_allclose(noisy, X @ draw.arrays["W"] + draw.arrays["b"], rtol=1e-5, atol=1e-5)


def test_constant_value_floats_is_lifted(tmp_path):
    w = np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32)
    inputs, outputs = xy_model()
    nodes = [helper.make_node("Constant", [], ["bias_c"], value_floats=[0.5, -1.0, 2.0, 0.25]),
             helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
             helper.make_node("Add", ["h", "bias_c"], ["logits"], name="add")]
    model = load_model(save_model(graph_model(nodes, inputs, outputs, [float_init("W", w)]), tmp_path / "m.onnx"))
    assert not any(n.op_type == "Constant" for n in model.graph.node)
    (layer,) = list_layers(model)
    assert layer.tensors == ("W", "bias_c") and layer.roles == ("weight", "bias")
    noisy, draw = noisy_run(model, [layer], 2.0, 0, {"x": X})
    assert (draw.arrays["bias_c"] != np.array([0.5, -1.0, 2.0, 0.25], np.float32)).all()
    np.testing.assert_allclose(noisy, X @ draw.arrays["W"] + draw.arrays["bias_c"], rtol=1e-5, atol=1e-5)


def test_subgraph_initializers_are_listed_and_noised(tmp_path):
    original = if_model("W_then", "W_else")
    model = load_model(save_model(original, tmp_path / "if.onnx"))
    report = layer_report(model)
    assert sorted((l.name, l.tensors) for l in report.layers) == [("branch/else_branch/mm_else", ("W_else",)),
                                                                ("branch/then_branch/mm_then", ("W_then",))]
    assert report.left_out == []
    np.testing.assert_array_equal(run_onnx(model, {"x": X}), run_onnx(original, {"x": X}))
    then = next(l for l in report.layers if l.tensors == ("W_then",))
    noisy, draw = noisy_run(model, [then], 2.0, 0, {"x": X})  # the then-branch runs (sum > -1e30)
    np.testing.assert_allclose(noisy, X @ draw.arrays["W_then"], rtol=1e-5, atol=1e-5)
    assert not np.allclose(noisy, run_onnx(model, {"x": X}))


def test_loop_body_initializer_is_listed_and_noised(tmp_path):
    w = np.random.default_rng(2).normal(size=(4, 4)).astype(np.float32)
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep_going"),
         helper.make_node("MatMul", ["v_in", "W_body"], ["v_out"], name="mm")],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)],
        [float_init("W_body", w)])
    inputs, outputs = xy_model()
    model = graph_model([helper.make_node("Loop", ["trips", "go", "x"], ["logits"], name="loop", body=body)], inputs,
                   outputs, [int_init("trips", 2), numpy_helper.from_array(np.array(True), "go")])
    loaded = load_model(save_model(model, tmp_path / "loop.onnx"))
    (layer,) = list_layers(loaded)
    assert (layer.name, layer.op_type, layer.tensors) == ("loop/body/mm", "MatMul", ("W_body",))
    np.testing.assert_allclose(run_onnx(loaded, {"x": X}), X @ w @ w, rtol=1e-5, atol=1e-5)
    noisy, draw = noisy_run(loaded, [layer], 2.0, 0, {"x": X})
    np.testing.assert_allclose(noisy, X @ draw.arrays["W_body"] @ draw.arrays["W_body"], rtol=1e-4, atol=1e-4)


def test_subgraph_external_data_escaping_the_folder_is_refused(tmp_path):
    (tmp_path / "sub").mkdir()
    onnx.save(if_model("W_then", "W_else"), str(tmp_path / "sub" / "m.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    model = onnx.load(str(tmp_path / "sub" / "m.onnx"), load_external_data=False)
    then = next(a.g for a in model.graph.node[-1].attribute if a.name == "then_branch")
    assert then.initializer[0].data_location == TensorProto.EXTERNAL
    for entry in then.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../weights.bin"
    (tmp_path / "weights.bin").write_bytes((tmp_path / "sub" / "weights.bin").read_bytes())
    onnx.save(model, str(tmp_path / "sub" / "evil.onnx"))
    with pytest.raises(GraphError, match="of tensor 'W_then' escapes the model's folder"):
        load_model(tmp_path / "sub" / "evil.onnx")
    assert len(list_layers(load_model(tmp_path / "sub" / "m.onnx"))) == 2


def test_subgraph_weight_that_cannot_move_is_reported(tmp_path, caplog):
    model = load_model(save_model(if_model("W", "W"), tmp_path / "if.onnx"))  # one name in both branches
    with caplog.at_level(logging.WARNING, logger="onnxnoise.model"):
        assert list_layers(model) == []
    report = layer_report(model)
    assert len(report.left_out) == 2
    assert any(line.startswith("initializer 'W' inside If 'branch' then_branch") for line in report.left_out)
    assert caplog.text.count("weight left out (not listed, not noised): initializer 'W'") == 2
