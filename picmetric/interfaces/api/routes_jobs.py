"""Jobs and batches: analyses queued on the broker's workers (or this process' threads without a broker)."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from picmetric.core.pipeline import AnalysisOptions
from picmetric.errors import NotFoundError, PicMetricError
from picmetric.interfaces.api.common import (
    BadRequest,
    Problem,
    error_responses,
    is_json,
    json_object,
    read_form,
    read_upload,
    request_body,
    require_api_key,
    state,
    url_input,
)
from picmetric.interfaces.api.routes_v1 import _OPTION_FIELDS, analysis_body
from picmetric.interfaces.api.schemas import BatchAccepted, BatchAnswer, JobAnswer
from picmetric.service.analyses import JobRecord
from picmetric.service.jobs import JobInput, batch_counts

router = APIRouter(prefix="/api/v1", tags=["jobs"], responses=error_responses(Problem))
_URL_LIST = {"type": "array", "items": {"type": "string", "format": "uri"}}


def _result_url(request: Request, job: JobRecord) -> str | None:
    if job.state != "done" or not job.sha256:
        return None
    return str(request.url_for("get_analysis", sha256=job.sha256))


@router.get("/jobs/{job_id}", name="get_job", response_model=JobAnswer, dependencies=[Depends(require_api_key)])
async def get_job(request: Request, job_id: str) -> dict:
    """A job's state; once done, its analysis (the same body as GET /api/v1/analyses/{sha256})."""
    jobs = state(request).jobs
    job = await run_in_threadpool(jobs.job, job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id}")
    result = None
    if job.state == "done":
        try:
            result = analysis_body(request, await run_in_threadpool(jobs.result, job))
        except PicMetricError:  # deleted since: the job still says it was done
            result = None
    return {
        "job": job.id, "batch": job.batch_id, "state": job.state, "name": job.name, "attempts": job.attempts,
        "error": job.error, "error_status": job.error_status, "result": result, "result_url": _result_url(request, job),
    }  # fmt: skip


@router.post(
    "/batches",
    status_code=202,
    summary="Queue several photos: multipart 'files' (repeated) and/or 'urls' (a JSON list), or JSON {'urls': [...]}",
    response_model=BatchAccepted,
    dependencies=[Depends(require_api_key)],
    openapi_extra=request_body(
        multipart={
            "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
            "urls": {"type": "string", "description": "a JSON list of image URLs"},
            **_OPTION_FIELDS,
        },
        json={"urls": _URL_LIST, "options": AnalysisOptions.model_json_schema()},
    ),
)
async def create_batch(request: Request) -> dict:
    app = state(request)
    limit = app.settings.max_batch_files
    inputs: list[JobInput] = []
    if is_json(request):
        payload = await json_object(request, fields=("urls", "options"))
        urls: object = payload.get("urls")
        options = AnalysisOptions.from_input(payload.get("options") or {})
    else:
        form = await read_form(request, max_files=limit)
        options = AnalysisOptions.from_input(form, other_fields=("files", "urls"))
        for upload in form.getlist("files"):
            if not isinstance(upload, UploadFile):
                raise BadRequest("'files' must be file fields")
            data, name = await read_upload(upload, app.settings.max_upload_bytes)
            inputs.append(JobInput(source="upload", name=name, data=data))
        urls = _json_list(form.get("urls"))
    if urls is not None:
        if not isinstance(urls, list) or not all(isinstance(u, str) and u.strip() for u in urls):
            raise BadRequest("'urls' must be a list of image URLs")
        inputs += [url_input(url, app.settings) for url in urls]
    if not inputs:
        raise BadRequest("send files in multipart fields named 'files' and/or a JSON list of 'urls'")
    if len(inputs) > limit:
        raise BadRequest(f"a batch holds at most {limit} photos (PICMETRIC_MAX_BATCH_FILES); send several batches")
    batch_id, job_ids = await run_in_threadpool(app.jobs.submit, inputs, options, batch=True)
    assert batch_id is not None
    return {"batch": batch_id, "jobs": job_ids, "status_url": str(request.url_for("get_batch", batch_id=batch_id))}


def _json_list(value: object) -> object:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest("'urls' must be a JSON list of image URLs")
    try:
        return json.loads(value)
    except ValueError:
        raise BadRequest("'urls' must be a JSON list of image URLs") from None


@router.get(
    "/batches/{batch_id}", name="get_batch", response_model=BatchAnswer, dependencies=[Depends(require_api_key)]
)
async def get_batch(request: Request, batch_id: str) -> dict:
    """Counts per state and every item with its job and, once done, its result link."""
    jobs = await run_in_threadpool(state(request).jobs.batch, batch_id)
    if jobs is None:
        raise NotFoundError(f"no batch {batch_id}")
    counts = batch_counts(jobs)
    items = [
        {
            "job": j.id,
            "name": j.name,
            "state": j.state,
            "sha256": j.sha256,
            "error": j.error,
            "result_url": _result_url(request, j),
        }  # fmt: skip
        for j in jobs
    ]
    finished = counts["queued"] == counts["running"] == 0
    return {"batch": batch_id, "total": len(jobs), "finished": finished, "counts": counts, "items": items}
