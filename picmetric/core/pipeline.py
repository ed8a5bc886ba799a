"""One call from image to everything: the three models run concurrently. Annotated pictures are drawn only when
asked for (``render``): the dashboard draws boxes in the browser, and two eager WebP renders were a third of an
analysis' CPU time."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar, overload

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    model_validator,
)

from picmetric.core.annotate import RENDER_FORMATS, BoxAnnotator, FaceAnnotator, encode_image
from picmetric.core.convert.quantize import INT8_RECIPE
from picmetric.core.intake import LoadedImage
from picmetric.core.models import (
    CLASSIFIERS,
    DEFAULT_FACE_DETECTOR,
    FACE_DETECTORS,
    ImageClassifier,
    MtcnnDetector,
    ObjectDetector,
    OnnxModel,
    YuNetDetector,
)
from picmetric.core.models.base import available_providers
from picmetric.core.models.classifier import DEFAULT_CLASSIFIER, PRECISIONS, ClassifierInspector
from picmetric.core.models.detector import DETECTOR, DETECTOR_SIZES, INT8_SIZES, ONNX_LAYOUTS, coco_class_names
from picmetric.core.models.shelf import (
    NAME_PATTERN,
    DetectorEntry,
    add_darknet,
    add_onnx,
    builtin_entry,
    detector_entry,
    detectors,
    load_detector,
    remove_detector,
)
from picmetric.core.results import Classification, Detections, Faces, ImageFacts
from picmetric.errors import PicMetricError
from picmetric.settings import Settings, get_settings

__all__ = [  # the option vocabulary (models to choose, their sizes and precisions) is part of the pipeline's surface
    "CLASSIFIERS", "DETECTOR", "DETECTOR_SIZES", "FACE_DETECTORS", "INT8_SIZES", "ONNX_LAYOUTS", "PRECISIONS", "TASKS",
    "Analysis", "AnalysisOptions", "Analyzer", "DetectorEntry", "NAME_PATTERN", "InvalidOptionsError", "RENDER_KINDS",
    "TaskCallback", "add_darknet", "add_onnx", "analyze", "coco_class_names", "default_analyzer", "detectors", "draw",
    "remove_detector", "render",
]  # fmt: skip
#: the option vocabulary (CLASSIFIERS, PRECISIONS, DETECTOR_SIZES, FACE_DETECTORS, TASKS) is part of this module's
#: surface: interfaces offer these choices without reaching into the models layer
TASKS = ("labels", "objects", "faces")
#: the results that can be drawn onto the photo (``render``)
RENDER_KINDS = ("objects", "faces")
ModelT = TypeVar("ModelT", bound=OnnxModel)
T = TypeVar("T")
ResultT = TypeVar("ResultT", Classification, Detections, Faces)
BoxesT = TypeVar("BoxesT", Detections, Faces)
TaskCallback = Callable[[str, dict[str, float]], None]


class InvalidOptionsError(PicMetricError, ValueError):
    """An analysis option is out of range."""


def _one_of(name: str, choices: Iterable[str | int]) -> tuple[AfterValidator, Any]:
    """A choice: checked with a message that lists the choices, and published as an enum in the JSON schema."""
    listed: list[JsonValue] = list(choices)
    allowed = [str(c) for c in listed]

    def check(value: T) -> T:
        if str(value) not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}")
        return value

    return AfterValidator(check), Field(json_schema_extra={"enum": listed})


def _between(name: str, low: float, high: float, unit: str = "") -> tuple[AfterValidator, Any]:
    """A range: checked with a message that states it, and published as minimum/maximum in the JSON schema."""

    def check(value: float) -> float:
        if not low <= value <= high:
            raise ValueError(f"{name} must be between {low:g} and {high:g}{unit}")
        return value

    return AfterValidator(check), Field(json_schema_extra={"minimum": low, "maximum": high})


_DECIMAL = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*")


def _no_bool(value: object) -> object:
    """JSON's true/false are not numbers here (Python would read them as 1 and 0), and a number sent as text is
    plain decimal ("1_0" is 10 to Python, a typo to a person)."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    if isinstance(value, str) and not _DECIMAL.fullmatch(value):
        raise ValueError(f"must be a plain decimal number, not {value[:40]!r}")
    return value


#: more names than any valid list holds (each task once), so an absurd list is refused before it is looked at
MAX_TASK_NAMES = 16


def _task_list(value: object) -> object:
    """'labels,faces' (a form field, a CLI flag) or a list of names (JSON), refused at once when longer than any
    valid list could be (a 100,000-name list must cost a 400 in milliseconds, not the server's attention)."""
    if isinstance(value, str):
        if value.count(",") >= MAX_TASK_NAMES:
            raise ValueError(f"name each task once: at most {len(TASKS)} of {', '.join(TASKS)}")
        value = [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple) and len(value) > MAX_TASK_NAMES:
        raise ValueError(f"name each task once: at most {len(TASKS)} of {', '.join(TASKS)}")
    return value


def _detector_name(value: str) -> str:
    """A detector's name as ``models add`` allows them; whether it exists here is the Analyzer's to say."""
    if not NAME_PATTERN.fullmatch(value):
        raise ValueError(f"detector must be the name of a detector ({DETECTOR.key} or one added), not {value[:40]!r}")
    return value


Number = Annotated[float, BeforeValidator(_no_bool), Field(allow_inf_nan=False)]
Count = Annotated[int, BeforeValidator(_no_bool)]


class AnalysisOptions(BaseModel):
    """What to run and how: the one parser of analysis options, for the library, CLI, API and dashboard.
    Everything that changes stored results is here (and in ``cache_key``)."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    tasks: Annotated[
        tuple[str, ...],
        BeforeValidator(_task_list),
        Field(description=f"subset of {', '.join(TASKS)}; 'labels,faces' or a list"),
    ] = TASKS
    classifier: Annotated[str, *_one_of("classifier", CLASSIFIERS)] = DEFAULT_CLASSIFIER
    top_k: Annotated[Count, *_between("top_k", 1, 20)] = 5
    #: the object detector: the built-in one, or one added with ``picmetric models add``
    detector: Annotated[str, AfterValidator(_detector_name), Field(description=f"{DETECTOR.key} or an added one")] = (
        DETECTOR.key
    )
    #: the built-in detector's input size (an added detector runs at its own)
    detector_size: Annotated[Count, *_one_of("detector_size", DETECTOR_SIZES)] = 416
    min_confidence: Annotated[Number, *_between("min_confidence", 0, 1)] = 0.25
    #: 0.40 and merged synonyms: 11 -> 6 false or duplicate boxes on the shipped photos (benchmarks/bench_detection.py)
    iou_threshold: Annotated[Number, *_between("iou_threshold", 0, 1)] = 0.40
    #: NMS takes near-synonym classes for one object (car/truck/bus, horse/cow/sheep, dog/cat): one box, not two
    merge_synonyms: Annotated[bool, Field(description="near-synonym classes suppress each other in NMS")] = True
    min_face_size: Annotated[Count, *_between("min_face_size", 12, 2000, " pixels")] = 20
    #: None on input: the face detector's own default (FACE_DETECTORS); always a number once built
    face_confidence: Annotated[Number | None, Field(json_schema_extra={"minimum": 0, "maximum": 1})] = None
    render_format: Annotated[str, *_one_of("render_format", RENDER_FORMATS)] = "webp"
    face_detector: Annotated[str, *_one_of("face_detector", FACE_DETECTORS)] = DEFAULT_FACE_DETECTOR
    #: int8 runs the quantized models that keep the float models' accuracy (EfficientNet-Lite2, the built-in
    #: YOLOv4-tiny at 416 px); the others run float32 whatever this says
    precision: Annotated[
        str, *_one_of("precision", PRECISIONS), Field(description="int8: quantized EfficientNet-Lite2 and YOLOv4-tiny")
    ] = "int8"

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise InvalidOptionsError(_describe(exc)) from None

    @model_validator(mode="after")
    def _resolve(self) -> AnalysisOptions:
        """Tasks in canonical order; the face score and precision that actually apply, so the key says so."""
        tasks = tuple(t for t in TASKS if t in set(self.tasks))
        repeated = sorted(t for t, n in Counter(self.tasks).items() if n > 1)
        if repeated:
            raise ValueError(f"tasks: name each task once ({', '.join(repeated)} given more than once)")
        unknown = sorted(set(self.tasks) - set(TASKS))
        if unknown or not tasks:
            refused = f" (not {', '.join(unknown)})" if unknown else ""
            raise ValueError(f"tasks must be some of {', '.join(TASKS)}{refused}")
        object.__setattr__(self, "tasks", tasks)
        if self.face_confidence is None:
            object.__setattr__(self, "face_confidence", FACE_DETECTORS[self.face_detector].default_score)
        elif not 0 <= self.face_confidence <= 1:
            raise ValueError("face_confidence must be between 0 and 1")
        if self.classifier_precision == self.detector_precision == "float32":
            object.__setattr__(self, "precision", "float32")  # no model here has an int8 copy: float32 runs
        return self

    @property
    def classifier_precision(self) -> str:
        """The classifier's precision in force: int8 only where its quantized model held the accuracy bar."""
        quantized = "labels" in self.tasks and CLASSIFIERS[self.classifier].int8
        return self.precision if quantized else "float32"

    @property
    def detector_precision(self) -> str:
        """The object detector's precision in force: int8 for the built-in one at 416 px; at 608 px, or an added
        detector, float32."""
        quantized = "objects" in self.tasks and self.detector == DETECTOR.key and self.detector_size in INT8_SIZES
        return self.precision if quantized else "float32"

    @property
    def face_score(self) -> float:
        """The face score threshold in force (``face_confidence``, resolved to the detector's default)."""
        assert self.face_confidence is not None  # resolved when built
        return self.face_confidence

    @classmethod
    def from_input(cls, values: object, *, other_fields: Collection[str] = ()) -> AnalysisOptions:
        """Options from form fields or a JSON object (the API's input): empty form fields mean the default, every
        value is checked (no files, lists or infinities where numbers go), and a name that is neither an option
        nor one of ``other_fields`` (the request's own, e.g. 'file') is refused: a typo must not pass silently."""
        if not isinstance(values, Mapping):
            raise InvalidOptionsError("options must be an object of option names and values")
        unknown = sorted(str(k) for k in values if k not in cls.model_fields and k not in other_fields)
        if unknown:
            raise InvalidOptionsError(
                f"unknown option {', '.join(repr(k[:40]) for k in unknown[:5])}; "
                f"the options are {', '.join(cls.model_fields)}"
            )
        return cls(**{k: v for k, v in values.items() if k in cls.model_fields and v not in (None, "")})

    @classmethod
    def from_stored(cls, values: dict) -> AnalysisOptions:
        """Options as stored with an analysis; rows from before YuNet and int8 existed ran MTCNN and float32."""
        return cls(**{**_BEFORE_OPTIONS_EXISTED, **values})

    @property
    def cache_key(self) -> str:
        """Stable text that identifies these options, for de-duplicating stored analyses. Options added later are
        left out at the value that ran before they existed, so rows stored before then keep their key."""
        values = {k: v for k, v in self.model_dump().items() if _BEFORE_OPTIONS_EXISTED.get(k, ...) != v}
        return ";".join(f"{k}={v if not isinstance(v, tuple) else ','.join(v)}" for k, v in values.items())

    def to_dict(self) -> dict:
        data = self.model_dump()
        data["tasks"] = list(self.tasks)
        return data


def _describe(error: ValidationError) -> str:
    """Pydantic's errors as one sentence a user can act on: 'top_k must be between 1 and 20; ...'."""
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        problems.append(message if message.startswith(field) or not field else f"{field}: {message}")
    return "; ".join(dict.fromkeys(problems))


_BEFORE_OPTIONS_EXISTED = {
    "face_detector": "mtcnn", "precision": "float32", "detector": DETECTOR.key, "merge_synonyms": False,
}  # fmt: skip


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

    def to_dict(self) -> dict:
        return {
            "image": self.fact_values(),
            "options": self.options.to_dict(),
            "labels": self.classification.to_dict()["labels"] if self.classification else None,
            "objects": self.detections.to_dict()["objects"] if self.detections is not None else None,
            "faces": self.faces.to_dict()["faces"] if self.faces is not None else None,
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
            "model_versions": self.model_versions,
            "renders": sorted(self.render_kinds),
            "created_at": self.created_at.isoformat(),
        }


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
        self.settings = settings  # model cache and thread budget for every model held here
        self._lock = threading.Lock()
        self._models: dict[tuple, OnnxModel] = {}
        self._workers = max_workers or self.settings.analysis_threads
        # with batching, the tasks of that many analyses must reach their models at once to be run together
        self._pool = ThreadPoolExecutor(
            max_workers=self._workers * self.settings.inference_batch, thread_name_prefix="picmetric"
        )

    def _model(self, key: tuple, factory: Callable[[], ModelT]) -> ModelT:
        with self._lock:
            if key not in self._models:
                model = factory()
                model.settings = model.settings or self.settings
                self._models[key] = model
            return self._models[key]  # type: ignore[return-value]  # one key, one model class

    def use(self, model: OnnxModel) -> None:
        """Serve this model instance for its configuration (e.g. a detector reading other weights)."""
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


def draw(image: LoadedImage, found: Detections | Faces) -> np.ndarray:
    """Results in original pixels drawn on the photo's working copy (``image``: the photo they were found in,
    loaded with the same working size): boxes with their class tags, or faces with their landmarks."""
    on_working = found.scaled(1 / image.scale)
    if isinstance(on_working, Detections):
        return BoxAnnotator().annotate(image.pixels, on_working)
    return FaceAnnotator().annotate(image.pixels, on_working)


def render(image: LoadedImage, analysis: Analysis, kind: str) -> bytes:
    """``analysis``' objects or faces drawn on the photo (``draw``), encoded in its ``render_format``."""
    found = {"objects": analysis.detections, "faces": analysis.faces}.get(kind)
    if found is None:
        raise ValueError(f"this analysis has no {kind} to draw (it can draw {', '.join(analysis.render_kinds)})")
    return encode_image(draw(image, found), analysis.options.render_format)


def _result(outcomes: dict[str, _TaskOutcome], task: str, kind: type[ResultT], part: str = "result") -> ResultT | None:
    """A task's result (or its ``weaker`` candidates), typed; None when the task did not run."""
    value = getattr(outcomes[task], part) if task in outcomes else None
    assert value is None or isinstance(value, kind)
    return value


def _ms(start: float, end: float | None = None) -> float:
    return ((end if end is not None else time.perf_counter()) - start) * 1000.0


_default_analyzer: Analyzer | None = None
_default_lock = threading.Lock()


def default_analyzer(settings: Settings) -> Analyzer:
    """The process-wide analyzer, so every caller shares one copy of each model; the first caller's settings
    (e.g. the dashboard's secrets) choose its model cache and thread budget."""
    global _default_analyzer
    with _default_lock:
        if _default_analyzer is None:
            _default_analyzer = Analyzer(settings)
        return _default_analyzer


def analyze(image: LoadedImage, options: AnalysisOptions | None = None) -> Analysis:
    """Analyse a loaded image with the shared analyzer: the library's one-call entry, on the environment's
    settings (``PICMETRIC_*``, ``.env``)."""
    return default_analyzer(get_settings()).analyze(image, options)
