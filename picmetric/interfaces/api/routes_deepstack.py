"""DeepStack / CodeProject.AI compatible vision routes, for home-automation and NVR tools.

Field names and types follow DeepStack's documented API: multipart field ``image``, optional ``min_confidence``
and ``api_key``; answers ``{"success": true, "predictions": [...], "duration": ms}`` with integer pixel boxes,
and ``{"success": false, "error": "..."}`` on failure. These routes answer from the models directly and do
not store anything: NVR tools send a frame every few seconds, which would flood the history.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Request, UploadFile
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from starlette.concurrency import run_in_threadpool

from picmetric.core.analyzer import Analysis
from picmetric.core.catalog import NAME_PATTERN
from picmetric.core.options import AnalysisOptions
from picmetric.errors import NotFoundError, PicMetricError
from picmetric.interfaces.api.bodies import Multipart
from picmetric.interfaces.api.common import Api, upload_input
from picmetric.interfaces.api.errors import DeepStackFailure, Unauthorized, error_responses
from picmetric.interfaces.api.guard import KEY_CHECKED
from picmetric.interfaces.api.schemas import PredictionsAnswer, SceneAnswer
from picmetric.settings import tokens_match

router = APIRouter(prefix="/v1/vision", tags=["deepstack-compatible"], responses=error_responses(DeepStackFailure))
# DeepStack's detection default; for faces, the face detector's own default (None)
DEFAULT_MIN_CONFIDENCE: dict[str, float | None] = {"objects": 0.45, "faces": None}
Answer = TypeVar("Answer", PredictionsAnswer, SceneAnswer)


class DeepStackUpload(BaseModel):
    """DeepStack's form: the photo, an optional threshold, and the key for clients that send it in the body."""

    model_config = ConfigDict(extra="forbid")
    image: UploadFile
    #: checked by the options model (between 0 and 1), as every threshold is
    min_confidence: Annotated[
        float | None, Field(allow_inf_nan=False, json_schema_extra={"minimum": 0, "maximum": 1})
    ] = None
    #: a file part is never a key (it fails the key check like a wrong key)
    api_key: Annotated[str | UploadFile | None, WithJsonSchema({"type": "string"})] = None


Upload = Annotated[DeepStackUpload, Multipart]


def _box(xyxy) -> dict[str, int]:
    x1, y1, x2, y2 = (int(round(float(v))) for v in xyxy)
    return {"x_min": x1, "y_min": y1, "x_max": x2, "y_max": y2}


async def _answer(
    api: Api,
    request: Request,
    form: DeepStackUpload,
    task: str,
    answer: Callable[[Analysis, int], Answer],
    detector: str | None = None,
) -> Answer:
    """Common part: the key from the form when none came in the header, one task on the image, its answer."""
    _check_key(api, request, form)
    options: dict[str, Any] = {"tasks": (task,)} | ({"detector": detector} if detector else {})
    if task in DEFAULT_MIN_CONFIDENCE:  # DeepStack's one threshold field
        threshold = DEFAULT_MIN_CONFIDENCE[task] if form.min_confidence is None else form.min_confidence
        if threshold is not None:
            options["min_confidence" if task == "objects" else "face_confidence"] = threshold
    checked = AnalysisOptions(**options)
    job = await upload_input(form.image, api.settings.max_upload_bytes)
    assert job.data is not None, "an upload has bytes"
    started = time.perf_counter()
    analysis = await run_in_threadpool(api.service.analyse_only, job.data, checked, job.name)
    api.metrics.observe_models(analysis.timings_ms)
    return answer(analysis, round((time.perf_counter() - started) * 1000))


def _check_key(api: Api, request: Request, form: DeepStackUpload) -> None:
    """The key from the form, when none came in the header or the query (DeepStack's clients send it there)."""
    if not getattr(request.state, KEY_CHECKED, False) and not tokens_match(form.api_key, api.settings.api_key):
        raise Unauthorized("Incorrect api key")


def _objects(analysis: Analysis, duration: int) -> PredictionsAnswer:
    d = analysis.detections
    assert d is not None, "the objects task ran"
    predictions = [
        {"label": label, "confidence": float(p), **_box(b)}
        for label, p, b in zip(d.labels, d.confidence, d.xyxy, strict=True)
    ]
    return PredictionsAnswer.model_validate({"success": True, "predictions": predictions, "duration": duration})


def _faces(analysis: Analysis, duration: int) -> PredictionsAnswer:
    f = analysis.faces
    assert f is not None, "the faces task ran"
    predictions = [{"confidence": float(p), **_box(b)} for p, b in zip(f.confidence, f.xyxy, strict=True)]
    return PredictionsAnswer.model_validate({"success": True, "predictions": predictions, "duration": duration})


def _scene(analysis: Analysis, duration: int) -> SceneAnswer:
    top = analysis.classification.top if analysis.classification else None
    assert top is not None, "the labels task ran"
    name, confidence = top
    return SceneAnswer(success=True, label=name.replace(" ", "_"), confidence=confidence, duration=duration)


@router.post(
    "/detection",
    summary="Objects (COCO-80): label, confidence and box per prediction",
    response_model=PredictionsAnswer,
    response_model_exclude_none=True,
)
async def detection(api: Api, request: Request, form: Upload) -> PredictionsAnswer:
    return await _answer(api, request, form, "objects", _objects)


@router.post(
    "/face",
    summary="Faces: confidence and box per prediction",
    response_model=PredictionsAnswer,
    response_model_exclude_none=True,
)
async def face(api: Api, request: Request, form: Upload) -> PredictionsAnswer:
    return await _answer(api, request, form, "faces", _faces)


@router.post(
    "/custom/{model}",
    summary="Objects from a detector added with `picmetric models add` (DeepStack's custom models route)",
    response_model=PredictionsAnswer,
    response_model_exclude_none=True,
)
async def custom(
    api: Api, request: Request, model: Annotated[str, Path(pattern=NAME_PATTERN.pattern)], form: Upload
) -> PredictionsAnswer:
    _check_key(api, request, form)  # before anything about the shelf is said
    try:
        api.service.detector(model)
    except PicMetricError:
        raise NotFoundError(f"no detector named {model!r} is added here") from None  # naming none of the others
    return await _answer(api, request, form, "objects", _objects, detector=model)


@router.post("/scene", summary="Scene: the most likely ImageNet label and its confidence", response_model=SceneAnswer)
async def scene(api: Api, request: Request, form: Upload) -> SceneAnswer:
    return await _answer(api, request, form, "labels", _scene)
