"""What an analysis can choose from: the classifiers, face detectors, precisions and detector sizes with their
titles, and the shelf of object detectors (built in, or added and removed with ``picmetric models add|remove``).
The option parser, the CLI's choices, the dashboard's selectors and the API's schema all read this vocabulary here;
the models themselves (sessions, pre- and post-processing) stay inside ``picmetric.core.models``."""

from __future__ import annotations

from picmetric.core.models import CLASSIFIERS, DEFAULT_FACE_DETECTOR, FACE_DETECTORS
from picmetric.core.models.classifier import DEFAULT_CLASSIFIER, PRECISIONS, imagenet_vocabulary
from picmetric.core.models.detector import DETECTOR, DETECTOR_SIZES, INT8_SIZES, ONNX_LAYOUTS, coco_class_names
from picmetric.core.models.shelf import NAME_PATTERN, DetectorEntry, add_darknet, add_onnx, detectors, remove_detector

__all__ = [
    "CLASSIFIERS", "DEFAULT_CLASSIFIER", "DEFAULT_FACE_DETECTOR", "DETECTOR", "DETECTOR_SIZES", "FACE_DETECTORS",
    "INT8_SIZES", "NAME_PATTERN", "ONNX_LAYOUTS", "PRECISIONS", "TASKS", "DetectorEntry", "add_darknet", "add_onnx",
    "coco_class_names", "detectors", "imagenet_vocabulary", "remove_detector",
]  # fmt: skip
#: what an analysis can do; ``tasks`` picks some of them
TASKS = ("labels", "objects", "faces")
