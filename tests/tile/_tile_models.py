"""One-op models and runners for the tile-stage tests (built with onnx.helper, no torch)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from onnxnoise.model import list_layers
from onnxnoise.tile import Calibration, LayerRanges, StagedModel, TileSettings, insert_stages


def one_op(op_type: str, inits: dict[str, np.ndarray], inputs: list[str], x_shape: list, *,
           opset: int = 17, name: str = "op", **attrs) -> onnx.ModelProto:
    """``y = op(inputs)`` with the image input ``x`` of ``x_shape`` (float32) and float32 initializers."""
    node = helper.make_node(op_type, inputs, ["y"], name=name, **attrs)
    graph = helper.make_graph([node], "one_op", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [], [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    model.graph.output.append(next(v for v in inferred.graph.value_info if v.name == "y"))
    onnx.checker.check_model(model)
    return model


def weights_of(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Clean ``name -> array`` of every initializer."""
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def fixed(layer: str, x_max: float, adc: list[list[float]], **settings) -> Calibration:
    """A calibration with given ranges (no images)."""
    return Calibration("max", 99.99, settings.get("adc_scope", "layer"), settings.get("tile_rows", 0), 0.0, 0,
                       {layer: LayerRanges(x_max, tuple(tuple(t) for t in adc))})


def staged(model: onnx.ModelProto, settings: TileSettings, calibration: Calibration | None,
           seed: int = 0) -> StagedModel:
    """insert_stages over every layer, checked with onnx.checker and strict shape inference."""
    result = insert_stages(model, list_layers(model), settings, calibration, seed=seed, weights=weights_of(model))
    onnx.checker.check_model(result.model)
    onnx.shape_inference.infer_shapes(result.model, strict_mode=True)
    return result


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def run(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every graph output by name for input ``x``."""
    names = [o.name for o in model.graph.output]
    return dict(zip(names, session(model).run(names, {"x": x})))
