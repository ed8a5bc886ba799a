"""The analyzers, each a lazily loaded ONNX Runtime model."""

from .base import OnnxModel
from .classifier import CLASSIFIERS, ImageClassifier
from .detector import ObjectDetector
from .faces import MtcnnDetector
from .yunet import YuNetDetector

#: face detector key -> (class, default score threshold, title)
FACE_DETECTORS: dict[str, tuple[type[MtcnnDetector] | type[YuNetDetector], float, str]] = {
    # 0.8: every real face in the shipped photos and the test collage scores 0.83-0.94, the highest non-face
    # (an arm on zidane.jpg) 0.75. Dog faces score 0.80-0.85 and do show.
    "yunet": (YuNetDetector, 0.8, "YuNet (OpenCV Zoo, 2023mar)"),
    # 0.9: the reference implementations' false positives on group photos score 0.73-0.85.
    "mtcnn": (MtcnnDetector, 0.9, "MTCNN (P-Net, R-Net, O-Net)"),
}
DEFAULT_FACE_DETECTOR = "yunet"

__all__ = [
    "CLASSIFIERS",
    "DEFAULT_FACE_DETECTOR",
    "FACE_DETECTORS",
    "ImageClassifier",
    "MtcnnDetector",
    "ObjectDetector",
    "OnnxModel",
    "YuNetDetector",
]
