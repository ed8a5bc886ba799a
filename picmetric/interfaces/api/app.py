"""The FastAPI application: seed-compatible routes, the v1 API, DeepStack-compatible routes, operations."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from picmetric import __version__, logs
from picmetric.interfaces.api import (
    routes_datasets,
    routes_deepstack,
    routes_jobs,
    routes_ops,
    routes_seed,
    routes_v1,
    routes_videos,
)
from picmetric.interfaces.api.bodies import merged_openapi
from picmetric.interfaces.api.common import ApiState
from picmetric.interfaces.api.errors import install_error_handlers
from picmetric.interfaces.api.guard import Access, RequestGuard, access_of
from picmetric.interfaces.api.metrics import ApiMetrics
from picmetric.service.analyses import AnalysisService
from picmetric.service.jobs import JobService
from picmetric.settings import Settings, get_settings

_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: how the OpenAPI schema publishes what the request guard asks for
_SECURITY_SCHEMES = {
    "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                     "description": "PICMETRIC_API_KEY, when one is set"},
    "ApiKeyQuery": {"type": "apiKey", "in": "query", "name": "api_key",
                    "description": "the same key as a query parameter"},
    "AdminToken": {"type": "http", "scheme": "bearer", "description": "PICMETRIC_ADMIN_TOKEN"},
}  # fmt: skip
_REQUIREMENTS: dict[Access, list[dict[str, list[str]]]] = {
    Access.PUBLIC: [],
    Access.KEY: [{"ApiKeyHeader": []}, {"ApiKeyQuery": []}],
    Access.KEY_OR_FORM: [{"ApiKeyHeader": []}, {"ApiKeyQuery": []}, {}],  # or the form field api_key
    Access.ADMIN: [{"AdminToken": []}],
}


def app_from_environment() -> FastAPI:
    """``picmetric serve``'s factory (each uvicorn worker process calls it): the settings of the environment."""
    return create_app(get_settings())


def create_app(settings: Settings, service: AnalysisService | None = None) -> FastAPI:
    """The HTTP API on these settings; ``service`` shares an existing one (its models, its storage)."""
    logs.redact_access_log()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        logs.install()
        analyses = service if service is not None else await run_in_threadpool(AnalysisService, settings)
        jobs = JobService(analyses)
        jobs.keep_leases()  # jobs of a process that died (this one, before a restart) are sent again
        app.state.picmetric = ApiState(
            settings, analyses, jobs, ApiMetrics(), anyio.Semaphore(settings.url_max_concurrent)
        )
        if jobs.uses_broker:  # workers run the jobs requests wait for: hear of their ends
            app.state.picmetric.job_waiter.start()  # a thread of its own: nothing waits here
        warm = asyncio.get_running_loop().run_in_executor(None, analyses.warm_up)  # readyz: when done
        yield
        await run_in_threadpool(app.state.picmetric.job_waiter.close)
        await run_in_threadpool(jobs.close)
        await asyncio.wait_for(asyncio.shield(warm), timeout=120)

    app = FastAPI(
        title="PicMetric API",
        version=__version__,
        description="ImageNet labels, COCO objects and faces with landmarks for any photo; seed-compatible and "
        "DeepStack-compatible routes.",
        lifespan=lifespan,
    )
    app.state.settings = settings  # the serving protocol's head deadline reads them here
    app.add_middleware(RequestGuard, settings=settings)

    @app.middleware("http")
    async def measure(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        api = getattr(request.app.state, "picmetric", None)
        if api is not None:
            # labels from a fixed set only: a client inventing method names must not grow /metrics without bound
            method = request.method if request.method in _HTTP_METHODS else "other"
            api.metrics.requests.labels(method, template, str(response.status_code)).inc()
            api.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
        return response

    install_error_handlers(app)
    for module in (routes_seed, routes_v1, routes_jobs, routes_datasets, routes_videos, routes_deepstack, routes_ops):
        app.include_router(module.router)
    app.openapi = lambda: merged_openapi(  # type: ignore[method-assign]
        app, lambda method, path: _REQUIREMENTS[access_of(method, path)], _SECURITY_SCHEMES
    )
    return app
