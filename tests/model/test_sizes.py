"""model/sizes.py: declared tensor sizes are checked against the model's data before anything is built."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from onnxnoise.errors import GraphError
from onnxnoise.model import get_initializers, load_model
from onnxnoise.model.sizes import check_tensor_sizes

from tests._checks import one_line
from tests._graphs import float_init, graph_model, int_init, save_model, xy_model
from tests._limits import run_limited


def _gemm(inits=(), sparse=()):
    """x [N, 4] -> Gemm(x, W, b) -> logits, with ``W`` given as ``inits`` or ``sparse``."""
    inputs, outputs = xy_model()
    node = helper.make_node("Gemm", ["x", "W", "b"], ["logits"], name="fc")
    return graph_model([node], inputs, outputs, [float_init("b", np.arange(4)), *inits],
                       sparse_initializer=list(sparse))


def _sparse(dims, flat=(0, 5)):
    return helper.make_sparse_tensor(float_init("W", np.ones(len(flat))), int_init("W_idx", list(flat)), dims)


def test_a_huge_sparse_initializer_in_a_tiny_file_is_one_line_exit_2_under_a_memory_limit(tmp_path):
    path = save_model(_gemm(sparse=[_sparse([100_000, 100_000])]), tmp_path / "huge.onnx")
    assert (tmp_path / "huge.onnx").stat().st_size < 600
    done = run_limited(["layers", path])
    assert done.returncode == 2, done.stderr
    stored = len(float_init("W", np.ones(2)).SerializeToString()) + len(int_init("W_idx", [0, 5]).SerializeToString())
    assert one_line(done.stderr) == (
        "onnxnoise: error: the model's sparse tensors densify to 40000000000 bytes (the largest, 'W' of shape "
        f"[100000, 100000], to 40000000000), more than 1000 x the {stored} bytes of values and indices they hold "
        "+ 67108864; the model file is damaged, export it again")


def test_sparse_densification_is_bounded_by_half_the_memory_given():
    model = _gemm(sparse=[_sparse([100, 100])])  # 40000 bytes once dense
    check_tensor_sizes(model, memory=80_000)
    with pytest.raises(GraphError, match=r"densify to 40000 bytes .* more than half the 79999 bytes of memory "
                       r"available; the model needs a larger machine \(or its weights stored dense\)$"):
        check_tensor_sizes(model, memory=79_999)


@pytest.mark.parametrize("dims", [[-4, 4], [4, -4]])
def test_negative_sparse_dims_are_one_line_exit_2(tmp_path, dims):
    path = save_model(_gemm(sparse=[_sparse(dims)]), tmp_path / "neg.onnx")
    done = run_limited(["layers", path])
    assert done.returncode == 2, done.stderr
    assert one_line(done.stderr) == (f"onnxnoise: error: sparse tensor 'W' declares a negative dimension in its shape "
                                     f"{dims}; the model file is damaged, export it again")


def test_negative_dense_dims_are_refused(tmp_path):
    weight = float_init("W", np.ones((4, 4)))
    weight.dims[:] = [-4, -4]
    with pytest.raises(GraphError, match=r"^tensor 'W' declares a negative dimension in its shape \[-4, -4\]"):
        load_model(save_model(_gemm(inits=[weight]), tmp_path / "neg.onnx"))


def test_dense_dims_that_disagree_with_the_data_are_refused_before_building(tmp_path):
    typed = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[100_000, 100_000], float_data=[1.0, 2.0, 3.0])
    with pytest.raises(GraphError, match=r"^tensor 'W' of shape \[100000, 100000\] needs 10000000000 values of data "
                       r"but the model holds 3; the model file is damaged, export it again$"):
        load_model(save_model(_gemm(inits=[typed]), tmp_path / "typed.onnx"))
    raw = float_init("W", np.ones((4, 4)))
    raw.dims[:] = [2**40, 2**40]  # 2**80 elements: np.prod of int64 would overflow to 0
    with pytest.raises(GraphError, match=r"needs 4835703278458516698824704 bytes of data but the model holds 64"):
        load_model(save_model(_gemm(inits=[raw]), tmp_path / "raw.onnx"))


def test_tensors_whose_data_fits_their_shape_load_as_before(tmp_path):
    w = np.arange(16, dtype=np.float32).reshape(4, 4)
    model = load_model(save_model(_gemm(sparse=[_sparse([4, 4], flat=(0, 5))]), tmp_path / "ok.onnx"))
    dense = np.zeros(16, np.float32)
    dense[[0, 5]] = 1
    np.testing.assert_array_equal(get_initializers(model)["W"], dense.reshape(4, 4))
    typed = helper.make_tensor("W", TensorProto.FLOAT, [4, 4], w.reshape(-1).tolist())
    typed_model = load_model(save_model(_gemm(inits=[typed]), tmp_path / "t.onnx"))
    np.testing.assert_array_equal(get_initializers(typed_model)["W"], w)
