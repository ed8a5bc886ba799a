"""The analyzers, each a lazily loaded ONNX Runtime model."""

from typing import NamedTuple

from picmetric.core.models.base import OnnxModel
from picmetric.core.models.classifier import CLASSIFIERS, ImageClassifier
from picmetric.core.models.detector import ObjectDetector
from picmetric.core.models.faces import MtcnnDetector
from picmetric.core.models.yunet import YuNetDetector


class FaceDetectorChoice(NamedTuple):
    model: type[MtcnnDetector] | type[YuNetDetector]
    default_score: float  # the threshold a face must reach unless the caller asks otherwise
    title: str


FACE_DETECTORS: dict[str, FaceDetectorChoice] = {
    # 0.8: every real face in the shipped photos and the test collage scores 0.83-0.94, the highest non-face
    # (an arm on zidane.jpg) 0.75. Dog faces score 0.80-0.85 and do show.
    "yunet": FaceDetectorChoice(YuNetDetector, 0.8, "YuNet (OpenCV Zoo, 2023mar)"),
    # 0.9: the reference implementations' false positives on group photos score 0.73-0.85.
    "mtcnn": FaceDetectorChoice(MtcnnDetector, 0.9, "MTCNN (P-Net, R-Net, O-Net)"),
}
DEFAULT_FACE_DETECTOR = "yunet"

__all__ = [
    "CLASSIFIERS",
    "DEFAULT_FACE_DETECTOR",
    "FACE_DETECTORS",
    "FaceDetectorChoice",
    "ImageClassifier",
    "MtcnnDetector",
    "ObjectDetector",
    "OnnxModel",
    "YuNetDetector",
]
