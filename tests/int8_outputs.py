"""Run one ONNX model on saved input tensors and save its raw outputs: ``python int8_outputs.py MODEL IN.npz OUT.npz``.
A script of its own, so ``tests/test_models.py`` can run it natively and under qemu-user's emulation of another CPU
(one ONNX Runtime thread: the same work split the same way on both)."""

import sys

import numpy as np
import onnxruntime as ort

model, inputs, outputs = sys.argv[1:4]
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
feeds = np.load(inputs)
np.savez(
    outputs,
    **{
        f"{k}/{i}": out
        for k in feeds.files
        for i, out in enumerate(session.run(None, {session.get_inputs()[0].name: feeds[k]}))
    },
)
