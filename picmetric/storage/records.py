"""What storage hands back: plain values, no session or row attached."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, get_args

from picmetric.core.results import ImageFacts

logger = logging.getLogger(__name__)


ClaimState = Literal["missing", "running", "lapsed", "done", "failed"]


@dataclass
class AnalysisRecord:
    """One stored analysis in plain values; ``picmetric.service`` turns it into result objects."""

    id: int
    status: str
    error: str | None
    created_at: datetime
    options: dict
    model_versions: dict[str, str]
    timings_ms: dict[str, float]
    image: ImageFacts
    labels: list[tuple[int, str, float, str]]  # class_id, name, confidence, model; by rank
    objects: list[tuple[tuple[float, float, float, float], float, int, str]]  # xyxy, confidence, class_id, label
    faces: list[tuple[tuple[float, float, float, float], float, list]]  # xyxy, confidence, 5 landmarks
    candidates: dict  # weaker boxes below the thresholds, as the service stored them ({} for older rows)
    blob_keys: dict[str, str]  # original, objects, faces, thumbnail -> key
    urls: dict[str, str | None] = field(default_factory=dict)  # same kinds -> browser URL (None: served by us)


JobState = Literal["queued", "running", "done", "failed"]
JOB_STATES: tuple[JobState, ...] = get_args(JobState)


@dataclass(frozen=True)
class JobRecord:
    """One queued analysis: its input (a staged upload or a URL), its state, and the image it turned out to be."""

    id: str
    batch_id: str | None
    state: JobState
    source: str
    name: str | None
    url: str | None
    input_key: str | None
    options: dict
    sha256: str | None
    error: str | None
    error_status: int | None  # rows recorded before error kinds (0009)
    error_kind: str | None
    cached: bool | None
    attempts: int
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    kind: str = "photo"  # photo | video-chunk
    spec: dict | None = None  # a video chunk's: which analysis, which frames


@dataclass(frozen=True)
class NewJob:
    """A job to record: an upload staged under ``input_key``, or a URL (http(s) or s3://) a worker fetches; or a
    chunk of a stored video (``kind`` video-chunk, ``spec``)."""

    source: str
    options: dict
    name: str | None = None
    url: str | None = None
    input_key: str | None = None
    kind: str = "photo"
    spec: dict | None = None


@dataclass(frozen=True)
class HistoryFilter:
    text: str | None = None  # matches an ImageNet label or an object class (case-insensitive, substring)
    label: str | None = None
    object_class: str | None = None
    min_faces: int | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None
    source: str | None = None  # upload | url
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
    thumbnail_key: str | None
    options: dict = field(default_factory=dict)  # what the analysis ran with: tells apart analyses of one photo


@dataclass(frozen=True)
class HistoryPage:
    """One page as stored; the service's ``HistoryPage`` says how many pages there are, in words too."""

    items: list[HistoryItem]
    total: int
    page: int
    page_size: int


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class NewSignature:
    """An image's signature to keep: its pHash (hex), and its features (float16 bytes) as ``model`` sees them."""

    phash: str
    model: str
    vector: bytes
