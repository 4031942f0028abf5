"""Structured logging: one JSON (or text) line per event, with the request id.

Caller data stays out of the logs because it is never put in them: events carry ids, outcomes, timings and
counts, not conversation text (unless SWITCHBOARD_LOG_CONVERSATIONS=1 adds it to the decision line). Values
are written as they are, so ids, keys and timestamps are never altered by masking.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
LOGGER = "switchboard"
# uvicorn's own warnings (a concurrency limit reached, an invalid HTTP request) and asyncio's (no file
# descriptors left to accept a connection) go through the same format, so an operator's alerting sees them.
SERVER_LOGGERS = ("uvicorn.error", "asyncio")


class _Formatter(logging.Formatter):
    def __init__(self, fmt: str) -> None:
        super().__init__()
        self.json = fmt == "json"

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, "fields", {}) or {})
        rid = request_id.get()
        if rid and "request_id" not in fields:
            fields["request_id"] = rid
        message = record.getMessage()
        if record.name != LOGGER:
            fields = {"logger": record.name, **fields}
        if self.json:
            line = json.dumps({"ts": round(time.time(), 3), "level": record.levelname.lower(), "event": message,
                               **fields}, default=str, ensure_ascii=False)
        else:
            extra = " ".join(f"{k}={v}" for k, v in fields.items())
            line = f"{time.strftime('%H:%M:%S')} {record.levelname:<7} {message} {extra}".rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup(fmt: str = "json", level: str = "info") -> logging.Logger:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(fmt))
    logger = logging.getLogger(LOGGER)
    logger.handlers.clear()
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    for name in SERVER_LOGGERS:
        server = logging.getLogger(name)
        server.handlers.clear()
        server.addHandler(handler)
        server.setLevel(logging.WARNING)
        server.propagate = False
    return logger


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    rid = request_id.get()
    if rid:  # taken now: handlers may format the record after the request is over
        fields["request_id"] = rid
    logger.log(level, name, extra={"fields": fields})
