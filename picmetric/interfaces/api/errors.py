"""Every error the HTTP API answers with: its own refusals, PicMetric's error tree, FastAPI's validation, in the
body shape of the route's family (DeepStack's, the seed's, or FastAPI's ``detail``), registered on the app once."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from picmetric.core.seed import seed_response
from picmetric.errors import (
    AnalysisFailedError,
    DatabaseError,
    ImageDeletedError,
    ImageTooLargeError,
    InternalError,
    MissingBlobError,
    NotFoundError,
    PicMetricError,
    QueueUnavailableError,
    ServerBusyError,
    StorageError,
    UnknownModelError,
    URLTooLongError,
)


class BadRequest(PicMetricError):
    """The request itself is malformed: a missing field, a wrong type."""


class Unauthorized(PicMetricError):
    """A required token or key is missing or wrong."""


#: the HTTP status of each kind of error, the one place that says it: a client's mistake is a 4xx (400 unless
#: named here), a backend away or busy a 503, PicMetric's own failure a 500. A kind not named answers as its
#: nearest named base class.
STATUS: dict[type[PicMetricError], int] = {
    PicMetricError: 400,
    Unauthorized: 401,
    NotFoundError: 404,
    UnknownModelError: 404,
    ImageDeletedError: 409,
    MissingBlobError: 410,
    ImageTooLargeError: 413,
    URLTooLongError: 414,
    AnalysisFailedError: 422,
    InternalError: 500,
    DatabaseError: 503,
    StorageError: 503,
    QueueUnavailableError: 503,
    ServerBusyError: 503,
}


def status_of(kind: type[PicMetricError]) -> int:
    return next(STATUS[base] for base in kind.__mro__ if base in STATUS)


class BodyTooLarge(HTTPException):
    """Raised by the request guard while a body streams in. An HTTPException, so FastAPI's own form parsing
    passes it on (any other error there becomes a 400), and it answers 413 in the route's shape."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large(limit))


class BodyTooSlow(HTTPException):
    """Raised by the request guard when a body has not fully arrived within ``http_body_timeout_s``; answers 408."""

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"the request body did not arrive within {seconds:g} s")


def too_large(limit: int) -> str:
    return f"the upload is larger than the {limit / 1e6:.0f} MB limit"


class Problem(BaseModel):
    """An error of the v1 and operations routes."""

    detail: str


class DeepStackFailure(BaseModel):
    """An error in DeepStack's shape."""

    success: bool = False
    error: str


def error_responses(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """The error statuses a route family answers with, documented with that family's body shape."""
    described = {
        400: "malformed request or refused input",
        401: "API key (or admin token) missing or wrong",
        403: "admin routes disabled",
        404: "not found",
        408: "the request body arrived too slowly",
        413: "upload or image too large",
        422: "the request's parameters or the analysis failed",
        503: "database, object store or decoder busy or unreachable",
    }
    return {status: {"model": model, "description": text} for status, text in described.items()}


def error_body(path: str, message: str) -> Mapping[str, object]:
    """An error in the shape of the route's family: DeepStack's, the seed's, or FastAPI's ``detail``."""
    if path.startswith("/v1/vision"):
        return {"success": False, "error": message}
    if path.startswith("/do_data_science"):
        return seed_response(None, error=message)
    return {"detail": message}


def refusal(path: str, status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(path, message), status_code=status, headers=headers)


_CHALLENGES: dict[type[PicMetricError], str] = {Unauthorized: "ApiKey"}


async def picmetric_error(request: Request, exc: Exception) -> JSONResponse:
    """PicMetric's error tree: each error's HTTP status, the route's body shape, a metric per error class."""
    assert isinstance(exc, PicMetricError)
    api = getattr(request.app.state, "picmetric", None)
    if api is not None:
        api.metrics.errors.labels(exc.__class__.__name__).inc()
    challenge = _CHALLENGES.get(type(exc))
    headers = {"WWW-Authenticate": challenge} if challenge else None
    return refusal(request.url.path, status_of(type(exc)), str(exc), headers)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's and Starlette's own refusals (an unreadable body, 404, 405, 413) in the route's body shape."""
    assert isinstance(exc, StarletteHTTPException)  # FastAPI's HTTPException is one too
    return refusal(request.url.path, exc.status_code, str(exc.detail), exc.headers)


FILE_FIELDS = ("file", "image")


def missing_file(field: str) -> str:
    return f"send the image as a multipart file field named '{field}'"


def _problem(error: Mapping[str, Any]) -> str:
    """One validation error in words: a declared field's own message (our validators write whole sentences),
    'unknown field' for a name the body model does not have, else the field and pydantic's message."""
    where, name = error["loc"][0], ".".join(map(str, error["loc"][1:]))
    cause = (error.get("ctx") or {}).get("error")
    if where == "body" and error["type"] == "missing":
        return missing_file(name) if name in FILE_FIELDS else f"send the field {name!r}"
    if error["type"] == "extra_forbidden":
        return f"unknown field {name[:40]!r}"
    if isinstance(cause, ValueError):
        return str(cause)
    if error["type"] == "json_invalid":
        return "the JSON body is malformed"
    return f"{name or where}: {error['msg']}"


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """Parameters FastAPI checked: a malformed body is a 400 (a missing file says which field to send), a wrong
    query or path parameter a 422; each in the route's body shape."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    in_body = any(error["loc"][0] == "body" for error in errors)
    message = "; ".join(dict.fromkeys(_problem(error) for error in errors))
    return refusal(request.url.path, 400 if in_body else 422, message)


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """Last resort: a generic message and a log line; never a stack trace to the client."""
    logging.getLogger("picmetric.api").exception("unexpected error on %s", request.url.path)
    return JSONResponse({"detail": "internal error; the details are in the server log"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(PicMetricError, picmetric_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected_error)
