"""A deployment under test: the API, ``picmetric worker`` processes, the broker, PostgreSQL and S3 as separate
processes (``tests/test_workers.py`` on this machine, ``tests/test_hosts.py`` on hosts of their own), and what must
hold after a fault: every job done, each image analysed once, no blob missing or orphaned, no staged upload left."""

from __future__ import annotations

import time

import httpx
from sqlalchemy import func, select

from picmetric.service.analyses import AnalysisService
from picmetric.service.jobs import CeleryQueue
from picmetric.settings import Settings
from picmetric.storage.schema import AnalysisRow, ImageRow

from .services import FaultyProxy, WorkerProcess


def deployment_environment(settings: Settings) -> dict[str, str]:
    """The variables a worker machine would be given: the same store, the same broker."""
    env = {
        "PICMETRIC_DATABASE_URL": settings.resolved_database_url,
        "PICMETRIC_S3_BUCKET": settings.s3_bucket or "",
        "PICMETRIC_S3_ENDPOINT_URL": settings.s3_endpoint_url or "",
        "PICMETRIC_S3_ACCESS_KEY": "test-access",
        "PICMETRIC_S3_SECRET_KEY": "test-secret-value",
        "PICMETRIC_JOB_QUEUE": settings.job_queue,
        "PICMETRIC_CLAIM_LEASE_S": str(settings.claim_lease_s),
        "PICMETRIC_JOB_LEASE_S": str(settings.job_lease_s),
        "PICMETRIC_DB_TIMEOUT_S": str(settings.db_timeout_s),
        "PICMETRIC_BROKER_TIMEOUT_S": str(settings.broker_timeout_s),
        "PICMETRIC_S3_TIMEOUT_S": str(settings.s3_timeout_s),
        "PICMETRIC_INTRA_OP_THREADS": "1",  # two workers on two cores
        "PICMETRIC_DATA_DIR": str(settings.data_dir),
    }
    assert settings.broker_url is not None
    env["PICMETRIC_BROKER_URL"] = settings.broker_url.get_secret_value()
    return env


class Stack:
    """API + workers + broker + PostgreSQL + S3, as a deployment on several machines would run them."""

    def __init__(self, settings: Settings, service: AnalysisService, client: httpx.Client, log_dir) -> None:
        self.settings, self.service, self.client, self.log_dir = settings, service, client, log_dir
        self.workers: list[WorkerProcess] = []
        self.proxy: FaultyProxy | None = None

    @property
    def repository(self):
        return self.service._repository

    def start_worker(self) -> WorkerProcess:
        worker = WorkerProcess(deployment_environment(self.settings), self.log_dir / f"worker-{len(self.workers)}.log")
        self.workers.append(worker)
        return worker

    def wait_for_workers(self, count: int, timeout_s: float = 180.0) -> None:
        queue = CeleryQueue(self.settings)
        deadline = time.monotonic() + timeout_s
        while len(queue.status(ping_workers=True).workers) < count:
            for worker in self.workers:
                assert worker.process.poll() in (None, -9), f"a worker exited; see {worker.log_path}"
            assert time.monotonic() < deadline, f"{count} workers did not answer; see {self.log_dir}"

    def wait_for_batch(self, batch_id: str, timeout_s: float = 240.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            answer = self.client.get(f"/api/v1/batches/{batch_id}").json()
            if answer["finished"]:
                return answer
            assert time.monotonic() < deadline, answer["counts"]
            time.sleep(0.2)

    def assert_store_consistent(self) -> None:
        """Every row's blob exists, and every blob belongs to a row: nothing orphaned, nothing missing."""
        stored = set(self.repository.blobs.keys())
        for stored_analysis in self._all_analyses():
            for key in stored_analysis.blob_keys.values():
                assert key in stored, f"row points to missing blob {key}"
        assert self.repository.sweep_orphans(min_age_s=0) == [], "blobs without a row"
        assert not [key for key in stored if key.startswith("incoming/")], "staged uploads left behind"

    def _all_analyses(self):
        with self.repository.engine.connect() as connection:
            shas = list(connection.scalars(select(ImageRow.sha256)))
        return [self.service.get(sha) for sha in shas]

    def count(self, column, *where) -> int:
        with self.repository.engine.connect() as connection:
            return int(connection.scalar(select(func.count(column)).where(*where)) or 0)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


def running_job(stack: Stack, batch_id: str):
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for item in stack.client.get(f"/api/v1/batches/{batch_id}").json()["items"]:
            job = stack.repository.job(item["job"])
            if job is not None and job.state == "running" and job.worker:
                return job
        time.sleep(0.02)
    raise AssertionError("no job was seen running")


def batch_through_fault(
    stack: Stack, name: str, photos: list[bytes], fault, heal, fault_s: float = 15.0, recovery_s: float = 60.0
):
    """Send a batch, cause the fault once a job runs, end it after ``fault_s``; every job must end done within
    ``recovery_s``, each image analysed once, no blob missing or orphaned, no staged upload left."""
    files = [("files", (f"{name}{i}.jpg", data, "image/jpeg")) for i, data in enumerate(photos)]
    response = stack.client.post("/api/v1/batches", files=files, data={"tasks": "labels,objects,faces"})
    assert response.status_code == 202, response.text
    batch_id = response.json()["batch"]
    victim = running_job(stack, batch_id)
    fault(victim)
    time.sleep(fault_s)
    heal()
    healed = time.monotonic()
    answer = stack.wait_for_batch(batch_id, timeout_s=recovery_s)
    took_s = time.monotonic() - healed
    assert answer["counts"] == {"queued": 0, "running": 0, "done": len(photos), "failed": 0}, answer
    jobs = stack.repository.batch(batch_id) or []
    shas = {job.sha256 for job in jobs}
    assert len(shas) == len(photos)
    with stack.repository.engine.connect() as connection:
        analyses = connection.scalar(
            select(func.count(AnalysisRow.id)).join(ImageRow).where(ImageRow.sha256.in_(shas))
        )  # fmt: skip
    assert analyses == len(photos), "an image was analysed twice"
    # a job whose analysis was stored just before the fault finds it stored when it runs again: done, "cached"
    resumed = sum(bool(job.cached) for job in jobs)
    stack.assert_store_consistent()
    print(f"FAULT {name}: {len(photos)} done, 0 failed, 0 stuck, 0 duplicates, {resumed} resumed from a stored "
          f"analysis, recovery {took_s:.1f} s")  # fmt: skip
    return victim, jobs
