"""Which int8 recipe gives the same answers on every CPU: the table under *int8* in the README.

    .venv/bin/python tools/compare_int8_recipes.py efficientnet_lite2 [efficientnet_lite0 mobilenet_v2]

For each classifier and each recipe (activation x weight types, 7-bit weights, symmetric activations) it quantizes
the float model as PicMetric does and prints foolbox's top-1 hits, how many top-1s match the float model, and the
largest logit gap between this CPU's fused integer kernels and the same graph run op by op in float. That gap is
what a CPU's kernel adds: large where ``vpmaddubsw`` saturates (x86 without VNNI), small where the sums are exact.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image

from picmetric.core.models.calibration import classifier_calibration_photos
from picmetric.core.models.classifier import ImageClassifier, softmax
from picmetric.core.models.weights import package_file

RECIPES = {
    "uint8 x int8": {"activation_type": QuantType.QUInt8, "weight_type": QuantType.QInt8},
    "uint8 x 7-bit int8": {"activation_type": QuantType.QUInt8, "weight_type": QuantType.QInt8, "reduce_range": True},
    "int8 x int8": {"activation_type": QuantType.QInt8, "weight_type": QuantType.QInt8},
    "int8 x int8, symmetric": {
        "activation_type": QuantType.QInt8,
        "weight_type": QuantType.QInt8,
        "extra_options": {"ActivationSymmetric": True},
    },
    "uint8 x uint8": {"activation_type": QuantType.QUInt8, "weight_type": QuantType.QUInt8},
}


class Feeds(CalibrationDataReader):
    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def session(path: Path, level: ort.GraphOptimizationLevel) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def compare(key: str) -> None:
    classifier = ImageClassifier(key, "float32")
    float_path = classifier._model_files()["net"]
    folder = package_file("foolbox", "data", "imagenet_00_243.jpg").parent
    photos = [
        (classifier.preprocess(np.asarray(Image.open(p).convert("RGB"))), int(p.stem.split("_")[-1]))
        for p in sorted(folder.glob("imagenet_*.jpg"))
    ]
    calibration = [{"image": classifier.preprocess(p)} for p in classifier_calibration_photos()]

    def logits(s: ort.InferenceSession) -> list[np.ndarray]:
        return [s.run(None, {"image": tensor})[0][0] for tensor, _ in photos]

    reference = logits(session(float_path, ort.GraphOptimizationLevel.ORT_ENABLE_ALL))
    hits = sum(int(np.argmax(r)) == label for r, (_, label) in zip(reference, photos, strict=True))
    print(f"{key}, float32: {hits}/20")
    for name, recipe in RECIPES.items():
        with tempfile.TemporaryDirectory() as work:
            prepared, quantized = Path(work, "prepared.onnx"), Path(work, "int8.onnx")
            quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
            quantize_static(
                str(prepared), str(quantized), Feeds(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                calibrate_method=CalibrationMethod.MinMax, **recipe,
            )  # fmt: skip
            started = time.perf_counter()
            fused = logits(session(quantized, ort.GraphOptimizationLevel.ORT_ENABLE_ALL))
            ms = (time.perf_counter() - started) / len(photos) * 1000
            emulated = logits(session(quantized, ort.GraphOptimizationLevel.ORT_DISABLE_ALL))
        hits = sum(int(np.argmax(f)) == label for f, (_, label) in zip(fused, photos, strict=True))
        same = sum(int(np.argmax(f)) == int(np.argmax(r)) for f, r in zip(fused, reference, strict=True))
        gap = max(abs(softmax(r).max() - softmax(f)[int(np.argmax(r))]) for f, r in zip(fused, reference, strict=True))
        kernel = max(float(np.abs(f - e).max()) for f, e in zip(fused, emulated, strict=True))
        print(f"  {name:24s} top-1 {hits}/20, same as float {same}/20, confidence gap {gap:.3f}, "
              f"kernels vs emulation {kernel:.2f} logits, {ms:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    for key in sys.argv[1:] or ["efficientnet_lite2"]:
        compare(key)
