"""One small result type per task. Coordinates are pixels of the original (EXIF-rotated) image."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def _as_array(value, dtype, shape_tail: tuple[int, ...], what: str) -> np.ndarray:
    array = np.asarray(value, dtype=dtype)
    if array.size == 0:
        array = array.reshape((0, *shape_tail))
    if array.shape[1:] != shape_tail:
        raise ValueError(f"{what} must have shape (N, {', '.join(map(str, shape_tail))}), got {array.shape}")
    return array


def _check_confidence(confidence: np.ndarray, n: int) -> None:
    if confidence.shape != (n,):
        raise ValueError(f"confidence must have shape ({n},), got {confidence.shape}")
    if n and (np.nanmin(confidence) < 0 or np.nanmax(confidence) > 1 or np.isnan(confidence).any()):
        raise ValueError("confidence values must lie in [0, 1]")


@dataclass
class Classification:
    """Top-k ImageNet labels, most confident first."""

    class_id: np.ndarray
    confidence: np.ndarray
    names: list[str]
    model: str

    def __post_init__(self) -> None:
        self.class_id = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        self.confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        _check_confidence(self.confidence, len(self.class_id))
        if len(self.names) != len(self.class_id):
            raise ValueError("one name per class id is required")

    def __len__(self) -> int:
        return len(self.class_id)

    @property
    def top(self) -> tuple[str, float] | None:
        return (self.names[0], float(self.confidence[0])) if len(self) else None

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "labels": [
                {"class_id": int(c), "name": n, "confidence": round(float(p), 6)}
                for c, n, p in zip(self.class_id, self.names, self.confidence, strict=True)
            ],
        }


@dataclass
class Detections:
    """Objects found: boxes ``xyxy``, ``confidence`` and ``class_id`` (COCO-80), with names per class."""

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    class_names: list[str] = field(repr=False)

    def __post_init__(self) -> None:
        self.xyxy = _as_array(self.xyxy, np.float32, (4,), "xyxy")
        n = len(self.xyxy)
        self.confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        self.class_id = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        _check_confidence(self.confidence, n)
        if self.class_id.shape != (n,):
            raise ValueError("one class id per box is required")
        if n and (self.class_id.min() < 0 or self.class_id.max() >= len(self.class_names)):
            raise ValueError("class id outside the class list")
        if n and ((self.xyxy[:, 2] < self.xyxy[:, 0]).any() or (self.xyxy[:, 3] < self.xyxy[:, 1]).any()):
            raise ValueError("boxes must have x2 >= x1 and y2 >= y1")

    def __len__(self) -> int:
        return len(self.xyxy)

    @property
    def labels(self) -> list[str]:
        return [self.class_names[i] for i in self.class_id]

    def select(self, keep: np.ndarray) -> Detections:
        return Detections(self.xyxy[keep], self.confidence[keep], self.class_id[keep], self.class_names)

    def filter(self, min_confidence: float = 0.0, classes: set[str] | None = None) -> Detections:
        """A display-time filter: same boxes, fewer of them, no model run."""
        keep = self.confidence >= min_confidence
        if classes is not None:
            keep &= np.array([name in classes for name in self.labels], dtype=bool)
        return self.select(keep)

    def scaled(self, factor: float) -> Detections:
        return Detections(self.xyxy * factor, self.confidence, self.class_id, self.class_names)

    def split(self, threshold: float) -> tuple[Detections, Detections]:
        """(at or above ``threshold``, below it): the result, and the weaker candidates kept beside it."""
        return self.select(self.confidence >= threshold), self.select(self.confidence < threshold)

    def __add__(self, other: Detections) -> Detections:
        return Detections(
            np.concatenate([self.xyxy, other.xyxy]),
            np.concatenate([self.confidence, other.confidence]),
            np.concatenate([self.class_id, other.class_id]),
            self.class_names,
        )

    def to_dict(self) -> dict:
        return {
            "objects": [
                {
                    "class_id": int(c),
                    "label": label,
                    "confidence": round(float(p), 6),
                    "box": [round(float(v), 1) for v in box],
                }
                for box, p, c, label in zip(self.xyxy, self.confidence, self.class_id, self.labels, strict=True)
            ]
        }


@dataclass
class Faces:
    """Faces found: boxes ``xyxy``, ``confidence`` and 5 ``landmarks`` (x, y) in LANDMARK_NAMES order."""

    xyxy: np.ndarray
    confidence: np.ndarray
    landmarks: np.ndarray

    def __post_init__(self) -> None:
        self.xyxy = _as_array(self.xyxy, np.float32, (4,), "xyxy")
        self.confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        self.landmarks = _as_array(self.landmarks, np.float32, (5, 2), "landmarks")
        _check_confidence(self.confidence, len(self.xyxy))
        if len(self.landmarks) != len(self.xyxy):
            raise ValueError("one set of landmarks per face is required")

    def __len__(self) -> int:
        return len(self.xyxy)

    def select(self, keep: np.ndarray) -> Faces:
        return Faces(self.xyxy[keep], self.confidence[keep], self.landmarks[keep])

    def filter(self, min_confidence: float = 0.0) -> Faces:
        return self.select(self.confidence >= min_confidence)

    def scaled(self, factor: float) -> Faces:
        return Faces(self.xyxy * factor, self.confidence, self.landmarks * factor)

    def split(self, threshold: float) -> tuple[Faces, Faces]:
        """(at or above ``threshold``, below it): the result, and the weaker candidates kept beside it."""
        return self.select(self.confidence >= threshold), self.select(self.confidence < threshold)

    def __add__(self, other: Faces) -> Faces:
        return Faces(
            np.concatenate([self.xyxy, other.xyxy]),
            np.concatenate([self.confidence, other.confidence]),
            np.concatenate([self.landmarks, other.landmarks]),
        )

    def to_dict(self) -> dict:
        return {
            "faces": [
                {
                    "confidence": round(float(p), 6),
                    "box": [round(float(v), 1) for v in box],
                    "landmarks": {
                        name: [round(float(x), 1), round(float(y), 1)]
                        for name, (x, y) in zip(LANDMARK_NAMES, points, strict=True)
                    },
                }
                for box, p, points in zip(self.xyxy, self.confidence, self.landmarks, strict=True)
            ]
        }
