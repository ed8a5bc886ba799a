"""One small result type per task. Coordinates are pixels of the original (EXIF-rotated) image."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import numpy as np

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class ImageFacts:
    """What identifies a photo and describes it, whatever was found in it. Declared once: the decoded image
    (``LoadedImage``), an ``Analysis``, a stored image and a history entry are ImageFacts with more."""

    sha256: str
    md5: str  # the seed's hash, still accepted wherever a photo is named
    format: str
    width: int  # of the original, EXIF-rotated
    height: int
    size_bytes: int
    source: str = "upload"  # upload | url | s3 | sample | camera
    name: str | None = None

    def fact_values(self) -> dict[str, Any]:
        """These facts alone, by field name (to build another ImageFacts kind from this one)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(ImageFacts)}

    @property
    def facts(self) -> ImageFacts:
        return ImageFacts(**self.fact_values())


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
    #: what the photo looks like to the network (its pooled features, unit length): for finding similar photos.
    #: None for results read back from storage (the embeddings live beside them)
    features: np.ndarray | None = field(default=None, repr=False, compare=False)

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


class BoxSet:
    """What every set of boxes shares (supervision's Detections style): arrays with one row per box, selected,
    filtered, scaled, split at a threshold and joined the same way whatever else a box carries."""

    #: the per-box arrays, and those of them in pixels (scaled with the image)
    per_box: ClassVar[tuple[str, ...]]
    in_pixels: ClassVar[tuple[str, ...]]
    xyxy: np.ndarray
    confidence: np.ndarray

    def __len__(self) -> int:
        return len(self.xyxy)

    def select(self, keep: np.ndarray) -> Self:
        return dataclasses.replace(self, **{name: getattr(self, name)[keep] for name in self.per_box})  # type: ignore[type-var]

    def filter(self, min_confidence: float = 0.0) -> Self:
        """A display-time filter: same boxes, fewer of them, no model run."""
        return self.select(self.confidence >= min_confidence)

    def scaled(self, factor: float) -> Self:
        return dataclasses.replace(self, **{name: getattr(self, name) * factor for name in self.in_pixels})  # type: ignore[type-var]

    def split(self, threshold: float) -> tuple[Self, Self]:
        """(at or above ``threshold``, below it): the result, and the weaker candidates kept beside it."""
        return self.select(self.confidence >= threshold), self.select(self.confidence < threshold)

    def __add__(self, other: Self) -> Self:
        joined = {name: np.concatenate([getattr(self, name), getattr(other, name)]) for name in self.per_box}
        return dataclasses.replace(self, **joined)  # type: ignore[type-var]


@dataclass
class Detections(BoxSet):
    """Objects found: boxes ``xyxy``, ``confidence`` and ``class_id`` (COCO-80), with names per class."""

    per_box: ClassVar[tuple[str, ...]] = ("xyxy", "confidence", "class_id")
    in_pixels: ClassVar[tuple[str, ...]] = ("xyxy",)
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

    @property
    def labels(self) -> list[str]:
        return [self.class_names[i] for i in self.class_id]

    def filter(self, min_confidence: float = 0.0, classes: set[str] | None = None) -> Detections:
        """A display-time filter: same boxes, fewer of them, no model run."""
        keep = self.confidence >= min_confidence
        if classes is not None:
            keep &= np.array([name in classes for name in self.labels], dtype=bool)
        return self.select(keep)


@dataclass
class Faces(BoxSet):
    """Faces found: boxes ``xyxy``, ``confidence`` and 5 ``landmarks`` (x, y) in LANDMARK_NAMES order."""

    per_box: ClassVar[tuple[str, ...]] = ("xyxy", "confidence", "landmarks")
    in_pixels: ClassVar[tuple[str, ...]] = ("xyxy", "landmarks")
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
