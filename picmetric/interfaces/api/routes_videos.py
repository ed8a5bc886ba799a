"""Videos in the v1 API: a clip in (multipart or a URL), its analysis followed as it runs, its result (JSON, CSV)
and the annotated clip, served with HTTP range requests so a browser can seek."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Path, Request, Response, UploadFile
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from picmetric.core.catalog import PRECISIONS
from picmetric.core.fetching import check_url
from picmetric.core.tracking import TRACKERS, CountingLine
from picmetric.errors import PicMetricError
from picmetric.interfaces.api.common import ApiSettings, Videos, api_state, fetch_url
from picmetric.interfaces.api.errors import Problem, error_responses
from picmetric.service.videos import VideoOptions, VideoProgress, csv_rows

router = APIRouter(prefix="/api/v1", tags=["videos"], responses=error_responses(Problem))
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
AnalysisId = Annotated[int, Path(ge=1, le=2**31 - 1, description="a video analysis' id")]


class VideoAccepted(BaseModel):
    """An analysis started (or found): follow ``status_url``; ``result_url`` and ``clip_url`` once it is done."""

    id: int
    state: str  # running | merging | done | failed
    frames_done: int
    frames_total: int
    frames_per_s: float
    seconds_left: float | None
    error: str | None
    status_url: str
    result_url: str
    clip_url: str


class VideoUrlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Annotated[str, Field(max_length=2048)]
    options: VideoOptions = VideoOptions()


def _accepted(request: Request, progress: VideoProgress) -> VideoAccepted:
    def url(name: str) -> str:
        return str(request.url_for(name, analysis_id=progress.id))

    return VideoAccepted(
        id=progress.id, state=progress.state, frames_done=progress.frames_done, frames_total=progress.frames_total,
        frames_per_s=progress.frames_per_s, seconds_left=progress.seconds_left, error=progress.error,
        status_url=url("video_status"), result_url=url("video_result"), clip_url=url("video_clip"),
    )  # fmt: skip


def _options(**fields: Any) -> VideoOptions:
    values = {k: v for k, v in fields.items() if v not in (None, "")}
    if isinstance(values.get("line"), str):
        try:
            line = CountingLine.parse(values["line"])
        except ValueError as exc:
            raise PicMetricError(str(exc)) from None
        values["line"] = (line.x1, line.y1, line.x2, line.y2)
    try:
        return VideoOptions(**values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise PicMetricError(problems.replace("Value error, ", "")) from None


@router.post(
    "/videos",
    status_code=202,
    summary="Track and count a clip's objects (multipart 'file' with option fields); 202 with its progress",
    response_model=VideoAccepted,
)
async def add_video(
    videos: Videos,
    settings: ApiSettings,
    request: Request,
    file: Annotated[UploadFile, File(description="MP4, MOV, WebM, AVI or MKV")],
    every: Annotated[int | None, Form(ge=1, le=60)] = None,
    line: Annotated[str | None, Form(max_length=200, description="X1,Y1,X2,Y2 in pixels")] = None,
    detector: Annotated[str | None, Form(max_length=64)] = None,
    precision: Annotated[str | None, Form(json_schema_extra={"enum": list(PRECISIONS)})] = None,
    faces: Annotated[bool | None, Form()] = None,
    tracker: Annotated[str | None, Form(json_schema_extra={"enum": list(TRACKERS)})] = None,
) -> VideoAccepted:
    options = _options(every=every, line=line, detector=detector, precision=precision, faces=faces, tracker=tracker)
    data = await file.read(settings.max_video_bytes + 1)
    if len(data) > settings.max_video_bytes:
        raise PicMetricError(f"the video is larger than the {settings.max_video_bytes / 1e6:.0f} MB limit")
    progress = await run_in_threadpool(videos.analyse, data, options, name=file.filename)
    return _accepted(request, progress)


@router.post(
    "/videos/url",
    status_code=202,
    summary="Track and count a clip fetched from a URL (the same guards as photos); 202 with its progress",
    response_model=VideoAccepted,
)
async def add_video_url(videos: Videos, request: Request, body: VideoUrlRequest) -> VideoAccepted:
    state = api_state(request)
    url = check_url(body.url, state.settings)  # malformed, or s3:// off the allow-list: 4xx before any read
    data = await fetch_url(state, url, video=True)
    name = body.url.rsplit("/", 1)[-1][:200]
    progress = await run_in_threadpool(videos.analyse, data, body.options, name=name, source="url")
    return _accepted(request, progress)


@router.get("/videos/{analysis_id}", summary="How a video analysis stands", response_model=VideoAccepted)
async def video_status(videos: Videos, request: Request, analysis_id: AnalysisId) -> VideoAccepted:
    return _accepted(request, await run_in_threadpool(videos.progress, analysis_id))


@router.get(
    "/videos/{analysis_id}/result",
    summary="frames, fps, tracks (id, class, first and last frame, boxes), crossings, totals, counts per frame",
)
async def video_result(videos: Videos, analysis_id: AnalysisId, format: Literal["json", "csv"] = "json") -> Any:
    result = await run_in_threadpool(videos.result, analysis_id)
    if format == "csv":
        return Response(csv_rows(result), media_type="text/csv")
    return result


@router.get(
    "/videos/{analysis_id}/clip",
    summary="The annotated clip (H.264 MP4), with HTTP range requests",
    response_class=Response,
    responses={200: {"content": {"video/mp4": {}}}, 206: {"content": {"video/mp4": {}}}},
)
async def video_clip(videos: Videos, request: Request, analysis_id: AnalysisId) -> Response:
    clip = await run_in_threadpool(videos.clip, analysis_id)
    size = len(clip)
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=3600"}
    wanted = request.headers.get("range")
    if not wanted:
        return Response(clip, media_type="video/mp4", headers=headers)
    found = _RANGE.fullmatch(wanted.strip())
    start, end = (found.group(1), found.group(2)) if found else ("", "")
    if found is None or (not start and not end):
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    if start:
        first, last = int(start), min(int(end) if end else size - 1, size - 1)
    else:  # the last N bytes
        first, last = max(0, size - int(end)), size - 1
    if first >= size or first > last:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return Response(clip[first : last + 1], status_code=206, media_type="video/mp4", headers=headers)
