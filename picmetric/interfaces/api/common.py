"""Shared pieces of the HTTP API: the app state (a dependency), URL fetching, upload reading, image URLs."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

import anyio
from fastapi import Depends, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from picmetric.core.fetching import check_url, fetch_image_bytes_async
from picmetric.core.options import AnalysisOptions
from picmetric.errors import AnalysisFailedError, FetchError, ImageTooLargeError, InvalidImageError, PicMetricError
from picmetric.interfaces.api.metrics import ApiMetrics
from picmetric.service.analyses import AnalysisService, StoredAnalysis
from picmetric.service.datasets import DatasetService
from picmetric.service.evaluation import EvaluationService
from picmetric.service.jobs import JobInput, JobService
from picmetric.service.videos import VideoService
from picmetric.settings import Settings


@dataclass
class ApiState:
    settings: Settings
    service: AnalysisService
    jobs: JobService
    metrics: ApiMetrics
    #: URL downloads in flight: slow servers hold these, never the threads that analyses need
    url_slots: anyio.Semaphore
    job_waiter: JobWaiter = field(init=False)
    videos: VideoService = field(init=False)

    def __post_init__(self) -> None:
        self.job_waiter = JobWaiter(self.jobs)
        self.videos = VideoService(self.jobs)  # this process runs video chunk jobs too (no broker: it runs them all)

    async def analyse(self, job: JobInput, options: AnalysisOptions, *, wait: bool = True) -> StoredAnalysis | str:
        """One photo's analysis: right here with no broker (the embedded default), else as a job on a worker,
        waited for without holding a thread. The job's id instead when ``wait`` is false, or when the job is
        still running after ``job_wait_s``."""
        if self.jobs.runs_here(waiting=wait):
            image = await fetch_url(self, job.url) if job.url is not None else job.data
            assert image is not None, "a job input has bytes or a URL"
            stored = await run_in_threadpool(self.service.submit, image, source=job.source, name=job.name,
                                             options=options)  # fmt: skip
        else:
            _, (job_id,) = await run_in_threadpool(self.jobs.submit, [job], options)
            if not wait:
                return job_id
            if not await self.job_waiter.wait(job_id, self.settings.job_wait_s):
                return job_id
            record = await run_in_threadpool(self.jobs.job, job_id)
            if record is None:
                raise AnalysisFailedError("the job was deleted (a reset) before it finished")
            stored = await run_in_threadpool(self.jobs.result, record)
        self.record(stored)
        return stored

    def record(self, stored: StoredAnalysis) -> None:
        self.metrics.analyses.labels("history" if stored.cached else "analysed").inc()
        if not stored.cached:
            self.metrics.observe_models(stored.analysis.timings_ms)


class JobWaiter:
    """Requests waiting for their jobs (a worker runs them). On PostgreSQL the database tells this process as each
    job ends (one listening connection per process, ``JobService.follow_endings``); each time that (re)connects,
    one query asks about every job still waited for, so no end is missed while it was away. Where the database
    cannot tell (SQLite beside a broker), one query every 50 ms asks about all waiting requests at once."""

    def __init__(self, jobs: JobService) -> None:
        self.jobs = jobs
        self._waiting: dict[str, anyio.Event] = {}
        #: jobs told ended lately: a request that starts waiting just after its job ended finds it here
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._poller: asyncio.Task[None] | None = None
        self._stop_following: Callable[[], None] | None = None

    def start(self) -> None:
        """Listen for job endings (in the app's lifespan, on its loop), where the database can tell."""
        loop = asyncio.get_running_loop()

        def ended(job_id: str) -> None:  # the listening thread's calls run on the app's loop
            loop.call_soon_threadsafe(self._ended_now, job_id)

        def connected() -> None:
            loop.call_soon_threadsafe(self._ask_all)

        self._stop_following = self.jobs.follow_endings(ended, connected)

    def close(self) -> None:
        if self._stop_following is not None:
            self._stop_following()
            self._stop_following = None

    async def wait(self, job_id: str, timeout_s: float) -> bool:
        """True once the job finished (or is gone); False when ``timeout_s`` passed first."""
        event = self._waiting.setdefault(job_id, anyio.Event())
        if job_id in self._ended:
            self._ended_now(job_id)
        elif self._stop_following is None and (self._poller is None or self._poller.done()):
            self._poller = asyncio.get_running_loop().create_task(self._poll())
        with anyio.move_on_after(timeout_s):
            await event.wait()
        if not event.is_set():
            self._waiting.pop(job_id, None)
        return event.is_set()

    def _ended_now(self, job_id: str) -> None:
        self._ended[job_id] = None
        while len(self._ended) > 10_000:
            self._ended.popitem(last=False)
        event = self._waiting.pop(job_id, None)
        if event is not None:
            event.set()

    def _ask_all(self) -> None:
        """Listening (again): ends told while nobody listened are asked for, once."""
        if self._waiting:
            asyncio.get_running_loop().create_task(self._ask())

    async def _ask(self) -> None:
        try:
            ended = await run_in_threadpool(self.jobs.ended, list(self._waiting))
        except PicMetricError:  # database away: the waiters keep waiting, up to their deadline
            return
        for job_id in ended:
            self._ended_now(job_id)

    async def _poll(self) -> None:
        while self._waiting:
            await self._ask()
            await anyio.sleep(0.05)


async def fetch_url(app: ApiState, url: str, *, video: bool = False) -> bytes:
    """Fetch an image URL (http(s), or s3:// on the allow-list) in one of the process's URL slots
    (``url_max_concurrent``); waiting for a slot is bounded by the same deadline as the download itself."""
    try:
        with anyio.fail_after(app.settings.url_timeout_s):
            await app.url_slots.acquire()
    except TimeoutError:
        raise FetchError("too many image URLs are being fetched right now; try again shortly") from None
    try:
        if url.startswith("s3://"):
            return await run_in_threadpool(app.jobs.url_bytes, url, video)
        return await fetch_image_bytes_async(url, settings=app.settings, video=video)  # no thread held meanwhile
    finally:
        app.url_slots.release()


def url_input(url: str, settings: Settings) -> JobInput:
    """A photo named by a URL a client sent, refused (4xx) before anything is read when the URL is malformed or
    an s3:// location off the allow-list."""
    checked = check_url(url, settings)
    return JobInput(source="url", name=checked, url=checked)


def api_state(request: Request) -> ApiState:
    return request.app.state.picmetric


def _service(request: Request) -> AnalysisService:
    return api_state(request).service


def _jobs(request: Request) -> JobService:
    return api_state(request).jobs


def _settings(request: Request) -> Settings:
    return api_state(request).settings


def _videos(request: Request) -> VideoService:
    return api_state(request).videos


def _datasets(request: Request) -> DatasetService:
    return DatasetService(api_state(request).service)


def _evaluations(request: Request) -> EvaluationService:
    state = api_state(request)
    return EvaluationService(state.jobs, DatasetService(state.service))


#: what a route needs, each its own dependency: the whole state only where a photo is analysed (``analyse``:
#: here, or as a job on a worker, waited for), the service, the jobs or the settings otherwise
Api = Annotated[ApiState, Depends(api_state)]
Service = Annotated[AnalysisService, Depends(_service)]
Jobs = Annotated[JobService, Depends(_jobs)]
ApiSettings = Annotated[Settings, Depends(_settings)]
Datasets = Annotated[DatasetService, Depends(_datasets)]
Videos = Annotated[VideoService, Depends(_videos)]
Evaluations = Annotated[EvaluationService, Depends(_evaluations)]


async def upload_input(upload: UploadFile, limit: int) -> JobInput:
    """An uploaded photo, refused when empty or over ``limit``."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ImageTooLargeError(f"the file is larger than the {limit / 1e6:.0f} MB limit")
    if not data:
        raise InvalidImageError("the file is empty (0 bytes)")
    return JobInput(source="upload", name=upload.filename, data=data)


def image_urls(request: Request, stored: StoredAnalysis) -> dict[str, str]:
    """Browser-openable URLs: the object store's own (public or presigned), else this API's image route (which
    draws a picture of the results the first time it is asked for)."""
    return {
        kind: stored.urls.get(kind) or str(request.url_for("get_image", sha256=stored.sha256, kind=kind))
        for kind in stored.image_kinds
    }
