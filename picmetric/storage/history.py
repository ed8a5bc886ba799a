"""The history: the filtered, paged list of stored analyses, deleting one, resetting all, sweeping orphans."""

from __future__ import annotations

import logging

from sqlalchemy import delete, exists, func, or_, select

from picmetric.storage.base import StoreBase
from picmetric.storage.records import HistoryFilter, HistoryItem, HistoryPage, _utc
from picmetric.storage.schema import (
    AnalysisRow,
    BatchRow,
    DatasetPhotoRow,
    DatasetRow,
    EmbeddingRow,
    FaceRow,
    ImageRow,
    JobRow,
    LabelRow,
    LogRow,
    ObjectRow,
    RenderRow,
    VideoAnalysisRow,
    VideoChunkRow,
    VideoRow,
)

logger = logging.getLogger(__name__)
#: a blob this young may belong to an analysis still in flight: sweeps keep it
SWEEP_GRACE_S = 20 * 60.0


def _substring_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, case-insensitively; ``%``, ``_`` and ``\\`` in it match only
    themselves (escaped with ``\\``)."""
    escaped = text.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class HistoryStore(StoreBase):
    """The browsable history and what removes from it."""

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
                **img.facts().fact_values(),
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
            tables = (
                RenderRow,
                FaceRow,
                ObjectRow,
                LabelRow,
                AnalysisRow,
                EmbeddingRow,
                DatasetPhotoRow,
                DatasetRow,
                VideoChunkRow,
                VideoAnalysisRow,
                VideoRow,
                ImageRow,
                JobRow,
                BatchRow,
                LogRow,
            )
            for table in tables:
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
