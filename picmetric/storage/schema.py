"""Tables. Results are stored as rows (labels, objects, faces) so history can filter by label, class, face count
and date in SQL, without parsing JSON."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from picmetric.core.results import ImageFacts


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class BoxColumns:
    """A box in original-image pixels, as four plain columns (filterable, unlike JSON)."""

    x1: Mapped[float] = mapped_column(Float, nullable=False)
    y1: Mapped[float] = mapped_column(Float, nullable=False)
    x2: Mapped[float] = mapped_column(Float, nullable=False)
    y2: Mapped[float] = mapped_column(Float, nullable=False)


class ImageRow(Base):
    __tablename__ = "images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    md5: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    format: Mapped[str] = mapped_column(String(16), nullable=False)
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    source: Mapped[str] = mapped_column(String(16), nullable=False)  # upload | url
    original_name: Mapped[str | None] = mapped_column(Text)
    blob_key: Mapped[str] = mapped_column(String(255), nullable=False)
    content_type: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, nullable=False, index=True)
    #: imagehash's pHash, 16 hex digits: near-duplicates differ in few of its 64 bits (null: not computed yet)
    phash: Mapped[str | None] = mapped_column(String(16))

    analyses: Mapped[list[AnalysisRow]] = relationship(back_populates="image", cascade="all, delete-orphan")
    embeddings: Mapped[list[EmbeddingRow]] = relationship(cascade="all, delete-orphan")

    def facts(self) -> ImageFacts:
        return ImageFacts(
            sha256=self.sha256, md5=self.md5, format=self.format, width=self.width, height=self.height,
            size_bytes=self.size_bytes, source=self.source, name=self.original_name,
        )  # fmt: skip


class AnalysisRow(Base):
    __tablename__ = "analyses"
    __table_args__ = (UniqueConstraint("image_id", "options_key", name="uq_analysis_image_options"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), nullable=False, index=True)
    options_key: Mapped[str] = mapped_column(String(64), nullable=False)  # sha256 of AnalysisOptions.cache_key
    options: Mapped[dict] = mapped_column(JSON, nullable=False)
    model_versions: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    timings_ms: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # running | done | failed
    error: Mapped[str | None] = mapped_column(Text)
    top_label: Mapped[str | None] = mapped_column(String(128), index=True)
    top_confidence: Mapped[float | None] = mapped_column(Float)
    object_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    face_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0, index=True)
    # boxes scoring below the analysis' thresholds, down to each model's floor: shown on request, never searched
    candidates: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, nullable=False, index=True)
    # a running analysis' claim: its holder (host:pid:id) renews heartbeat_at; a lapsed lease may be taken over
    claimed_by: Mapped[str | None] = mapped_column(String(96))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    image: Mapped[ImageRow] = relationship(back_populates="analyses")
    labels: Mapped[list[LabelRow]] = relationship(cascade="all, delete-orphan", order_by="LabelRow.rank")
    objects: Mapped[list[ObjectRow]] = relationship(cascade="all, delete-orphan", order_by="ObjectRow.id")
    faces: Mapped[list[FaceRow]] = relationship(cascade="all, delete-orphan", order_by="FaceRow.id")
    renders: Mapped[list[RenderRow]] = relationship(cascade="all, delete-orphan")


class LabelRow(Base):
    __tablename__ = "labels"
    __table_args__ = (Index("ix_labels_name", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    analysis_id: Mapped[int] = mapped_column(ForeignKey("analyses.id", ondelete="CASCADE"), nullable=False, index=True)
    rank: Mapped[int] = mapped_column(Integer, nullable=False)
    class_id: Mapped[int] = mapped_column(Integer, nullable=False)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    confidence: Mapped[float] = mapped_column(Float, nullable=False)
    model: Mapped[str] = mapped_column(String(64), nullable=False)


class ObjectRow(BoxColumns, Base):
    __tablename__ = "objects"
    __table_args__ = (Index("ix_objects_label", "label"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    analysis_id: Mapped[int] = mapped_column(ForeignKey("analyses.id", ondelete="CASCADE"), nullable=False, index=True)
    class_id: Mapped[int] = mapped_column(Integer, nullable=False)
    label: Mapped[str] = mapped_column(String(64), nullable=False)
    confidence: Mapped[float] = mapped_column(Float, nullable=False)


class FaceRow(BoxColumns, Base):
    __tablename__ = "faces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    analysis_id: Mapped[int] = mapped_column(ForeignKey("analyses.id", ondelete="CASCADE"), nullable=False, index=True)
    confidence: Mapped[float] = mapped_column(Float, nullable=False)
    landmarks: Mapped[list] = mapped_column(JSON, nullable=False)  # [[x, y] * 5], LANDMARK_NAMES order


class RenderRow(Base):
    __tablename__ = "renders"
    __table_args__ = (UniqueConstraint("analysis_id", "kind", name="uq_render_analysis_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    analysis_id: Mapped[int] = mapped_column(ForeignKey("analyses.id", ondelete="CASCADE"), nullable=False, index=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # objects | faces
    blob_key: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    content_type: Mapped[str] = mapped_column(String(64), nullable=False)


class BatchRow(Base):
    """Jobs submitted together (a multi-photo upload, a folder, an S3 prefix): progress is counted over its jobs."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, nullable=False)


class JobRow(Base):
    """One queued analysis, shared by every process: whoever runs it (a Celery worker or an in-process thread)
    records its state here, so any API process can answer for it."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(16), nullable=False, index=True)  # queued | running | done | failed
    source: Mapped[str] = mapped_column(String(16), nullable=False)
    name: Mapped[str | None] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Text)  # http(s):// or s3://bucket/key, fetched by the worker
    input_key: Mapped[str | None] = mapped_column(String(255), index=True)  # a staged upload, until the job ends
    options: Mapped[dict] = mapped_column(JSON, nullable=False)
    sha256: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    error_status: Mapped[int | None] = mapped_column(Integer)  # rows before 0009: the HTTP status it meant
    error_kind: Mapped[str | None] = mapped_column(String(40))  # the error's class name (InvalidImageError)
    cached: Mapped[bool | None] = mapped_column(Boolean)  # done: found in history rather than analysed now
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    worker: Mapped[str | None] = mapped_column(String(96))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: when a runner (or the in-process queue holding it) last vouched for it: a lapsed lease sends it again
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    #: photo (an analysis), or video-chunk (frames of a stored clip, ``spec`` says which): rows before 0012, photo
    kind: Mapped[str] = mapped_column(String(16), nullable=False, default="photo", server_default="photo")
    spec: Mapped[dict | None] = mapped_column(JSON)


class LogRow(Base):
    """Recent log lines of every process (workers included), so the System page shows what the workers say."""

    __tablename__ = "log_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, nullable=False, index=True)
    process: Mapped[str] = mapped_column(String(96), nullable=False)
    line: Mapped[str] = mapped_column(Text, nullable=False)


class EmbeddingRow(Base):
    """An image's features as one classifier sees them (pooled, unit length, float16 bytes): similar-photo search.
    Rows only ever get added or removed, so a larger id than any seen means new rows."""

    __tablename__ = "embeddings"
    __table_args__ = (UniqueConstraint("image_id", "model", name="uq_embedding_image_model"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), nullable=False, index=True)
    model: Mapped[str] = mapped_column(String(64), nullable=False)
    vector: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class BoardRow(Base):
    """A class board: a teacher's session that students' phones send photos to."""

    __tablename__ = "boards"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    title: Mapped[str] = mapped_column(String(120), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, nullable=False)


class BoardPhotoRow(Base):
    """One student's photo on a board (its analysis is stored like every other; this row places it on the board)."""

    __tablename__ = "board_photos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    board_id: Mapped[str] = mapped_column(ForeignKey("boards.id", ondelete="CASCADE"), nullable=False, index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), nullable=False, index=True)
    phone: Mapped[str] = mapped_column(String(64), nullable=False)  # which phone sent it (limits, its own list)
    #: the client address it came from (None on this machine itself): limits count by it too
    address: Mapped[str | None] = mapped_column(String(64), index=True)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, nullable=False, index=True)


class BoardMarkRow(Base):
    """A student's verdict on a photo's result: a false or duplicate detection, or a missed object."""

    __tablename__ = "board_marks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("board_photos.id", ondelete="CASCADE"), nullable=False, index=True)
    task: Mapped[str] = mapped_column(String(16), nullable=False)  # objects | faces | labels
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # false | duplicate | missed
    what: Mapped[str | None] = mapped_column(String(120))  # the detection marked ("person 31 %"), if any
    #: objects: the box marked ([x1, y1, x2, y2], the photo's pixels) and its class: a false or duplicate box, or
    #: the one a student drew around what was missed. Marks from before: none
    box: Mapped[list | None] = mapped_column(JSON)
    category: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, nullable=False)


class DatasetRow(Base):
    """Labelled photos to measure models on (``picmetric datasets add``): the truth lives in ``DatasetPhotoRow``."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    task: Mapped[str] = mapped_column(String(16), nullable=False)  # objects | labels
    format: Mapped[str] = mapped_column(String(16), nullable=False)  # coco | yolo | voc | imagefolder | board
    categories: Mapped[list] = mapped_column(JSON, nullable=False)  # [[the dataset's own id, name], ...]
    synonyms: Mapped[dict] = mapped_column(JSON, nullable=False)  # dataset name -> a model's class name
    notes: Mapped[list] = mapped_column(JSON, nullable=False)  # what was noticed on import, not fatal
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, nullable=False)


class DatasetPhotoRow(Base):
    """A photo of a dataset (stored like any other image) with its truth: boxes, or a label."""

    __tablename__ = "dataset_photos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False, index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), nullable=False, index=True)
    file_name: Mapped[str] = mapped_column(Text, nullable=False)
    source_id: Mapped[int] = mapped_column(BigInteger, nullable=False)  # the dataset's own id (COCO's image id)
    label: Mapped[str | None] = mapped_column(String(64))
    #: [[category index, x1, y1, x2, y2, crowd 0/1, COCO area or null], ...] in the photo's pixels
    boxes: Mapped[list] = mapped_column(JSON, nullable=False)


class VideoRow(Base):
    """A stored clip (content-addressed like a photo: one row per sha256), with its header's facts."""

    __tablename__ = "videos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    container: Mapped[str] = mapped_column(String(32), nullable=False)
    codec: Mapped[str] = mapped_column(String(32), nullable=False)
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    fps: Mapped[float] = mapped_column(Float, nullable=False)
    frames: Mapped[int] = mapped_column(Integer, nullable=False)
    duration_s: Mapped[float] = mapped_column(Float, nullable=False)
    rotation: Mapped[int] = mapped_column(Integer, nullable=False)
    source: Mapped[str] = mapped_column(String(16), nullable=False)
    original_name: Mapped[str | None] = mapped_column(Text)
    blob_key: Mapped[str] = mapped_column(String(255), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, nullable=False, index=True)


class VideoAnalysisRow(Base):
    """A clip analysed with some options: its chunks are jobs; the last one to finish stitches them and keeps the
    result (JSON) and the annotated clip as blobs."""

    __tablename__ = "video_analyses"
    __table_args__ = (UniqueConstraint("video_id", "options_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    video_id: Mapped[int] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"), nullable=False, index=True)
    options_key: Mapped[str] = mapped_column(String(64), nullable=False)
    options: Mapped[dict] = mapped_column(JSON, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)  # running | merging | done | failed
    chunks: Mapped[int] = mapped_column(Integer, nullable=False)
    batch_id: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    result_key: Mapped[str | None] = mapped_column(String(255))
    clip_key: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class VideoChunkRow(Base):
    """One chunk's progress and, once analysed, its tracked boxes (a blob)."""

    __tablename__ = "video_chunks"
    __table_args__ = (UniqueConstraint("analysis_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    analysis_id: Mapped[int] = mapped_column(
        ForeignKey("video_analyses.id", ondelete="CASCADE"), nullable=False, index=True
    )
    index: Mapped[int] = mapped_column(Integer, nullable=False)
    frames_done: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    frames_total: Mapped[int] = mapped_column(Integer, nullable=False)
    result_key: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, nullable=False)
