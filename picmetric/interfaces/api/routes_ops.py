"""Operations: liveness, readiness, Prometheus metrics, and the admin-only reset and log (the seed's)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from picmetric.errors import PicMetricError
from picmetric.interfaces.api.common import Api, ApiSettings, Jobs, Service
from picmetric.interfaces.api.errors import Problem, error_responses
from picmetric.interfaces.api.guard import has_admin_token
from picmetric.interfaces.api.metrics import queue_metrics
from picmetric.interfaces.api.schemas import Health, QueueFacts, Readiness, ResetAnswer

router = APIRouter(tags=["operations"], responses=error_responses(Problem))


@router.get("/healthz", summary="Liveness: the process answers", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    summary="Readiness: models loaded, database and object store reachable",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "not ready: the checks say why"}},
)
async def readyz(
    service: Service, jobs: Jobs, settings: ApiSettings, request: Request, response: Response
) -> Readiness:
    """Public (probes call it): the broker's address and its error words only with the admin token."""
    checks = await run_in_threadpool(service.health)
    models = service.loaded_models()
    checks["models"] = "ok" if models and all(models.values()) else "loading"
    queue = await run_in_threadpool(jobs.queue.status)
    admin = has_admin_token(request.headers, settings)
    broker = queue.broker if admin else queue.transport
    checks["broker"] = "ok" if queue.reachable else f"{broker}: {queue.error if admin else 'unreachable'}"
    ready = all(value == "ok" for value in checks.values())
    response.status_code = 200 if ready else 503
    return Readiness(
        ready=ready, checks=checks, models=models, queue=QueueFacts(kind=queue.kind, broker=broker, depth=queue.depth)
    )


@router.get("/metrics", summary="Prometheus metrics, with the broker and queue depth")
async def metrics(app: Api) -> Response:
    queue = await run_in_threadpool(app.jobs.queue.status)
    try:
        jobs = await run_in_threadpool(app.service.job_counts)
    except PicMetricError:  # database away: the queue figures still say what they can
        jobs = {}
    body = app.metrics.render() + queue_metrics(queue.reachable, queue.depth, jobs)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


@router.post("/reset", summary="Delete every stored image and analysis (admin token)", response_model=ResetAnswer)
async def reset(service: Service) -> ResetAnswer:
    """The request guard has checked the admin token."""
    await run_in_threadpool(service.reset)
    return ResetAnswer(reset=True)


@router.get("/log", summary="Recent application log lines (admin token)", response_class=PlainTextResponse)
async def log(service: Service, lines: Annotated[int, Query()] = 200) -> Response:
    recent = await run_in_threadpool(service.recent_log, max(1, min(lines, 1000)))
    return PlainTextResponse("\n".join(recent) + "\n")
