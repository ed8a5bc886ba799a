"""Job rows: queued analyses shared by every process, with their leases."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Row, and_, func, or_, select, update

from picmetric.errors import PicMetricError
from picmetric.storage.base import StoreBase
from picmetric.storage.notices import JobEndings
from picmetric.storage.records import JOB_STATES, JobRecord, JobState, NewJob, _utc
from picmetric.storage.schema import BatchRow, JobRow

logger = logging.getLogger(__name__)


class JobStore(StoreBase):
    """Job and batch rows, and the leases that keep no job stuck."""

    # -- jobs and batches ----------------------------------------------------------------------------------------

    def create_jobs(self, jobs: Sequence[NewJob], *, batch: bool) -> tuple[str | None, list[str]]:
        """Record queued jobs (in one batch when ``batch``) before any of them is sent to a queue, so a worker
        never receives a job it cannot find; their staged uploads are stored first (a job row never names a blob
        that is not there; a young blob without a row is kept by the sweep's grace period)."""
        batch_id = uuid.uuid4().hex if batch else None
        ids = [uuid.uuid4().hex for _ in jobs]
        now = self.now()
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
                    kind=job.kind,
                    spec=job.spec,
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

    def follow_job_endings(
        self, on_ended: Callable[[str], None], on_connected: Callable[[], None]
    ) -> JobEndings | None:
        """PostgreSQL tells of each job's end as it commits (``JobEndings``: close it when done); None on SQLite,
        which cannot: ask ``ended_jobs``."""
        if self.engine.dialect.name != "postgresql":
            return None
        return JobEndings(self.engine, on_ended, on_connected, self.settings.db_timeout_s)

    def start_job(self, job_id: str, worker: str) -> JobRecord | None:
        """Take a job to run it on ``worker``: a queued one, a running one whose lease lapsed (its runner died), or
        one ``worker`` itself was running (a retry after an outage). None when someone else holds it, it is
        finished, or it is unknown (a reset): a duplicate message is dropped, never run twice at once. One
        conditional update: of two takers at once, exactly one gets it."""
        now, worker = self.now(), worker[:96]
        lapsed = func.coalesce(JobRow.heartbeat_at, JobRow.created_at) < self._lease_cutoff()  # as _job_lapsed
        with self._statement("start the job") as connection:
            row = connection.execute(
                update(JobRow)
                .where(
                    JobRow.id == job_id,
                    or_(
                        JobRow.state == "queued",
                        and_(JobRow.state == "running", or_(JobRow.worker == worker, lapsed)),
                    ),
                )
                .values(state="running", worker=worker, attempts=JobRow.attempts + 1, started_at=now, heartbeat_at=now)
                .returning(*JobRow.__table__.columns)
            ).one_or_none()  # fmt: skip
        return _job_record(row) if row is not None else None

    def _lease_cutoff(self) -> datetime:
        return self.now() - timedelta(seconds=self.settings.job_lease_s)

    def _job_lapsed(self, row: JobRow) -> bool:
        """Nobody vouched for it within the lease (a row from before leases existed counts from its creation)."""
        return _utc(row.heartbeat_at or row.created_at) < self._lease_cutoff()

    def renew_jobs(self, job_ids: Collection[str]) -> None:
        """Vouch for jobs this process holds (queued in its memory, or running here): their leases stay live."""
        if not job_ids:
            return
        with self._session("renew the jobs") as session:
            session.execute(
                update(JobRow)
                .where(JobRow.id.in_(list(job_ids)), JobRow.state.in_(("queued", "running")))
                .values(heartbeat_at=self.now())
            )

    def release_job(self, job_id: str) -> None:
        """Put a job met by an outage back in the queue; the attempt is not counted (the runner did not fail)."""
        with self._session("release the job") as session:
            session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.state == "running")
                .values(state="queued", worker=None, attempts=JobRow.attempts - 1, heartbeat_at=self.now())
            )

    def reclaim_lapsed_jobs(self, *, queued: bool) -> list[tuple[str, bool]]:
        """Jobs nobody vouched for within the lease, taken back: a running one whose runner died goes back to the
        queue (or fails once it has been started ``job_max_attempts`` times), a queued one whose message or
        holder is gone (only with ``queued``) is renewed. Returns the jobs to send again, each with whether it
        fetches a URL (no staged upload). Each row is taken with
        a conditional update, so of several processes reclaiming at once exactly one gets each job."""
        now = self.now()
        states = ("queued", "running") if queued else ("running",)
        lapsed = func.coalesce(JobRow.heartbeat_at, JobRow.created_at) < self._lease_cutoff()  # as _job_lapsed
        resend: list[tuple[str, bool]] = []
        failed: list[str] = []
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
                        "state": "failed", "error_kind": "InternalError", "input_key": None, "finished_at": now,
                        "error": f"the job was interrupted {attempts} times (its worker stopped; last {worker})",
                    }  # fmt: skip
                taken = session.execute(
                    update(JobRow).where(JobRow.id == job_id, JobRow.state == state, lapsed).values(**values)
                )
                if taken.rowcount != 1:  # type: ignore[attr-defined]  # another process reclaimed it first
                    continue
                if gave_up:
                    failed.append(job_id)
                    staged += [input_key] if input_key else []
                else:
                    resend.append((job_id, input_key is None))
        for key in staged:
            with contextlib.suppress(PicMetricError):
                self.blobs.delete(key)
        if resend or failed:
            logger.warning("lapsed jobs: %d sent again, %d failed after %d interrupted starts", len(resend),
                           len(failed), self.settings.job_max_attempts)  # fmt: skip
        return resend

    def finish_job(
        self,
        job_id: str,
        *,
        sha256: str | None,
        cached: bool | None = None,
        error: str | None = None,
        error_kind: str | None = None,
    ) -> None:
        """Record a job's outcome and remove its staged upload (each job has its own). On PostgreSQL one statement,
        which also answers what the staged upload was (SQLite's RETURNING cannot see the row as it was: there, on
        this machine, a read before the write costs nothing)."""
        values: dict = {"state": "failed" if error else "done", "error": error, "error_kind": error_kind,
                        "cached": cached, "input_key": None, "finished_at": self.now()}  # fmt: skip
        if sha256:
            values["sha256"] = sha256
        if self.engine.dialect.name == "postgresql":
            before = select(JobRow.id, JobRow.input_key).where(JobRow.id == job_id).subquery()
            with self._statement("record the job") as connection:
                staged = connection.scalar(
                    update(JobRow).where(JobRow.id == before.c.id).values(**values).returning(before.c.input_key)
                )
        else:
            with self._session("record the job") as session:
                staged = session.scalar(select(JobRow.input_key).where(JobRow.id == job_id))
                session.execute(update(JobRow).where(JobRow.id == job_id).values(**values))
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


def _job_record(row: JobRow | Row[Any]) -> JobRecord:
    return JobRecord(
        id=row.id, batch_id=row.batch_id, state=cast(JobState, row.state), source=row.source, name=row.name,
        url=row.url, input_key=row.input_key, options=dict(row.options), sha256=row.sha256, error=row.error,
        error_status=row.error_status, error_kind=row.error_kind, cached=row.cached, attempts=row.attempts,
        worker=row.worker,
        created_at=_utc(row.created_at), started_at=_utc(row.started_at) if row.started_at else None,
        finished_at=_utc(row.finished_at) if row.finished_at else None, kind=row.kind or "photo",
        spec=dict(row.spec) if row.spec else None,
    )  # fmt: skip
