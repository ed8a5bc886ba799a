"""Intermediate results of each model, for the class walkthrough ("How it works"): what goes in, what comes out
raw, and how the raw output becomes the final answer."""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from picmetric.core.annotate import BoxAnnotator, FaceAnnotator
from picmetric.core.intake import LoadedImage
from picmetric.core.models import FACE_DETECTORS, YuNetDetector
from picmetric.core.models.classifier import CLASSIFIERS, ClassifierSpec, imagenet_names, softmax
from picmetric.core.models.detector import Candidates, ObjectDetector, class_aware_nms
from picmetric.core.pipeline import AnalysisOptions, Analyzer
from picmetric.core.results import Detections

STAGE_COLOURS = {"pnet": (255, 196, 0), "rnet": (255, 96, 0), "onet": (0, 200, 80)}


@dataclass(frozen=True)
class ClassifierWalkthrough:
    spec: ClassifierSpec
    precision: str  # the model that ran: the one Analyze runs for these options
    network_input: np.ndarray  # what the network sees, turned back into an RGB image
    tensor_shape: tuple[int, ...]
    tensor_range: tuple[float, float]
    top_names: list[str]
    top_logits: np.ndarray
    top_probabilities: np.ndarray


@dataclass(frozen=True)
class DetectorWalkthrough:
    network_input: np.ndarray  # the letterboxed square
    tensor_shape: tuple[int, ...]
    head_shapes: list[tuple[int, ...]]
    raw_boxes: int  # every anchor in every grid cell
    before_nms: Detections  # every guess down to ``shown_from``
    above_threshold: Detections  # the guesses at least ``min_confidence`` sure, before NMS
    after_nms: Detections
    before_render: np.ndarray
    above_render: np.ndarray
    after_render: np.ndarray


@dataclass(frozen=True)
class YuNetWalkthrough:
    passes: list[
        tuple[float, tuple[int, int], dict[int, tuple[int, int]], dict[int, int]]
    ]  # scale, input, grids, counts
    raw_candidates: int
    after_nms: int
    candidates_render: np.ndarray
    faces_render: np.ndarray


@dataclass(frozen=True)
class FaceWalkthrough:
    scales: list[float]
    pyramid_sizes: list[tuple[int, int]]
    stage_counts: dict[str, int]
    stage_renders: dict[str, np.ndarray]
    faces: int


def explain_classifier(
    analyzer: Analyzer, image: LoadedImage, options: AnalysisOptions, top: int = 10
) -> ClassifierWalkthrough:
    """The classifier ``options`` choose, at the precision they run (int8 where the model has a good one), step by
    step: so How it works shows the very numbers Analyze reports."""
    key = options.classifier
    model = analyzer.classifier(key, options.precision)
    tensor = model.preprocess(image.pixels)
    logits = model.logits(tensor)
    probabilities = softmax(logits)
    order = np.argsort(logits)[::-1][:top]
    pixels = tensor[0].transpose(1, 2, 0)
    if model.spec.tf_normalisation:
        shown = pixels * 128.0 + 127.0
    else:
        shown = (pixels * np.array([0.229, 0.224, 0.225]) + np.array([0.485, 0.456, 0.406])) * 255.0
    names = imagenet_names()
    return ClassifierWalkthrough(
        spec=CLASSIFIERS[key],
        precision=options.precision,
        network_input=np.clip(shown, 0, 255).astype(np.uint8),
        tensor_shape=tuple(tensor.shape),
        tensor_range=(float(tensor.min()), float(tensor.max())),
        top_names=[names[i] for i in order],
        top_logits=logits[order],
        top_probabilities=probabilities[order],
    )


def _thin_boxes(image: np.ndarray, boxes: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    canvas = image.copy()
    width = max(1, round(max(image.shape[:2]) / 700))
    for x1, y1, x2, y2 in boxes[:, :4].astype(int):
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, width, cv2.LINE_AA)
    return canvas


def explain_detector(
    analyzer: Analyzer,
    image: LoadedImage,
    min_confidence: float = 0.25,
    iou_threshold: float = 0.40,
    size: int = 416,
    shown_from: float = ObjectDetector.candidate_floor,
    merge_synonyms: bool = True,
) -> DetectorWalkthrough:
    """Raw guesses down to ``shown_from`` (so the overlap NMS removes is visible), then the final objects (NMS as
    the analysis runs it: with ``merge_synonyms``, one box for car/truck/bus and the like)."""
    model = analyzer.detector(size)
    boxed = model.fit(image.pixels)
    raw = model.raw_outputs(boxed)
    found = model.candidates(image.pixels, boxed, raw, shown_from)
    before = Detections(found.xyxy, found.confidence, found.class_id, model.class_names)
    confident = found.confidence >= min_confidence
    kept = class_aware_nms(
        Candidates(found.xyxy[confident], found.confidence[confident], found.class_id[confident]),
        iou_threshold,
        model.same_object if merge_synonyms else None,
    )
    above = before.select(np.flatnonzero(confident))
    after = before.select(np.flatnonzero(confident)[kept])
    annotator = BoxAnnotator()
    return DetectorWalkthrough(
        network_input=boxed.picture(),
        tensor_shape=tuple(boxed.tensor.shape),
        head_shapes=[tuple(r.shape) for r in raw],
        raw_boxes=len(model.decode(raw)[0]),
        before_nms=before,
        above_threshold=above,
        after_nms=after,
        before_render=_thin_boxes(image.pixels, before.xyxy, (255, 64, 64)),
        above_render=annotator.annotate(image.pixels, above),
        after_render=annotator.annotate(image.pixels, after),
    )


def explain_yunet(
    analyzer: Analyzer,
    image: LoadedImage,
    min_face_size: int = 20,
    min_score: float = 0.8,
    shown_from: float = YuNetDetector.candidate_floor,
) -> YuNetWalkthrough:
    """Every candidate above ``shown_from`` on each feature map, then the faces NMS keeps above ``min_score``."""
    model = analyzer.face_detector("yunet")
    min_face = max(12, round(min_face_size / image.scale))
    stages = model.stages(image.pixels, min_face, shown_from)
    final = stages.faces.filter(min_score)
    return YuNetWalkthrough(
        passes=[(p.scale, p.input_size, p.grid_sizes, p.candidates_per_stride) for p in stages.passes],
        raw_candidates=len(stages.candidates),
        after_nms=len(final),
        candidates_render=_thin_boxes(image.pixels, stages.candidates.xyxy, (255, 64, 64)),
        faces_render=FaceAnnotator().annotate(image.pixels, final),
    )


def explain_faces(analyzer: Analyzer, image: LoadedImage, min_face_size: int = 20) -> FaceWalkthrough:
    """MTCNN's cascade: the boxes that survive P-Net, R-Net and O-Net."""
    model = analyzer.face_detector("mtcnn")
    height, width = image.pixels.shape[:2]
    min_face = max(12, round(min_face_size / image.scale))
    scales = model.scales(height, width, min_face)
    stages, _ = model.stages(image.pixels, min_face)
    boxes = {"pnet": stages.pnet, "rnet": stages.rnet, "onet": stages.onet}
    return FaceWalkthrough(
        scales=scales,
        pyramid_sizes=[(int(np.ceil(width * s)), int(np.ceil(height * s))) for s in scales],
        stage_counts={k: len(v) for k, v in boxes.items()},
        stage_renders={k: _thin_boxes(image.pixels, v, STAGE_COLOURS[k]) for k, v in boxes.items()},
        faces=len(stages.onet),
    )


@dataclass(frozen=True)
class ModelRun:
    """One model on the photo, for the side-by-side comparison: what it answered and how long it took."""

    title: str
    summary: list[str]  # the top labels with their probabilities, or the face count
    milliseconds: float
    render: np.ndarray | None = None  # faces drawn on the photo


def compare_models(analyzer: Analyzer, image: LoadedImage, top: int = 3) -> tuple[list[ModelRun], list[ModelRun]]:
    """Every classifier, and every face detector, on the same photo: the class sees how much the choice matters."""

    classifiers = []
    for key, spec in CLASSIFIERS.items():
        precision = "int8" if spec.int8 else "float32"  # what the dashboard runs by default
        model = analyzer.classifier(key, precision)
        model.predict(image.pixels, top)  # warm: the first run of a session pays for its set-up
        started = time.perf_counter()
        found = model.predict(image.pixels, top)
        took = (time.perf_counter() - started) * 1000
        lines = [f"{name} {p:.0%}" for name, p in zip(found.names, found.confidence, strict=True)]
        classifiers.append(ModelRun(f"{spec.title}, {precision} ({spec.top1}% top-1)", lines, took))
    detectors = []
    for key, (_, score, title) in FACE_DETECTORS.items():
        detector = analyzer.face_detector(key)
        detector.predict(image.pixels, score)
        started = time.perf_counter()
        faces = detector.predict(image.pixels, score)
        took = (time.perf_counter() - started) * 1000
        render = FaceAnnotator().annotate(image.pixels, faces)
        detectors.append(
            ModelRun(
                title, [f"{len(faces)} {'face' if len(faces) == 1 else 'faces'} at score ≥ {score:g}"], took, render
            )
        )
    return classifiers, detectors
