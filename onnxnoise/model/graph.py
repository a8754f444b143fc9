"""Re-exports the old ``onnxnoise.model.graph`` names; temporary, removed when callers move to onnxnoise.model."""

from onnxnoise.model import FLOAT_DTYPES, Layer, ModelIO, get_initializers, get_metadata, get_model_io
from onnxnoise.model import list_layers, load_model, select_layers

__all__ = ["FLOAT_DTYPES", "Layer", "ModelIO", "get_initializers", "get_metadata", "get_model_io", "list_layers", "load_model", "select_layers"]
