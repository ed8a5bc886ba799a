"""The request guard: ASGI middleware that decides about a request before any route reads a byte of its body.

In order: no NUL character in the address; the API key (or, on admin routes, the admin token) from the headers or
the query; a declared body no larger than the route's limit; then, while the body streams in, the same limit and one
deadline for the whole body (a client sending a byte a second must not hold a connection for minutes).
Which routes need what is one table here (``access_of``), which the OpenAPI schema also publishes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from math import ceil
from urllib.parse import parse_qsl

import anyio
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from picmetric.interfaces.api.errors import BodyTooLarge, BodyTooSlow, refusal, too_large
from picmetric.interfaces.lockout import Lockout, locked_message
from picmetric.settings import Settings, tokens_match

#: room for multipart boundaries and option fields around an upload at the byte limit
MULTIPART_OVERHEAD = 64 * 1024
#: routes anyone may call, also with a key configured: the upload page, probes, metrics, the documentation
_PUBLIC = frozenset({"/", "/upload", "/healthz", "/readyz", "/metrics", "/openapi.json", "/redoc", "/favicon.ico"})
_ADMIN = frozenset({("POST", "/reset"), ("GET", "/log")})
#: ``request.state`` flag of DeepStack routes: whether the key was already given in the header or the query
KEY_CHECKED = "api_key_checked"


class Access(enum.Enum):
    PUBLIC = "public"
    KEY = "API key"  # with PICMETRIC_API_KEY set: X-API-Key or ?api_key=
    KEY_OR_FORM = "API key, also as the form field api_key"  # DeepStack's clients send it in the body
    ADMIN = "admin token"  # Authorization: Bearer, or X-Admin-Token


def access_of(method: str, path: str) -> Access:
    """What a request must carry. Anything not named here (every analysis, history, image and job route, and any
    unknown address) needs the key: a route added later is protected by default."""
    if path in _PUBLIC or path.startswith("/docs"):
        return Access.PUBLIC
    if (method, path) in _ADMIN or (method == "DELETE" and path.startswith(("/api/v1/analyses/", "/api/v1/datasets/"))):
        return Access.ADMIN
    if path.startswith("/v1/vision/"):
        return Access.KEY_OR_FORM
    return Access.KEY


def has_admin_token(headers: Mapping[str, str], settings: Settings) -> bool:
    """Whether the headers carry the admin token: ``Authorization: Bearer`` or
    ``X-Admin-Token``; never with no token configured."""
    if settings.admin_token is None:
        return False
    authorization = headers.get("authorization", "")
    bearer = authorization[7:] if authorization.lower().startswith("bearer ") else None
    return tokens_match(bearer or headers.get("x-admin-token", ""), settings.admin_token)


def _headers(scope: Scope) -> Mapping[bytes, bytes]:
    return dict(scope["headers"])


def _query_value(scope: Scope, name: str) -> str | None:
    query = scope.get("query_string", b"").decode("latin-1")
    return next((value for key, value in parse_qsl(query) if key == name), None)


class RequestGuard:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings
        self.single_limit = settings.max_upload_bytes + MULTIPART_OVERHEAD
        self.batch_limit = settings.max_batch_bytes + MULTIPART_OVERHEAD
        self.video_limit = settings.max_video_bytes + MULTIPART_OVERHEAD
        self.admin_tries = Lockout()  # wrong admin tokens per client address

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if "\x00" in path or b"%00" in scope.get("query_string", b""):
            return await self._refuse(scope, send, 400, "the address contains a NUL character")
        headers = _headers(scope)
        denied = self._denied(scope, headers)
        if denied is not None:
            return await self._refuse(scope, send, *denied)
        limit = self.single_limit
        if path in ("/api/v1/batches", "/api/v1/datasets"):
            limit = self.batch_limit
        elif path == "/api/v1/videos":
            limit = self.video_limit
        declared = headers.get(b"content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            return await self._refuse(scope, send, 413, too_large(limit))
        await self._guard_body(scope, receive, send, limit)

    def _denied(self, scope: Scope, headers: Mapping[bytes, bytes]) -> tuple[int, str, dict[str, str]] | None:
        """None when the request may go on; else the status, message and challenge of the refusal. Sets
        ``KEY_CHECKED`` for DeepStack routes, which check a key sent in their form themselves."""
        access = access_of(scope["method"], scope.get("path", ""))
        if access is Access.ADMIN:
            if self.settings.admin_token is None:
                return 403, "admin routes are disabled: set PICMETRIC_ADMIN_TOKEN", {}
            client = (scope.get("client") or ("unknown", 0))[0]
            wait = self.admin_tries.wait_left(client)
            if wait:  # not even a right token is looked at: a guesser learns nothing while locked out
                return 429, locked_message(wait), {"Retry-After": str(ceil(wait))}
            if not has_admin_token(Headers(scope=scope), self.settings):
                self.admin_tries.failed(client)
                return (
                    401,
                    "admin token missing or wrong (Authorization: Bearer <token>)",
                    {"WWW-Authenticate": "Bearer"},
                )
            self.admin_tries.succeeded(client)
            return None
        expected = self.settings.api_key
        if access is Access.PUBLIC or expected is None:
            scope.setdefault("state", {})[KEY_CHECKED] = True
            return None
        given: str | None = headers.get(b"x-api-key", b"").decode("latin-1") or _query_value(scope, "api_key")
        if given:
            if not tokens_match(given, expected):
                return 401, "Incorrect api key", {"WWW-Authenticate": "ApiKey"}
            scope.setdefault("state", {})[KEY_CHECKED] = True
            return None
        if access is Access.KEY_OR_FORM:
            scope.setdefault("state", {})[KEY_CHECKED] = False
            return None
        message = "this API needs its key: send it in the X-API-Key header or as ?api_key="
        return 401, message, {"WWW-Authenticate": "ApiKey"}

    async def _guard_body(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        received = 0
        started = body_done = False
        deadline = anyio.current_time() + self.settings.http_body_timeout_s

        async def guarded_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # only the body has a deadline, not a later wait for the client to disconnect
                return await receive()
            try:
                with anyio.fail_after(max(0.0, deadline - anyio.current_time())):
                    message = await receive()
            except TimeoutError:
                raise BodyTooSlow(self.settings.http_body_timeout_s) from None
            received += len(message.get("body", b""))
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            if received > limit:
                raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, guarded_receive, tracking_send)
        except (BodyTooLarge, BodyTooSlow) as exc:
            if not started:
                await self._refuse(scope, send, exc.status_code, str(exc.detail))

    async def _refuse(
        self, scope: Scope, send: Send, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        answer = refusal(scope.get("path", ""), status, message, {**(headers or {}), "Connection": "close"})
        await answer(scope, _empty_receive, send)


async def _empty_receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}
