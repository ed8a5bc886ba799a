"""The vision engine: intake (decode, fetch), the models (ONNX Runtime, converted once from registry packages),
annotation, the pipeline that runs them, and the result types. Knows nothing of storage, jobs or interfaces."""
