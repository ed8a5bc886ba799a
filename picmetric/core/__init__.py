"""The vision engine: decoding and fetching photos, the models (ONNX Runtime, converted once from registry
packages), what can be chosen (the catalog) and how (the options), the analyzer that runs them, the analysis JSON,
drawing and explanations, and the result types. Knows nothing of storage, jobs or interfaces."""
