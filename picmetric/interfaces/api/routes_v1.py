"""The v1 API: analyses as resources, history with the dashboard's filters, stored images."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from picmetric.core.intake import ImageSource
from picmetric.core.pipeline import AnalysisOptions
from picmetric.errors import NotFoundError
from picmetric.interfaces.api.common import (
    BadRequest,
    Problem,
    admin_refusal,
    error_responses,
    image_urls,
    is_json,
    json_object,
    read_form,
    request_body,
    require_api_key,
    state,
    upload_bytes,
    upload_fields,
    url_input,
)
from picmetric.interfaces.api.schemas import AnalysisAnswer, HistoryAnswer, JobAccepted
from picmetric.service.analyses import HistoryFilter, StoredAnalysis
from picmetric.service.jobs import JobInput

# option fields of a multipart upload: as in the options model, but tasks as one comma-separated text
_OPTION_FIELDS = {
    **AnalysisOptions.model_json_schema()["properties"],
    "tasks": {"type": "string", "description": "comma-separated: labels, objects, faces"},
}
router = APIRouter(prefix="/api/v1", tags=["v1"], responses=error_responses(Problem))
ImageKind = Literal["original", "objects", "faces", "thumbnail"]


def analysis_body(request: Request, stored: StoredAnalysis) -> dict:
    return {
        "status": stored.status,
        "cached": stored.cached,
        "analysis": stored.analysis.to_dict(),
        "images": image_urls(request, stored),
    }


@router.post(
    "/analyses",
    summary="Analyse an image: multipart 'file' (+ option fields) or JSON {'url': ..., 'options': {...}}",
    response_model=AnalysisAnswer,
    status_code=201,
    responses={
        200: {"model": AnalysisAnswer, "description": "found in history"},
        202: {"model": JobAccepted, "description": "queued (?wait=false, or still running after job_wait_s)"},
    },
    dependencies=[Depends(require_api_key)],
    openapi_extra=request_body(
        multipart=upload_fields("file", **_OPTION_FIELDS),
        json={"url": {"type": "string", "format": "uri"}, "options": AnalysisOptions.model_json_schema()},
        required=("file", "url"),
    ),
)
async def create_analysis(
    request: Request,
    response: Response,
    wait: Annotated[bool, Query(description="false: answer 202 with the job at once instead of its result")] = True,
) -> dict | JSONResponse:
    """Synchronous by default: the answer is the analysis, also when a worker on another machine runs it."""
    app = state(request)
    if is_json(request):
        payload = await json_object(request, fields=("url", "options"))
        if not isinstance(payload.get("url"), str) or not payload["url"].strip():
            raise BadRequest("send JSON {'url': 'https://...'} or a multipart file field 'file'")
        options = AnalysisOptions.from_input(payload.get("options") or {})
        job = url_input(payload["url"], app.settings)
    else:
        form = await read_form(request)
        options = AnalysisOptions.from_input(form, other_fields=("file",))
        data, name = await upload_bytes(form, "file", app.settings.max_upload_bytes)
        job = JobInput(source="upload", name=name, data=data)
    stored = await app.analyse(job, options, wait=wait)
    if isinstance(stored, str):
        return JSONResponse(job_accepted(request, stored), status_code=202)  # the other documented answer
    response.status_code = 200 if stored.cached else 201
    return analysis_body(request, stored)


def job_accepted(request: Request, job_id: str) -> dict:
    return {"job": job_id, "state": "queued", "status_url": str(request.url_for("get_job", job_id=job_id))}


@router.get(
    "/analyses/{sha256}",
    summary="The stored analysis of an image (sha256, the seed's md5, or a unique prefix of 8+ hex characters)",
    response_model=AnalysisAnswer,
    dependencies=[Depends(require_api_key)],
)
async def get_analysis(request: Request, sha256: str) -> dict:
    stored = await run_in_threadpool(state(request).service.find, sha256)
    if stored is None:
        raise NotFoundError(f"no analysis for image {sha256}")
    return analysis_body(request, stored)


@router.get(
    "/analyses",
    summary="History, newest first, with the dashboard's filters",
    dependencies=[Depends(require_api_key)],
    response_model=HistoryAnswer,
)
async def list_analyses(
    request: Request,
    text: str | None = Query(None, description="ImageNet label or object class, substring"),
    label: str | None = None,
    object_class: str | None = None,
    min_faces: int | None = Query(None, ge=0, le=10_000),
    date_from: datetime | None = None,
    date_to: datetime | None = None,
    source: ImageSource | None = None,
    status: Literal["done", "failed"] | None = None,
    page: int = Query(1, ge=1, le=1_000_000),
    page_size: int = Query(50, ge=1, le=500),
) -> dict:
    filters = HistoryFilter(
        text,
        label,
        object_class,
        min_faces,
        _in_utc(date_from, "date_from"),
        _in_utc(date_to, "date_to"),
        source,
        status,
    )
    result = await run_in_threadpool(state(request).service.history, filters, page, page_size)
    items = [
        dataclasses.asdict(item)
        | {"thumbnail": str(request.url_for("get_image", sha256=item.sha256, kind="thumbnail"))}
        for item in result.items
    ]
    return {"items": items, "total": result.total, "page": result.page, "page_size": result.page_size,
            "pages": result.pages}  # fmt: skip


def _in_utc(moment: datetime | None, name: str) -> datetime | None:
    """A filter date as UTC (a naive one is taken as UTC); one that has no UTC equivalent (9999-12-31 at -23:59
    is in the year 10000) is refused here rather than by the database."""
    if moment is None or moment.tzinfo is None:
        return moment
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise BadRequest(f"{name} is outside the years 1-9999 once converted to UTC") from None


@router.delete(
    "/analyses/{sha256}", status_code=204, summary="Delete an image, its analyses and its blobs (admin token)"
)
async def delete_analysis(request: Request, sha256: str) -> Response:
    refusal = admin_refusal(request)
    if refusal is not None:
        return refusal
    deleted = await run_in_threadpool(state(request).service.delete, sha256)
    if not deleted:
        raise NotFoundError(f"no analysis for image {sha256}")
    return Response(status_code=204)


@router.get(
    "/images/{sha256}/{kind}",
    name="get_image",
    summary="The original image or one of its renders",
    response_class=Response,
    dependencies=[Depends(require_api_key)],
    responses={200: {"content": {"image/*": {"schema": {"type": "string", "format": "binary"}}}}},
)
async def get_image(request: Request, sha256: str, kind: ImageKind) -> Response:
    """The original never changes for its sha256 (cached for good); a render is the newest analysis' and changes
    after a re-analysis with other options, so clients revalidate it by its content-addressed ETag."""
    service = state(request).service
    found = await run_in_threadpool(service.image_blob, sha256.lower(), kind)
    if found is None:
        raise NotFoundError(f"no {kind} image for {sha256}")
    key, content_type = found
    headers = {
        "ETag": f'"{key}"',
        "Cache-Control": "public, max-age=31536000, immutable" if kind == "original" else "no-cache",
    }
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    data = await run_in_threadpool(service.blob, key)
    return Response(data, media_type=content_type, headers=headers)
