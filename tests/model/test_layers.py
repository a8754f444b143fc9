"""model/layers.py: the channel axis :func:`onnxnoise.model.list_layers` gives each weight, per op type."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxnoise.model import list_layers


def _graph_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    arrays = {"conv.w": (6, 3, 3, 3), "convt.w": (6, 4, 3, 3), "gemm0.w": (4, 5), "gemm1.w": (7, 5),
              "gemm1.b": (7,), "mm.b": (7, 3), "mm.add": (3,)}
    inits = [numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n) for n, s in arrays.items()]
    nodes = [
        helper.make_node("Conv", ["x", "conv.w"], ["c"], name="conv"),
        helper.make_node("ConvTranspose", ["c", "convt.w"], ["ct"], name="convt"),
        helper.make_node("GlobalAveragePool", ["ct"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "gemm0.w"], ["g0"], name="gemm0"),
        helper.make_node("Gemm", ["g0", "gemm1.w", "gemm1.b"], ["g1"], name="gemm1", transB=1),
        helper.make_node("MatMul", ["g1", "mm.b"], ["m"], name="mm"),
        helper.make_node("Add", ["m", "mm.add"], ["y"], name="add"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_list_layers_gives_channel_axes_per_op():
    axes = {layer.name: layer.channel_axes for layer in list_layers(_graph_model())}
    assert axes == {"conv": (0,), "convt": (1,), "gemm0": (1,), "gemm1": (0, None), "mm": (1, None)}
    assert list_layers(_graph_model())[0].to_dict()["channel_axes"] == [0]
