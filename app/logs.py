"""Structured logging: one JSON (or text) line per event, with the request id.

Caller data stays out of the logs because it is never put in them: events carry ids, outcomes, timings and
counts, not conversation text (unless SWITCHBOARD_LOG_CONVERSATIONS=1 adds it to the decision line). Values
are written as they are, so ids, keys and timestamps are never altered by masking.

Every line names the process that wrote it (`pid`; in text, `[pid]` before the event): with `serve --workers N`
each worker writes its own lines.

The text format is `key=value` pairs: a value with a space, `=`, a quote or a backslash is quoted, and control
characters (line breaks among them) are escaped, so that a value from a request (a call id with a newline,
say) can never end the line or forge another event.
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
                               "pid": record.process, **fields}, default=str, ensure_ascii=False)
            if not line.isascii():  # json leaves these as they are, and some readers split lines on them
                line = line.translate(_JSON_BREAKS)
        else:
            extra = " ".join(f"{_text(str(k))}={_text(str(v))}" for k, v in fields.items())
            line = f"{time.strftime('%H:%M:%S')} {record.levelname:<7} [{record.process}] {_escape(message)} " \
                   f"{extra}".rstrip()
        if record.exc_info:
            trace = self.formatException(record.exc_info)
            if not self.json:  # indented: no line of a trace (whose text may come from a request) starts an event
                trace = "\n".join("  " + _escape(part) for part in trace.split("\n"))
            line += "\n" + trace
        return line


_JSON_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\", '"': '\\"'}
_QUOTE_IF = frozenset(' ="\\')  # what makes a value need quotes, besides characters that are not printable


def _char(ch: str) -> str:
    if ch in "\n\r\t":
        return _SHORT[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _escape(text: str) -> str:
    """Every character that is not printable (line breaks of every kind, other controls, bidi overrides) as an
    escape: one event stays one line, and reads as what it is."""
    return text if text.isprintable() else "".join(ch if ch.isprintable() else _char(ch) for ch in text)


def _text(value: str) -> str:
    """A value for `key=value`: as it is when unambiguous, else in double quotes, `\\` and `"` escaped."""
    if value and value.isprintable() and not _QUOTE_IF.intersection(value):
        return value
    return '"' + "".join(_SHORT[ch] if ch in '\\"' else ch if ch.isprintable() else _char(ch) for ch in value) + '"'


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


def unknown_settings(logger: logging.Logger, names: list[tuple[str, str | None]]) -> None:
    """An `unknown_setting` warning for each SWITCHBOARD_* name that is no setting (app.settings.unknown_variables:
    the name as written, and the setting it most likely meant or None): the name as `variable`, the guess as
    `hint`."""
    for name, guess in names:
        hint = {"hint": f"did you mean {guess!r}?"} if guess else {}
        event(logger, "unknown_setting", logging.WARNING, variable=name, **hint)
