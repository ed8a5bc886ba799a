"""Videos: stored clips (content-addressed), their analyses and each analysis' chunks. A chunk reports its progress
and its result here; the worker whose chunk completes an analysis claims the stitching (``claim_merge``), so it
happens once whichever worker finishes last."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from picmetric.storage.base import StoreBase
from picmetric.storage.records import _utc
from picmetric.storage.schema import VideoAnalysisRow, VideoChunkRow, VideoRow


@dataclass(frozen=True)
class VideoRecord:
    sha256: str
    size_bytes: int
    container: str
    codec: str
    width: int
    height: int
    fps: float
    frames: int
    duration_s: float
    rotation: int
    source: str
    name: str | None
    blob_key: str
    created_at: datetime


@dataclass(frozen=True)
class VideoAnalysisRecord:
    id: int
    sha256: str
    options: dict
    state: str  # running | merging | done | failed
    chunks: int
    batch_id: str | None
    error: str | None
    result_key: str | None
    clip_key: str | None
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class VideoChunkRecord:
    index: int
    frames_done: int
    frames_total: int
    result_key: str | None


class VideoStore(StoreBase):
    def ensure_video(self, facts: dict, blob_key: str, source: str, name: str | None) -> None:
        """The clip's row (inserted, or the one already there); its blob must be stored first."""
        with self._session("store the video") as session:
            session.execute(
                self._insert(VideoRow)
                .values(**facts, source=source, original_name=name, blob_key=blob_key, created_at=datetime.now(UTC))
                .on_conflict_do_nothing(index_elements=["sha256"])
            )

    def video(self, sha256: str) -> VideoRecord | None:
        with self._session("read the video") as session:
            row = session.scalar(select(VideoRow).where(VideoRow.sha256 == sha256))
            return _video(row) if row is not None else None

    def videos(self, limit: int = 50) -> list[tuple[VideoRecord, VideoAnalysisRecord | None]]:
        """The newest clips, each with its newest analysis."""
        with self._session("list the videos") as session:
            rows = session.scalars(select(VideoRow).order_by(VideoRow.created_at.desc()).limit(limit)).all()
            found = []
            for row in rows:
                analysis = session.scalar(
                    select(VideoAnalysisRow)
                    .where(VideoAnalysisRow.video_id == row.id)
                    .order_by(VideoAnalysisRow.id.desc())
                    .limit(1)
                )
                found.append((_video(row), _analysis(analysis, row.sha256) if analysis is not None else None))
            return found

    def claim_video_analysis(
        self, sha256: str, options_key: str, options: dict, chunks: int
    ) -> tuple[VideoAnalysisRecord, bool]:
        """The analysis of this clip with these options, and whether the caller must run it: a new one, or one
        that failed before (started again from scratch)."""
        for _ in range(3):
            try:
                with self._session("reserve the video analysis") as session:
                    video = session.scalar(select(VideoRow).where(VideoRow.sha256 == sha256))
                    assert video is not None, "the video is stored first"
                    row = session.scalar(
                        select(VideoAnalysisRow).where(
                            VideoAnalysisRow.video_id == video.id, VideoAnalysisRow.options_key == options_key
                        )
                    )
                    if row is None:
                        row = VideoAnalysisRow(
                            video_id=video.id, options_key=options_key, options=options, state="running",
                            chunks=chunks,
                        )  # fmt: skip
                        session.add(row)
                        session.flush()
                        return _analysis(row, sha256), True
                    if row.state == "failed":
                        session.execute(delete(VideoChunkRow).where(VideoChunkRow.analysis_id == row.id))
                        row.state, row.error, row.chunks, row.batch_id = "running", None, chunks, None
                        row.finished_at = None
                        session.flush()
                        return _analysis(row, sha256), True
                    return _analysis(row, sha256), False
            except IntegrityError:
                continue  # another process inserted it meanwhile: read theirs
        raise AssertionError("the video analysis row could not be claimed or read")

    def set_video_batch(self, analysis_id: int, batch_id: str | None) -> None:
        with self._session("keep the video's jobs") as session:
            session.execute(
                update(VideoAnalysisRow).where(VideoAnalysisRow.id == analysis_id).values(batch_id=batch_id)
            )

    def video_analysis(self, analysis_id: int) -> VideoAnalysisRecord | None:
        with self._session("read the video analysis") as session:
            found = session.execute(
                select(VideoAnalysisRow, VideoRow.sha256)
                .join(VideoRow, VideoRow.id == VideoAnalysisRow.video_id)
                .where(VideoAnalysisRow.id == analysis_id)
            ).first()
            return _analysis(found[0], found[1]) if found is not None else None

    def chunk_progress(self, analysis_id: int, index: int, frames_done: int, frames_total: int) -> None:
        with self._session("note the chunk's progress") as session:
            updated = session.execute(
                update(VideoChunkRow)
                .where(VideoChunkRow.analysis_id == analysis_id, VideoChunkRow.index == index)
                .values(frames_done=frames_done, frames_total=frames_total, updated_at=datetime.now(UTC))
            ).rowcount  # type: ignore[attr-defined]  # an UPDATE's result has one
            if not updated:
                session.add(
                    VideoChunkRow(
                        analysis_id=analysis_id, index=index, frames_done=frames_done, frames_total=frames_total
                    )  # fmt: skip
                )

    def chunk_done(self, analysis_id: int, index: int, result_key: str) -> int:
        """Record a chunk's result; how many of the analysis' chunks have one now."""
        with self._session("keep the chunk's result") as session:
            session.execute(
                update(VideoChunkRow)
                .where(VideoChunkRow.analysis_id == analysis_id, VideoChunkRow.index == index)
                .values(result_key=result_key, frames_done=VideoChunkRow.frames_total, updated_at=datetime.now(UTC))
            )
            return int(
                session.scalar(
                    select(func.count()).where(
                        VideoChunkRow.analysis_id == analysis_id, VideoChunkRow.result_key.is_not(None)
                    )
                )
                or 0
            )

    def video_chunks(self, analysis_id: int) -> list[VideoChunkRecord]:
        with self._session("read the chunks") as session:
            rows = session.scalars(
                select(VideoChunkRow).where(VideoChunkRow.analysis_id == analysis_id).order_by(VideoChunkRow.index)
            ).all()
            return [VideoChunkRecord(r.index, r.frames_done, r.frames_total, r.result_key) for r in rows]

    def claim_merge(self, analysis_id: int) -> bool:
        """Whether the caller is the one to stitch the chunks (the first to ask once all are done)."""
        with self._session("claim the stitching") as session:
            return bool(
                session.execute(
                    update(VideoAnalysisRow)
                    .where(VideoAnalysisRow.id == analysis_id, VideoAnalysisRow.state == "running")
                    .values(state="merging")
                ).rowcount  # type: ignore[attr-defined]  # an UPDATE's result has one
            )

    def finish_video_analysis(self, analysis_id: int, result_key: str) -> None:
        with self._session("keep the video's result") as session:
            session.execute(
                update(VideoAnalysisRow)
                .where(VideoAnalysisRow.id == analysis_id)
                .values(state="done", result_key=result_key, finished_at=datetime.now(UTC))
            )

    def set_video_clip(self, analysis_id: int, clip_key: str) -> None:
        with self._session("keep the annotated clip") as session:
            session.execute(
                update(VideoAnalysisRow).where(VideoAnalysisRow.id == analysis_id).values(clip_key=clip_key)
            )

    def fail_video_analysis(self, analysis_id: int, error: str) -> None:
        with self._session("record the video's failure") as session:
            session.execute(
                update(VideoAnalysisRow)
                .where(VideoAnalysisRow.id == analysis_id, VideoAnalysisRow.state != "done")
                .values(state="failed", error=error[:2000], finished_at=datetime.now(UTC))
            )


def _video(row: VideoRow) -> VideoRecord:
    return VideoRecord(
        row.sha256, row.size_bytes, row.container, row.codec, row.width, row.height, row.fps, row.frames,
        row.duration_s, row.rotation, row.source, row.original_name, row.blob_key, _utc(row.created_at),
    )  # fmt: skip


def _analysis(row: VideoAnalysisRow, sha256: str) -> VideoAnalysisRecord:
    return VideoAnalysisRecord(
        row.id, sha256, dict(row.options), row.state, row.chunks, row.batch_id, row.error, row.result_key,
        row.clip_key, _utc(row.created_at), _utc(row.finished_at) if row.finished_at else None,
    )  # fmt: skip
