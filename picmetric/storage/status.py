"""Status: counts, health, and every process' recent log lines."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import delete, func, select

from picmetric.errors import PicMetricError, StorageError
from picmetric.storage.base import StoreBase
from picmetric.storage.records import _utc
from picmetric.storage.schema import AnalysisRow, FaceRow, ImageRow, LabelRow, LogRow, ObjectRow

logger = logging.getLogger(__name__)


class StatusStore(StoreBase):
    """What the System page, /readyz and /metrics report, and the shared log."""

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
