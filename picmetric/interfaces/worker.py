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
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

from picmetric import logs
from picmetric.service.analyses import AnalysisService
from picmetric.service.jobs import TASK_NAME, JobService, RetryableJobError, celery_app
from picmetric.service.videos import VideoService
from picmetric.settings import Settings

logger = logging.getLogger(__name__)

_settings: Settings | None = None
_jobs: JobService | None = None
_jobs_lock = threading.Lock()
#: of the jobs this process runs at once, those running the models now (``worker_analyses``)
_analysis_slots: threading.BoundedSemaphore | None = None


def _job_service() -> tuple[JobService, threading.BoundedSemaphore]:
    """This worker process' service (its own database connections and one model set, made after the fork), and
    its analysis slots."""
    global _jobs, _analysis_slots
    with _jobs_lock:
        if _jobs is None or _analysis_slots is None:
            assert _settings is not None, "run_worker sets the settings first"
            _jobs = JobService(AnalysisService(_settings))
            VideoService(_jobs)  # it runs the chunks of videos too
            _analysis_slots = threading.BoundedSemaphore(_settings.worker_analyses)
        return _jobs, _analysis_slots


class _QoS(virtual.QoS):
    restore_at_shutdown = False  # see RedisTransport


class _RedisChannel(kombu_redis.Channel):
    #: no unacknowledged-message bookkeeping in Redis: it cost two more round trips per job in Celery's one
    #: consuming thread (a pipeline on delivery, another on acknowledgement), the ceiling of a worker 20 ms from
    #: Redis (benchmarks/bench_hosts.py). A message lost with its worker is a job whose lease lapses: sent again.
    ack_emulation = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.QoS = _QoS  # type: ignore[assignment]  # kombu sets its plain virtual QoS when ack_emulation is off

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        if self.closed:  # its connection was lost while the job ran: see RedisTransport
            logger.info("a finished job's message came from a lost connection: its job has ended")
            return
        super().basic_ack(delivery_tag, multiple)


class RedisTransport(kombu_redis.Transport):
    """kombu's Redis transport for workers, with no acknowledgement emulation in Redis (the jobs' leases in the
    database do its work: a job whose worker died, or whose message was lost, is sent again), and minus two steps
    that fail once the connection was lost with jobs in hand: putting their messages back as the lost channel
    closes, and acknowledging them when they end. Both raise AttributeError inside kombu (its client is gone),
    which Celery takes for an unrecoverable error: the worker stays up and never consumes again
    (tests/test_workers.py's broker restart found it, with more jobs at once per worker)."""

    Channel = _RedisChannel


def create_worker_app(settings: Settings) -> Celery:
    global _settings
    _settings = settings
    app = celery_app(settings)
    # loading the models takes longer than Celery's default 4 s for a new process to report in
    app.conf.worker_proc_alive_timeout = 300
    if settings.broker_url is not None and settings.broker_url.get_secret_value().startswith(("redis", "rediss")):
        app.conf.broker_transport = f"{__name__}:RedisTransport"

    @app.task(name=TASK_NAME, bind=True, max_retries=None)
    def run_job(task, job_id: str, outage_since: float | None = None) -> None:
        """Run a job; an outage (database, store) retries it, backing off, for ``job_retry_for_s``, then fails it.
        The message is acknowledged only after the outcome is recorded or the retry is queued."""
        jobs, analysis_slots = _job_service()
        try:
            jobs.run(job_id, analysis_slots)
        except RetryableJobError as exc:
            since = outage_since or time.time()
            delay = jobs.retry_after(job_id, exc, task.request.retries, since)
            if delay is None:
                return
            raise task.retry(countdown=delay, kwargs={"outage_since": since}) from exc

    return app


def _load_models(**_: object) -> None:
    logs.install()
    jobs = _job_service()[0]
    jobs.keep_leases()  # this process' jobs stay leased; lapsed ones anywhere are sent again
    jobs.service.warm_up()
    logger.info("worker ready: models loaded, taking jobs from %s", jobs.settings.safe_broker_url)


def run_worker(settings: Settings, concurrency: int = 1, threads: int = 1, loglevel: str = "info") -> int:
    """Run until stopped (SIGTERM finishes the jobs in hand; a killed worker's jobs go to another worker, at the
    latest when their leases lapse). ``concurrency`` processes (prefork) each run one job at a time; or one process
    runs ``threads`` jobs at once over one model set (Celery's thread pool), ``worker_analyses`` of them running
    the models while the others wait on the database, the object store or the network: with those on other hosts,
    a job spends most of its time waiting, and only jobs side by side keep the CPU busy."""
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
