"""Response models of the HTTP API: what /openapi.json publishes and what the schema fuzzer holds answers to."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from picmetric.core.wire import AnalysisJson
from picmetric.service.types import HistoryItem, JobState


class SimilarItem(BaseModel):
    """A stored photo like another: ``similarity`` is the features' cosine (0-1); ``near_duplicate`` says whether it
    is the same picture edited (resized, re-encoded, cropped a little, brighter or darker, turned a few degrees)."""

    sha256: str
    name: str | None
    similarity: float
    near_duplicate: bool
    thumbnail: str  # URL


class SimilarAnswer(BaseModel):
    items: list[SimilarItem]  # best first


class AnalysisAnswer(BaseModel):
    status: str  # done | failed
    cached: bool  # found in history rather than analysed now
    analysis: AnalysisJson
    images: dict[str, str]  # original, objects, faces, thumbnail -> URL
    near_duplicate_of: SimilarItem | None = None  # a stored photo this one is an edited copy of


@dataclass(frozen=True, kw_only=True)
class HistoryEntry(HistoryItem):
    """One history entry as the API sends it: the service's item (image facts and what was found), with its
    thumbnail as a URL."""

    thumbnail: str  # type: ignore[assignment]  # the picture, as the URL that serves it


class HistoryAnswer(BaseModel):
    items: list[HistoryEntry]
    total: int
    page: int
    page_size: int
    pages: int


class Prediction(BaseModel):
    """A DeepStack prediction: integer pixel box, and a label for objects."""

    label: str | None = None
    confidence: float
    x_min: int
    y_min: int
    x_max: int
    y_max: int


class PredictionsAnswer(BaseModel):
    success: bool
    predictions: list[Prediction]
    duration: int  # milliseconds


class SceneAnswer(BaseModel):
    success: bool
    label: str
    confidence: float
    duration: int


class Health(BaseModel):
    status: str


class QueueFacts(BaseModel):
    kind: str  # in-process | celery
    broker: str  # "in-process" or the broker URL without its password
    depth: int | None  # jobs waiting for a worker


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str]  # database, storage, models, broker -> "ok" or the problem
    models: dict[str, bool]
    queue: QueueFacts


class JobAccepted(BaseModel):
    """A queued analysis: follow it at ``status_url``."""

    job: str
    state: JobState
    status_url: str


class JobAnswer(BaseModel):
    job: str
    batch: str | None
    state: JobState
    name: str | None
    attempts: int
    error: str | None  # why it failed (the status it would have answered with is error_status)
    error_status: int | None
    result: AnalysisAnswer | None  # once done
    result_url: str | None


class BatchAccepted(BaseModel):
    batch: str
    jobs: list[str]
    status_url: str


class BatchItem(BaseModel):
    job: str
    name: str | None
    state: JobState
    sha256: str | None
    error: str | None
    result_url: str | None  # GET /api/v1/analyses/{sha256}, once done


class BatchAnswer(BaseModel):
    batch: str
    total: int
    finished: bool  # every job done or failed
    counts: dict[str, int]  # queued, running, done, failed
    items: list[BatchItem]


class ResetAnswer(BaseModel):
    reset: bool


class SeedAnswer(BaseModel):
    """The seed system's answer: every field a string; ``error`` is empty on success."""

    error: str
    hash: str
    original: str
    resnet: str
    yolov3: str
    yolov3_source: str
    faces_source: str
