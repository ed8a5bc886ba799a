"""DeepStack / CodeProject.AI compatible vision routes, for home-automation and NVR tools.

Field names and types follow DeepStack's documented API: multipart field ``image``, optional ``min_confidence``
and ``api_key``; answers ``{"success": true, "predictions": [...], "duration": ms}`` with integer pixel boxes,
and ``{"success": false, "error": "..."}`` on failure. These routes answer from the models directly and do
not store anything: NVR tools send a frame every few seconds, which would flood the history.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from picmetric.core.intake import load_image
from picmetric.core.pipeline import Analysis, AnalysisOptions
from picmetric.interfaces.api.common import (
    DeepStackFailure,
    Unauthorized,
    api_key_given,
    error_responses,
    read_form,
    request_body,
    state,
    upload_bytes,
    upload_fields,
)
from picmetric.interfaces.api.schemas import PredictionsAnswer, SceneAnswer
from picmetric.settings import tokens_match

router = APIRouter(prefix="/v1/vision", tags=["deepstack-compatible"], responses=error_responses(DeepStackFailure))
KeyGiven = Annotated[bool, Depends(api_key_given)]
_BODY = request_body(
    multipart=upload_fields(
        "image", min_confidence={"type": "number", "minimum": 0, "maximum": 1}, api_key={"type": "string"}
    ),
    required=("image",),
)
# DeepStack's detection default; for faces, the face detector's own default (None)
DEFAULT_MIN_CONFIDENCE: dict[str, float | None] = {"objects": 0.45, "faces": None}


def _box(xyxy) -> dict[str, int]:
    x1, y1, x2, y2 = (int(round(float(v))) for v in xyxy)
    return {"x_min": x1, "y_min": y1, "x_max": x2, "y_max": y2}


async def _analyse(request: Request, task: str, key_given: bool) -> tuple[Analysis, int]:
    """Common part: key check, form parsing, one task on the image; returns (analysis, duration in ms)."""
    app = state(request)
    form = await read_form(request)
    # DeepStack clients send the key as a form field; a key in the header or query was checked before the body
    if not key_given and not tokens_match(form.get("api_key"), app.settings.api_key):
        raise Unauthorized("Incorrect api key")
    data, name = await upload_bytes(form, "image", app.settings.max_upload_bytes)
    options: dict[str, Any] = {"tasks": (task,)}
    if task in DEFAULT_MIN_CONFIDENCE:  # DeepStack's one threshold field, checked like every option
        threshold = form.get("min_confidence")
        if threshold in (None, ""):
            threshold = DEFAULT_MIN_CONFIDENCE[task]
        if threshold is not None:
            options["min_confidence" if task == "objects" else "face_confidence"] = threshold
    analysis_options = AnalysisOptions(**options)
    started = time.perf_counter()
    image = await run_in_threadpool(load_image, data, settings=app.settings, name=name)
    analysis = await run_in_threadpool(app.service.analyzer.analyze, image, analysis_options)
    app.metrics.observe_models(analysis.timings_ms)
    return analysis, round((time.perf_counter() - started) * 1000)


async def _answer(request: Request, task: str, fields: Callable[[Analysis], dict], key_given: bool) -> JSONResponse:
    analysis, duration = await _analyse(request, task, key_given)
    return JSONResponse({"success": True, **fields(analysis), "duration": duration})


def _objects(analysis: Analysis) -> dict:
    d = analysis.detections
    assert d is not None, "the objects task ran"
    return {
        "predictions": [
            {"label": label, "confidence": float(p), **_box(b)}
            for label, p, b in zip(d.labels, d.confidence, d.xyxy, strict=True)
        ]
    }


def _faces(analysis: Analysis) -> dict:
    f = analysis.faces
    assert f is not None, "the faces task ran"
    return {"predictions": [{"confidence": float(p), **_box(b)} for p, b in zip(f.confidence, f.xyxy, strict=True)]}


def _scene(analysis: Analysis) -> dict:
    top = analysis.classification.top if analysis.classification else None
    assert top is not None, "the labels task ran"
    name, confidence = top
    return {"label": name.replace(" ", "_"), "confidence": confidence}


@router.post(
    "/detection",
    summary="Objects (COCO-80): label, confidence and box per prediction",
    openapi_extra=_BODY,
    response_model=PredictionsAnswer,
)
async def detection(request: Request, key_given: KeyGiven) -> JSONResponse:
    return await _answer(request, "objects", _objects, key_given)


@router.post(
    "/face", summary="Faces: confidence and box per prediction", openapi_extra=_BODY, response_model=PredictionsAnswer
)
async def face(request: Request, key_given: KeyGiven) -> JSONResponse:
    return await _answer(request, "faces", _faces, key_given)


@router.post(
    "/scene",
    summary="Scene: the most likely ImageNet label and its confidence",
    openapi_extra=_BODY,
    response_model=SceneAnswer,
)
async def scene(request: Request, key_given: KeyGiven) -> JSONResponse:
    return await _answer(request, "labels", _scene, key_given)
