"""The v1 API: analyses as resources, history with the dashboard's filters, stored images."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Query, Request, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from picmetric.core.decoding import ImageSource
from picmetric.core.options import AnalysisOptions
from picmetric.errors import NotFoundError
from picmetric.interfaces.api.bodies import AnalysisUpload, EachFieldOnce, JsonRoute, Multipart, UrlAnalysisRequest
from picmetric.interfaces.api.common import Api, ApiSettings, Service, image_urls, upload_input, url_input
from picmetric.interfaces.api.errors import BadRequest, Problem, error_responses
from picmetric.interfaces.api.schemas import (
    AnalysisAnswer,
    HistoryAnswer,
    HistoryEntry,
    JobAccepted,
    SimilarAnswer,
    SimilarItem,
)
from picmetric.service.analyses import AnalysisService, SimilarPhoto, StoredAnalysis
from picmetric.service.jobs import JobInput
from picmetric.service.types import HistoryFilter

router = APIRouter(prefix="/api/v1", tags=["v1"], responses=error_responses(Problem))
ImageKind = Literal["original", "objects", "faces", "thumbnail"]
Wait = Annotated[bool, Query(description="false: answer 202 with the job at once instead of its result")]


async def analysis_answer(service: AnalysisService, request: Request, stored: StoredAnalysis) -> AnalysisAnswer:
    """An analysis as the API answers it, with the stored photo it is a near-duplicate of (if any)."""
    twin = await run_in_threadpool(service.near_duplicate_of, stored.sha256) if stored.status == "done" else None
    return AnalysisAnswer.model_validate(
        {
            "status": stored.status,
            "cached": stored.cached,
            "analysis": stored.analysis.to_json(),
            "images": image_urls(request, stored),
            "near_duplicate_of": similar_item(request, twin) if twin is not None else None,
        }
    )


def similar_item(request: Request, photo: SimilarPhoto) -> SimilarItem:
    thumbnail = str(request.url_for("get_image", sha256=photo.sha256, kind="thumbnail"))
    return SimilarItem(sha256=photo.sha256, name=photo.name, similarity=photo.similarity,
                       near_duplicate=photo.near_duplicate, thumbnail=thumbnail)  # fmt: skip


Limit = Annotated[int, Query(ge=1, le=100, description="how many photos, best first")]


@router.get(
    "/analyses/{sha256}/similar",
    summary="Stored photos like this one, best first (similarity 0-1; near_duplicate: the same picture edited)",
    response_model=SimilarAnswer,
)
async def similar_photos(service: Service, request: Request, sha256: str, limit: Limit = 10) -> SimilarAnswer:
    found = await run_in_threadpool(service.similar, sha256, limit)
    if found is None:
        raise NotFoundError(f"no analysis for image {sha256}")
    return SimilarAnswer(items=[similar_item(request, photo) for photo in found])


@router.post(
    "/similar",
    summary="Stored photos like the photo sent (multipart 'file'); nothing is stored",
    response_model=SimilarAnswer,
)
async def similar_to_photo(
    service: Service, settings: ApiSettings, request: Request, file: Annotated[UploadFile, File()], limit: Limit = 10
) -> SimilarAnswer:
    upload = await upload_input(file, settings.max_upload_bytes)
    assert upload.data is not None, "an upload has bytes"
    found = await run_in_threadpool(service.similar_to, upload.data, limit)
    return SimilarAnswer(items=[similar_item(request, photo) for photo in found])


_CREATED: dict[str, Any] = {
    "summary": "Analyse an image: multipart 'file' (+ option fields) or JSON {'url': ..., 'options': {...}}",
    "response_model": AnalysisAnswer | JobAccepted,  # 201 or 200: the analysis; 202: the job
    "status_code": 201,
    "responses": {
        200: {"model": AnalysisAnswer, "description": "found in history"},
        202: {"model": JobAccepted, "description": "queued (?wait=false, or still running after job_wait_s)"},
    },
}


async def _created(
    api: Api, request: Request, response: Response, job: JobInput, options: AnalysisOptions, wait: bool
) -> AnalysisAnswer | JobAccepted:
    """Synchronous by default: the answer is the analysis, also when a worker on another machine runs it."""
    stored = await api.analyse(job, options, wait=wait)
    if isinstance(stored, str):
        response.status_code = 202
        return job_accepted(request, stored)
    response.status_code = 200 if stored.cached else 201
    return await analysis_answer(api.service, request, stored)


async def analyse_url(
    api: Api, request: Request, response: Response, body: UrlAnalysisRequest, wait: Wait = True
) -> AnalysisAnswer | JobAccepted:
    return await _created(api, request, response, url_input(body.url, api.settings), body.options, wait)


router.add_api_route("/analyses", analyse_url, methods=["POST"], route_class_override=JsonRoute, **_CREATED)


@router.post("/analyses", dependencies=[EachFieldOnce], **_CREATED)
async def create_analysis(
    api: Api, request: Request, response: Response, form: Annotated[AnalysisUpload, Multipart], wait: Wait = True
) -> AnalysisAnswer | JobAccepted:
    options = form.options()
    job = await upload_input(form.file, api.settings.max_upload_bytes)
    return await _created(api, request, response, job, options, wait)


def job_accepted(request: Request, job_id: str) -> JobAccepted:
    return JobAccepted(job=job_id, state="queued", status_url=str(request.url_for("get_job", job_id=job_id)))


@router.get(
    "/analyses/{sha256}",
    summary="The stored analysis of an image (sha256, the seed's md5, or a unique prefix of 8+ hex characters)",
    response_model=AnalysisAnswer,
)
async def get_analysis(service: Service, request: Request, sha256: str) -> AnalysisAnswer:
    stored = await run_in_threadpool(service.find, sha256)
    if stored is None:
        raise NotFoundError(f"no analysis for image {sha256}")
    return await analysis_answer(service, request, stored)


@router.get(
    "/analyses",
    summary="History, newest first, with the dashboard's filters",
    response_model=HistoryAnswer,
)
async def list_analyses(
    service: Service,
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
) -> HistoryAnswer:
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
    result = await run_in_threadpool(service.history, filters, page, page_size)
    items = [
        HistoryEntry(
            **{**vars(item), "thumbnail": str(request.url_for("get_image", sha256=item.sha256, kind="thumbnail"))}
        )
        for item in result.items
    ]
    return HistoryAnswer(items=items, total=result.total, page=result.page, page_size=result.page_size,
                         pages=result.pages)  # fmt: skip


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
async def delete_analysis(service: Service, sha256: str) -> Response:
    """The request guard has checked the admin token."""
    deleted = await run_in_threadpool(service.delete, sha256)
    if not deleted:
        raise NotFoundError(f"no analysis for image {sha256}")
    return Response(status_code=204)


@router.get(
    "/images/{sha256}/{kind}",
    name="get_image",
    summary="The original image or one of its renders",
    response_class=Response,
    responses={200: {"content": {"image/*": {"schema": {"type": "string", "format": "binary"}}}}},
)
async def get_image(service: Service, request: Request, sha256: str, kind: ImageKind) -> Response:
    """The original never changes for its sha256 (cached for good); a render is the newest analysis' and changes
    after a re-analysis with other options, so clients revalidate it by its content-addressed ETag."""
    found = await run_in_threadpool(service.image, sha256, kind)
    if found is None:
        raise NotFoundError(f"no {kind} image for {sha256}")
    headers = {
        "ETag": found.etag,
        "Cache-Control": "public, max-age=31536000, immutable" if kind == "original" else "no-cache",
    }
    if request.headers.get("if-none-match") == found.etag:
        return Response(status_code=304, headers=headers)
    data = await run_in_threadpool(found.read)
    return Response(data, media_type=found.content_type, headers=headers)
