"""Export: the ONNX graph with its manifest, verified against PyTorch; fp16 and int8 variants."""
