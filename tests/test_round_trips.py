"""Round trips of one job: every statement, BEGIN and COMMIT sent to PostgreSQL and every request sent to S3 while
one uploaded photo is queued, analysed and recorded. Between hosts each costs a network round trip (at 20 ms
apart, 48 of them are about a second), so the count is kept here: a change that adds one has to say so."""

from __future__ import annotations

import time
from collections import Counter

from sqlalchemy import event

from picmetric.core.samples import sample_photo_path
from picmetric.service.analyses import AnalysisService
from picmetric.service.jobs import JobInput, JobService

from .conftest import s3_settings

#: measured on 2026-12-07 (PostgreSQL + SeaweedFS), the same in every run: 41 database round trips (9 BEGIN, 9
#: COMMIT, 12 SELECT, 7 INSERT, 4 UPDATE) and 7 S3 requests (3 PUT, 2 HEAD, 1 GET, 1 DELETE)
DATABASE_BUDGET = 41
S3_BUDGET = 7


def test_one_job_keeps_to_its_round_trips(tmp_path, analyzer, seaweed, postgres):
    # leases far longer than the job: no renewal (a timer, not the job's own work) falls inside the count however
    # slow the machine
    settings = s3_settings(seaweed, tmp_path, bucket="round-trips", database_url=postgres.url, claim_lease_s=600,
                           job_lease_s=600)  # fmt: skip
    service = AnalysisService(settings, analyzer=analyzer)
    service._repository.blobs.ensure_bucket()
    service._repository.reset()
    jobs = JobService(service)
    database: Counter[str] = Counter()
    requests: Counter[str] = Counter()
    counting = {"on": False}

    @event.listens_for(service._repository.engine, "before_cursor_execute")
    def statement(_conn, _cursor, text, *_):
        if counting["on"]:
            database[text.split()[0].upper()] += 1

    for name in ("begin", "commit", "rollback"):
        event.listen(service._repository.engine, name, lambda _conn, _n=name: counting["on"] and database.update([_n]))

    def sent(request, **_) -> None:  # botocore takes a handler's non-None answer as the response: answer None
        if counting["on"]:
            requests[request.method] += 1

    service._repository.blobs._client.meta.events.register("before-send.s3.*", sent)
    photo = sample_photo_path("darknet/dog.jpg").read_bytes()
    counting["on"] = True
    _, (job_id,) = jobs.submit([JobInput(source="upload", name="dog.jpg", data=photo)])
    watcher = JobService(AnalysisService(settings, analyzer=analyzer))  # its own connections: its polls not counted
    deadline = time.monotonic() + 60
    while (found := watcher.job(job_id)) is None or found.state not in ("done", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)  # the lease keeper's and the staged upload's last words
    counting["on"] = False
    jobs.close()
    assert found.state == "done", found.error
    print(f"one job: {sum(database.values())} database round trips {dict(database)}, "
          f"{sum(requests.values())} S3 requests {dict(requests)}")  # fmt: skip
    assert sum(database.values()) <= DATABASE_BUDGET, dict(database)
    assert sum(requests.values()) <= S3_BUDGET, dict(requests)
    service._repository.reset()
