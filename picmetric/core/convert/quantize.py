"""int8 static quantization (QDQ) of a float ONNX graph with ONNX Runtime's own tools, calibrated on real photos.

Weights are quantized to 7 bits (``reduce_range``). On x86 CPUs without VNNI (AVX2, AVX-512 before Cascade Lake)
ONNX Runtime multiplies uint8 activations by int8 weights with ``vpmaddubsw``, which adds pairs of products into a
saturating int16: with 8-bit weights two products can overflow it, so the same model gave other answers on an AMD
EPYC (AVX2) than on a VNNI CPU, whose ``vpdpbusd`` accumulates in int32. With |weight| <= 64 a pair is at most
2 x 255 x 64 = 32,640 < 32,767: no overflow is possible, every kernel computes the same exact integer sums, and
the answers no longer depend on the CPU. Measured on foolbox's 20 photos (README, *int8*): EfficientNet-Lite2 keeps
the float model's 18/20 and its top-1 on all 20; S8S8 and symmetric activations saturate too, and uint8 weights
(U8U8, exact) run 6x slower. Used only where the int8 model holds that bar (``ClassifierSpec.int8``, and the
built-in detector: README, *int8*).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import onnx

#: named in cached files and model versions: a model quantized another way is another model
INT8_RECIPE = "int8w7h"
#: what ``precision`` may say: int8 where a model's quantized copy holds the accuracy bar, float32 everywhere
PRECISIONS = ("int8", "float32")
#: the widest weight a 7-bit quantization writes; ``vpmaddubsw`` cannot saturate below 128
MAX_INT8_WEIGHT = 64


def quantize_int8(
    float_model: Path, calibration: Iterable[dict[str, np.ndarray]], *, float_outputs: bool = False
) -> onnx.ModelProto:
    """Per-channel 7-bit weights, uint8 activations with min/max ranges from ``calibration`` feeds.
    ``float_outputs``: the layers that write the graph's outputs stay float (a detector's heads, whose box
    coordinates and scores 256 levels would round: with them in int8, a box moved by a fifth of its size)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds: Iterator[dict[str, np.ndarray]] = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    with tempfile.TemporaryDirectory(prefix="picmetric-quantize-") as work:
        prepared, quantized = Path(work, "prepared.onnx"), Path(work, "int8.onnx")
        quant_pre_process(str(float_model), str(prepared), skip_symbolic_shape=True)
        kept_float = _output_layers(prepared) if float_outputs else []
        quantize_static(
            str(prepared),
            str(quantized),
            Feeds(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=kept_float,
        )
        return onnx.load(str(quantized))


def _output_layers(path: Path) -> list[str]:
    """The names of the nodes that write the graph's outputs, naming every unnamed node after its first output
    (the quantizer excludes nodes by name) and saving the graph so."""
    model = onnx.load(str(path))
    for node in model.graph.node:
        node.name = node.name or node.output[0]
    onnx.save(model, str(path))
    outputs = {output.name for output in model.graph.output}
    return [node.name for node in model.graph.node if outputs & set(node.output)]


def widest_quantized_weight(model: onnx.ModelProto) -> int:
    """The largest |value| among the int8 weights of a QDQ model (what decides whether a kernel can saturate)."""
    from onnx import numpy_helper

    widest = 0
    for tensor in model.graph.initializer:
        if tensor.data_type == onnx.TensorProto.INT8:
            widest = max(widest, int(np.abs(numpy_helper.to_array(tensor).astype(np.int16)).max(initial=0)))
    return widest
