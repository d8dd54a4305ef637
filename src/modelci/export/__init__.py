"""Export: the trained model to ONNX, with its preprocessing, a parity check and golden samples."""
