"""What crosses the service's door: the values the interfaces (dashboard, API, CLI, worker) get and give. Storage
has its own records; the service turns them into these, so a change of table or blob layout stays behind the door
(no blob key, row id of another table or storage class comes out)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal, TypeVar, get_args

from picmetric.core.results import ImageFacts

JobState = Literal["queued", "running", "done", "failed"]
JOB_STATES: tuple[JobState, ...] = get_args(JobState)
ImageKind = Literal["original", "thumbnail", "objects", "faces"]
IMAGE_KINDS: tuple[ImageKind, ...] = get_args(ImageKind)
T = TypeVar("T")


def converted(value: Any, kind: type[T], **given: Any) -> T:
    """``value`` (a storage record) as ``kind``: the fields ``kind`` declares, read by name, unless ``given``."""
    read = {f.name: getattr(value, f.name) for f in fields(kind) if f.init and f.name not in given}  # type: ignore[arg-type]
    return kind(**read, **given)


@dataclass(frozen=True)
class Picture:
    """A stored picture as a browser gets it: its type, a tag that changes with its content, and the content,
    read from the store when asked for (a client holding the same tag needs no bytes)."""

    content_type: str
    etag: str
    read: Callable[[], bytes] = field(repr=False, compare=False)
    #: the object store's own URL for browsers (public or presigned; None: ask PicMetric), made when asked for
    locate: Callable[[], str | None] = field(repr=False, compare=False, default=lambda: None)

    @property
    def content(self) -> bytes:
        return self.read()

    @property
    def url(self) -> str | None:
        return self.locate()


@dataclass(frozen=True)
class HistoryFilter:
    """What the History page, ``GET /api/v1/analyses`` and ``picmetric history`` filter by."""

    text: str | None = None  # matches an ImageNet label or an object class (case-insensitive, substring)
    label: str | None = None
    object_class: str | None = None
    min_faces: int | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None
    source: str | None = None  # upload | url | sample | camera | board | s3
    status: str | None = None  # done | failed


@dataclass(frozen=True, kw_only=True)
class HistoryItem(ImageFacts):
    """One stored analysis in the history list: its image's facts and a summary of what was found."""

    created_at: datetime
    status: str
    error: str | None
    top_label: str | None
    top_confidence: float | None
    object_classes: list[str]
    object_count: int
    face_count: int
    total_ms: float | None
    options: dict = field(default_factory=dict)  # what the analysis ran with: tells apart analyses of one photo
    thumbnail: Picture | None = None


@dataclass(frozen=True)
class HistoryPage:
    items: list[HistoryItem]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))

    @property
    def summary(self) -> str:
        noun = "analysis" if self.total == 1 else "analyses"
        return f"{self.total} {noun} (page {self.page} of {self.pages})"


@dataclass(frozen=True)
class Job:
    """One queued analysis as a caller follows it: its state, and the image it turned out to be."""

    id: str
    batch_id: str | None
    state: JobState
    source: str
    name: str | None
    url: str | None
    options: dict
    sha256: str | None
    error: str | None
    error_kind: str | None  # the error's class name (``picmetric.errors``)
    error_status: int | None  # rows recorded before error kinds: the HTTP status it meant
    cached: bool | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class Board:
    id: str
    title: str
    created_at: datetime


@dataclass(frozen=True)
class BoardEntry:
    """A photo placed on a board: which image, sent by which phone, and whether the teacher hid it."""

    id: int
    sha256: str
    name: str | None
    phone: str
    hidden: bool
    created_at: datetime


@dataclass(frozen=True)
class Dataset:
    """Labelled photos kept to measure models on."""

    name: str
    task: str  # objects | labels
    format: str  # coco | yolo | voc | imagefolder | board
    categories: list[tuple[int, str]]  # (the dataset's own id, name)
    synonyms: dict[str, str]  # dataset name -> a model's class name, as the user set them
    notes: list[str]
    photo_count: int
    created_at: datetime

    @property
    def category_names(self) -> list[str]:
        return [name for _, name in self.categories]


@dataclass(frozen=True)
class DatasetPhoto:
    """A photo of a dataset with its truth: boxes ``[category index, x1, y1, x2, y2, crowd, area]`` (objects) in
    its pixels, or a label (labels)."""

    image: ImageFacts
    file_name: str
    source_id: int
    label: str | None
    boxes: list[list]
