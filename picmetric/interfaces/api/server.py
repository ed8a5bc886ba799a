"""How PicMetric's API is served: uvicorn's HTTP/1.1 protocol with a deadline for each request head.

uvicorn closes idle keep-alive connections, but not a connection that sends its request line and headers a byte
at a time: 50 such clients held 50 connections open indefinitely. Here a client that has not completed a request
head within ``PICMETRIC_HTTP_HEAD_TIMEOUT_S`` of connecting (or of its previous response) is disconnected.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol

from picmetric.settings import Settings

#: the import string uvicorn takes for ``http=``, also in worker processes
PROTOCOL = "picmetric.interfaces.api.server:HeadTimeoutH11Protocol"


class HeadTimeoutH11Protocol(H11Protocol):
    head_timeout_s: float | None = None  # None: the served app's settings (``create_app`` keeps them)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._arm_head_deadline()

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        seconds = self.head_timeout_s or _served_settings(self.app).http_head_timeout_s
        self._head_deadline = self.loop.call_later(seconds, self._head_too_slow)

    def _disarm_head_deadline(self) -> None:
        if getattr(self, "_head_deadline", None) is not None:
            self._head_deadline.cancel()  # type: ignore[union-attr]
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a complete request head arrived and its cycle began
            self._disarm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_deadline()  # the next request on this keep-alive connection gets its own deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)


def _served_settings(app: object) -> Settings:
    """The settings the served PicMetric app was made with, under whatever middleware uvicorn wrapped it in."""
    while not isinstance(getattr(getattr(app, "state", None), "settings", None), Settings):
        inner = getattr(app, "app", None)
        if inner is None:
            raise RuntimeError("HeadTimeoutH11Protocol serves only an app made by picmetric.interfaces.api.create_app")
        app = inner
    return app.state.settings  # type: ignore[attr-defined]
