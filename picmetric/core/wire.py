"""PicMetric's JSON for one analysis, declared once: the CLI's ``--json``, the API's answers (and its OpenAPI
schema), the dashboard's JSON view and download all write ``AnalysisJson`` (``Analysis.to_json``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from picmetric.core.options import AnalysisOptions
from picmetric.core.results import LANDMARK_NAMES, Classification, Detections, Faces, ImageFacts


class Label(BaseModel):
    class_id: int
    name: str
    confidence: float


class DetectedObject(BaseModel):
    class_id: int
    label: str
    confidence: float
    box: list[float]  # x1, y1, x2, y2 in original pixels


class Face(BaseModel):
    confidence: float
    box: list[float]
    landmarks: dict[str, list[float]]  # left_eye, right_eye, nose, mouth_left, mouth_right -> [x, y]


def _box(values) -> list[float]:
    return [round(float(v), 1) for v in values]


def labels_of(found: Classification) -> list[Label]:
    return [
        Label(class_id=int(c), name=n, confidence=round(float(p), 6))
        for c, n, p in zip(found.class_id, found.names, found.confidence, strict=True)
    ]


def objects_of(found: Detections) -> list[DetectedObject]:
    return [
        DetectedObject(class_id=int(c), label=label, confidence=round(float(p), 6), box=_box(box))
        for box, p, c, label in zip(found.xyxy, found.confidence, found.class_id, found.labels, strict=True)
    ]


def faces_of(found: Faces) -> list[Face]:
    return [
        Face(
            confidence=round(float(p), 6),
            box=_box(box),
            landmarks={name: _box(point) for name, point in zip(LANDMARK_NAMES, points, strict=True)},
        )
        for box, p, points in zip(found.xyxy, found.confidence, found.landmarks, strict=True)
    ]


class AnalysisJson(BaseModel):
    """One analysis: the image's facts, the options it ran with, what each task found (null: the task did not
    run), timings, model versions and the pictures it can be drawn as."""

    image: ImageFacts
    options: AnalysisOptions
    labels: list[Label] | None
    objects: list[DetectedObject] | None
    faces: list[Face] | None
    timings_ms: dict[str, float]
    model_versions: dict[str, str]
    renders: list[str]
    created_at: datetime
