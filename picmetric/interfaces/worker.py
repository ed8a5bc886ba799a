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
import time

from celery import Celery
from celery.signals import worker_init, worker_process_init

from picmetric import logs
from picmetric.service.analyses import AnalysisService
from picmetric.service.jobs import TASK_NAME, JobService, RetryableJobError, celery_app
from picmetric.service.videos import VideoService
from picmetric.settings import Settings

logger = logging.getLogger(__name__)

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
            VideoService(_jobs)  # it runs the chunks of videos too
        return _jobs


def create_worker_app(settings: Settings) -> Celery:
    global _settings
    _settings = settings
    app = celery_app(settings)
    # loading the models takes longer than Celery's default 4 s for a new process to report in
    app.conf.worker_proc_alive_timeout = 300

    @app.task(name=TASK_NAME, bind=True, max_retries=None)
    def run_job(task, job_id: str, outage_since: float | None = None) -> None:
        """Run a job; an outage (database, store) retries it, backing off, for ``job_retry_for_s``, then fails it.
        The message is acknowledged only after the outcome is recorded or the retry is queued."""
        jobs = _job_service()
        try:
            jobs.run(job_id)
        except RetryableJobError as exc:
            since = outage_since or time.time()
            delay = jobs.retry_after(job_id, exc, task.request.retries, since)
            if delay is None:
                return
            raise task.retry(countdown=delay, kwargs={"outage_since": since}) from exc

    return app


def _load_models(**_: object) -> None:
    logs.install()
    jobs = _job_service()
    jobs.keep_leases()  # this process' jobs stay leased; lapsed ones anywhere are sent again
    jobs.service.warm_up()
    logger.info("worker ready: models loaded, taking jobs from %s", jobs.settings.safe_broker_url)


def run_worker(settings: Settings, concurrency: int = 1, threads: int = 1, loglevel: str = "info") -> int:
    """Run until stopped (SIGTERM finishes the jobs in hand; a killed worker's jobs go to another worker, at the
    latest when their leases lapse). ``concurrency`` processes (prefork) each run one job at a time; or one process
    runs ``threads`` jobs at once over one model set (Celery's thread pool), so storage waits overlap inference."""
    if concurrency > 1 and threads > 1:
        raise ValueError("choose processes (--concurrency) or threads (--threads) per worker, not both")
    app = create_worker_app(settings)
    if threads > 1:
        worker_init.connect(_load_models, weak=False)  # one process: its models load before the pool starts
        pool = ["--pool=threads", f"--concurrency={threads}"]
    else:
        worker_process_init.connect(_load_models, weak=False)  # each forked process loads its own
        pool = ["--pool=prefork", f"--concurrency={concurrency}"]
    app.worker_main(
        [
            "worker",
            *pool,
            f"--queues={settings.job_queue}",
            f"--loglevel={loglevel.upper()}",
            f"--hostname=picmetric-{os.getpid()}@{socket.gethostname()}",
            "--without-gossip",
            "--without-mingle",
        ]  # fmt: skip
    )
    return 0
