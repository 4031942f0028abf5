"""What a record keeps of a window, and the redaction of phone numbers in it (in the recorder's writer thread).

An allow-list: the conversation's messages and their tool calls, the earlier transfers, the handoff's parameters,
the message type and timestamp, the assistant's id and name, the call's id and assistantId. Everything else Vapi
sends is never written. Inside the kept text, phone numbers are redacted in every common written form unless
SWITCHBOARD_RECORD_REDACT=false.
"""

from __future__ import annotations

import math
import re
from typing import Any

from app.catalogue.destinations import Catalogue
from app.dataset.window import MESSAGE_FIELDS, OPENAI_FIELDS
from app.vapi.transfers import keys as transfer_keys

REDACTED = "<redacted>"
MIN_DIGITS = 7  # a run with this many digits may be a phone number; shorter ones (extensions, prices) stay
SMALLEST_REDACTED = 10 ** (MIN_DIGITS - 1)  # a number whose integral part has MIN_DIGITS digits

_DIGIT_WORDS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                "six": "6", "seven": "7", "eight": "8", "nine": "9", "double": "", "triple": ""}
_TOKEN = re.compile(r"\d+|[^\W\d_]+|\S", re.UNICODE)
_SEPARATORS = set("+()-./,\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u00b7#*")

TOOL_CALL_FIELDS = ("id", "type", "function")
TIMING = frozenset({"time", "endTime", "secondsFromStart", "duration"})


def redact_text(text: str) -> str:
    """Replace every run that reads as 7 or more digits: '415 555 0143', '(415) 555-0143', '415/555/0143',
    '415–555–0143', '+44 20 7946 0958', 'four one five five five five zero one four three', mixed forms."""
    out: list[str] = []
    last = 0
    tokens = list(_TOKEN.finditer(text))
    i = 0
    while i < len(tokens):
        start = i
        digits = 0
        j = i
        while j < len(tokens):
            token = tokens[j].group(0)
            low = token.lower()
            if token.isdigit() and token.isascii():
                digits += len(token)
            elif low in _DIGIT_WORDS and (digits or low not in ("o", "double", "triple")):
                digits += len(_DIGIT_WORDS[low]) or 0
            elif token in _SEPARATORS and (j > start or token in "+("):
                pass
            else:
                break
            j += 1
        end = j
        while end > start and tokens[end - 1].group(0) in _SEPARATORS:  # do not swallow a trailing '.'
            end -= 1
        if digits >= MIN_DIGITS and end > start:
            out.append(text[last:tokens[start].start()])
            out.append(REDACTED)
            last = tokens[end - 1].end()
            i = end
        else:
            i = max(j, i + 1)
    out.append(text[last:])
    return "".join(out)


def _redact_value(value: Any) -> Any:
    """Free-form data (tool-call arguments given as an object, a handoff's parameters): text, keys, and
    numbers whose integral part has 7 or more digits, integers and floats alike (4155550123.0, 4.15555e9)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return REDACTED if abs(value) >= SMALLEST_REDACTED else value  # compared, not printed: no digit limit
    if isinstance(value, float):
        return REDACTED if math.isfinite(value) and abs(value) >= SMALLEST_REDACTED else value
    if isinstance(value, dict):
        return {redact_text(str(k)): _redact_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_value(v) for v in value]
    return REDACTED


def _pick(item: Any, fields: tuple[str, ...]) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        return None
    return {k: item[k] for k in fields if k in item}


def _tool_calls(calls: Any) -> list[dict[str, Any]] | None:
    if not isinstance(calls, list):
        return None
    out = []
    for call in calls:
        kept = _pick(call, TOOL_CALL_FIELDS)
        if kept is None:
            continue
        function = kept.get("function")
        if isinstance(function, dict):
            kept["function"] = {k: function[k] for k in ("name", "arguments") if k in function}
        out.append(kept)
    return out


def _text_fields(item: dict[str, Any], redact: bool) -> dict[str, Any]:
    """Redact inside a kept message: its text and tool-call arguments; timings stay as they are."""
    if not redact:
        return item
    return {k: v if k in TIMING or k == "role" else _redact_value(v) for k, v in item.items()}


def _messages(items: Any, fields: tuple[str, ...], calls_key: str, redact: bool) -> list[dict[str, Any]] | None:
    if not isinstance(items, list):
        return None
    out = []
    for item in items:
        kept = _pick(item, fields)
        if kept is None:
            continue
        if calls_key in kept:
            kept[calls_key] = _tool_calls(kept[calls_key])
        out.append(_text_fields(kept, redact))
    return out


def catalogue_keys(catalogue: Catalogue | None) -> frozenset[str]:
    """What identifies the catalogue's own destinations (transfers.keys), for telling them from the rest."""
    found: set[str] = set()
    for entry in catalogue.entries if catalogue else ():
        for target in (entry.destination, entry.handoff):
            found |= transfer_keys(target, entry=True)
    return frozenset(found)


def _transfers(items: Any, known: frozenset[str], redact: bool) -> list[dict[str, Any]] | None:
    """Earlier transfers: status, mode, and where to. A destination of the catalogue's is the business's own
    and is kept, whatever way it is written (evaluation matches on it); any other is redacted."""
    if not isinstance(items, list):
        return None
    out = []
    for item in items:
        if not isinstance(item, dict):
            continue
        kept: dict[str, Any] = {k: item[k] for k in ("status", "mode") if isinstance(item.get(k), str)}
        dest = item.get("destination")
        if isinstance(dest, dict):
            where = {k: dest[k] for k in ("type", "number", "sipUri", "assistantName", "extension")
                     if isinstance(dest.get(k), str)}
            if redact:
                ours: set[str] = {k for k in ("number", "sipUri", "assistantName")
                        if k in where and (found := transfer_keys({k: where[k]})) and found <= known}
                if "number" in ours:
                    ours.add("extension")
                where = {k: v if k == "type" or k in ours else REDACTED for k, v in where.items()}
            kept["destination"] = where
        out.append(kept)
    return out


def keep(message: dict[str, Any], catalogue: Catalogue | None = None, redact: bool = True,
         known: frozenset[str] | None = None) -> dict[str, Any]:
    """The allow-listed, redacted copy of a message (of its window, when recording)."""
    out: dict[str, Any] = {k: message[k] for k in ("type", "timestamp") if k in message}
    artifact = message.get("artifact")
    if isinstance(artifact, dict):
        views: dict[str, Any] = {
            "messages": _messages(artifact.get("messages"), MESSAGE_FIELDS, "toolCalls", redact),
            "messagesOpenAIFormatted": _messages(artifact.get("messagesOpenAIFormatted"), OPENAI_FIELDS,
                                                 "tool_calls", redact),
            "transcript": (redact_text(artifact["transcript"]) if redact else artifact["transcript"])
            if isinstance(artifact.get("transcript"), str) else None,
            "transfers": _transfers(artifact.get("transfers"),
                                    catalogue_keys(catalogue) if known is None else known, redact),
        }
        out["artifact"] = {k: v for k, v in views.items() if v is not None}
    for holder, fields in (("assistant", ("id", "name")), ("call", ("id", "assistantId")),
                           ("chat", ("id", "assistantId"))):
        kept = _pick(message.get(holder), fields)
        if kept:
            out[holder] = {k: v for k, v in kept.items() if isinstance(v, str)}
    if isinstance(message.get("parameters"), dict):
        out["parameters"] = _redact_value(message["parameters"]) if redact else message["parameters"]
    return out
