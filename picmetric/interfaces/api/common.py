"""Shared pieces of the HTTP API: the app state, upload reading with limits, error mapping, URLs for images."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
from fastapi import Depends, HTTPException, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, APIKeyQuery
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from picmetric.core.intake import check_url, fetch_image_bytes_async
from picmetric.core.pipeline import AnalysisOptions
from picmetric.core.seed import seed_response
from picmetric.errors import (
    AnalysisFailedError,
    FetchError,
    ImageTooLargeError,
    InvalidImageError,
    PicMetricError,
)
from picmetric.interfaces.api.metrics import ApiMetrics
from picmetric.service.analyses import AnalysisService, StoredAnalysis
from picmetric.service.jobs import JobInput, JobService
from picmetric.settings import Settings, tokens_match


@dataclass
class ApiState:
    settings: Settings
    service: AnalysisService
    jobs: JobService
    metrics: ApiMetrics
    #: URL downloads in flight: slow servers hold these, never the threads that analyses need
    url_slots: anyio.Semaphore
    job_waiter: JobWaiter = field(init=False)

    def __post_init__(self) -> None:
        self.job_waiter = JobWaiter(self.jobs)

    async def analyse(self, job: JobInput, options: AnalysisOptions, *, wait: bool = True) -> StoredAnalysis | str:
        """One photo's analysis: right here with no broker (the embedded default), else as a job on a worker,
        waited for without holding a thread. The job's id instead when ``wait`` is false, or when the job is
        still running after ``job_wait_s``."""
        if wait and not self.jobs.uses_broker:
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
    """Requests waiting for their jobs, answered by one loop per process that asks the database about all of
    them at once every 50 ms (one query per tick, not one per waiting request per tick)."""

    def __init__(self, jobs: JobService) -> None:
        self.jobs = jobs
        self._waiting: dict[str, anyio.Event] = {}
        self._poller: asyncio.Task[None] | None = None

    async def wait(self, job_id: str, timeout_s: float) -> bool:
        """True once the job finished (or is gone); False when ``timeout_s`` passed first."""
        event = self._waiting.setdefault(job_id, anyio.Event())
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())
        with anyio.move_on_after(timeout_s):
            await event.wait()
        if not event.is_set():
            self._waiting.pop(job_id, None)
        return event.is_set()

    async def _poll(self) -> None:
        while self._waiting:
            try:
                ended = await run_in_threadpool(self.jobs.ended, list(self._waiting))
            except PicMetricError:  # database away: the waiters keep waiting, up to their deadline
                ended = set()
            for job_id in ended:
                event = self._waiting.pop(job_id, None)
                if event is not None:
                    event.set()
            await anyio.sleep(0.05)


async def fetch_url(app: ApiState, url: str) -> bytes:
    """Fetch an image URL (http(s), or s3:// on the allow-list) in one of the process's URL slots
    (``url_max_concurrent``); waiting for a slot is bounded by the same deadline as the download itself."""
    try:
        with anyio.fail_after(app.settings.url_timeout_s):
            await app.url_slots.acquire()
    except TimeoutError:
        raise FetchError("too many image URLs are being fetched right now; try again shortly") from None
    try:
        if url.startswith("s3://"):
            return await run_in_threadpool(app.jobs.url_bytes, url)
        return await fetch_image_bytes_async(url, settings=app.settings)  # no thread held while a server dawdles
    finally:
        app.url_slots.release()


class Problem(BaseModel):
    """An error of the v1 and operations routes."""

    detail: str


class DeepStackFailure(BaseModel):
    """An error in DeepStack's shape."""

    success: bool = False
    error: str


class SeedAnswer(BaseModel):
    """The seed system's answer: every field a string; ``error`` is empty on success."""

    error: str
    hash: str
    original: str
    resnet: str
    yolov3: str
    yolov3_source: str
    faces_source: str


def error_responses(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """The error statuses a route family answers with, documented with that family's body shape."""
    described = {
        400: "malformed request or refused input",
        401: "API key (or admin token) missing or wrong",
        403: "admin routes disabled",
        404: "not found",
        413: "upload or image too large",
        422: "the request's parameters or the analysis failed",
        503: "database, object store or decoder busy or unreachable",
    }
    return {status: {"model": model, "description": text} for status, text in described.items()}


_BINARY = {"type": "string", "format": "binary"}


def request_body(
    *,
    multipart: dict[str, Any] | None = None,
    json: dict[str, Any] | None = None,
    form: dict[str, Any] | None = None,
    required: tuple[str, ...] = (),
) -> dict[str, Any]:
    """``openapi_extra`` describing the bodies a route reads itself (a file with option fields, or JSON)."""
    content: dict[str, Any] = {}
    for media, properties in (
        ("multipart/form-data", multipart),
        ("application/json", json),
        ("application/x-www-form-urlencoded", form),
    ):
        if properties is not None:
            schema = {"type": "object", "properties": properties, "required": [r for r in required if r in properties]}
            content[media] = {"schema": schema}
    return {"requestBody": {"required": True, "content": content}}


def upload_fields(file_field: str, **extra: Any) -> dict[str, Any]:
    return {file_field: _BINARY, **extra}


def error_body(path: str, message: str) -> Mapping[str, object]:
    """An error in the shape of the route's family: DeepStack's, the seed's, or FastAPI's ``detail``."""
    if path.startswith("/v1/vision"):
        return {"success": False, "error": message}
    if path.startswith("/do_data_science"):
        return seed_response(None, error=message)
    return {"detail": message}


async def http_error_response(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's and Starlette's own refusals (an unreadable body, 404, 405, 413) in the route's body shape."""
    assert isinstance(exc, StarletteHTTPException)  # FastAPI's HTTPException is one too
    return JSONResponse(error_body(request.url.path, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)


async def validation_response(request: Request, exc: Exception) -> JSONResponse:
    """Parameters FastAPI checked: a malformed body is a 400 (a missing file says which field to send), a wrong
    query or path parameter a 422; each in the route's body shape."""
    assert isinstance(exc, RequestValidationError)
    problems, in_body = [], False
    for error in exc.errors():
        where, name = error["loc"][0], ".".join(map(str, error["loc"][1:]))
        in_body = in_body or where == "body"
        if where == "body" and name in FILE_FIELDS:
            problems.append(missing_file(name))
        else:
            problems.append(f"{name or where}: {error['msg']}")
    message = "; ".join(dict.fromkeys(problems))
    return JSONResponse(error_body(request.url.path, message), status_code=400 if in_body else 422)


FILE_FIELDS = ("file", "image")


async def error_response(request: Request, exc: Exception) -> JSONResponse:
    """The one handler for PicMetric's error tree: each error's HTTP status, the route's body shape, a metric."""
    assert isinstance(exc, PicMetricError)
    api = getattr(request.app.state, "picmetric", None)
    if api is not None:
        api.metrics.errors.labels(exc.__class__.__name__).inc()
    headers = {"WWW-Authenticate": "ApiKey"} if isinstance(exc, Unauthorized) else None
    return JSONResponse(error_body(request.url.path, str(exc)), status_code=exc.http_status, headers=headers)


_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="PICMETRIC_API_KEY, when one is set")
_KEY_QUERY = APIKeyQuery(name="api_key", auto_error=False, description="the same key as a query parameter")


async def api_key_given(
    request: Request,
    header: Annotated[str | None, Security(_KEY_HEADER)],
    query: Annotated[str | None, Security(_KEY_QUERY)],
) -> bool:
    """Checks a key sent in the header or the query, before any body is read: True when no key is configured or
    the key is right, False when none was sent that way; a wrong key is refused."""
    expected = state(request).settings.api_key
    if expected is None:
        return True
    given = header or query
    if given is None:
        return False
    if not tokens_match(given, expected):
        raise Unauthorized("Incorrect api key")
    return True


async def require_api_key(given: Annotated[bool, Depends(api_key_given)]) -> None:
    """Analysis routes: with PICMETRIC_API_KEY set, the key must come in the X-API-Key header or ?api_key=."""
    if not given:
        raise Unauthorized("this API needs its key: send it in the X-API-Key header or as ?api_key=")


def url_input(url: str, settings: Settings) -> JobInput:
    """A photo named by a URL a client sent, refused (4xx) before anything is read when the URL is malformed or
    an s3:// location off the allow-list."""
    checked = check_url(url, settings)
    return JobInput(source="url", name=checked, url=checked)


def state(request: Request) -> ApiState:
    return request.app.state.picmetric


class BodyTooLarge(HTTPException):
    """Raised by the upload-limit middleware while a body streams in. An HTTPException, so FastAPI's own form
    parsing passes it on (any other error there becomes a 400), and it answers 413 in the route's shape."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the upload is larger than the {limit / 1e6:.0f} MB limit")


class BodyTooSlow(HTTPException):
    """Raised by the request guard when a body has not fully arrived within ``http_body_timeout_s``; answers 408."""

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"the request body did not arrive within {seconds:g} s")


class BadRequest(PicMetricError):
    """The request itself is malformed: a missing field, a wrong type."""


class Unauthorized(PicMetricError):
    """A required token or key is missing or wrong."""

    http_status = 401


def is_json(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("application/json")


async def json_object(request: Request, fields: tuple[str, ...] | None = None) -> dict:
    """The request's JSON body, which must be an object (with no names but ``fields``, when given)."""
    try:
        payload = await request.json()
    except ValueError:
        raise BadRequest("the JSON body is malformed") from None
    except RecursionError:
        raise BadRequest("the JSON body is nested too deeply") from None
    if not isinstance(payload, dict):
        raise BadRequest("the JSON body must be an object")
    unknown = [str(name)[:40] for name in payload if fields is not None and name not in fields]
    if unknown:
        raise BadRequest(f"unknown field {', '.join(map(repr, unknown[:5]))}; send {', '.join(fields or ())}")
    return payload


async def read_form(request: Request, max_files: int = 4):
    try:
        return await request.form(max_files=max_files, max_fields=40 + max_files)
    except ClientDisconnect:
        raise BadRequest("the upload was interrupted") from None
    except (BodyTooLarge, BodyTooSlow):
        raise  # the request guard answers 413 or 408 with the route's error shape
    except Exception as exc:  # malformed multipart bodies raise parser-specific errors
        raise BadRequest(f"the form could not be read ({exc.__class__.__name__})") from None


async def upload_bytes(form, field: str, limit: int) -> tuple[bytes, str | None]:
    """The bytes of an uploaded file field, refusing a missing field or a file over ``limit``."""
    upload = form.get(field)
    if not isinstance(upload, UploadFile):
        raise BadRequest(missing_file(field))
    return await read_upload(upload, limit)


def missing_file(field: str) -> str:
    return f"send the image as a multipart file field named '{field}'"


async def read_upload(upload: UploadFile, limit: int) -> tuple[bytes, str | None]:
    """An upload's bytes, refusing an empty file or one over ``limit``."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ImageTooLargeError(f"the file is larger than the {limit / 1e6:.0f} MB limit")
    if not data:
        raise InvalidImageError("the file is empty (0 bytes)")
    return data, upload.filename


def image_urls(request: Request, stored: StoredAnalysis) -> dict[str, str]:
    """Browser-openable URLs: the object store's own (public or presigned), else this API's image route."""
    return {
        kind: stored.urls.get(kind) or str(request.url_for("get_image", sha256=stored.sha256, kind=kind))
        for kind in stored.blob_keys
    }


def admin_refusal(request: Request) -> JSONResponse | None:
    """None when the request carries the admin token; else the 403 (admin routes off) or 401 answer."""
    expected = state(request).settings.admin_token
    if expected is None:
        return JSONResponse({"detail": "admin routes are disabled: set PICMETRIC_ADMIN_TOKEN"}, status_code=403)
    header = request.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else request.headers.get("x-admin-token")
    if not tokens_match(given, expected):
        return JSONResponse(
            {"detail": "admin token missing or wrong (Authorization: Bearer <token>)"},
            status_code=401, headers={"WWW-Authenticate": "Bearer"},
        )  # fmt: skip
    return None
