"""Analyse and keep, the storage half: claims with a heartbeat, one results transaction, undo, and reading one
analysis or image back."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, exists, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import selectinload

from picmetric.core.results import Classification, Detections, Faces, ImageFacts
from picmetric.errors import DatabaseError, ImageDeletedError, PicMetricError
from picmetric.storage.base import StoreBase, _deleted_meanwhile
from picmetric.storage.records import AnalysisRecord, ClaimState, NewSignature, _utc
from picmetric.storage.schema import AnalysisRow, FaceRow, ImageRow, LabelRow, ObjectRow, RenderRow

logger = logging.getLogger(__name__)


class AnalysisStore(StoreBase):
    """The steps ``AnalysisService`` takes to analyse and keep, each one transaction, and reading them back."""

    # -- analyse and keep: the steps the service takes, each one transaction ---------------------------------

    def ensure_image(self, image: ImageFacts, key: str, content_type: str) -> int:
        """The image's row (inserted, or the one already there); its original blob must be stored first."""
        with self._statement("store the image") as connection:
            image_id = connection.scalar(self._image_insert(image, key, content_type).returning(ImageRow.id))
            if image_id is None:  # there already: one more round trip, only then
                image_id = connection.scalar(select(ImageRow.id).where(ImageRow.sha256 == image.sha256))
            assert image_id is not None, "the row exists: inserted or already there"
            return image_id

    def claim(self, image_id: int, options_key: str, options: dict) -> int | None:
        """Insert the 'running' row that reserves this analysis; None when it is done or someone else holds a live
        claim. A failed analysis, or a claim whose holder stopped renewing it, is taken over."""
        for _ in range(3):
            try:
                with self._statement("reserve the analysis") as connection:  # one INSERT: no transaction
                    now = datetime.now(UTC)
                    claimed = connection.scalar(
                        insert(AnalysisRow).values(
                            image_id=image_id, options_key=options_key, options=options, status="running",
                            model_versions={}, timings_ms={}, created_at=now, claimed_by=self.owner, heartbeat_at=now,
                        ).returning(AnalysisRow.id)
                    )  # fmt: skip
                    assert claimed is not None, "an INSERT ... RETURNING answers the new row's id"
                    return int(claimed)
            except IntegrityError:
                with self._session("read the analysis") as session:
                    existing = session.scalar(
                        select(AnalysisRow).where(
                            AnalysisRow.image_id == image_id, AnalysisRow.options_key == options_key
                        )
                    )
                    if existing is None:
                        continue
                    if existing.status == "done" or (
                        existing.status == "running" and not self._lapsed(existing.heartbeat_at, existing.created_at)
                    ):
                        return None
                    if existing.status == "running":
                        logger.warning("%s: taking over a claim whose holder stopped (%s)", options_key[:12],
                                       existing.claimed_by)  # fmt: skip
                    session.delete(existing)  # failed earlier, or its holder died: retry it
        raise DatabaseError("could not reserve the analysis; please retry")

    def claim_state(self, sha256: str, options_key: str) -> tuple[ClaimState, str | None]:
        """Where an analysis stands, with its error when it failed; 'lapsed': running, but its holder stopped."""
        with self._statement("read the claim") as connection:
            row = connection.execute(
                select(AnalysisRow.status, AnalysisRow.error, AnalysisRow.heartbeat_at, AnalysisRow.created_at)
                .join(ImageRow)
                .where(ImageRow.sha256 == sha256, AnalysisRow.options_key == options_key)
            ).one_or_none()
            if row is None:
                return "missing", None
            if row.status == "running":
                return ("lapsed" if self._lapsed(row.heartbeat_at, row.created_at) else "running"), None
            return ("done" if row.status == "done" else "failed"), row.error

    def _lapsed(self, heartbeat_at: datetime | None, created_at: datetime) -> bool:
        """A running claim whose holder has not renewed it within the lease: the holder died or lost the database."""
        last = _utc(heartbeat_at or created_at)
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
        signature: NewSignature | None = None,
    ) -> None:
        """Store an analysis' results and renders and mark it done, with the image's ``signature`` (similar-photo
        search) when the run brought one: one transaction. ImageDeletedError: the image was deleted while the
        models ran (the claim went with it), so nothing is kept."""
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
            if signature is not None:
                image_id = select(AnalysisRow.image_id).where(AnalysisRow.id == analysis_id).scalar_subquery()
                self._add_signature(session, image_id, signature)

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
            image=image.facts(),
            labels=[(r.class_id, r.name, r.confidence, r.model) for r in row.labels] if done else [],
            objects=[((o.x1, o.y1, o.x2, o.y2), o.confidence, o.class_id, o.label) for o in row.objects]
            if done
            else [],
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
        """Bytes and content type of an image's original or thumbnail."""
        found = self.image_blob(sha256, kind)
        return (self.blobs.get(found[0]), found[1]) if found else None

    def image_blob(self, sha256: str, kind: str = "original") -> tuple[str, str] | None:
        """Content-addressed blob key and content type of an image's original or thumbnail (one per image)."""
        with self._session("read the image") as session:
            if kind == "original":
                query = select(ImageRow.blob_key, ImageRow.content_type).where(ImageRow.sha256 == sha256)
            else:
                query = (
                    select(RenderRow.blob_key, RenderRow.content_type)
                    .join(AnalysisRow)
                    .join(ImageRow)
                    .where(ImageRow.sha256 == sha256, RenderRow.kind == kind)
                    .limit(1)
                )
            row = session.execute(query).first()
        return (row[0], row[1]) if row else None

    def render_source(self, sha256: str, kind: str) -> tuple[str, tuple[str, str] | None] | None:
        """The newest finished analysis of an image that ran ``kind`` (objects or faces), whose picture the image's
        ``kind`` is (a re-analysis with other options changes it): its options key, and its picture's blob key and
        content type when it has been drawn. None when no analysis of the image ran ``kind``."""
        with self._session("read the image") as session:
            rows = session.execute(
                select(AnalysisRow.options_key, AnalysisRow.options, RenderRow.blob_key, RenderRow.content_type)
                .join(ImageRow)
                .outerjoin(RenderRow, (RenderRow.analysis_id == AnalysisRow.id) & (RenderRow.kind == kind))
                .where(ImageRow.sha256 == sha256, AnalysisRow.status == "done")
                .order_by(AnalysisRow.created_at.desc(), AnalysisRow.id.desc())
            )
            for options_key, options, key, content_type in rows:
                if kind in (options or {}).get("tasks", ()):
                    return options_key, (key, content_type) if key else None
        return None

    def keep_render(self, analysis_id: int, kind: str, key: str, content_type: str) -> None:
        """Point an analysis to its picture of ``kind``, drawn when first asked for (its blob stored first). Two
        callers drawing it at once draw the same bytes: the second finds the row there. ImageDeletedError: the
        analysis was deleted meanwhile."""
        with _deleted_meanwhile(), self._session("keep the picture") as session:
            if not session.scalar(select(exists().where(AnalysisRow.id == analysis_id))):
                raise ImageDeletedError("the image was deleted meanwhile")
            session.execute(
                self._insert(RenderRow)
                .values(analysis_id=analysis_id, kind=kind, blob_key=key, content_type=content_type)
                .on_conflict_do_nothing(index_elements=["analysis_id", "kind"])
            )
