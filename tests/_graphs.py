"""Small ONNX graphs built in a test: a model from nodes, float / int initializers, a Cast node, a saved file,
runs on the CPU EP (clean and gaussian-snr noised through the engine's SessionFactory), input
normalization inside the graph, and If / MatMul models with weights in odd places."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from onnxnoise.engine.runtime import SessionFactory
from onnxnoise.model import get_initializers
from onnxnoise.noise import NoisePolicies, draw_noise, make_noise_model


GAUSS = make_noise_model("gaussian-snr")


def graph_model(nodes, inputs, outputs, inits, opset=17, ir=8, **kwargs) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits, **kwargs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir
    return model


def save_model(model: onnx.ModelProto, path) -> str:
    onnx.save(model, str(path))
    return str(path)


def float_init(name: str, values) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.float32), name)


def int_init(name: str, values) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def run_onnx(model: onnx.ModelProto, feeds: dict) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def noisy_run(model: onnx.ModelProto, layers, snr: float, seed: int, feeds: dict, output: str = "logits"):
    """Outputs of ``model`` with ``layers`` noised (gaussian-snr), through the engine's SessionFactory."""
    draw = draw_noise(GAUSS, snr, seed, layers, get_initializers(model), NoisePolicies())
    names = [t for layer in layers for t in layer.tensors]
    factory = SessionFactory(model, names, input_name=next(iter(feeds)), output_name=output, device="cpu")
    return factory.create(draw.arrays).session.run([output], feeds)[0], draw


MEAN = np.array([0.485, 0.456, 0.406], np.float32)


STD = np.array([0.229, 0.224, 0.225], np.float32)


def normalized_inside(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with ``Sub(mean) -> Div(std)`` on its input, inside the graph (per-channel constants)."""
    inside = onnx.ModelProto()
    inside.CopyFrom(model)
    for node in inside.graph.node:
        node.input[:] = ["input_n" if i == "input" else i for i in node.input]
    norm = [helper.make_node("Sub", ["input", "norm.mean"], ["input_c"], name="norm.sub"),
            helper.make_node("Div", ["input_c", "norm.std"], ["input_n"], name="norm.div")]
    nodes = norm + list(inside.graph.node)
    del inside.graph.node[:]
    inside.graph.node.extend(nodes)
    inside.graph.initializer.extend([float_init("norm.mean", MEAN.reshape(1, 3, 1, 1)),
                                     float_init("norm.std", STD.reshape(1, 3, 1, 1))])
    onnx.checker.check_model(inside)
    return inside


def xy_model(n=4):
    return ([helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n])])


def if_model(then_name: str, else_name: str) -> onnx.ModelProto:
    rng = np.random.default_rng(0)

    def branch(label: str, weight: str) -> onnx.GraphProto:
        return helper.make_graph([helper.make_node("MatMul", ["x", weight], [f"y_{label}"], name=f"mm_{label}")],
                                 label, [], [helper.make_tensor_value_info(f"y_{label}", TensorProto.FLOAT, None)],
                                 [float_init(weight, rng.normal(size=(4, 4)))])

    inputs, outputs = xy_model()
    nodes = [helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0, name="total"),
             helper.make_node("Greater", ["total", "floor"], ["cond"], name="cond"),
             helper.make_node("If", ["cond"], ["logits"], name="branch", then_branch=branch("then", then_name),
                              else_branch=branch("else", else_name))]
    return graph_model(nodes, inputs, outputs, [numpy_helper.from_array(np.float32(-1e30), "floor")])
