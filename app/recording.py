"""Recording answered destination requests as an evaluation dataset (JSONL).

What is kept is an allow-list: only what evaluation needs to replay the call (message type and timestamp,
the conversation views with their tool calls, the handoff's parameters, earlier transfers, the assistant's
id and name, the call's id and assistantId) and the decision. Everything else Vapi sends (customer details,
phone-number credentials, the assistant's configuration and server headers) is never written. Inside the kept
text, phone numbers are redacted in every common written form unless SWITCHBOARD_RECORD_REDACT=false.

One file per process (`calls-<host>-<pid>.jsonl`), appended one line per call under the file's lock, the
same lock `switchboard label` takes to rewrite it, so labelling while recording loses no line.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

from .catalogue import Catalogue
from .decision import Decision
from .locking import locked

REDACTED = "<redacted>"
MIN_DIGITS = 7  # a run with this many digits may be a phone number; shorter ones (extensions, prices) stay

_DIGIT_WORDS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                "six": "6", "seven": "7", "eight": "8", "nine": "9", "double": "", "triple": ""}
_TOKEN = re.compile(r"\d+|[^\W\d_]+|\S", re.UNICODE)
_SEPARATORS = set("+()-./,\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u00b7#*")

MESSAGE_FIELDS = ("role", "message", "time", "endTime", "secondsFromStart", "duration", "name", "result",
                  "toolCalls", "toolCallId")
OPENAI_FIELDS = ("role", "content", "tool_calls", "tool_call_id", "name")
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
    """Free-form data (tool-call arguments given as an object): text, keys and long integers."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return REDACTED if len(str(abs(value))) >= MIN_DIGITS else value
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


def _catalogue_targets(catalogue: Catalogue | None) -> set[str]:
    targets: set[str] = set()
    for entry in catalogue.entries if catalogue else ():
        for target in (entry.destination, entry.handoff):
            for key in ("number", "sipUri", "assistantName", "assistantId"):
                if target and isinstance(target.get(key), str):
                    targets.add(target[key])
    return targets


def _transfers(items: Any, known: set[str], redact: bool) -> list[dict[str, Any]] | None:
    """Earlier transfers: status, mode, and where to. A destination from the catalogue is the business's own
    and is kept (evaluation matches on it); any other is redacted."""
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
                where = {k: v if k == "type" or v in known else REDACTED for k, v in where.items()}
            kept["destination"] = where
        out.append(kept)
    return out


def keep(message: dict[str, Any], catalogue: Catalogue | None = None, redact: bool = True) -> dict[str, Any]:
    """The allow-listed copy of a Vapi message that a recording holds."""
    out: dict[str, Any] = {k: message[k] for k in ("type", "timestamp") if k in message}
    artifact = message.get("artifact")
    if isinstance(artifact, dict):
        views: dict[str, Any] = {
            "messages": _messages(artifact.get("messages"), MESSAGE_FIELDS, "toolCalls", redact),
            "messagesOpenAIFormatted": _messages(artifact.get("messagesOpenAIFormatted"), OPENAI_FIELDS,
                                                 "tool_calls", redact),
            "transcript": (redact_text(artifact["transcript"]) if redact else artifact["transcript"])
            if isinstance(artifact.get("transcript"), str) else None,
            "transfers": _transfers(artifact.get("transfers"), _catalogue_targets(catalogue), redact),
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


class RecordingError(Exception):
    """The recording directory cannot be used; the message names the setting."""


class Recorder:
    def __init__(self, directory: Path, redact_payloads: bool = True) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self.path = directory / f"calls-{socket.gethostname()}-{os.getpid()}.jsonl"
            with locked(self.path), self.path.open("a", encoding="utf-8"):
                pass  # prove now, at start-up, that the file can be written
        except OSError as exc:
            raise RecordingError(f"SWITCHBOARD_RECORD_DIR={str(directory)!r}: cannot write there "
                                 f"({exc.strerror or exc}); choose a writable directory or unset it") from None
        self.redact = redact_payloads

    def record(self, message: dict[str, Any], decision: Decision, catalogue: Catalogue | None = None) -> None:
        holder = message.get("call") if isinstance(message.get("call"), dict) else message.get("chat")
        call_id = holder.get("id") if isinstance(holder, dict) and isinstance(holder.get("id"), str) else "rec"
        stamp = message.get("timestamp")
        # One call can ask more than once (after a failed transfer): the id stays unique per request.
        finite = isinstance(stamp, int | float) and not isinstance(stamp, bool) and math.isfinite(stamp)
        suffix = str(int(stamp)) if finite and isinstance(stamp, int | float) else str(time.time_ns())
        line = {
            "id": f"{call_id}-{suffix}",
            "expected": None,
            "tags": ["recorded"],
            "payload": {"message": keep(message, catalogue, self.redact)},
            "decision": {"kind": decision.kind, "chosen": decision.chosen, "answered": decision.answered,
                         "outcome": decision.outcome, "router": decision.router, "model": decision.model,
                         "score": decision.score},
        }
        text = json.dumps(line, ensure_ascii=False) + "\n"
        with locked(self.path), self.path.open("a", encoding="utf-8") as f:
            f.write(text)
