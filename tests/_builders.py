"""Small ONNX models built with onnx.helper for tests (no torch needed)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tiny_cnn(*, seed: int = 0, num_classes: int = 10, batch: int | str = "N", opset: int = 17,
             channels: int = 3, size: int = 8) -> onnx.ModelProto:
    """Conv(3->4, 3x3, bias) -> BatchNormalization -> Relu -> GlobalAveragePool -> Flatten -> Gemm(4->C).

    Layers (graph order): conv (weight, bias), bn (scale, bias, mean, var), fc (weight, bias).
    Also holds an int64 shape tensor and a float scalar that are not parameters.
    """
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (4, channels, 3, 3)).astype(np.float32), "conv.weight"),
        numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "conv.bias"),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, (4,)).astype(np.float32), "bn.scale"),
        numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "bn.bias"),
        numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "bn.mean"),
        numpy_helper.from_array(rng.uniform(0.01, 0.03, (4,)).astype(np.float32), "bn.var"),
        numpy_helper.from_array(rng.normal(0, 1.0, (num_classes, 4)).astype(np.float32), "fc.weight"),
        numpy_helper.from_array(rng.normal(0, 0.1, (num_classes,)).astype(np.float32), "fc.bias"),
        numpy_helper.from_array(np.array([0, -1], dtype=np.int64), "flat.shape"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "conv.weight", "conv.bias"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["b"], name="bn"),
        helper.make_node("Relu", ["b"], ["r"], name="relu"),
        helper.make_node("Mul", ["r", "one"], ["r1"], name="scale_by_one"),
        helper.make_node("GlobalAveragePool", ["r1"], ["p"], name="pool"),
        helper.make_node("Reshape", ["p", "flat.shape"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, channels, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, num_classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
