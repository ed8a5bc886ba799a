"""Intermediate results of each model, for the class walkthrough ("How it works"): what goes in, what comes out
raw, and how the raw output becomes the final answer."""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from picmetric.core.analyzer import Analyzer
from picmetric.core.annotate import BoxAnnotator, FaceAnnotator
from picmetric.core.decoding import LoadedImage
from picmetric.core.models import FACE_DETECTORS, YuNetDetector
from picmetric.core.models.classifier import (
    CLASSIFIERS,
    ClassifierSpec,
    imagenet_names,
    softmax,
)
from picmetric.core.models.detector import Candidates, ObjectDetector, class_aware_nms
from picmetric.core.options import AnalysisOptions
from picmetric.core.results import Detections

STAGE_COLOURS = {"pnet": (255, 196, 0), "rnet": (255, 96, 0), "onet": (0, 200, 80)}


@dataclass(frozen=True)
class ClassifierWalkthrough:
    spec: ClassifierSpec
    precision: str  # the model that ran: the one Analyze runs for these options
    network_input: np.ndarray  # what the network sees, turned back into an RGB image
    tensor_shape: tuple[int, ...]
    tensor_range: tuple[float, float]
    top_ids: list[int]
    top_names: list[str]
    top_logits: np.ndarray
    top_probabilities: np.ndarray


@dataclass(frozen=True)
class DetectorWalkthrough:
    precision: str  # the model that ran: the one Analyze runs by default
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
    model = analyzer.classifier(key, options.classifier_precision)
    tensor = model.preprocess(image.pixels)
    logits = model.logits(tensor)
    probabilities = softmax(logits)
    order = np.argsort(logits)[::-1][:top]
    names = imagenet_names()
    return ClassifierWalkthrough(
        spec=CLASSIFIERS[key],
        precision=options.classifier_precision,
        network_input=network_picture(model.spec, tensor[0]),
        tensor_shape=tuple(tensor.shape),
        tensor_range=(float(tensor.min()), float(tensor.max())),
        top_ids=[int(i) for i in order],
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
    precision: str = AnalysisOptions().detector_precision,
) -> DetectorWalkthrough:
    """Raw guesses down to ``shown_from`` (so the overlap NMS removes is visible), then the final objects (NMS as
    the analysis runs it: with ``merge_synonyms``, one box for car/truck/bus and the like), from the model the
    default analysis runs (int8)."""
    model = analyzer.detector(size, precision=precision)
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
        precision=precision,
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


# --- inside the classifier: where the evidence is, what a layer sees, one convolution step ---------------------

LAYER_TITLES = {
    "early": "the first convolution (edges, colours)",
    "middle": "a third of the way through (textures, parts)",
    "late": "the last feature map before pooling (object parts)",
}


@dataclass(frozen=True)
class ClassActivation:
    """Where the evidence for one class is: the class activation map (CAM) of the classifier's last feature map."""

    class_id: int
    name: str
    probability: float
    grid: np.ndarray  # (h, w) on the last feature grid; its mean plus the class' bias is the class' logit
    on_photo: np.ndarray  # (height, width) float32 at the photo's own size; 0 outside the square the network saw
    overlay: np.ndarray  # RGB uint8 at the working size: the map over the photo, the network's square outlined
    peak: tuple[int, int]  # (x, y) of the strongest evidence, in the photo's own pixels


def class_activations(
    analyzer: Analyzer,
    image: LoadedImage,
    options: AnalysisOptions,
    top: int = 3,
    class_ids: list[int] | None = None,
) -> list[ClassActivation]:
    """The class activation maps of the ``top`` labels of the options' classifier, or of ``class_ids`` (an
    analysis' own labels). The float32 model's maps: the int8 model Analyze runs agrees with it on the top label of
    every check photo."""
    inspector = analyzer.inspector(options.classifier)
    inspection = inspector.inspect_photo(image.sha256, image.pixels)
    probabilities = softmax(inspection.logits)
    names = imagenet_names()
    found = []
    chosen = class_ids if class_ids is not None else [int(i) for i in np.argsort(inspection.logits)[::-1][:top]]
    for class_id in chosen:
        grid = inspector.class_activation(inspection, int(class_id))
        on_working = _grid_on_photo(grid, inspection.crop, image.pixels.shape[:2])
        original = (image.height, image.width)
        on_photo = cv2.resize(on_working, (original[1], original[0]), interpolation=cv2.INTER_LINEAR)
        peak_y, peak_x = np.unravel_index(int(np.argmax(on_photo)), on_photo.shape)
        found.append(
            ClassActivation(
                class_id=int(class_id), name=names[class_id], probability=float(probabilities[class_id]), grid=grid,
                on_photo=on_photo.astype(np.float32), overlay=_heat_overlay(image.pixels, on_working, inspection.crop),
                peak=(int(peak_x), int(peak_y)),
            )
        )  # fmt: skip
    return found


def _grid_on_photo(grid: np.ndarray, crop: tuple[float, float, float], shape: tuple[int, ...]) -> np.ndarray:
    """A feature-grid map stretched over the square the network saw, at the photo's (working) size; 0 elsewhere."""
    height, width = shape[:2]
    left, top, side = crop
    x0, y0, size = round(left), round(top), max(1, round(side))
    stretched = cv2.resize(grid.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    canvas = np.zeros((height, width), np.float32)
    x1, y1 = min(width, x0 + size), min(height, y0 + size)
    canvas[y0:y1, x0:x1] = stretched[: y1 - y0, : x1 - x0]
    return canvas


def _heat_overlay(pixels: np.ndarray, heat: np.ndarray, crop: tuple[float, float, float]) -> np.ndarray:
    """Positive evidence as a heat map over the photo (blue: none, red: most); the network's square outlined."""
    positive = np.clip(heat, 0, None)
    scaled = (255 * positive / max(float(positive.max()), 1e-6)).astype(np.uint8)
    colours = cv2.applyColorMap(scaled, cv2.COLORMAP_JET)[..., ::-1]
    blended = (pixels * 0.45 + colours * 0.55).astype(np.uint8)
    left, top, side = crop
    width = max(1, round(max(pixels.shape[:2]) / 400))
    cv2.rectangle(blended, (round(left), round(top)), (round(left + side) - 1, round(top + side) - 1),
                  (255, 255, 255), width)  # fmt: skip
    return blended


@dataclass(frozen=True)
class FeatureGrid:
    """Some channels of one layer, each a small picture over the photo (bright: the channel responds there)."""

    layer: str
    shape: tuple[int, int, int]  # channels, height, width of the whole layer
    channels: list[int]  # the channels shown, the most varied first
    picture: np.ndarray  # RGB uint8: the channels tiled, each with its number


def feature_grid(
    analyzer: Analyzer, image: LoadedImage, options: AnalysisOptions, layer: str, count: int = 16
) -> FeatureGrid:
    """The ``count`` channels of ``layer`` (early, middle or late) of the options' classifier that vary most over
    this photo (a channel that is the same everywhere says nothing about where things are)."""
    if layer not in LAYER_TITLES:
        raise ValueError(f"layer must be one of {', '.join(LAYER_TITLES)}")
    activations = analyzer.inspector(options.classifier).inspect_photo(image.sha256, image.pixels).layers[layer]
    order = np.argsort(activations.reshape(len(activations), -1).std(1))[::-1][:count]
    tile = 160
    columns = min(4, len(order))
    rows = -(-len(order) // columns)
    picture = np.full((rows * (tile + 4) + 4, columns * (tile + 4) + 4, 3), 255, np.uint8)
    for n, channel in enumerate(order):
        values = activations[channel]
        scaled = (255 * (values - values.min()) / max(float(np.ptp(values)), 1e-6)).astype(np.uint8)
        small = cv2.resize(
            scaled, (tile, tile), interpolation=cv2.INTER_NEAREST if values.shape[0] < 40 else cv2.INTER_AREA
        )
        coloured = cv2.applyColorMap(small, cv2.COLORMAP_VIRIDIS)[..., ::-1].copy()
        cv2.putText(coloured, f"#{channel}", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        y, x = 4 + (n // columns) * (tile + 4), 4 + (n % columns) * (tile + 4)
        picture[y : y + tile, x : x + tile] = coloured
    c, h, w = activations.shape
    return FeatureGrid(layer, (c, h, w), [int(i) for i in order], picture)


@dataclass(frozen=True)
class ConvolutionStep:
    """One output number of the first convolution, computed in the open: a 3x3 patch of the network's input (3
    colour channels), the filter's 3x3x3 weights, their products, the sum plus the bias, and ReLU6."""

    filter: int
    x: int  # output column and row
    y: int
    patch: np.ndarray  # (3, 3, 3): colour channel, row, column of the input tensor
    weights: np.ndarray  # (3, 3, 3)
    products: np.ndarray  # patch * weights
    bias: float
    total: float  # products.sum() + bias
    output: float  # after ReLU6: min(max(total, 0), 6)
    input_picture: np.ndarray  # RGB uint8: what the network sees, the patch outlined
    output_picture: np.ndarray  # RGB uint8: this filter's whole output, the cell outlined
    checked: float  # the same number from ONNX Runtime's run of the real layer


def convolution_step(
    analyzer: Analyzer, image: LoadedImage, options: AnalysisOptions, filter: int, x: int, y: int
) -> ConvolutionStep:
    """Output cell (x, y) of first-layer filter ``filter``, computed here by hand from the layer's real weights."""
    inspector = analyzer.inspector(options.classifier)
    weights, biases, stride, (pad_top, pad_left, pad_bottom, pad_right) = inspector.first_convolution
    tensor = inspector.preprocess(image.pixels)[0]
    padded = np.pad(tensor, ((0, 0), (pad_top, pad_bottom), (pad_left, pad_right)))
    early = inspector.inspect_photo(image.sha256, image.pixels).layers["early"][filter]
    y, x = int(np.clip(y, 0, early.shape[0] - 1)), int(np.clip(x, 0, early.shape[1] - 1))
    kernel = weights.shape[-1]
    patch = padded[:, y * stride : y * stride + kernel, x * stride : x * stride + kernel]
    products = patch * weights[filter]
    total = float(products.sum() + biases[filter])
    shown = network_picture(inspector.spec, tensor)
    top, left = y * stride - pad_top, x * stride - pad_left
    outline = max(1, shown.shape[0] // 130)
    cv2.rectangle(shown, (left - outline, top - outline), (left + kernel - 1 + outline, top + kernel - 1 + outline),
                  (255, 0, 0), outline)  # fmt: skip
    scaled = (255 * (early - early.min()) / max(float(np.ptp(early)), 1e-6)).astype(np.uint8)
    output = cv2.applyColorMap(scaled, cv2.COLORMAP_VIRIDIS)[..., ::-1].copy()
    cv2.rectangle(output, (x - 1, y - 1), (x + 1, y + 1), (255, 0, 0), 1)
    return ConvolutionStep(
        filter=filter, x=x, y=y, patch=patch, weights=weights[filter], products=products, bias=float(biases[filter]),
        total=total, output=min(max(total, 0.0), 6.0), input_picture=shown, output_picture=output,
        checked=float(early[y, x]),
    )  # fmt: skip


def network_picture(spec: ClassifierSpec, tensor: np.ndarray) -> np.ndarray:
    """A classifier's input tensor (3, S, S) as the RGB picture it was made from."""
    pixels = tensor.transpose(1, 2, 0)
    if spec.tf_normalisation:
        shown = pixels * 128.0 + 127.0
    else:
        shown = (pixels * np.array([0.229, 0.224, 0.225]) + np.array([0.485, 0.456, 0.406])) * 255.0
    return np.clip(shown, 0, 255).astype(np.uint8).copy()
