"""The three analyzers, each a lazily loaded ONNX Runtime model."""

from .base import OnnxModel
from .classifier import CLASSIFIERS, ImageClassifier
from .detector import ObjectDetector
from .faces import FaceDetector

__all__ = ["CLASSIFIERS", "FaceDetector", "ImageClassifier", "ObjectDetector", "OnnxModel"]
