"""One call from image to everything: the three models run concurrently on an ``Analyzer``, which holds them.

An analyzer serves one set of settings (its model cache, thread budget and detector shelf): ``shared_analyzer``
gives each distinct set its own, explicitly; the loaded models themselves are shared by every analyzer of the
process that runs them the same way, so a second analyzer costs no second copy of a model."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, TypeVar, overload

import numpy as np

from picmetric.core.catalog import DEFAULT_CLASSIFIER, DETECTOR, FACE_DETECTORS, DetectorEntry
from picmetric.core.convert.quantize import INT8_RECIPE
from picmetric.core.decoding import LoadedImage
from picmetric.core.models import (
    DEFAULT_FACE_DETECTOR,
    ImageClassifier,
    MtcnnDetector,
    ObjectDetector,
    OnnxModel,
    YuNetDetector,
)
from picmetric.core.models.base import available_providers
from picmetric.core.models.classifier import ClassifierInspector
from picmetric.core.models.shelf import builtin_entry, detector_entry, load_detector
from picmetric.core.options import AnalysisOptions, InvalidOptionsError
from picmetric.core.results import Classification, Detections, Faces, ImageFacts
from picmetric.core.wire import AnalysisJson, faces_of, labels_of, objects_of
from picmetric.errors import PicMetricError
from picmetric.settings import Settings

#: the results that can be drawn onto the photo (``picmetric.core.drawing.render``)
RENDER_KINDS = ("objects", "faces")
ModelT = TypeVar("ModelT", bound=OnnxModel)
ResultT = TypeVar("ResultT", Classification, Detections, Faces)
BoxesT = TypeVar("BoxesT", Detections, Faces)
TaskCallback = Callable[[str, dict[str, float]], None]


@dataclass(frozen=True, kw_only=True)
class Analysis(ImageFacts):
    """Everything PicMetric found in one image, with the image's facts. Coordinates are pixels of the original
    (EXIF-rotated) image."""

    options: AnalysisOptions
    classification: Classification | None
    detections: Detections | None
    faces: Faces | None
    timings_ms: dict[str, float]
    model_versions: dict[str, str]
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: what the detectors found below the analysis' thresholds, down to each model's floor (``floors``, by task):
    #: kept so a display threshold can go lower without running a model again. Rows stored before: none.
    weaker_objects: Detections | None = field(default=None, repr=False)
    weaker_faces: Faces | None = field(default=None, repr=False)
    floors: dict[str, float] = field(default_factory=dict)

    def floor(self, task: str) -> float:
        """The lowest score that can be shown for ``task`` ("objects" or "faces") without running the model."""
        threshold = self.options.min_confidence if task == "objects" else self.options.face_score
        return min(self.floors.get(task, threshold), threshold)

    def objects_from(self, min_confidence: float) -> Detections | None:
        """The objects scoring at least ``min_confidence``, weaker candidates included where it is below the
        analysis' threshold."""
        return _scoring_from(self.detections, self.weaker_objects, min_confidence)

    def faces_from(self, min_confidence: float) -> Faces | None:
        """The faces scoring at least ``min_confidence``, weaker candidates included (as ``objects_from``)."""
        return _scoring_from(self.faces, self.weaker_faces, min_confidence)

    @property
    def render_kinds(self) -> list[str]:
        """The annotated pictures this analysis can be drawn as (``render``): one per box-finding task it ran."""
        return [kind for kind in RENDER_KINDS if kind in self.options.tasks]

    def to_json(self) -> AnalysisJson:
        """PicMetric's JSON for this analysis, as its declared model."""
        return AnalysisJson(
            image=self.facts,
            options=self.options,
            labels=labels_of(self.classification) if self.classification else None,
            objects=objects_of(self.detections) if self.detections is not None else None,
            faces=faces_of(self.faces) if self.faces is not None else None,
            timings_ms={k: round(v, 2) for k, v in self.timings_ms.items()},
            model_versions=self.model_versions,
            renders=sorted(self.render_kinds),
            created_at=self.created_at,
        )

    def to_dict(self) -> dict:
        """PicMetric's JSON for this analysis (``AnalysisJson``) as plain values."""
        return self.to_json().model_dump(mode="json")


def _scoring_from(found: BoxesT | None, weaker: BoxesT | None, min_confidence: float) -> BoxesT | None:
    """What was found (and its weaker candidates, when kept) scoring at least ``min_confidence``."""
    if found is None:
        return None
    return (found + weaker if weaker is not None else found).filter(min_confidence)


@dataclass(frozen=True)
class _TaskOutcome:
    """One model's part of an analysis: its result in original pixels, timings, model version."""

    result: Classification | Detections | Faces
    timings: dict[str, float]
    version: str
    weaker: Detections | Faces | None = None  # below the analysis' threshold, down to ``floor``
    floor: float | None = None


class Analyzer:
    """Holds the loaded models (one per configuration, loaded lazily) and a worker pool; safe to share."""

    def __init__(self, settings: Settings, max_workers: int | None = None) -> None:
        self.settings = settings  # model cache, thread budget and detector shelf for every model used here
        self._lock = threading.Lock()
        self._models: dict[tuple, OnnxModel] = {}  # the models this analyzer has used, from the process's shelf
        self._workers = max_workers or self.settings.analysis_threads
        # with batching, the tasks of that many analyses must reach their models at once to be run together
        self._pool = ThreadPoolExecutor(
            max_workers=self._workers * self.settings.inference_batch, thread_name_prefix="picmetric"
        )

    def _model(self, key: tuple, factory: Callable[[], ModelT]) -> ModelT:
        with self._lock:
            if key not in self._models:
                shared = (_runtime(self.settings), key)
                with _loaded_lock:
                    if shared not in _loaded:
                        model = factory()
                        model.settings = model.settings or self.settings
                        _loaded[shared] = model
                    self._models[key] = _loaded[shared]
            return self._models[key]  # type: ignore[return-value]  # one key, one model class

    def use(self, model: OnnxModel) -> None:
        """Serve this model instance for its configuration here (e.g. a detector reading other weights)."""
        model.settings = model.settings or self.settings
        with self._lock:
            self._models[model.registry_key] = model

    def classifier(self, key: str = DEFAULT_CLASSIFIER, precision: str = "float32") -> ImageClassifier:
        return self._model(("classifier", key, precision), lambda: ImageClassifier(key, precision))

    def inspector(self, key: str = DEFAULT_CLASSIFIER) -> ClassifierInspector:
        """The float32 classifier opened up (layers, first convolution, class activation maps), for explanations."""
        return self._model(("inspector", key), lambda: ClassifierInspector(key))

    def detector(self, input_size: int = 416, name: str = DETECTOR.key, precision: str = "float32") -> ObjectDetector:
        """The built-in detector at ``input_size`` and ``precision``, or the added detector ``name`` (at its own
        size, float32)."""
        entry = self.detector_entry(name)
        builtin = entry.family == "builtin"
        size, precision = (input_size, precision) if builtin else (entry.input_size, "float32")
        return self._model(
            ("detector", name, entry.version, size, precision),
            lambda: load_detector(self.settings, entry, size, precision=precision),
        )

    def detector_entry(self, name: str) -> DetectorEntry:
        """The detector an analysis names, refused as an option when there is none of that name here."""
        if name == DETECTOR.key:
            return builtin_entry()
        try:
            return detector_entry(self.settings, name)
        except PicMetricError as exc:
            raise InvalidOptionsError(str(exc)) from None

    def model_identity(self, options: AnalysisOptions) -> str:
        """What the options alone do not say about the models they run: an added detector's version (it changes
        when one of that name is removed and added again), the built-in detector's int8 recipe. Part of the stored
        key; checks the detector exists."""
        if "objects" not in options.tasks:
            return ""
        if options.detector == DETECTOR.key:  # analyses from before its int8 model ran it in float, as precision=int8
            return f";detector_precision={INT8_RECIPE}" if options.detector_precision == "int8" else ""
        return f";detector_version={self.detector_entry(options.detector).version}"

    @overload
    def face_detector(self, key: Literal["yunet"] = ...) -> YuNetDetector: ...
    @overload
    def face_detector(self, key: Literal["mtcnn"]) -> MtcnnDetector: ...
    @overload
    def face_detector(self, key: str) -> MtcnnDetector | YuNetDetector: ...

    def face_detector(self, key: str = DEFAULT_FACE_DETECTOR) -> MtcnnDetector | YuNetDetector:
        if key not in FACE_DETECTORS:
            raise ValueError(f"unknown face detector {key!r}; choose one of {', '.join(FACE_DETECTORS)}")
        factory: Callable[[], MtcnnDetector | YuNetDetector] = FACE_DETECTORS[key].model
        return self._model(("faces", key), factory)

    def warm_up(self, options: AnalysisOptions | None = None) -> None:
        """Load (and on first use convert) every model these options need, so the first analysis is fast."""
        options = options or AnalysisOptions()
        self.classifier(options.classifier, options.classifier_precision).load()
        self.detector(options.detector_size, options.detector, options.detector_precision).load()
        self.face_detector(options.face_detector).load()
        # One run on a blank photo: ONNX Runtime allocates its buffers on the first run, not at load time.
        blank = LoadedImage(
            sha256="", md5="", format="PNG", width=320, height=240, size_bytes=0, data=b"",
            pixels=np.full((240, 320, 3), 127, np.uint8), scale=1.0,
        )  # fmt: skip
        self.analyze(blank, options)

    @staticmethod
    def providers() -> list[str]:
        return available_providers()

    def loaded_models(self) -> dict[str, bool]:
        with self._lock:
            return {m.version: m.loaded for m in self._models.values()}

    def _labels(self, image: LoadedImage, options: AnalysisOptions) -> _TaskOutcome:
        model = self.classifier(options.classifier, options.classifier_precision)
        started = time.perf_counter()
        result = model.predict(image.pixels, top_k=options.top_k)
        return _TaskOutcome(result, {"labels": _ms(started)}, model.version)

    def _objects(self, image: LoadedImage, options: AnalysisOptions) -> _TaskOutcome:
        model = self.detector(options.detector_size, options.detector, options.detector_precision)
        started = time.perf_counter()
        # down to the model's floor: NMS is greedy by score, so weaker boxes never change the stronger ones' result
        floor = min(options.min_confidence, model.candidate_floor)
        found, weaker = model.predict(image.pixels, floor, options.iou_threshold, options.merge_synonyms).split(
            options.min_confidence
        )
        timings = {"objects": _ms(started)}
        return _TaskOutcome(found.scaled(image.scale), timings, model.version, weaker.scaled(image.scale), floor)

    def _faces(self, image: LoadedImage, options: AnalysisOptions) -> _TaskOutcome:
        model = self.face_detector(options.face_detector)
        started = time.perf_counter()
        min_face = max(12, round(options.min_face_size / image.scale))  # the option is in original pixels
        floor = min(options.face_score, model.candidate_floor)  # as for objects: the stronger faces stay the same
        found, weaker = model.predict(image.pixels, floor, min_face_size=min_face).split(options.face_score)
        timings = {"faces": _ms(started)}
        return _TaskOutcome(found.scaled(image.scale), timings, model.version, weaker.scaled(image.scale), floor)

    def analyze(
        self,
        image: LoadedImage,
        options: AnalysisOptions | None = None,
        *,
        concurrent: bool = True,
        on_task_done: TaskCallback | None = None,
    ) -> Analysis:
        """Run the chosen tasks (concurrently by default). ``on_task_done(task, timings_ms)`` is called in the
        caller's thread as each task finishes, so a UI can show progress."""
        options = options or AnalysisOptions()
        started = time.perf_counter()
        runners = {"labels": self._labels, "objects": self._objects, "faces": self._faces}
        outcomes: dict[str, _TaskOutcome] = {}
        if concurrent and self._workers > 1:  # one worker: the caller's own thread, so callers don't queue on it
            futures = {self._pool.submit(runners[task], image, options): task for task in options.tasks}
            finished = ((futures[future], future.result()) for future in as_completed(futures))
        else:
            finished = ((task, runners[task](image, options)) for task in options.tasks)
        for task, outcome in finished:
            outcomes[task] = outcome
            if on_task_done:
                on_task_done(task, outcome.timings)
        timings: dict[str, float] = {}
        for outcome in outcomes.values():
            timings.update(outcome.timings)
        timings["total"] = _ms(started)
        return Analysis(
            **image.fact_values(),
            options=options,
            classification=_result(outcomes, "labels", Classification),
            detections=_result(outcomes, "objects", Detections),
            faces=_result(outcomes, "faces", Faces),
            timings_ms=timings,
            model_versions={task: outcomes[task].version for task in options.tasks},
            weaker_objects=_result(outcomes, "objects", Detections, "weaker"),
            weaker_faces=_result(outcomes, "faces", Faces, "weaker"),
            floors={task: o.floor for task, o in outcomes.items() if o.floor is not None},
        )


def _result(outcomes: dict[str, _TaskOutcome], task: str, kind: type[ResultT], part: str = "result") -> ResultT | None:
    """A task's result (or its ``weaker`` candidates), typed; None when the task did not run."""
    value = getattr(outcomes[task], part) if task in outcomes else None
    assert value is None or isinstance(value, kind)
    return value


def _ms(start: float, end: float | None = None) -> float:
    return ((end if end is not None else time.perf_counter()) - start) * 1000.0


def _runtime(settings: Settings) -> tuple:
    """What decides how a model runs, and so whether two analyzers may share a loaded copy of it."""
    return (settings.model_cache_dir, settings.intra_op_threads, settings.ort_memory_arena, settings.inference_batch)


def _analyzer_key(settings: Settings) -> tuple:
    """What an analyzer's answers depend on: how its models run, its thread budget and its detector shelf."""
    return (*_runtime(settings), settings.analysis_threads, settings.data_dir)


#: every model loaded in this process, by how it runs and what it is: analyzers of other settings share them
_loaded: dict[tuple, OnnxModel] = {}
_loaded_lock = threading.Lock()
_analyzers: dict[tuple, Analyzer] = {}
_analyzers_lock = threading.Lock()


def shared_analyzer(settings: Settings) -> Analyzer:
    """The process's analyzer for these settings: callers with the same settings share one (and its thread pool);
    other settings get their own, never the first caller's."""
    key = _analyzer_key(settings)
    with _analyzers_lock:
        if key not in _analyzers:
            _analyzers[key] = Analyzer(settings)
        return _analyzers[key]
