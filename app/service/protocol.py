"""uvicorn's httptools protocol with what a public endpoint needs and uvicorn lacks:

- a deadline for the request headers (a client dribbling header bytes, or sending none, would hold its
  socket for ever);
- a bound on the request line and headers, in bytes and in fields, checked as the bytes arrive and before
  any credentials are looked at. httptools gathers a header's name and value in memory until the header
  ends (growing it by concatenation), and uvicorn keeps every header in a list: 50 connections without
  credentials sending a 20 MiB header each took the service from 74 to 216 MB here (to 1,242 MB where it
  was reported), each read in full to be answered 401. Past the bound the answer is 431 and the connection
  is closed;
- the moment each request began to arrive, for the answer's deadline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from app import logs

if TYPE_CHECKING:
    from app.settings import Settings

ARRIVED = "switchboard.arrived"  # ASGI scope extension: time.monotonic() when the request's first byte came
LINGER = 1.0  # seconds a refused connection's further bytes are read and dropped, so the client can read the 431


class _TooLarge(Exception):
    """Raised from a parser callback to stop parsing: the request's headers are past the bound."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """Call `configure(settings)` before uvicorn starts, in each worker process."""

    header_timeout = 10.0
    max_header_bytes = 65_536
    max_headers = 100

    @classmethod
    def configure(cls, settings: Settings) -> None:
        cls.header_timeout = settings.read_timeout
        cls.max_header_bytes = settings.max_header_bytes
        cls.max_headers = settings.max_headers

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0  # bytes received since the current request began (until its headers end)
        self._reading_head = True
        self._heads_done = 0  # header sections completed on this connection
        self._fields = 0
        self._field_bytes = 0
        self._refused = False  # past the bound: nothing more is parsed
        self._answered = False
        self._arm()

    def data_received(self, data: bytes) -> None:
        # Bytes are counted as they come, before the parser sees them: a header is not handed over until it
        # ends, so counting parsed headers alone would let one endless header grow in the parser's memory.
        while data and not self._refused and not self.transport.is_closing():
            if not self._reading_head:
                self._feed(data)  # a body: SWITCHBOARD_MAX_BODY_BYTES bounds it, in the app
                return
            room = self.max_header_bytes - self._head_bytes
            if room <= 0:
                self._refuse()
                return
            piece, data = data[:room], data[room:]
            self._head_bytes += len(piece)
            done_before = self._heads_done
            self._feed(piece)
            if data and self._reading_head and self._heads_done == done_before:
                self._refuse()  # the headers did not end within the bound, and more is coming
                return

    def _feed(self, data: bytes) -> None:
        """uvicorn's data_received, with a 431 for headers past the bound."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._refused:  # set by a callback, before it raised _TooLarge to stop the parser
                self._refuse()
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._fields = self._field_bytes = 0
        # When the request began to arrive: the answer's deadline counts from here, so time spent waiting for
        # a busy event loop before the handler runs is not invisible to the service's own clock.
        self.scope["extensions"] = {ARRIVED: {"at": time.monotonic()}}
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._field_bytes += len(url)
        self._check_fields()
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        # Counted here too: a request pipelined behind another, in the same read, was not counted byte by byte.
        self._fields += 1
        self._field_bytes += len(name) + len(value)
        self._check_fields()
        super().on_header(name, value)

    def _check_fields(self) -> None:
        if self._fields > self.max_headers or self._field_bytes > self.max_header_bytes:
            self._refused = True
            raise _TooLarge

    def on_headers_complete(self) -> None:
        self._disarm()
        self._reading_head = False
        self._heads_done += 1
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head, self._head_bytes = True, 0  # whatever comes next is the next request's head

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._refused and not self._answered and not self.transport.is_closing():
            self._answer_431()  # the request refused was pipelined behind the one just answered

    def _refuse(self) -> None:
        """431, then close: nothing more of this connection is parsed or kept."""
        if self._answered or self.transport.is_closing():
            return
        self._refused = True
        self._disarm()
        logs.event(logging.getLogger(logs.LOGGER), "headers_too_large", logging.WARNING,
                   client=self.client[0] if self.client else None, max_header_bytes=self.max_header_bytes,
                   max_headers=self.max_headers)
        if self.cycle is None or self.cycle.response_complete:
            self._answer_431()

    def _answer_431(self) -> None:
        """Further bytes are read and dropped for a moment after the answer: closing with unread data sends a
        reset, which can destroy the answer on its way to the client."""
        self._answered = True
        message = json.dumps({"error": f"request line and headers over the limit of {self.max_header_bytes} "
                                       f"bytes or {self.max_headers} fields (SWITCHBOARD_MAX_HEADER_BYTES, "
                                       "SWITCHBOARD_MAX_HEADERS)"}).encode()
        content = [STATUS_LINE[431]]
        for name, value in self.server_state.default_headers:
            content += [name, b": ", value, b"\r\n"]
        content += [b"content-type: application/json\r\ncontent-length: ", str(len(message)).encode(),
                    b"\r\nconnection: close\r\n\r\n", message]
        self.transport.write(b"".join(content))
        self._disarm()
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._header_timer = self.loop.call_later(LINGER, self._close)
        else:
            self.transport.close()

    def _arm(self) -> None:
        if self._header_timer is None and not self._refused:
            self._header_timer = self.loop.call_later(self.header_timeout, self._close)

    def _disarm(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _close(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()
