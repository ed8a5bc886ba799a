"""Jobs: analyses queued to run elsewhere, on Celery workers or on background threads of this process.

Every job is a row (``Repository.create_jobs``) before it is sent anywhere, so any process can say how it stands;
the work itself is ``AnalysisService.submit``, whose claim keeps each image+options analysed once even when a job
runs twice. A job's lease (``JobService``) sends it again when its holder dies or its message is lost, without
waiting for the broker's redelivery.

* No broker (``PICMETRIC_BROKER_URL`` unset): ``InProcessQueue`` runs jobs on ``job_threads`` threads here.
* ``redis://`` or ``amqp://``: ``CeleryQueue`` publishes them; ``picmetric worker``
  (``picmetric.interfaces.worker``) runs them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.engine import make_url

from picmetric import logs
from picmetric.core.fetching import check_url, fetch_image_bytes
from picmetric.core.options import AnalysisOptions
from picmetric.errors import (
    AnalysisFailedError,
    InternalError,
    MissingBlobError,
    PicMetricError,
    QueueUnavailableError,
    StorageError,
    error_kind,
)
from picmetric.service.analyses import AnalysisService, StoredAnalysis
from picmetric.service.types import JOB_STATES, Job, converted
from picmetric.settings import Settings
from picmetric.storage import JobRecord, NewJob

if TYPE_CHECKING:
    from celery import Celery

logger = logging.getLogger(__name__)
TASK_NAME = "picmetric.run_job"


#: a job failing with one of these statuses (database, store or broker away) is retried by a worker
@dataclass(frozen=True)
class JobInput:
    """One photo to analyse: uploaded bytes, or a URL (http(s):// fetched with the URL guards, or s3://)."""

    source: str  # upload | url | s3 | sample | camera | video
    name: str | None = None
    data: bytes | None = None
    url: str | None = None
    kind: str = "photo"  # or video-chunk: ``spec`` says which frames of which stored clip
    spec: dict | None = None


@dataclass(frozen=True)
class QueueStatus:
    """What the System page, /readyz and /metrics say about the queue."""

    kind: str  # in-process | celery
    broker: str  # "in-process", or the broker URL without its password: for the teacher or admin only
    reachable: bool
    error: str | None = None  # why it is unreachable, in the broker's words (may name its host: teacher or admin)
    transport: str = "in-process"  # what anyone may be told: in-process, redis or amqp
    depth: int | None = None  # jobs waiting for a worker
    workers: list[str] = field(default_factory=list)  # workers that answered a ping (Celery only)


class JobQueue(Protocol):
    def send(self, job_id: str, *, fetches_url: bool = False) -> None: ...
    def status(self, ping_workers: bool = False) -> QueueStatus: ...


class RetryableJobError(Exception):
    """A job met an outage (database, object store): a worker retries it later instead of failing it. ``kind``:
    the outage's error class, recorded if the job is given up on."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class JobService:
    """Queue analyses and follow them. Safe to share between threads.

    Every job has a lease (``job_lease_s``): whoever holds it (the worker running it, or the in-process queue
    that keeps it in memory) renews it from a background thread; a job whose lease lapsed (its holder died, its
    message was lost) is sent again by whichever process notices first, so no job waits on a broker's redelivery
    or a restart. A job started ``job_max_attempts`` times without finishing fails with the reason."""

    def __init__(self, service: AnalysisService, queue: JobQueue | None = None) -> None:
        self.service = service
        self.settings = service.settings
        self._repository = service._repository
        self._queue = queue
        self._queue_lock = threading.Lock()
        self.worker_name = logs.process_name()
        self._held: set[str] = set()  # jobs this process vouches for: queued in its memory, or running here
        self._running: set[str] = set()  # jobs a thread of this process is running now
        self._held_lock = threading.Lock()
        self._keeper: threading.Thread | None = None
        self._stopping = threading.Event()
        #: how jobs of other kinds than a photo run (``VideoService`` registers video-chunk): their outcome, as
        #: ``finish_job``'s arguments
        self._kinds: dict[str, Callable[[JobRecord], dict[str, Any]]] = {}

    def register(self, kind: str, run: Callable[[JobRecord], dict[str, Any]]) -> None:
        """Run jobs of ``kind`` with ``run`` (in this process: a worker registers what it can run)."""
        self._kinds[kind] = run

    @property
    def queue(self) -> JobQueue:
        """The broker's queue, or background threads here; made on first use (a dashboard may never queue)."""
        with self._queue_lock:
            if self._queue is None:
                self._queue = (
                    CeleryQueue(self.settings)
                    if self.settings.broker_url
                    else InProcessQueue(self.run, self.retry_after, self.settings)
                )
            return self._queue

    @property
    def uses_broker(self) -> bool:
        return self.settings.broker_url is not None

    def runs_here(self, *, waiting: bool) -> bool:
        """Whether a photo whose caller waits for its answer is analysed by the caller's process (no broker: the
        embedded default) rather than queued for a worker. The API and the CLI ask this; they never decide it."""
        return waiting and not self.uses_broker

    # -- submitting ----------------------------------------------------------------------------------------------

    def submit(
        self, inputs: Sequence[JobInput], options: AnalysisOptions | None = None, *, batch: bool = False
    ) -> tuple[str | None, list[str]]:
        """Queue one job per input (all in one batch when ``batch``); returns the batch id and the job ids.
        Uploads are staged in the object store first, so a worker on another machine can read them and a job row
        never names a missing one. The broker being down answers QueueUnavailableError (503) and the jobs not
        sent are recorded as failed, never left queued."""
        if not inputs:
            raise PicMetricError("nothing to analyse: send at least one file or URL")
        options = options or AnalysisOptions()
        self.service.key_of(options)  # a detector that is not here is refused now, not by every job later
        # one staged blob per job, never shared: a job that ends removes its own without asking who else needs it
        staged = {i: f"incoming/{uuid.uuid4().hex}" for i, item in enumerate(inputs) if item.data is not None}
        jobs = [
            NewJob(
                source=item.source,
                options=options.to_dict(),
                name=item.name,
                url=item.url,
                input_key=staged.get(i),
                kind=item.kind,
                spec=item.spec,
            )  # fmt: skip
            for i, item in enumerate(inputs)
        ]
        try:
            self._stage({key: inputs[i].data or b"" for i, key in staged.items()})
            batch_id, job_ids = self._repository.create_jobs(jobs, batch=batch)
        except PicMetricError as exc:
            # the database away: the staged uploads go now; the store away: asking it again would only wait its
            # timeout twice before the caller hears 503, so the sweep removes whatever of them it kept
            for key in staged.values() if not isinstance(exc, StorageError) else ():
                with contextlib.suppress(PicMetricError):
                    self._repository.blobs.delete(key)
            raise
        self.keep_leases()
        sent = 0
        try:
            for item, job_id in zip(inputs, job_ids, strict=True):
                self._send(job_id, fetches_url=item.data is None and item.kind == "photo")
                sent += 1
        except PicMetricError as exc:
            for job_id in job_ids[sent:]:
                self._repository.finish_job(job_id, sha256=None, error=str(exc), error_kind=type(exc).__name__)
            raise
        return batch_id, job_ids

    def _stage(self, uploads: dict[str, bytes]) -> None:
        """Put a batch's uploads in the object store, up to 8 at once: with the store on another host each is a
        round trip, and one after another they were most of a batch's answer (48 photos 20 ms apart were queued in
        3.8 s, now 1.7 s: benchmarks/bench_hosts.py). After a failure the puts not yet started are skipped (a
        store gone silent answers within one timeout, not one per eight photos); the first failure is raised once
        the started ones have ended."""
        failed = threading.Event()

        def put(key: str, data: bytes) -> None:
            if failed.is_set():
                return
            try:
                self._repository.blobs.put(key, data, "application/octet-stream")
            except BaseException:
                failed.set()
                raise

        if len(uploads) <= 1:
            for key, data in uploads.items():
                put(key, data)
            return
        with ThreadPoolExecutor(max_workers=min(8, len(uploads)), thread_name_prefix="picmetric-stage") as pool:
            puts = [pool.submit(put, key, data) for key, data in uploads.items()]
        for done in puts:
            done.result()

    def _send(self, job_id: str, *, fetches_url: bool) -> None:
        if not self.uses_broker:
            self._hold(job_id)  # it lives in this process' memory now: vouch for it until it ends
        self.queue.send(job_id, fetches_url=fetches_url)

    # -- running (a worker, or an in-process thread) -------------------------------------------------------------

    def run(self, job_id: str, analysis_slot: AbstractContextManager[Any] | None = None) -> None:
        """Run one job and record its outcome. A job that finished, or that another runner holds, is not run
        again. An outage (database, object store) raises RetryableJobError with the job put back in the queue
        (still held by this process when the retry is in-process: a broker's retry may run anywhere).
        ``analysis_slot`` is held while the models run, not while a URL is fetched or storage answers."""
        self.keep_leases()
        with self._held_lock:
            if job_id in self._running:  # a duplicate message while this process runs it: that run records it
                return
            self._running.add(job_id)
        try:
            self._run_once(job_id, analysis_slot)
        finally:
            with self._held_lock:
                self._running.discard(job_id)

    def _run_once(self, job_id: str, analysis_slot: AbstractContextManager[Any] | None) -> None:
        keep_holding = False
        try:
            job = self._repository.start_job(job_id, self.worker_name)
            if job is None:
                return
            self._hold(job_id)
            try:
                outcome = self._analyse(job, analysis_slot)
            except RetryableJobError:
                with contextlib.suppress(PicMetricError):  # database away too: the retry takes it back as its own
                    self._repository.release_job(job_id)
                raise
            self._repository.finish_job(job_id, **outcome)
        except PicMetricError as exc:  # starting or recording met the database away: the retry finds it stored
            if not exc.retryable:
                raise
            keep_holding = not self.uses_broker
            raise RetryableJobError(str(exc), type(exc).__name__) from exc
        except RetryableJobError:
            keep_holding = not self.uses_broker
            raise
        finally:
            if not keep_holding:
                self._let_go(job_id)

    def _analyse(self, job: JobRecord, analysis_slot: AbstractContextManager[Any] | None) -> dict[str, Any]:
        """The job's outcome as ``finish_job``'s arguments; an outage raises RetryableJobError."""
        try:
            if job.kind != "photo":
                if job.kind not in self._kinds:
                    raise InternalError(f"this process does not run {job.kind} jobs")
                with analysis_slot or nullcontext():
                    return self._kinds[job.kind](job)
            image = self._input_data(job)
            kept = self.service.keep(
                image, source=job.source, name=job.name or job.url, options=AnalysisOptions.from_stored(job.options),
                analysis_slot=analysis_slot,
            )  # fmt: skip
        except PicMetricError as exc:
            if exc.retryable:
                raise RetryableJobError(str(exc), type(exc).__name__) from exc
            return {"sha256": None, "error": str(exc), "error_kind": type(exc).__name__}
        except Exception as exc:  # a bug must not leave the job running forever
            logger.exception("job %s crashed", job.id)
            return {
                "sha256": None,
                "error": f"internal error ({exc.__class__.__name__})",
                "error_kind": "InternalError",
            }
        return {"sha256": kept.sha256, "cached": kept.cached}

    def retry_after(self, job_id: str, outage: RetryableJobError, retries: int, since: float) -> float | None:
        """After ``run`` met an outage for the ``retries``-th time since ``since`` (a ``time.time()``): the seconds
        to wait before running the job again, backing off to 10 s; once ``job_retry_for_s`` has passed, None, and
        the job is failed with the outage's reason (a new submission retries it). Both queues retry by this."""
        if time.time() - since > self.settings.job_retry_for_s:
            logger.warning("job %s: %s; giving up", job_id, outage)
            self._let_go(job_id)
            with contextlib.suppress(PicMetricError):  # still away: its lease lapses and it is reclaimed later
                self._repository.finish_job(job_id, sha256=None, error=str(outage), error_kind=outage.kind)
            return None
        delay = min(10.0, 0.5 * 2**retries)
        logger.warning("job %s: %s; retrying in %.1f s", job_id, outage, delay)
        return delay

    def _input_data(self, job: JobRecord) -> bytes:
        """The job's photo as sent: its staged upload, or the URL fetched. A client's URL is checked again here
        (s3:// allow-list, well-formed), so a job row written by any other path cannot read more than the API
        would; only ``picmetric ingest``'s jobs (source "s3") read their bucket unchecked."""
        if job.input_key is not None:
            try:
                return self._repository.blobs.get(job.input_key)
            except MissingBlobError:
                raise MissingBlobError("the uploaded photo was lost before its job ran; send it again") from None
        assert job.url is not None, "a job has staged bytes or a URL"
        return self.url_bytes(job.url if job.source == "s3" else check_url(job.url, self.settings))

    def url_bytes(self, url: str, video: bool = False) -> bytes:
        """An image's (``video``: a clip's, with its own limit) bytes from s3:// (this server's credentials) or
        http(s):// (with the URL guards)."""
        if url.startswith("s3://"):
            from picmetric.storage.s3 import S3Objects

            limit = self.settings.max_video_bytes if video else self.settings.max_upload_bytes
            return S3Objects(self.settings).get(url, limit)
        return fetch_image_bytes(url, settings=self.settings, video=video)

    # -- leases --------------------------------------------------------------------------------------------------

    def _hold(self, job_id: str) -> None:
        with self._held_lock:
            self._held.add(job_id)

    def _let_go(self, job_id: str) -> None:
        with self._held_lock:
            self._held.discard(job_id)

    def keep_leases(self) -> None:
        """Start (once per process) the thread that renews this process' jobs, sends lapsed jobs again and ships
        this process' log lines to the database for the System page."""
        with self._held_lock:
            if self._keeper is not None and self._keeper.is_alive():
                return
            self._stopping.clear()
            self._keeper = threading.Thread(target=self._keep, name="picmetric-leases", daemon=True)
            self._keeper.start()

    def close(self) -> None:
        """Stop renewing (a process shutting down); jobs still held lapse and are taken over elsewhere."""
        self._stopping.set()
        if self._keeper is not None:
            self._keeper.join(10)

    def _keep(self) -> None:
        tick = min(5.0, self.settings.job_lease_s / 4)
        reclaim_every = max(1, round(self.settings.job_lease_s / 3 / tick))
        ticks = 0
        while not self._stopping.wait(tick):
            ticks += 1
            try:
                with self._held_lock:
                    held = list(self._held)
                self._repository.renew_jobs(held)
                self.service.ship_log_lines()
                if ticks % reclaim_every == 0:
                    self.reclaim()
            except PicMetricError as exc:  # database or broker away: the next tick tries again
                logger.debug("leases: %s", exc)
            except Exception:  # the keeper must outlive any surprise, or this process' jobs would all lapse
                logger.exception("leases: unexpected error")

    def reclaim(self) -> int:
        """Send again the jobs whose lease lapsed; returns how many. A queued job counts as lost only when the
        broker's queue is empty (else its message may still be waiting in line)."""
        queued = True
        if self.uses_broker:
            status = self.queue.status()
            queued = status.reachable and status.depth == 0
        lapsed = self._repository.reclaim_lapsed_jobs(queued=queued)
        for job_id, fetches_url in lapsed:
            self._send(job_id, fetches_url=fetches_url)
        return len(lapsed)

    # -- following -----------------------------------------------------------------------------------------------

    def job(self, job_id: str) -> Job | None:
        found = self._repository.job(job_id) if _is_id(job_id) else None
        return converted(found, Job) if found is not None else None

    def ended(self, job_ids: Sequence[str]) -> set[str]:
        """Of these jobs, those done, failed or gone: one query however many requests wait."""
        return self._repository.ended_jobs(job_ids)

    def follow_endings(
        self, on_ended: Callable[[str], None], on_connected: Callable[[], None]
    ) -> Callable[[], None] | None:
        """Have ``on_ended(job_id)`` called, from a thread of its own, as each job ends anywhere, and
        ``on_connected()`` whenever that starts or starts again (ends meanwhile were missed: ask ``ended`` then);
        returns what stops it. None where the database cannot tell (SQLite): ask ``ended``."""
        endings = self._repository.follow_job_endings(on_ended, on_connected)
        return endings.close if endings is not None else None

    def result(self, job: Job) -> StoredAnalysis:
        """A finished job's analysis, or its error raised as the kind it was recorded as."""
        if job.state == "failed":
            raise error_kind(job.error_kind or "AnalysisFailedError")(job.error or "the analysis failed")
        stored = self.service.get(job.sha256 or "", AnalysisOptions.from_stored(job.options))
        if stored is None:
            raise AnalysisFailedError("the analysis was deleted after the job finished")
        stored.cached = bool(job.cached)
        return stored

    def batch(self, batch_id: str) -> list[Job] | None:
        found = self._repository.batch(batch_id) if _is_id(batch_id) else None
        return [converted(job, Job) for job in found] if found is not None else None


def _is_id(text: str) -> bool:
    """Job and batch ids are 32 hex characters (uuid4().hex): anything else names no job, and is never sent to
    the database (a 50,000-character or NUL-bearing id is a client's mistake, not an outage)."""
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


def batch_counts(jobs: Sequence[Job]) -> dict[str, int]:
    """Jobs per state (queued, running, done, failed); done + failed = finished."""
    counts: dict[str, int] = dict.fromkeys(JOB_STATES, 0)
    for job in jobs:
        counts[job.state] += 1
    return counts


class InProcessQueue:
    """No broker: jobs run on background threads of this process (the embedded default).

    Jobs that fetch a URL have threads of their own (``url_max_concurrent``), so a slow server holds a URL thread,
    never the way of an upload's job; at most ``job_threads`` analyses of either kind run at once. A job that
    meets an outage is tried again after ``retry_after``, until it says to give up."""

    def __init__(
        self,
        run: Callable[[str, AbstractContextManager[Any]], None],
        retry_after: Callable[[str, RetryableJobError, int, float], float | None],
        settings: Settings,
    ) -> None:
        self._run, self._retry_after = run, retry_after
        self._pools = {
            False: ThreadPoolExecutor(max_workers=settings.job_threads, thread_name_prefix="picmetric-job"),
            True: ThreadPoolExecutor(max_workers=settings.url_max_concurrent, thread_name_prefix="picmetric-url-job"),
        }
        self._analysis_slots = threading.BoundedSemaphore(settings.job_threads)
        self._waiting = 0
        self._lock = threading.Lock()

    def send(self, job_id: str, *, fetches_url: bool = False) -> None:
        self._submit(job_id, fetches_url, retries=0, since=None)

    def _submit(self, job_id: str, fetches_url: bool, retries: int, since: float | None) -> None:
        with self._lock:
            self._waiting += 1
        self._pools[fetches_url].submit(self._run_one, job_id, fetches_url, retries, since)

    def _run_one(self, job_id: str, fetches_url: bool, retries: int, since: float | None) -> None:
        with self._lock:
            self._waiting -= 1
        try:
            self._run(job_id, self._analysis_slots)
        except RetryableJobError as exc:
            since = since or time.time()
            delay = self._retry_after(job_id, exc, retries, since)
            if delay is None:
                return
            timer = threading.Timer(delay, self._submit, args=(job_id, fetches_url, retries + 1, since))
            timer.daemon = True
            timer.start()
        except Exception:
            logger.exception("job %s crashed", job_id)

    def status(self, ping_workers: bool = False) -> QueueStatus:
        return QueueStatus(kind="in-process", broker="in-process", reachable=True, depth=self._waiting)


def celery_app(settings: Settings) -> Celery:
    """The Celery application both sides use: the API publishes with it, ``picmetric worker`` consumes with it.
    Late acknowledgement + reject on a lost worker: RabbitMQ gives a job whose worker died to another worker (a
    Redis worker acknowledges nothing there: see ``picmetric.interfaces.worker.RedisTransport``); either way the
    job's lease sends it again."""
    from celery import Celery

    assert settings.broker_url is not None
    app = Celery("picmetric", broker=settings.broker_url.get_secret_value(), set_as_current=False)
    timeout = settings.broker_timeout_s
    app.conf.update(
        task_default_queue=settings.job_queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,  # a job waits in the broker, not behind a busy worker's prefetched ones
        worker_hijack_root_logger=False,
        broker_connection_timeout=timeout,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
        },
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
    )
    return app


class CeleryQueue:
    """Jobs published to Redis or RabbitMQ for ``picmetric worker`` processes on any machine."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = celery_app(settings)

    def send(self, job_id: str, *, fetches_url: bool = False) -> None:
        """Publish, giving up within about ``broker_timeout_s`` (twice that at worst): a try that failed fast (a
        connection the broker closed, say after a restart) is made once more on a new connection; one that timed
        out (a silent network) is not, where kombu's own retries would wait the timeout again and again."""
        started = time.monotonic()
        once = {"retry": True, "retry_policy": {"max_retries": 0}}  # kombu's connecting too: one try, no loop
        try:
            try:
                self.app.send_task(TASK_NAME, args=[job_id], queue=self.settings.job_queue, **once)
            except Exception:
                if time.monotonic() - started > self.settings.broker_timeout_s / 2:
                    raise
                self.app.send_task(TASK_NAME, args=[job_id], queue=self.settings.job_queue, **once)
        except Exception as exc:  # kombu's and redis' connection errors have no common base worth naming
            # the address and the broker's words go to the log (the admin's); the caller learns what to do
            logger.warning("the job queue (%s) is unreachable: %s", self.settings.safe_broker_url, self._reason(exc))
            raise QueueUnavailableError(
                f"the job queue ({self.transport}) is unreachable: nothing was queued, retry shortly"
            ) from None

    @property
    def transport(self) -> str:
        """The broker's kind (redis, amqp), without its address."""
        assert self.settings.broker_url is not None
        scheme = make_url(self.settings.broker_url.get_secret_value()).drivername
        return {"rediss": "redis", "amqps": "amqp"}.get(scheme, scheme)  # TLS or not, the same kind

    def _reason(self, exc: BaseException) -> str:
        """The broker's own words ("DB index is out of range"), without its password, kept short."""
        text = " ".join(str(exc).split())
        if self.settings.broker_url is not None:
            secret = make_url(self.settings.broker_url.get_secret_value()).password
            if secret:
                text = text.replace(str(secret), "***")
        return f"{exc.__class__.__name__}: {text[:200]}" if text else exc.__class__.__name__

    def status(self, ping_workers: bool = False) -> QueueStatus:
        broker = self.settings.safe_broker_url or ""
        try:
            with self.app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=self.settings.broker_timeout_s)
                depth = _queue_depth(connection, self.settings.job_queue)
            workers: list[str] = []
            if ping_workers:
                replies: list[dict[str, Any]] = self.app.control.ping(timeout=1.0) or []
                workers = sorted(name for reply in replies for name in reply)
        except Exception as exc:
            return QueueStatus("celery", broker, False, f"unreachable ({self._reason(exc)})", self.transport)
        return QueueStatus("celery", broker, True, depth=depth, workers=workers, transport=self.transport)


def _queue_depth(connection: Any, queue: str) -> int:
    """Messages waiting in the queue; a queue nobody declared yet holds none."""
    channel = connection.channel()
    try:
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except Exception:
        return 0
    finally:
        try:
            channel.close()
        except Exception:
            logger.debug("closing the status channel failed", exc_info=True)
