"""Analysis options: the one parser of what to run and how, for the library, the CLI, the API and the dashboard.
Everything that changes stored results is here (and in ``AnalysisOptions.cache_key``)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from typing import Annotated, Any, TypeVar

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

from picmetric.core.annotate import RENDER_FORMATS
from picmetric.core.catalog import (
    CLASSIFIERS,
    DEFAULT_CLASSIFIER,
    DEFAULT_FACE_DETECTOR,
    DETECTOR,
    DETECTOR_SIZES,
    FACE_DETECTORS,
    INT8_SIZES,
    NAME_PATTERN,
    PRECISIONS,
    TASKS,
)
from picmetric.errors import PicMetricError

T = TypeVar("T")


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
