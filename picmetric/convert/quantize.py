"""int8 static quantization (QDQ) of a float ONNX graph with ONNX Runtime's own tools, calibrated on real photos.

Used only where the int8 model keeps the float model's accuracy (see ``ClassifierSpec.int8``); the issue's bar and
the measured numbers are in the README.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import onnx


def quantize_int8(float_model: Path, calibration: Iterable[dict[str, np.ndarray]]) -> onnx.ModelProto:
    """Per-channel int8 weights, uint8 activations with min/max ranges from ``calibration`` feeds."""
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
        quantize_static(
            str(prepared),
            str(quantized),
            Feeds(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        return onnx.load(str(quantized))
