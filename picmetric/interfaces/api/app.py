"""The FastAPI application: seed-compatible routes, the v1 API, DeepStack-compatible routes, operations."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from picmetric import __version__, logs
from picmetric.errors import PicMetricError
from picmetric.interfaces.api import routes_deepstack, routes_jobs, routes_ops, routes_seed, routes_v1
from picmetric.interfaces.api.common import (
    ApiState,
    BodyTooLarge,
    BodyTooSlow,
    error_body,
    error_response,
    http_error_response,
    validation_response,
)
from picmetric.interfaces.api.metrics import ApiMetrics
from picmetric.service.analyses import AnalysisService
from picmetric.service.jobs import JobService
from picmetric.settings import Settings, get_settings

_MULTIPART_OVERHEAD = 64 * 1024


class RequestGuard:
    """Checks every request before a route sees it: no NUL character in its address (PostgreSQL cannot hold one
    in text, and no id, hash or filter has one), a body no larger than the upload limit while it streams in, and
    one deadline for the whole body, so a client sending a byte a second cannot hold a connection for minutes."""

    def __init__(self, app: ASGIApp, limit: int, batch_limit: int, body_timeout_s: float) -> None:
        self.app, self.single_limit, self.batch_limit = app, limit, batch_limit
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b""):
            return await self._refuse(scope, send, 400, "the address contains a NUL character")
        limit = self.batch_limit if scope.get("path") == "/api/v1/batches" else self.single_limit
        declared = dict(scope["headers"]).get(b"content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            return await self._refuse(scope, send, 413, _too_large(limit))
        received = 0
        started = body_done = False
        deadline = anyio.current_time() + self.body_timeout_s

        async def guarded_receive():
            nonlocal received, body_done
            if body_done:  # only the body has a deadline, not a later wait for the client to disconnect
                return await receive()
            try:
                with anyio.fail_after(max(0.0, deadline - anyio.current_time())):
                    message = await receive()
            except TimeoutError:
                raise BodyTooSlow(self.body_timeout_s) from None
            received += len(message.get("body", b""))
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            if received > limit:
                raise BodyTooLarge(limit)
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, guarded_receive, tracking_send)
        except (BodyTooLarge, BodyTooSlow) as exc:
            if not started:
                await self._refuse(scope, send, exc.status_code, str(exc.detail))

    async def _refuse(self, scope: Scope, send: Send, status: int, message: str) -> None:
        answer = JSONResponse(
            error_body(scope.get("path", ""), message), status_code=status, headers={"Connection": "close"}
        )
        await answer(scope, _empty_receive, send)


def _too_large(limit: int) -> str:
    return f"the upload is larger than the {limit / 1e6:.0f} MB limit"


async def _empty_receive():
    return {"type": "http.request", "body": b"", "more_body": False}


_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


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
        warm = asyncio.get_running_loop().run_in_executor(None, analyses.analyzer.warm_up)  # readyz: when done
        yield
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
    app.add_middleware(
        RequestGuard,
        limit=settings.max_upload_bytes + _MULTIPART_OVERHEAD,
        batch_limit=settings.max_batch_bytes + _MULTIPART_OVERHEAD,
        body_timeout_s=settings.http_body_timeout_s,
    )

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

    app.add_exception_handler(PicMetricError, error_response)
    app.add_exception_handler(StarletteHTTPException, http_error_response)
    app.add_exception_handler(RequestValidationError, validation_response)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        """Last resort: a generic message and a log line; never a stack trace to the client."""
        import logging

        logging.getLogger("picmetric.api").exception("unexpected error on %s", request.url.path)
        return JSONResponse({"detail": "internal error; the details are in the server log"}, status_code=500)

    for module in (routes_seed, routes_v1, routes_jobs, routes_deepstack, routes_ops):
        app.include_router(module.router)
    return app
