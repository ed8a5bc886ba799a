"""The repository: every analysis stored once, found again by image hash, browsable and deletable.

Guarantees (see tests/test_storage.py):
* an image with the same options is analysed once, also when several threads or processes submit it at the same
  time: a unique (image, options) row is claimed before the models run, and in-process callers queue on a lock;
* blobs are written before the rows that point to them, and rows are removed before their blobs, so no row ever
  points to a missing blob; blobs this call created are removed again when the database write fails
  (``sweep_orphans`` removes any that a crash left behind);
* a failed analysis is recorded with its error, then reported; the next submission retries it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from PIL import Image
from sqlalchemy import Engine, delete, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from ..annotate import CONTENT_TYPES, encode_image
from ..errors import PicMetricError
from ..intake import LoadedImage, load_image
from ..models.detector import coco_class_names
from ..pipeline import Analysis, AnalysisOptions, Analyzer, TaskCallback, default_analyzer
from ..results import Classification, Detections, Faces
from ..settings import Settings, get_settings
from .blobs import FORMAT_CONTENT_TYPES, BlobStore, StorageError, blob_store_from_settings, original_key, render_key
from .db import make_engine, upgrade
from .schema import AnalysisRow, FaceRow, ImageRow, LabelRow, ObjectRow, RenderRow

logger = logging.getLogger(__name__)
THUMBNAIL_SIDE = 256
#: a blob this young may belong to an analysis still in flight: sweeps keep it
SWEEP_GRACE_S = 20 * 60.0


class DatabaseError(PicMetricError):
    """The database could not be reached or refused a write."""

    http_status = 503


class ImageDeletedError(PicMetricError):
    """The image was deleted while this call was analysing it: nothing of it is kept; sending it again works."""

    http_status = 409


class AnalysisFailedError(PicMetricError):
    """The models could not analyse this image; the failure is recorded in history."""

    http_status = 422


@dataclass
class StoredAnalysis:
    """An analysis as stored: results, where its images live, and whether it was computed just now."""

    id: int
    analysis: Analysis
    status: str
    error: str | None
    cached: bool
    blob_keys: dict[str, str]  # original, objects, faces, thumbnail -> key
    urls: dict[str, str | None] = field(default_factory=dict)  # same kinds -> browser URL (None: served by us)

    @property
    def sha256(self) -> str:
        return self.analysis.sha256


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


@dataclass(frozen=True)
class HistoryItem:
    sha256: str
    md5: str
    name: str | None
    source: str
    format: str
    width: int
    height: int
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


def _options_key(options: AnalysisOptions) -> str:
    return hashlib.sha256(options.cache_key.encode()).hexdigest()


def _substring_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, case-insensitively; ``%``, ``_`` and ``\\`` in it match only
    themselves (escaped with ``\\``)."""
    escaped = text.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Repository:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        engine: Engine | None = None,
        blobs: BlobStore | None = None,
        analyzer: Analyzer | None = None,
        migrate: bool = True,
    ) -> None:
        self.settings = settings or get_settings()
        self.engine = engine or make_engine(self.settings.resolved_database_url)
        self.blobs = blobs or blob_store_from_settings(self.settings)
        if blobs is None and self.settings.s3_create_bucket:
            try:
                self.blobs.ensure_bucket()  # a fresh deployment: the bucket is created, not reported missing
            except StorageError as exc:  # unreachable now: health() and every store call say so
                logger.warning("object storage not ready at start: %s", exc)
        self.analyzer = analyzer or default_analyzer()
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._key_locks: weakref.WeakValueDictionary[tuple, threading.Lock] = weakref.WeakValueDictionary()
        self._key_locks_guard = threading.Lock()
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:96]
        if migrate:
            with self._db_errors("prepare the database"):
                upgrade(self.engine)

    # -- plumbing ----------------------------------------------------------------------------------------------

    @contextmanager
    def _db_errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            raise DatabaseError(f"the database could not {action} ({exc.__class__.__name__})") from None

    @contextmanager
    def _session(self, action: str) -> Iterator[Session]:
        with self._db_errors(action), self._sessions() as session, session.begin():
            yield session

    def _lock_for(self, key: tuple) -> threading.Lock:
        with self._key_locks_guard:
            lock = self._key_locks.get(key)
            if lock is None:
                lock = threading.Lock()
                self._key_locks[key] = lock
            return lock

    def _insert(self, table):
        return (postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert)(table)

    # -- submit --------------------------------------------------------------------------------------------------

    def submit(
        self,
        data: bytes | LoadedImage,
        *,
        source: str = "upload",
        name: str | None = None,
        options: AnalysisOptions | None = None,
        on_task_done: TaskCallback | None = None,
    ) -> StoredAnalysis:
        """Store and analyse an image, or return the stored analysis when this image with these options exists.
        ``on_task_done`` reports each model as it finishes (not called for a stored analysis)."""
        image = (
            data
            if isinstance(data, LoadedImage)
            else load_image(data, settings=self.settings, origin=source, name=name)
        )
        options = options or AnalysisOptions()
        options_key = _options_key(options)
        lock = self._lock_for((image.sha256, options_key))
        with lock:
            stored = self._find(image.sha256, options_key)
            if stored is not None and stored.status == "done":
                logger.info("%s %s: found in history", image.sha256[:12], image.name or "")
                return stored
            return self._analyse_and_store(image, options, options_key, on_task_done)

    def _analyse_and_store(
        self, image: LoadedImage, options: AnalysisOptions, options_key: str, on_task_done: TaskCallback | None
    ) -> StoredAnalysis:
        created_blobs: list[str] = []

        def put(key: str, data: bytes, content_type: str) -> None:
            if not self.blobs.exists(key):
                self.blobs.put(key, data, content_type)
                created_blobs.append(key)

        content_type = FORMAT_CONTENT_TYPES.get(image.format, "application/octet-stream")
        image_key = original_key(image.sha256, content_type)
        analysis_id: int | None = None
        image_id: int | None = None
        try:
            put(image_key, image.data, content_type)  # a storage failure stops here, before any row exists
            image_id = self._ensure_image_row(image, image_key, content_type)
            analysis_id = self._claim(image_id, options, options_key)
            while analysis_id is None:  # another process holds a live claim: wait for its result
                stored = self._wait_for(image.sha256, options_key)
                if stored is not None:
                    return stored
                analysis_id = self._claim(image_id, options, options_key)  # its holder died: take it over
            try:
                with self._heartbeat(analysis_id):
                    analysis = self.analyzer.analyze(image, options, on_task_done=on_task_done)
            except PicMetricError as exc:
                logger.warning("%s: analysis failed: %s", image.sha256[:12], exc)
                self._record_failure(analysis_id, str(exc))
                analysis_id = None
                raise AnalysisFailedError(f"the analysis failed: {exc}") from None
            except Exception as exc:  # a model crash must still be recorded, and reported without a trace
                logger.exception("%s: analysis crashed", image.sha256[:12])
                self._record_failure(analysis_id, f"{exc.__class__.__name__}: {exc}")
                analysis_id = None
                raise AnalysisFailedError(f"the analysis failed ({exc.__class__.__name__})") from None
            render_keys = {}
            for kind, render in {**analysis.renders, "thumbnail": _thumbnail(image)}.items():
                content = CONTENT_TYPES[options.render_format if kind != "thumbnail" else "webp"]
                key = render_key(render, content)
                put(key, render, content)
                render_keys[kind] = (key, content)
            try:
                self._complete(analysis_id, analysis, render_keys)
            except IntegrityError:  # the image (and our claim with it) was deleted while the models ran
                raise ImageDeletedError(
                    "the image was deleted while it was being analysed; send it again to analyse it anew"
                ) from None
            analysis_id = None
        except BaseException as exc:
            logger.warning("%s: not stored (%s)", image.sha256[:12], exc)
            self._undo(analysis_id, image_id, created_blobs)
            raise
        logger.info(
            "%s %s: analysed in %.0f ms and stored", image.sha256[:12], image.name or "", analysis.timings_ms["total"]
        )
        stored = self._find(image.sha256, options_key)
        assert stored is not None
        stored.cached = False
        return stored

    def _ensure_image_row(self, image: LoadedImage, key: str, content_type: str) -> int:
        with self._session("store the image") as session:
            session.execute(
                self._insert(ImageRow)
                .values(
                    sha256=image.sha256,
                    md5=image.md5,
                    size_bytes=len(image.data),
                    format=image.format,
                    width=image.width,
                    height=image.height,
                    source=image.source,
                    original_name=image.name,
                    blob_key=key,
                    content_type=content_type,
                    created_at=datetime.now(UTC),
                )  # fmt: skip
                .on_conflict_do_nothing(index_elements=["sha256"])
            )
            image_id = session.scalar(select(ImageRow.id).where(ImageRow.sha256 == image.sha256))
            assert image_id is not None, "the row exists: inserted or already there"
            return image_id

    def _claim(self, image_id: int, options: AnalysisOptions, options_key: str) -> int | None:
        """Insert the 'running' row that reserves this analysis; None when someone else holds a fresh claim."""
        for _ in range(3):
            try:
                with self._session("reserve the analysis") as session:
                    now = datetime.now(UTC)
                    row = AnalysisRow(
                        image_id=image_id, options_key=options_key, options=options.to_dict(), status="running",
                        model_versions={}, timings_ms={}, created_at=now, claimed_by=self._owner, heartbeat_at=now,
                    )  # fmt: skip
                    session.add(row)
                    session.flush()
                    return row.id
            except IntegrityError:
                with self._session("read the analysis") as session:
                    existing = session.scalar(
                        select(AnalysisRow).where(
                            AnalysisRow.image_id == image_id, AnalysisRow.options_key == options_key
                        )
                    )
                    if existing is None:
                        continue
                    if existing.status == "done" or (existing.status == "running" and not self._lapsed(existing)):
                        return None
                    if existing.status == "running":
                        logger.warning("%s: taking over a claim whose holder stopped (%s)", options_key[:12],
                                       existing.claimed_by)  # fmt: skip
                    session.delete(existing)  # failed earlier, or its holder died: retry it
        raise DatabaseError("could not reserve the analysis; please retry")

    def _lapsed(self, row: AnalysisRow) -> bool:
        """A running claim whose holder has not renewed it within the lease: the holder died or lost the database."""
        last = _utc(row.heartbeat_at or row.created_at)
        return last < datetime.now(UTC) - timedelta(seconds=self.settings.claim_lease_s)

    @contextmanager
    def _heartbeat(self, analysis_id: int) -> Iterator[None]:
        """Renew this call's claim while the models run, so other processes wait for it rather than retake it."""
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.settings.claim_lease_s / 4):
                # database away: the renewal fails and the lease lapses, as it should
                with contextlib.suppress(PicMetricError), self._session("renew the claim") as session:
                    session.execute(
                        update(AnalysisRow)
                        .where(AnalysisRow.id == analysis_id, AnalysisRow.status == "running")
                        .values(heartbeat_at=datetime.now(UTC))
                    )

        beat = threading.Thread(target=renew, name="picmetric-claim", daemon=True)
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join()

    def _wait_for(self, sha256: str, options_key: str, timeout_s: float = 120.0) -> StoredAnalysis | None:
        """The result another holder is producing; None as soon as its claim lapses (the caller takes it over)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._session("read the claim") as session:
                row = session.scalar(
                    select(AnalysisRow).join(ImageRow).where(
                        ImageRow.sha256 == sha256, AnalysisRow.options_key == options_key
                    )
                )  # fmt: skip
                if row is None or (row.status == "running" and self._lapsed(row)):
                    return None
                status, error = row.status, row.error
            if status == "done":
                stored = self._find(sha256, options_key)
                if stored is not None:
                    return stored
            if status == "failed":
                raise AnalysisFailedError(f"the analysis failed: {error}")
            time.sleep(0.05)
        raise AnalysisFailedError("another worker is still analysing this image; try again shortly")

    def _record_failure(self, analysis_id: int, error: str) -> None:
        with self._session("record the failure") as session:
            session.execute(
                update(AnalysisRow).where(AnalysisRow.id == analysis_id).values(status="failed", error=error)
            )

    def _complete(self, analysis_id: int, analysis: Analysis, render_keys: dict[str, tuple[str, str]]) -> None:
        with self._session("store the results") as session:
            c, d, f = analysis.classification, analysis.detections, analysis.faces
            if c is not None:
                session.add_all(
                    LabelRow(
                        analysis_id=analysis_id,
                        rank=rank,
                        class_id=int(cid),
                        name=n,
                        confidence=float(p),
                        model=c.model,
                    )
                    for rank, (cid, n, p) in enumerate(zip(c.class_id, c.names, c.confidence, strict=True))
                )
            if d is not None:
                session.add_all(
                    ObjectRow(
                        analysis_id=analysis_id,
                        class_id=int(cid),
                        label=label,
                        confidence=float(p),
                        x1=float(b[0]),
                        y1=float(b[1]),
                        x2=float(b[2]),
                        y2=float(b[3]),
                    )  # fmt: skip
                    for b, p, cid, label in zip(d.xyxy, d.confidence, d.class_id, d.labels, strict=True)
                )
            if f is not None:
                session.add_all(
                    FaceRow(
                        analysis_id=analysis_id,
                        confidence=float(p),
                        x1=float(b[0]),
                        y1=float(b[1]),
                        x2=float(b[2]),
                        y2=float(b[3]),
                        landmarks=[[float(x), float(y)] for x, y in points],
                    )  # fmt: skip
                    for b, p, points in zip(f.xyxy, f.confidence, f.landmarks, strict=True)
                )
            session.add_all(
                RenderRow(analysis_id=analysis_id, kind=kind, blob_key=key, content_type=ct)
                for kind, (key, ct) in render_keys.items()
            )
            top = c.top if c is not None else None
            session.execute(
                update(AnalysisRow)
                .where(AnalysisRow.id == analysis_id)
                .values(
                    status="done",
                    error=None,
                    model_versions=analysis.model_versions,
                    timings_ms={k: round(v, 2) for k, v in analysis.timings_ms.items()},
                    top_label=top[0] if top else None,
                    top_confidence=top[1] if top else None,
                    object_count=len(d) if d is not None else 0,
                    face_count=len(f) if f is not None else 0,
                )  # fmt: skip
            )

    def _undo(self, analysis_id: int | None, image_id: int | None, created_blobs: list[str]) -> None:
        """Best effort after a failure: drop our claim, the image row if nothing else uses it, and the blobs this
        call created that no row references. Blobs are content-addressed, so another analysis of the same image in
        flight (other options) may be about to point to the very same original, thumbnail or render: then they are
        all kept. With the database unreachable, blobs are kept whenever a row of ours may still point to them.
        ``sweep_orphans`` removes what stays unused."""
        referenced: set[str] | None = None
        try:
            with self._session("undo the reservation") as session:
                if analysis_id is not None:
                    session.execute(delete(AnalysisRow).where(AnalysisRow.id == analysis_id))
                if image_id is not None:
                    session.execute(
                        delete(ImageRow).where(
                            ImageRow.id == image_id, ~exists().where(AnalysisRow.image_id == ImageRow.id)
                        )
                    )
                session.flush()
                referenced = self._referenced_keys(session, among=created_blobs)
                if image_id is not None and session.scalar(
                    select(exists().where(AnalysisRow.image_id == image_id, AnalysisRow.status == "running"))
                ):
                    referenced = set(created_blobs)  # shared with an analysis still in flight
        except (PicMetricError, SQLAlchemyError):
            if image_id is not None:
                return  # database down after our image row was written: a stale claim is retaken later
            referenced = set()  # no row of ours exists, so none can point to these blobs
        for key in created_blobs:
            if key in referenced:
                continue
            with contextlib.suppress(PicMetricError):  # object store down: sweep_orphans removes it later
                self.blobs.delete(key)

    # -- reading -------------------------------------------------------------------------------------------------

    def _find(self, sha256: str, options_key: str | None = None) -> StoredAnalysis | None:
        with self._session("read the analysis") as session:
            query = (
                select(AnalysisRow)
                .join(ImageRow)
                .where(ImageRow.sha256 == sha256)
                .options(
                    selectinload(AnalysisRow.image),
                    selectinload(AnalysisRow.labels),
                    selectinload(AnalysisRow.objects),
                    selectinload(AnalysisRow.faces),
                    selectinload(AnalysisRow.renders),
                )  # fmt: skip
                .order_by((AnalysisRow.status == "done").desc(), AnalysisRow.created_at.desc(), AnalysisRow.id.desc())
            )
            if options_key is not None:
                query = query.where(AnalysisRow.options_key == options_key)
            row = session.scalars(query.limit(1)).first()
            return self._to_stored(row) if row is not None else None

    def _to_stored(self, row: AnalysisRow) -> StoredAnalysis:
        image = row.image
        options = AnalysisOptions.from_stored(row.options)
        tasks = set(options.tasks)
        classification = detections = faces = None
        if "labels" in tasks and row.status == "done":
            classification = Classification(
                np.array([r.class_id for r in row.labels], np.int64),
                np.array([r.confidence for r in row.labels], np.float32),
                [r.name for r in row.labels],
                model=row.labels[0].model if row.labels else options.classifier,
            )
        if "objects" in tasks and row.status == "done":
            detections = Detections(
                np.array([[o.x1, o.y1, o.x2, o.y2] for o in row.objects], np.float32).reshape(-1, 4),
                np.array([o.confidence for o in row.objects], np.float32),
                np.array([o.class_id for o in row.objects], np.int64),
                coco_class_names(),
            )
        if "faces" in tasks and row.status == "done":
            faces = Faces(
                np.array([[f.x1, f.y1, f.x2, f.y2] for f in row.faces], np.float32).reshape(-1, 4),
                np.array([f.confidence for f in row.faces], np.float32),
                np.array([f.landmarks for f in row.faces], np.float32).reshape(-1, 5, 2),
            )
        analysis = Analysis(
            sha256=image.sha256, md5=image.md5, format=image.format, width=image.width, height=image.height,
            source=image.source, name=image.original_name, options=options, classification=classification,
            detections=detections, faces=faces, timings_ms=dict(row.timings_ms or {}),
            model_versions=dict(row.model_versions or {}), created_at=_utc(row.created_at),
        )  # fmt: skip
        keys = {"original": image.blob_key} | {r.kind: r.blob_key for r in row.renders}
        return StoredAnalysis(
            id=row.id, analysis=analysis, status=row.status, error=row.error, cached=True, blob_keys=keys,
            urls={kind: self.blobs.url(key) for kind, key in keys.items()},
        )  # fmt: skip

    def get(self, sha256: str, options: AnalysisOptions | None = None) -> StoredAnalysis | None:
        """The stored analysis of this image (with these options, or the newest successful one)."""
        return self._find(sha256.lower(), _options_key(options) if options else None)

    def find_by_md5(self, md5: str) -> StoredAnalysis | None:
        with self._session("read the image") as session:
            sha = session.scalar(select(ImageRow.sha256).where(ImageRow.md5 == md5.lower()).limit(1))
        return self._find(sha) if sha else None

    def blob(self, key: str) -> bytes:
        return self.blobs.get(key)

    def image_bytes(self, sha256: str, kind: str = "original") -> tuple[bytes, str] | None:
        """Bytes and content type of an image's original or one of its renders (newest analysis)."""
        found = self.image_blob(sha256, kind)
        return (self.blobs.get(found[0]), found[1]) if found else None

    def image_blob(self, sha256: str, kind: str = "original") -> tuple[str, str] | None:
        """Content-addressed blob key and content type of an image's original or one of its renders (newest
        analysis: a re-analysis with other options changes which render that is)."""
        with self._session("read the image") as session:
            if kind == "original":
                row = session.execute(
                    select(ImageRow.blob_key, ImageRow.content_type).where(ImageRow.sha256 == sha256)
                ).first()
            else:
                row = session.execute(
                    select(RenderRow.blob_key, RenderRow.content_type)
                    .join(AnalysisRow)
                    .join(ImageRow)
                    .where(ImageRow.sha256 == sha256, RenderRow.kind == kind)
                    .order_by(AnalysisRow.created_at.desc())
                    .limit(1)
                ).first()
        return (row[0], row[1]) if row else None

    def history(self, filters: HistoryFilter | None = None, page: int = 1, page_size: int = 50) -> HistoryPage:
        filters = filters or HistoryFilter()
        page, page_size = min(max(1, page), 1_000_000), min(max(1, page_size), 500)  # within any database's integer
        conditions = []
        if filters.text:
            pattern = _substring_pattern(filters.text)
            conditions.append(
                or_(
                    exists().where(
                        LabelRow.analysis_id == AnalysisRow.id, func.lower(LabelRow.name).like(pattern, escape="\\")
                    ),
                    exists().where(
                        ObjectRow.analysis_id == AnalysisRow.id, func.lower(ObjectRow.label).like(pattern, escape="\\")
                    ),
                )
            )
        if filters.label:
            pattern = _substring_pattern(filters.label)
            conditions.append(
                exists().where(
                    LabelRow.analysis_id == AnalysisRow.id, func.lower(LabelRow.name).like(pattern, escape="\\")
                )
            )
        if filters.object_class:
            conditions.append(
                exists().where(
                    ObjectRow.analysis_id == AnalysisRow.id,
                    func.lower(ObjectRow.label) == filters.object_class.strip().lower(),
                )
            )
        if filters.min_faces is not None:
            conditions.append(AnalysisRow.face_count >= filters.min_faces)
        if filters.date_from is not None:
            conditions.append(AnalysisRow.created_at >= _utc(filters.date_from))
        if filters.date_to is not None:
            conditions.append(AnalysisRow.created_at <= _utc(filters.date_to))
        if filters.source:
            conditions.append(ImageRow.source == filters.source)
        if filters.status:
            conditions.append(AnalysisRow.status == filters.status)
        else:
            conditions.append(AnalysisRow.status != "running")
        with self._session("read the history") as session:
            base = select(AnalysisRow.id).join(ImageRow).where(*conditions)
            total = session.scalar(select(func.count()).select_from(base.subquery()))
            rows = session.execute(
                select(AnalysisRow, ImageRow)
                .join(ImageRow)
                .where(*conditions)
                .order_by(AnalysisRow.created_at.desc(), AnalysisRow.id.desc())
                .offset((page - 1) * page_size)
                .limit(page_size)
            ).all()
            ids = [a.id for a, _ in rows]
            classes: dict[int, list[str]] = {i: [] for i in ids}
            for analysis_id, label in session.execute(
                select(ObjectRow.analysis_id, ObjectRow.label).where(ObjectRow.analysis_id.in_(ids)).distinct()
            ):
                classes[analysis_id].append(label)
            thumbs: dict[int, str] = dict(
                session.execute(  # type: ignore[arg-type]  # (analysis_id, blob_key) rows
                    select(RenderRow.analysis_id, RenderRow.blob_key).where(
                        RenderRow.analysis_id.in_(ids), RenderRow.kind == "thumbnail"
                    )
                ).all()
            )
        items = [
            HistoryItem(
                sha256=img.sha256,
                md5=img.md5,
                name=img.original_name,
                source=img.source,
                format=img.format,
                width=img.width,
                height=img.height,
                created_at=_utc(a.created_at),
                status=a.status,
                error=a.error,
                top_label=a.top_label,
                top_confidence=a.top_confidence,
                object_classes=sorted(classes[a.id]),
                object_count=a.object_count,
                face_count=a.face_count,
                total_ms=(a.timings_ms or {}).get("total"),
                thumbnail_key=thumbs.get(a.id),
            )  # fmt: skip
            for a, img in rows
        ]
        return HistoryPage(items, int(total or 0), page, page_size)

    # -- deleting ------------------------------------------------------------------------------------------------

    def _referenced_keys(self, session: Session, among: list[str] | None = None) -> set[str]:
        """Blob keys that rows point to (all of them, or only those of ``among``)."""
        found = set()
        for column in (ImageRow.blob_key, RenderRow.blob_key):
            query = select(column) if among is None else select(column).where(column.in_(among))
            found |= set(session.scalars(query))
        return found

    def delete(self, sha256: str) -> bool:
        """Remove an image, all its analyses and every blob no other row still uses. False when unknown."""
        with self._session("delete the image") as session:
            image = session.scalar(select(ImageRow).where(ImageRow.sha256 == sha256.lower()))
            if image is None:
                return False
            keys = {image.blob_key} | set(
                session.scalars(select(RenderRow.blob_key).join(AnalysisRow).where(AnalysisRow.image_id == image.id))
            )
            session.delete(image)
            session.flush()
            logger.info("%s: deleted", sha256[:12])
            keys -= self._referenced_keys(session, among=list(keys))
        for key in keys:  # rows are gone first: nothing can point to a blob we are about to remove
            self.blobs.delete(key)
        return True

    def reset(self) -> None:
        """Remove everything: all rows, then all blobs (the seed's /reset)."""
        logger.warning("reset: deleting every stored analysis and image")
        with self._session("reset the database") as session:
            for table in (RenderRow, FaceRow, ObjectRow, LabelRow, AnalysisRow, ImageRow):
                session.execute(delete(table))
        for key in self.blobs.keys():  # noqa: SIM118 (a blob store's listing, not a dict)
            self.blobs.delete(key)

    def sweep_orphans(self, min_age_s: float | None = None) -> list[str]:
        """Delete blobs that no row references (left by a crash between a blob write and its row). Blobs younger
        than an analysis in flight could be are kept: an upload writes its blobs before the rows that point to
        them, so a sweep running meanwhile would otherwise delete them."""
        grace = SWEEP_GRACE_S if min_age_s is None else min_age_s
        candidates = self.blobs.keys(older_than_s=grace)  # listed first: a row written after this is still seen
        with self._session("list stored images") as session:
            referenced = self._referenced_keys(session)
        orphans = [key for key in candidates if key not in referenced]
        for key in orphans:
            self.blobs.delete(key)
        return orphans

    # -- status --------------------------------------------------------------------------------------------------

    def stats(self) -> dict[str, int | float]:
        with self._session("count the history") as session:
            count = lambda q: int(session.scalar(q) or 0)  # noqa: E731
            return {
                "images": count(select(func.count(ImageRow.id))),
                "analyses": count(select(func.count(AnalysisRow.id)).where(AnalysisRow.status == "done")),
                "failed": count(select(func.count(AnalysisRow.id)).where(AnalysisRow.status == "failed")),
                "labels": count(select(func.count(LabelRow.id))),
                "objects": count(select(func.count(ObjectRow.id))),
                "faces": count(select(func.count(FaceRow.id))),
                "original_bytes": count(select(func.sum(ImageRow.size_bytes))),
            }

    def health(self) -> dict[str, str]:
        """'ok' or the error message, for the database and the object store."""
        result = {}
        try:
            with self._session("answer") as session:
                session.execute(select(1))
            result["database"] = "ok"
        except PicMetricError as exc:
            result["database"] = str(exc)
        try:
            self.blobs.check()
            result["storage"] = "ok"
        except StorageError as exc:
            result["storage"] = str(exc)
        return result


def _thumbnail(image: LoadedImage) -> bytes:
    thumb = Image.fromarray(image.pixels)
    thumb.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BILINEAR)
    return encode_image(np.asarray(thumb), "webp")
