"""`modelci serve`: the Open Inference Protocol over HTTP on ONNX Runtime."""
