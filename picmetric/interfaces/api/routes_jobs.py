"""Jobs and batches: analyses queued on the broker's workers (or this process' threads without a broker)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from picmetric.core.options import AnalysisOptions
from picmetric.errors import NotFoundError, PicMetricError, error_kind
from picmetric.interfaces.api.bodies import BatchUpload, EachFieldOnce, JsonRoute, Multipart, UrlBatchRequest
from picmetric.interfaces.api.common import ApiSettings, Jobs, upload_input, url_input
from picmetric.interfaces.api.errors import BadRequest, Problem, error_responses, status_of
from picmetric.interfaces.api.routes_v1 import analysis_answer
from picmetric.interfaces.api.schemas import BatchAccepted, BatchAnswer, BatchItem, JobAnswer
from picmetric.service.jobs import JobInput, JobService, batch_counts
from picmetric.service.types import Job
from picmetric.settings import Settings

router = APIRouter(prefix="/api/v1", tags=["jobs"], responses=error_responses(Problem))


def failure_status(job: Job) -> int | None:
    """The status a failed job's error answers with (``STATUS``); a row from before kinds keeps its own."""
    if job.state != "failed":
        return None
    return status_of(error_kind(job.error_kind)) if job.error_kind else job.error_status


def _result_url(request: Request, job: Job) -> str | None:
    if job.state != "done" or not job.sha256:
        return None
    return str(request.url_for("get_analysis", sha256=job.sha256))


@router.get("/jobs/{job_id}", name="get_job", response_model=JobAnswer)
async def get_job(jobs: Jobs, request: Request, job_id: str) -> JobAnswer:
    """A job's state; once done, its analysis (the same body as GET /api/v1/analyses/{sha256})."""
    job = await run_in_threadpool(jobs.job, job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id}")
    result = None
    if job.state == "done":
        try:
            result = await analysis_answer(jobs.service, request, await run_in_threadpool(jobs.result, job))
        except PicMetricError:  # deleted since: the job still says it was done
            result = None
    return JobAnswer(
        job=job.id, batch=job.batch_id, state=job.state, name=job.name, attempts=job.attempts, error=job.error,
        error_status=failure_status(job), result=result, result_url=_result_url(request, job),
    )  # fmt: skip


_QUEUED: dict[str, Any] = {
    "status_code": 202,
    "summary": "Queue several photos: multipart 'files' (repeated) and/or 'urls' (a JSON list), "
    "or JSON {'urls': [...]}",
    "response_model": BatchAccepted,
}


def _check_size(settings: Settings, count: int) -> None:
    """Refuses an empty batch and one over ``max_batch_files``, before any photo is read."""
    limit = settings.max_batch_files
    if not count:
        raise BadRequest("send files in multipart fields named 'files' and/or a JSON list of 'urls'")
    if count > limit:
        raise BadRequest(f"a batch holds at most {limit} photos (PICMETRIC_MAX_BATCH_FILES); send several batches")


async def _queued(
    jobs: JobService, request: Request, inputs: list[JobInput], options: AnalysisOptions
) -> BatchAccepted:
    batch_id, job_ids = await run_in_threadpool(jobs.submit, inputs, options, batch=True)
    assert batch_id is not None
    return BatchAccepted(batch=batch_id, jobs=job_ids, status_url=str(request.url_for("get_batch", batch_id=batch_id)))


async def queue_urls(jobs: Jobs, settings: ApiSettings, request: Request, body: UrlBatchRequest) -> BatchAccepted:
    _check_size(settings, len(body.urls))
    return await _queued(jobs, request, [url_input(url, settings) for url in body.urls], body.options)


router.add_api_route("/batches", queue_urls, methods=["POST"], route_class_override=JsonRoute, **_QUEUED)


@router.post("/batches", dependencies=[EachFieldOnce], **_QUEUED)
async def create_batch(
    jobs: Jobs, settings: ApiSettings, request: Request, form: Annotated[BatchUpload, Multipart]
) -> BatchAccepted:
    _check_size(settings, len(form.files) + len(form.urls or ()))
    options = form.options()
    inputs = [await upload_input(upload, settings.max_upload_bytes) for upload in form.files]
    inputs += [url_input(url, settings) for url in form.urls or ()]
    return await _queued(jobs, request, inputs, options)


@router.get("/batches/{batch_id}", name="get_batch", response_model=BatchAnswer)
async def get_batch(jobs: Jobs, request: Request, batch_id: str) -> BatchAnswer:
    """Counts per state and every item with its job and, once done, its result link."""
    found = await run_in_threadpool(jobs.batch, batch_id)
    if found is None:
        raise NotFoundError(f"no batch {batch_id}")
    counts = batch_counts(found)
    items = [
        BatchItem(
            job=j.id, name=j.name, state=j.state, sha256=j.sha256, error=j.error, result_url=_result_url(request, j)
        )
        for j in found
    ]
    finished = counts["queued"] == counts["running"] == 0
    return BatchAnswer(batch=batch_id, total=len(found), finished=finished, counts=counts, items=items)
