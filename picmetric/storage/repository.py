"""The repository: the persistence half of "analyse and keep". Rows (SQLAlchemy) and blobs (S3 or a folder);
it never runs a model: ``picmetric.service`` drives the steps below, and this module only stores, claims and reads.

Guarantees (see tests/test_storage.py):
* a unique (image, options) row is claimed before the models run; its holder renews a heartbeat, so a dead holder's
  claim is taken over within the lease (``claim``, ``claim_state``, ``heartbeat``);
* blobs are written before the rows that point to them, and rows are removed before their blobs, so no row ever
  points to a missing blob; ``undo`` removes what a failed call created unless a row or an analysis in flight
  uses it; ``sweep_orphans`` removes what a crash left behind, never a blob young enough to be in flight;
* jobs (one queued analysis each) and batches (jobs submitted together) are rows too, shared by every process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import Engine, delete, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from ..errors import DatabaseError, ImageDeletedError, PicMetricError
from ..results import Classification, Detections, Faces
from ..settings import Settings, get_settings
from .blobs import BlobStore, StorageError, blob_store_from_settings
from .db import make_engine, upgrade
from .schema import AnalysisRow, BatchRow, FaceRow, ImageRow, JobRow, LabelRow, LogRow, ObjectRow, RenderRow

logger = logging.getLogger(__name__)
#: a blob this young may belong to an analysis still in flight: sweeps keep it
SWEEP_GRACE_S = 20 * 60.0


ClaimState = Literal["missing", "running", "lapsed", "done", "failed"]
JOB_STATES = ("queued", "running", "done", "failed")


@dataclass(frozen=True)
class ImageInfo:
    """What is stored about an image itself, whichever analyses it has."""

    sha256: str
    md5: str
    size_bytes: int
    format: str
    width: int
    height: int
    source: str
    name: str | None


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
    image: ImageInfo
    labels: list[tuple[int, str, float, str]]  # class_id, name, confidence, model; by rank
    objects: list[tuple[tuple[float, float, float, float], float, int]]  # xyxy, confidence, class_id
    faces: list[tuple[tuple[float, float, float, float], float, list]]  # xyxy, confidence, 5 landmarks
    candidates: dict  # weaker boxes below the thresholds, as the service stored them ({} for older rows)
    blob_keys: dict[str, str]  # original, objects, faces, thumbnail -> key
    urls: dict[str, str | None] = field(default_factory=dict)  # same kinds -> browser URL (None: served by us)


@dataclass(frozen=True)
class JobRecord:
    """One queued analysis: its input (a staged upload or a URL), its state, and the image it turned out to be."""

    id: str
    batch_id: str | None
    state: str  # queued | running | done | failed
    source: str
    name: str | None
    url: str | None
    input_key: str | None
    options: dict
    sha256: str | None
    error: str | None
    error_status: int | None
    cached: bool | None
    attempts: int
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class NewJob:
    """A job to record: an upload staged under ``input_key``, or a URL (http(s) or s3://) a worker fetches."""

    source: str
    options: dict
    name: str | None = None
    url: str | None = None
    input_key: str | None = None


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
    options: dict = field(default_factory=dict)  # what the analysis ran with: tells apart analyses of one photo


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
        migrate: bool = True,
    ) -> None:
        self.settings = settings or get_settings()
        self.engine = engine or make_engine(self.settings.resolved_database_url, self.settings.db_timeout_s)
        self.blobs = blobs or blob_store_from_settings(self.settings)
        if blobs is None and self.settings.s3_create_bucket:
            try:
                self.blobs.ensure_bucket()  # a fresh deployment: the bucket is created, not reported missing
            except StorageError as exc:  # unreachable now: health() and every store call say so
                logger.warning("object storage not ready at start: %s", exc)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:96]
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

    def _insert(self, table):
        return (postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert)(table)

    # -- analyse and keep: the steps the service takes, each one transaction ---------------------------------

    def ensure_image(self, image: ImageInfo, key: str, content_type: str) -> int:
        """The image's row (inserted, or the one already there); its original blob must be stored first."""
        with self._session("store the image") as session:
            session.execute(
                self._insert(ImageRow)
                .values(
                    sha256=image.sha256,
                    md5=image.md5,
                    size_bytes=image.size_bytes,
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

    def claim(self, image_id: int, options_key: str, options: dict) -> int | None:
        """Insert the 'running' row that reserves this analysis; None when it is done or someone else holds a live
        claim. A failed analysis, or a claim whose holder stopped renewing it, is taken over."""
        for _ in range(3):
            try:
                with self._session("reserve the analysis") as session:
                    now = datetime.now(UTC)
                    row = AnalysisRow(
                        image_id=image_id, options_key=options_key, options=options, status="running",
                        model_versions={}, timings_ms={}, created_at=now, claimed_by=self.owner, heartbeat_at=now,
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

    def claim_state(self, sha256: str, options_key: str) -> tuple[ClaimState, str | None]:
        """Where an analysis stands, with its error when it failed; 'lapsed': running, but its holder stopped."""
        with self._session("read the claim") as session:
            row = session.scalar(
                select(AnalysisRow).join(ImageRow).where(
                    ImageRow.sha256 == sha256, AnalysisRow.options_key == options_key
                )
            )  # fmt: skip
            if row is None:
                return "missing", None
            if row.status == "running":
                return ("lapsed" if self._lapsed(row) else "running"), None
            return ("done" if row.status == "done" else "failed"), row.error

    def _lapsed(self, row: AnalysisRow) -> bool:
        """A running claim whose holder has not renewed it within the lease: the holder died or lost the database."""
        last = _utc(row.heartbeat_at or row.created_at)
        return last < datetime.now(UTC) - timedelta(seconds=self.settings.claim_lease_s)

    @contextmanager
    def heartbeat(self, analysis_id: int) -> Iterator[None]:
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

    def record_failure(self, analysis_id: int, error: str) -> None:
        with self._session("record the failure") as session:
            session.execute(
                update(AnalysisRow).where(AnalysisRow.id == analysis_id).values(status="failed", error=error)
            )

    def complete(
        self,
        analysis_id: int,
        results: tuple[Classification | None, Detections | None, Faces | None],
        model_versions: dict[str, str],
        timings_ms: dict[str, float],
        render_keys: dict[str, tuple[str, str]],
        candidates: dict | None = None,
    ) -> None:
        """Store an analysis' results and renders and mark it done. ImageDeletedError: the image was deleted while
        the models ran (the claim went with it), so nothing is kept."""
        with _deleted_meanwhile(), self._session("store the results") as session:
            c, d, f = results
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
                    model_versions=model_versions,
                    timings_ms={k: round(v, 2) for k, v in timings_ms.items()},
                    candidates=candidates,
                    top_label=top[0] if top else None,
                    top_confidence=top[1] if top else None,
                    object_count=len(d) if d is not None else 0,
                    face_count=len(f) if f is not None else 0,
                )  # fmt: skip
            )

    def undo(self, analysis_id: int | None, image_id: int | None, created_blobs: list[str]) -> None:
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

    def find(self, sha256: str, options_key: str | None = None) -> AnalysisRecord | None:
        """The stored analysis of an image with these options (their key), or its newest successful one."""
        with self._session("read the analysis") as session:
            query = (
                select(AnalysisRow)
                .join(ImageRow)
                .where(ImageRow.sha256 == sha256.lower())
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
            return self._to_record(row) if row is not None else None

    def _to_record(self, row: AnalysisRow) -> AnalysisRecord:
        image = row.image
        done = row.status == "done"
        keys = {"original": image.blob_key} | {r.kind: r.blob_key for r in row.renders}
        return AnalysisRecord(
            id=row.id, status=row.status, error=row.error, created_at=_utc(row.created_at), options=dict(row.options),
            model_versions=dict(row.model_versions or {}), timings_ms=dict(row.timings_ms or {}),
            image=ImageInfo(
                sha256=image.sha256, md5=image.md5, size_bytes=image.size_bytes, format=image.format,
                width=image.width, height=image.height, source=image.source, name=image.original_name,
            ),
            labels=[(r.class_id, r.name, r.confidence, r.model) for r in row.labels] if done else [],
            objects=[((o.x1, o.y1, o.x2, o.y2), o.confidence, o.class_id) for o in row.objects] if done else [],
            faces=[((f.x1, f.y1, f.x2, f.y2), f.confidence, f.landmarks) for f in row.faces] if done else [],
            candidates=dict(row.candidates or {}) if done else {}, blob_keys=keys,
            urls={kind: self.blobs.url(key) for kind, key in keys.items()},
        )  # fmt: skip

    def resolve_image(self, text: str) -> str | None:
        """The sha256 of the image ``text`` names: its sha256, its md5 (the seed's hash), or a prefix of at least
        8 hex characters of either that only one image has. None when no image matches; a prefix several images
        share is refused with a message."""
        key = text.strip().lower()
        if not 8 <= len(key) <= 64 or any(c not in "0123456789abcdef" for c in key):
            return None
        with self._session("find the image") as session:
            if len(key) == 64:
                return session.scalar(select(ImageRow.sha256).where(ImageRow.sha256 == key))
            if len(key) == 32:
                found = session.scalar(select(ImageRow.sha256).where(ImageRow.md5 == key).limit(1))
                if found:
                    return found
            pattern = key + "%"
            matches = list(
                session.scalars(
                    select(ImageRow.sha256)
                    .where(or_(ImageRow.sha256.like(pattern), ImageRow.md5.like(pattern)))
                    .limit(2)
                )
            )
        if len(matches) > 1:
            raise PicMetricError(f"{text!r} is the start of several images' hashes: give more characters")
        return matches[0] if matches else None

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
                options=dict(a.options or {}),
                thumbnail_key=thumbs.get(a.id),
            )  # fmt: skip
            for a, img in rows
        ]
        return HistoryPage(items, int(total or 0), page, page_size)

    # -- deleting ------------------------------------------------------------------------------------------------

    def _referenced_keys(self, session: Session, among: list[str] | None = None) -> set[str]:
        """Blob keys that rows point to (all of them, or only those of ``among``)."""
        found: set[str] = set()
        for column in (ImageRow.blob_key, RenderRow.blob_key, JobRow.input_key):
            query = select(column) if among is None else select(column).where(column.in_(among))
            found |= {key for key in session.scalars(query) if key is not None}
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
            for table in (RenderRow, FaceRow, ObjectRow, LabelRow, AnalysisRow, ImageRow, JobRow, BatchRow, LogRow):
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

    # -- jobs and batches ----------------------------------------------------------------------------------------

    def create_jobs(self, jobs: Sequence[NewJob], *, batch: bool) -> tuple[str | None, list[str]]:
        """Record queued jobs (in one batch when ``batch``) before any of them is sent to a queue, so a worker
        never receives a job it cannot find; their staged uploads are stored first (a job row never names a blob
        that is not there; a young blob without a row is kept by the sweep's grace period)."""
        batch_id = uuid.uuid4().hex if batch else None
        ids = [uuid.uuid4().hex for _ in jobs]
        now = datetime.now(UTC)
        with self._session("queue the jobs") as session:
            if batch_id is not None:
                session.add(BatchRow(id=batch_id, created_at=now))
                session.flush()
            session.add_all(
                JobRow(
                    id=job_id,
                    batch_id=batch_id,
                    state="queued",
                    source=job.source,
                    name=job.name,
                    url=job.url,
                    input_key=job.input_key,
                    options=job.options,
                    attempts=0,
                    created_at=now,
                    heartbeat_at=now,
                )  # fmt: skip
                for job_id, job in zip(ids, jobs, strict=True)
            )
        return batch_id, ids

    def job(self, job_id: str) -> JobRecord | None:
        with self._session("read the job") as session:
            row = session.get(JobRow, job_id)
            return _job_record(row) if row is not None else None

    def ended_jobs(self, job_ids: Collection[str]) -> set[str]:
        """Of these jobs, those that are done, failed or gone (a reset): one query for any number of waiters."""
        with self._session("read the jobs") as session:
            open_ = set(
                session.scalars(
                    select(JobRow.id).where(JobRow.id.in_(list(job_ids)), JobRow.state.in_(("queued", "running")))
                )
            )
        return set(job_ids) - open_

    def start_job(self, job_id: str, worker: str) -> JobRecord | None:
        """Take a job to run it on ``worker``: a queued one, a running one whose lease lapsed (its runner died), or
        one ``worker`` itself was running (a retry after an outage). None when someone else holds it, it is
        finished, or it is unknown (a reset): a duplicate message is dropped, never run twice at once."""
        now = datetime.now(UTC)
        with self._session("start the job") as session:
            row = session.get(JobRow, job_id, with_for_update=True)
            if row is None or row.state in ("done", "failed"):
                return None
            if row.state == "running" and row.worker != worker[:96] and not self._job_lapsed(row, now):
                return None
            row.state, row.worker, row.attempts = "running", worker[:96], row.attempts + 1
            row.started_at = row.heartbeat_at = now
            return _job_record(row)

    def _job_lapsed(self, row: JobRow, now: datetime) -> bool:
        last = _utc(row.heartbeat_at or row.created_at)
        return last < now - timedelta(seconds=self.settings.job_lease_s)

    def renew_jobs(self, job_ids: Collection[str]) -> None:
        """Vouch for jobs this process holds (queued in its memory, or running here): their leases stay live."""
        if not job_ids:
            return
        with self._session("renew the jobs") as session:
            session.execute(
                update(JobRow)
                .where(JobRow.id.in_(list(job_ids)), JobRow.state.in_(("queued", "running")))
                .values(heartbeat_at=datetime.now(UTC))
            )

    def release_job(self, job_id: str) -> None:
        """Put a job met by an outage back in the queue; the attempt is not counted (the runner did not fail)."""
        with self._session("release the job") as session:
            session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.state == "running")
                .values(state="queued", worker=None, attempts=JobRow.attempts - 1, heartbeat_at=datetime.now(UTC))
            )

    def reclaim_lapsed_jobs(self, *, queued: bool) -> list[tuple[str, bool]]:
        """Jobs nobody vouched for within the lease, taken back: a running one whose runner died goes back to the
        queue (or fails once it has been started ``job_max_attempts`` times), a queued one whose message or
        holder is gone (only with ``queued``) is renewed. Returns the jobs to send again, each with whether it
        fetches a URL (no staged upload). Each row is taken with
        a conditional update, so of several processes reclaiming at once exactly one gets each job."""
        now = datetime.now(UTC)
        cutoff = now - timedelta(seconds=self.settings.job_lease_s)
        states = ("queued", "running") if queued else ("running",)
        lapsed = JobRow.heartbeat_at < cutoff
        resend: list[tuple[str, bool]] = []
        staged: list[str] = []
        with self._session("reclaim lapsed jobs") as session:
            rows = session.execute(
                select(JobRow.id, JobRow.state, JobRow.attempts, JobRow.worker, JobRow.input_key)
                .where(JobRow.state.in_(states), lapsed)
                .order_by(JobRow.created_at)
                .limit(1000)
            ).all()
            for job_id, state, attempts, worker, input_key in rows:
                gave_up = state == "running" and attempts >= self.settings.job_max_attempts
                values: dict = {"heartbeat_at": now, "state": "queued", "worker": None}
                if gave_up:
                    values = {
                        "state": "failed", "error_status": 500, "input_key": None, "finished_at": now,
                        "error": f"the job was interrupted {attempts} times (its worker stopped; last {worker})",
                    }  # fmt: skip
                taken = session.execute(
                    update(JobRow).where(JobRow.id == job_id, JobRow.state == state, lapsed).values(**values)
                )
                if taken.rowcount != 1:  # type: ignore[attr-defined]  # another process reclaimed it first
                    continue
                if gave_up:
                    staged += [input_key] if input_key else []
                else:
                    resend.append((job_id, input_key is None))
        for key in staged:
            with contextlib.suppress(PicMetricError):
                self.blobs.delete(key)
        if rows:
            logger.warning("reclaimed %d lapsed job(s); sending %d again", len(rows), len(resend))
        return resend

    def finish_job(
        self,
        job_id: str,
        *,
        sha256: str | None,
        cached: bool | None = None,
        error: str | None = None,
        error_status: int | None = None,
    ) -> None:
        """Record a job's outcome and remove its staged upload (each job has its own)."""
        with self._session("record the job") as session:
            row = session.get(JobRow, job_id)
            if row is None:
                return
            staged = row.input_key
            row.state = "failed" if error else "done"
            row.sha256 = sha256 or row.sha256
            row.error, row.error_status, row.cached = error, error_status, cached
            row.input_key, row.finished_at = None, datetime.now(UTC)
        if staged is not None:
            with contextlib.suppress(PicMetricError):  # store away: the sweep removes it later
                self.blobs.delete(staged)

    def batch(self, batch_id: str) -> list[JobRecord] | None:
        """A batch's jobs in submission order; None when there is no such batch."""
        with self._session("read the batch") as session:
            if session.get(BatchRow, batch_id) is None:
                return None
            rows = session.scalars(select(JobRow).where(JobRow.batch_id == batch_id).order_by(JobRow.created_at))
            return [_job_record(row) for row in rows]

    def job_counts(self) -> dict[str, int]:
        """Jobs per state, over every batch and single job."""
        with self._session("count the jobs") as session:
            counts: dict[str, int] = {
                state: count
                for state, count in session.execute(select(JobRow.state, func.count()).group_by(JobRow.state))
            }
        return {state: int(counts.get(state, 0)) for state in JOB_STATES}

    # -- log lines of every process ------------------------------------------------------------------------------

    def add_log_lines(self, process: str, lines: Sequence[str], keep: int = 2000) -> None:
        """Keep log lines where every process can read them; only the newest ``keep`` stay."""
        if not lines:
            return
        now = datetime.now(UTC)
        with self._session("keep the log") as session:
            session.add_all(LogRow(created_at=now, process=process[:96], line=line) for line in lines)
            session.flush()
            newest = session.scalar(select(func.max(LogRow.id))) or 0
            session.execute(delete(LogRow).where(LogRow.id <= newest - keep))

    def log_lines(self, limit: int = 200) -> list[tuple[datetime, str, str]]:
        """The newest lines of every process, oldest first: (time, process, line)."""
        with self._session("read the log") as session:
            rows = session.execute(
                select(LogRow.created_at, LogRow.process, LogRow.line).order_by(LogRow.id.desc()).limit(limit)
            ).all()
        return [(_utc(created), process, line) for created, process, line in reversed(rows)]

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


@contextmanager
def _deleted_meanwhile() -> Iterator[None]:
    """A row of ours vanished under a write (a DELETE or reset ran meanwhile): say so, as a 409."""
    try:
        yield
    except IntegrityError:
        raise ImageDeletedError(
            "the image was deleted while it was being analysed; send it again to analyse it anew"
        ) from None


def _job_record(row: JobRow) -> JobRecord:
    return JobRecord(
        id=row.id, batch_id=row.batch_id, state=row.state, source=row.source, name=row.name, url=row.url,
        input_key=row.input_key, options=dict(row.options), sha256=row.sha256, error=row.error,
        error_status=row.error_status, cached=row.cached, attempts=row.attempts, worker=row.worker,
        created_at=_utc(row.created_at), started_at=_utc(row.started_at) if row.started_at else None,
        finished_at=_utc(row.finished_at) if row.finished_at else None,
    )  # fmt: skip
