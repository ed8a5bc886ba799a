"""The seed system's JSON shape, kept exactly so its clients keep working.

The seed answered ``{"error", "hash", "original", "resnet", "yolov3", "yolov3_source", "faces_source"}`` where
``hash`` is the md5 of the upload, ``resnet`` is a JSON *string* of the top-3 ImageNet labels (underscored names)
to probability strings, and ``yolov3`` a JSON string of detected class to percent strings.
"""

from __future__ import annotations

import json

from picmetric.core.analyzer import Analysis

SEED_FIELDS = ("error", "hash", "original", "resnet", "yolov3", "yolov3_source", "faces_source")


def seed_labels(analysis: Analysis, count: int = 3) -> str:
    if analysis.classification is None:
        return "{}"
    c = analysis.classification
    pairs = {
        name.replace(" ", "_"): str(float(p)) for name, p in zip(c.names[:count], c.confidence[:count], strict=True)
    }
    return json.dumps(pairs)


def seed_objects(analysis: Analysis) -> str:
    """Class -> best confidence in percent (the seed kept one entry per class)."""
    best: dict[str, float] = {}
    if analysis.detections is not None:
        for label, confidence in zip(analysis.detections.labels, analysis.detections.confidence, strict=True):
            best[label] = max(best.get(label, 0.0), float(confidence) * 100.0)
    return json.dumps({label: str(percent) for label, percent in best.items()})


def seed_response(
    analysis: Analysis | None,
    *,
    original_url: str = "",
    objects_url: str = "",
    faces_url: str = "",
    error: str = "",
) -> dict[str, str]:
    if analysis is None:
        return {"error": error} | {k: "" for k in SEED_FIELDS[1:]}
    return {
        "error": error,
        "hash": analysis.md5,
        "original": original_url,
        "resnet": seed_labels(analysis),
        "yolov3": seed_objects(analysis),
        "yolov3_source": objects_url,
        "faces_source": faces_url,
    }
