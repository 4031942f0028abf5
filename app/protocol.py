"""uvicorn's httptools protocol with what a public endpoint needs and uvicorn lacks: a deadline for the request
headers (a client dribbling header bytes, or sending none, would hold its socket for ever), and the moment
each request began to arrive, for the answer's deadline."""

from __future__ import annotations

import asyncio
import time

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .server import ARRIVED


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """Set `header_timeout` (SWITCHBOARD_READ_TIMEOUT) before uvicorn starts, in each worker process."""

    header_timeout = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # When the request began to arrive: the answer's deadline counts from here, so time spent waiting for
        # a busy event loop before the handler runs is not invisible to the service's own clock.
        self.scope["extensions"] = {ARRIVED: {"at": time.monotonic()}}
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if getattr(self, "_header_timer", None) is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()
