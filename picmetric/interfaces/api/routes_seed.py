"""The seed system's routes, same paths and JSON shape, so its clients keep working."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse

from picmetric.core.options import AnalysisOptions
from picmetric.core.seed import seed_response
from picmetric.errors import ServerBusyError
from picmetric.interfaces.api.bodies import EachFieldOnce, JsonRoute, SeedUrl
from picmetric.interfaces.api.common import Api, ApiState, image_urls, upload_input, url_input
from picmetric.interfaces.api.errors import error_responses
from picmetric.interfaces.api.schemas import SeedAnswer
from picmetric.service.analyses import StoredAnalysis
from picmetric.service.jobs import JobInput

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


def _answer(request: Request, stored: StoredAnalysis) -> SeedAnswer:
    urls = image_urls(request, stored)
    body = seed_response(
        stored.analysis,
        original_url=urls.get("original", ""),
        objects_url=urls.get("objects", ""),
        faces_url=urls.get("faces", ""),
    )
    return SeedAnswer.model_validate(body)


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
)
async def do_data_science(api: Api, request: Request, file: Annotated[UploadFile, File()]) -> SeedAnswer:
    job = await upload_input(file, api.settings.max_upload_bytes)
    return _answer(request, await _analysed(api, job))


_BY_URL: dict[str, Any] = {
    "summary": "Analyse an image URL (form or JSON field 'url'); seed JSON shape",
    "response_model": SeedAnswer,
}


async def url_as_json(api: Api, request: Request, body: SeedUrl) -> SeedAnswer:
    return _answer(request, await _analysed(api, url_input(body.url, api.settings)))


router.add_api_route("/do_data_science_url", url_as_json, methods=["POST"], route_class_override=JsonRoute, **_BY_URL)


@router.post("/do_data_science_url", dependencies=[EachFieldOnce], **_BY_URL)
async def do_data_science_url(api: Api, request: Request, form: Annotated[SeedUrl, Form()]) -> SeedAnswer:
    return await url_as_json(api, request, form)


async def _analysed(app: ApiState, job: JobInput) -> StoredAnalysis:
    """The seed's routes have no 202: a job still running after job_wait_s is a 503 to retry."""
    stored = await app.analyse(job, AnalysisOptions())
    if isinstance(stored, str):
        raise ServerBusyError(f"the analysis is still running (job {stored}); send the image again shortly")
    return stored
