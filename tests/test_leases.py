"""Job leases on the embedded store (SQLite + a folder), step by step: who may take a job, when a job nobody
vouches for is taken back, when it fails for good. The fault tests in test_workers.py run the same rules on
PostgreSQL with real workers."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from picmetric.core.options import AnalysisOptions
from picmetric.service.analyses import AnalysisService
from picmetric.service.jobs import JobInput, JobService
from picmetric.settings import Settings
from picmetric.storage import NewJob, Repository


class Clock:
    """The store's time, turned by the test: a lease lapses when the test says so, not after a real wait."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def turn(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def jobs(tmp_path, analyzer, clock) -> JobService:
    settings = Settings(data_dir=tmp_path, job_lease_s=1.0, job_max_attempts=2)
    repository = Repository(settings, clock=clock)
    service = JobService(AnalysisService(settings, repository=repository, analyzer=analyzer))
    yield service
    service.close()


def _queued(jobs: JobService) -> str:
    _, (job_id,) = jobs._repository.create_jobs([NewJob(source="url", options={}, url="http://x/y.jpg")], batch=False)
    return job_id


def test_a_job_is_taken_once_and_a_lapsed_one_is_taken_back_until_it_fails(jobs, clock):
    repository = jobs._repository
    job_id = _queued(jobs)
    assert repository.start_job(job_id, "host:1") is not None
    assert repository.start_job(job_id, "host:2") is None  # a second message while host:1 holds it: dropped
    assert repository.reclaim_lapsed_jobs(queued=True) == []  # its lease is live
    clock.turn(1.2)  # host:1 died: nobody renews it
    assert repository.reclaim_lapsed_jobs(queued=True) == [(job_id, True)]  # sent again (a URL job)
    assert repository.reclaim_lapsed_jobs(queued=True) == []  # renewed by the reclaim: not sent twice
    record = repository.start_job(job_id, "host:2")
    assert record is not None and record.attempts == 2
    clock.turn(1.2)  # host:2 died too: the second interrupted start is the last
    assert repository.reclaim_lapsed_jobs(queued=True) == []
    failed = repository.job(job_id)
    assert failed is not None and failed.state == "failed" and failed.error_kind == "InternalError"
    assert "interrupted 2 times" in (failed.error or "") and "host:2" in (failed.error or "")


def test_renewed_jobs_stay_and_a_released_one_does_not_count_as_an_attempt(jobs, clock):
    repository = jobs._repository
    held, idle = _queued(jobs), _queued(jobs)
    repository.start_job(held, "host:1")
    for _ in range(3):
        clock.turn(0.5)
        repository.renew_jobs([held])
    assert repository.reclaim_lapsed_jobs(queued=True) == [(idle, True)]  # only the one nobody vouched for
    repository.release_job(held)  # an outage: back to the queue
    record = repository.start_job(held, "host:2")
    assert record is not None and record.attempts == 1


def test_a_duplicate_message_while_this_process_runs_the_job_is_dropped(jobs, zidane_path):
    """Two threads of one worker process get the same job: one runs it, the other returns at once."""
    started, release = threading.Event(), threading.Event()
    keep = jobs.service.keep
    runs = []

    def slow_keep(*args, **kwargs):
        runs.append(1)
        started.set()
        release.wait(10)
        return keep(*args, **kwargs)

    jobs.service.keep = slow_keep  # type: ignore[method-assign]
    _, (job_id,) = jobs._repository.create_jobs(
        [NewJob(source="upload", options=AnalysisOptions().to_dict(), input_key="incoming/one")], batch=False
    )
    jobs._repository.blobs.put("incoming/one", zidane_path.read_bytes(), "application/octet-stream")
    first = threading.Thread(target=jobs.run, args=(job_id,))
    first.start()
    assert started.wait(10)
    jobs.run(job_id)  # the duplicate: returns while the first is still analysing
    release.set()
    first.join(30)
    record = jobs._repository.job(job_id)
    assert runs == [1] and record is not None and record.state == "done" and record.attempts == 1


def test_an_in_process_batch_is_done_and_leaves_no_staged_upload(jobs, zidane_path, bus_path):
    batch_id, _ = jobs.submit(
        [JobInput(source="upload", name=p.name, data=p.read_bytes()) for p in (zidane_path, bus_path)], batch=True
    )
    deadline = time.monotonic() + 60
    while any(job.state in ("queued", "running") for job in jobs.batch(batch_id or "") or []):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert [job.state for job in jobs.batch(batch_id or "") or []] == ["done", "done"]
    assert not [key for key in jobs._repository.blobs.keys() if key.startswith("incoming/")]  # noqa: SIM118


def test_a_job_queued_before_leases_existed_is_taken_back_too(jobs, clock):
    """A row from before migration 0005 has no heartbeat: its lease counts from its creation."""
    from sqlalchemy import update

    from picmetric.storage.schema import JobRow

    job_id = _queued(jobs)
    with jobs._repository.engine.begin() as connection:
        connection.execute(update(JobRow).where(JobRow.id == job_id).values(heartbeat_at=None))
    assert jobs._repository.reclaim_lapsed_jobs(queued=True) == []  # created just now: still within the lease
    clock.turn(1.2)
    assert jobs._repository.reclaim_lapsed_jobs(queued=True) == [(job_id, True)]
