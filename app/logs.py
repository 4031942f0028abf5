"""Structured logging: one JSON (or text) line per event, with the request id, and no caller numbers.

Phone numbers are masked in every line unless SWITCHBOARD_LOG_CONVERSATIONS=1, because a log pipeline is
a poor place for personal data.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from typing import Any

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
PHONE = re.compile(r"\+?\d[\d\s().-]{6,}\d")
LOGGER = "switchboard"


def mask_phones(text: str) -> str:
    return PHONE.sub(lambda m: "<phone:" + m.group(0)[-2:] + ">" if len(re.sub(r"\D", "", m.group(0))) >= 7
                     else m.group(0), text)


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_phones(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    return value


class _Formatter(logging.Formatter):
    def __init__(self, fmt: str, reveal: bool) -> None:
        super().__init__()
        self.json, self.reveal = fmt == "json", reveal

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, "fields", {}) or {})
        rid = request_id.get()
        if rid and "request_id" not in fields:
            fields["request_id"] = rid
        message = record.getMessage()
        if not self.reveal:  # mask inside string values only: numbers such as timestamps stay intact
            fields = {k: _masked(v) for k, v in fields.items()}
            message = mask_phones(message)
        if self.json:
            line = json.dumps({"ts": round(time.time(), 3), "level": record.levelname.lower(), "event": message,
                               **fields}, default=str, ensure_ascii=False)
        else:
            extra = " ".join(f"{k}={v}" for k, v in fields.items())
            line = f"{time.strftime('%H:%M:%S')} {record.levelname:<7} {message} {extra}".rstrip()
        if record.exc_info:
            trace = self.formatException(record.exc_info)
            line += "\n" + (trace if self.reveal else mask_phones(trace))
        return line


def setup(fmt: str = "json", level: str = "info", reveal: bool = False) -> logging.Logger:
    logger = logging.getLogger(LOGGER)
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(fmt, reveal))
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return logger


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    rid = request_id.get()
    if rid:  # taken now: handlers may format the record after the request is over
        fields["request_id"] = rid
    logger.log(level, name, extra={"fields": fields})
