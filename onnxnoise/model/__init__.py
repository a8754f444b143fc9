"""The model: loading an ONNX file safely, its input/output, and its parameter layers."""
