"""The seed system's routes, same paths and JSON shape, so its clients keep working."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from picmetric.core.pipeline import AnalysisOptions
from picmetric.core.seed import seed_response
from picmetric.errors import ServerBusyError
from picmetric.interfaces.api.common import (
    ApiState,
    BadRequest,
    SeedAnswer,
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
from picmetric.service.analyses import StoredAnalysis
from picmetric.service.jobs import JobInput

_URL = {"url": {"type": "string", "format": "uri"}}
router = APIRouter(tags=["seed-compatible"], responses=error_responses(SeedAnswer))

UPLOAD_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>PicMetric upload</title>
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#0f172a}
form{border:1px solid #cbd5e1;border-radius:.5rem;padding:1rem;margin:1rem 0}
button{background:#2563eb;color:#fff;border:0;border-radius:.4rem;padding:.5rem 1rem}</style></head>
<body><h1>PicMetric</h1><p>Send a photo or an image URL; the answer is the seed system's JSON.</p>
<form action="/do_data_science" method="post" enctype="multipart/form-data">
<label>Photo <input type="file" name="file" accept="image/*" required></label> <button>Analyze file</button></form>
<form action="/do_data_science_url" method="post">
<label>Image URL <input type="url" name="url" size="40" required></label> <button>Analyze URL</button></form>
<p>API documentation: <a href="/docs">/docs</a></p></body></html>"""


def _respond(request: Request, stored: StoredAnalysis) -> JSONResponse:
    urls = image_urls(request, stored)
    body = seed_response(
        stored.analysis,
        original_url=urls.get("original", ""),
        objects_url=urls.get("objects", ""),
        faces_url=urls.get("faces", ""),
    )
    return JSONResponse(body)


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/upload")


@router.get("/upload", response_class=HTMLResponse, summary="HTML form for a file or a URL")
async def upload_page() -> HTMLResponse:
    return HTMLResponse(UPLOAD_PAGE)


@router.post(
    "/do_data_science",
    summary="Analyse an uploaded file (multipart field 'file'); seed JSON shape",
    response_model=SeedAnswer,
    dependencies=[Depends(require_api_key)],
    openapi_extra=request_body(multipart=upload_fields("file"), required=("file",)),
)
async def do_data_science(request: Request) -> JSONResponse:
    app = state(request)
    data, name = await upload_bytes(await read_form(request), "file", app.settings.max_upload_bytes)
    return _respond(request, await _analysed(app, JobInput(source="upload", name=name, data=data)))


@router.post(
    "/do_data_science_url",
    summary="Analyse an image URL (form or JSON field 'url'); seed JSON shape",
    response_model=SeedAnswer,
    dependencies=[Depends(require_api_key)],
    openapi_extra=request_body(form=_URL, json=_URL, required=("url",)),
)
async def do_data_science_url(request: Request) -> JSONResponse:
    app = state(request)
    url = (await json_object(request) if is_json(request) else await read_form(request)).get("url")
    if not isinstance(url, str) or not url.strip():
        raise BadRequest("send the image address as the field 'url'")
    return _respond(request, await _analysed(app, url_input(url, app.settings)))


async def _analysed(app: ApiState, job: JobInput) -> StoredAnalysis:
    """The seed's routes have no 202: a job still running after job_wait_s is a 503 to retry."""
    stored = await app.analyse(job, AnalysisOptions())
    if isinstance(stored, str):
        raise ServerBusyError(f"the analysis is still running (job {stored}); send the image again shortly")
    return stored
