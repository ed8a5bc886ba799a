"""Operations: liveness, readiness, Prometheus metrics, and the admin-only reset and log (the seed's)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from .. import logs
from .common import Problem, admin_refusal, error_responses, state
from .schemas import Health, Readiness, ResetAnswer

router = APIRouter(tags=["operations"], responses=error_responses(Problem))


@router.get("/healthz", summary="Liveness: the process answers", response_model=Health)
async def healthz() -> dict:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: models loaded, database and object store reachable",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "not ready: the checks say why"}},
)
async def readyz(request: Request) -> JSONResponse:
    app = state(request)
    checks = await run_in_threadpool(app.repository.health)
    models = app.repository.analyzer.loaded_models()
    checks["models"] = "ok" if models and all(models.values()) else "loading"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse({"ready": ready, "checks": checks, "models": models}, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    return Response(state(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


@router.post("/reset", summary="Delete every stored image and analysis (admin token)", response_model=ResetAnswer)
async def reset(request: Request) -> JSONResponse:
    refusal = admin_refusal(request)
    if refusal is not None:
        return refusal
    await run_in_threadpool(state(request).repository.reset)
    return JSONResponse({"reset": True})


@router.get("/log", summary="Recent application log lines (admin token)", response_class=PlainTextResponse)
async def log(request: Request, lines: int = 200) -> Response:
    refusal = admin_refusal(request)
    if refusal is not None:
        return refusal
    return PlainTextResponse("\n".join(logs.recent_lines(max(1, min(lines, 1000)))) + "\n")
