"""Round trips of one job: every exchange with PostgreSQL (statements, BEGIN, COMMIT, a pooled connection's ping)
and every request sent to S3 while one uploaded photo is queued, analysed and recorded. Between hosts each costs a
network round trip (20 ms apart, 30 of them are 0.6 s), so the count is kept here: a change that adds one has to
say so."""

from __future__ import annotations

import time
from collections import Counter

import psycopg2.extensions
from sqlalchemy import event

from picmetric.core.samples import sample_photo_path
from picmetric.service.analyses import AnalysisService
from picmetric.service.jobs import JobInput, JobService
from picmetric.storage.db import _wait_within_deadline

from .conftest import s3_settings

#: measured on 2026-12-07 (PostgreSQL + SeaweedFS), the same in every run: 19 exchanges with the database (12
#: statements: 7 INSERT, 4 UPDATE, 1 SELECT; 7 that open or close a transaction; no pings) and 7 S3 requests (3 PUT,
#: 2 HEAD, 1 GET, 1 DELETE). Before the job stopped reading its analysis back, single statements ran in their own
#: transactions and pings went to idle connections only: 48 (41 + 7 pings).
DATABASE_BUDGET = 19
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

    # every wait for the server, whatever sent it (statements, psycopg2's own BEGIN and COMMIT, a ping): the
    # wait callback runs once per exchange, on the service's connections only (not the watcher's below)
    ours: set[int] = set()
    event.listen(service._repository.engine, "checkout", lambda dbapi, *_: ours.add(id(dbapi)))
    exchanges = Counter[str]()

    def counted_wait(connection) -> None:
        if counting["on"] and id(connection) in ours:
            exchanges["database"] += 1
        _wait_within_deadline(connection)

    # its own connections: its polls are not counted (made before the callback: every engine sets its own)
    watcher = JobService(AnalysisService(settings, analyzer=analyzer))
    psycopg2.extensions.set_wait_callback(counted_wait)

    def sent(request, **_) -> None:  # botocore takes a handler's non-None answer as the response: answer None
        if counting["on"]:
            requests[request.method] += 1

    service._repository.blobs._client.meta.events.register("before-send.s3.*", sent)
    photo = sample_photo_path("darknet/dog.jpg").read_bytes()
    counting["on"] = True
    _, (job_id,) = jobs.submit([JobInput(source="upload", name="dog.jpg", data=photo)])
    deadline = time.monotonic() + 60
    while (found := watcher.job(job_id)) is None or found.state not in ("done", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)  # the lease keeper's and the staged upload's last words
    counting["on"] = False
    psycopg2.extensions.set_wait_callback(_wait_within_deadline)
    jobs.close()
    assert found.state == "done", found.error
    statements = sum(database.values())
    print(f"one job: {exchanges['database']} database round trips: statements {dict(database)}, "
          f"{exchanges['database'] - statements} BEGIN and COMMIT; "
          f"{sum(requests.values())} S3 requests {dict(requests)}")  # fmt: skip
    assert exchanges["database"] >= statements, "every statement is an exchange"
    assert exchanges["database"] <= DATABASE_BUDGET, (exchanges, dict(database))
    assert sum(requests.values()) <= S3_BUDGET, dict(requests)
    service._repository.reset()
