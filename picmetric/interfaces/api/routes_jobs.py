"""Jobs and batches: analyses queued on the broker's workers (or this process' threads without a broker)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from picmetric.core.pipeline import AnalysisOptions
from picmetric.errors import NotFoundError, PicMetricError
from picmetric.interfaces.api.bodies import BatchUpload, EachFieldOnce, JsonRoute, Multipart, UrlBatchRequest
from picmetric.interfaces.api.common import Api, upload_input, url_input
from picmetric.interfaces.api.errors import BadRequest, Problem, error_responses
from picmetric.interfaces.api.routes_v1 import analysis_answer
from picmetric.interfaces.api.schemas import BatchAccepted, BatchAnswer, BatchItem, JobAnswer
from picmetric.service.analyses import JobRecord
from picmetric.service.jobs import JobInput, batch_counts

router = APIRouter(prefix="/api/v1", tags=["jobs"], responses=error_responses(Problem))


def _result_url(request: Request, job: JobRecord) -> str | None:
    if job.state != "done" or not job.sha256:
        return None
    return str(request.url_for("get_analysis", sha256=job.sha256))


@router.get("/jobs/{job_id}", name="get_job", response_model=JobAnswer)
async def get_job(api: Api, request: Request, job_id: str) -> JobAnswer:
    """A job's state; once done, its analysis (the same body as GET /api/v1/analyses/{sha256})."""
    job = await run_in_threadpool(api.jobs.job, job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id}")
    result = None
    if job.state == "done":
        try:
            result = await analysis_answer(api, request, await run_in_threadpool(api.jobs.result, job))
        except PicMetricError:  # deleted since: the job still says it was done
            result = None
    return JobAnswer(
        job=job.id, batch=job.batch_id, state=job.state, name=job.name, attempts=job.attempts, error=job.error,
        error_status=job.error_status, result=result, result_url=_result_url(request, job),
    )  # fmt: skip


_QUEUED: dict[str, Any] = {
    "status_code": 202,
    "summary": "Queue several photos: multipart 'files' (repeated) and/or 'urls' (a JSON list), "
    "or JSON {'urls': [...]}",
    "response_model": BatchAccepted,
}


def _check_size(api: Api, count: int) -> None:
    """Refuses an empty batch and one over ``max_batch_files``, before any photo is read."""
    limit = api.settings.max_batch_files
    if not count:
        raise BadRequest("send files in multipart fields named 'files' and/or a JSON list of 'urls'")
    if count > limit:
        raise BadRequest(f"a batch holds at most {limit} photos (PICMETRIC_MAX_BATCH_FILES); send several batches")


async def _queued(api: Api, request: Request, inputs: list[JobInput], options: AnalysisOptions) -> BatchAccepted:
    batch_id, job_ids = await run_in_threadpool(api.jobs.submit, inputs, options, batch=True)
    assert batch_id is not None
    return BatchAccepted(batch=batch_id, jobs=job_ids, status_url=str(request.url_for("get_batch", batch_id=batch_id)))


async def queue_urls(api: Api, request: Request, body: UrlBatchRequest) -> BatchAccepted:
    _check_size(api, len(body.urls))
    return await _queued(api, request, [url_input(url, api.settings) for url in body.urls], body.options)


router.add_api_route("/batches", queue_urls, methods=["POST"], route_class_override=JsonRoute, **_QUEUED)


@router.post("/batches", dependencies=[EachFieldOnce], **_QUEUED)
async def create_batch(api: Api, request: Request, form: Annotated[BatchUpload, Multipart]) -> BatchAccepted:
    _check_size(api, len(form.files) + len(form.urls or ()))
    options = form.options()
    inputs = [await upload_input(upload, api.settings.max_upload_bytes) for upload in form.files]
    inputs += [url_input(url, api.settings) for url in form.urls or ()]
    return await _queued(api, request, inputs, options)


@router.get("/batches/{batch_id}", name="get_batch", response_model=BatchAnswer)
async def get_batch(api: Api, request: Request, batch_id: str) -> BatchAnswer:
    """Counts per state and every item with its job and, once done, its result link."""
    jobs = await run_in_threadpool(api.jobs.batch, batch_id)
    if jobs is None:
        raise NotFoundError(f"no batch {batch_id}")
    counts = batch_counts(jobs)
    items = [
        BatchItem(
            job=j.id, name=j.name, state=j.state, sha256=j.sha256, error=j.error, result_url=_result_url(request, j)
        )
        for j in jobs
    ]
    finished = counts["queued"] == counts["running"] == 0
    return BatchAnswer(batch=batch_id, total=len(jobs), finished=finished, counts=counts, items=items)
