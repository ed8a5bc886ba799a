"""Weight converters: package checkpoints (Darknet, PyTorch) to ONNX graphs, without torch."""
