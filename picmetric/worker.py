"""``picmetric worker``: a Celery worker that runs queued analyses into the shared store.

A worker needs nothing but the settings every PicMetric process has (database URL, S3 bucket, broker URL): it reads
staged uploads and URLs, and writes results and renders where the API and dashboard read them. Each worker process
holds one model set, loaded once when the process starts.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from celery import Celery
from celery.signals import worker_process_init

from . import logs
from .jobs import TASK_NAME, JobService, RetryableJobError, celery_app
from .service import AnalysisService
from .settings import Settings

logger = logging.getLogger(__name__)
#: an outage (database, object store) is retried this often, backing off up to 30 s, then the job fails
MAX_RETRIES = 8

_settings: Settings | None = None
_jobs: JobService | None = None
_jobs_lock = threading.Lock()


def _job_service() -> JobService:
    """This worker process' service: its own database connections and one model set (made after the fork)."""
    global _jobs
    with _jobs_lock:
        if _jobs is None:
            assert _settings is not None, "run_worker sets the settings first"
            _jobs = JobService(AnalysisService(_settings))
        return _jobs


def create_worker_app(settings: Settings) -> Celery:
    global _settings
    _settings = settings
    app = celery_app(settings)
    # loading the models takes longer than Celery's default 4 s for a new process to report in
    app.conf.worker_proc_alive_timeout = 300

    @app.task(name=TASK_NAME, bind=True, max_retries=MAX_RETRIES)
    def run_job(task, job_id: str) -> None:
        try:
            _job_service().run(job_id)
        except RetryableJobError as exc:
            if task.request.retries >= MAX_RETRIES:
                _job_service().fail_after_retries(job_id, str(exc))
                return
            logger.warning("job %s: %s; retrying", job_id, exc)
            raise task.retry(countdown=min(30, 2**task.request.retries)) from exc

    return app


def _load_models(**_: object) -> None:
    logs.install()
    _job_service().service.analyzer.warm_up()


def run_worker(settings: Settings, concurrency: int = 1, loglevel: str = "info") -> int:
    """Run until stopped (SIGTERM finishes the jobs in hand; a killed worker's jobs go to another worker)."""
    app = create_worker_app(settings)
    worker_process_init.connect(_load_models, weak=False)
    app.worker_main(
        [
            "worker",
            f"--concurrency={concurrency}",
            f"--queues={settings.job_queue}",
            f"--loglevel={loglevel.upper()}",
            f"--hostname=picmetric-{os.getpid()}@{socket.gethostname()}",
            "--without-gossip",
            "--without-mingle",
        ]  # fmt: skip
    )
    return 0
