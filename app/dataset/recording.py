"""Recording answered destination requests as an evaluation dataset (JSONL).

What is kept is what the decision used, and of that an allow-list: the window of the conversation the router
saw (its messages, with the tool call the hint came from), the earlier transfers that decided which entries
were left out, the handoff's parameters, the message type and timestamp, the assistant's id and name, the
call's id and assistantId, and the decision. A 1 MiB conversation is recorded as the few kilobytes the router
read, so the work per record is bounded like the decision's. Everything else Vapi sends (customer details,
phone-number credentials, the assistant's configuration and server headers) is never written. Inside the kept
text, phone numbers are redacted in every common written form unless SWITCHBOARD_RECORD_REDACT=false.

Recording never costs a caller their answer, nor their time. On the event loop a request only copies its
bounded window and queues it (RECORD_QUEUE records at most; beyond that a record is dropped and counted);
one writer thread redacts, serializes and appends. Each record is one `os.write` of the whole line to a file
opened with O_APPEND, under the file's lock (the lock `switchboard label` takes to rewrite it, so labelling
while recording loses no line); a short write (a full disk) is cut back off, so no partial line stays for
later records to be glued onto. Failures are counted (`switchboard_recordings_total{result}`) and logged
once per FAILURE_LOG_INTERVAL, not once per call.

One file per process (`calls-<host>-<pid>.jsonl`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import queue
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.catalogue.destinations import Catalogue
from app.dataset.locking import locked
from app.decision.decider import Decision
from app.logs import LOGGER, event
from app.routers.base import Query
from app.vapi.conversation import (
    _TRANSCRIPT_LINE,
    MAX_ARGUMENT_CHARS,
    MAX_SCAN,
    MAX_TURN_CHARS,
    NoConversation,
    extract,
)
from app.vapi.messages import HANDOFF_REQUEST, PayloadError, parse_request
from app.vapi.transfers import keys as transfer_keys
from app.vapi.transfers import latest_indices

REDACTED = "<redacted>"
MIN_DIGITS = 7  # a run with this many digits may be a phone number; shorter ones (extensions, prices) stay
SMALLEST_REDACTED = 10 ** (MIN_DIGITS - 1)  # a number whose integral part has MIN_DIGITS digits

RECORD_QUEUE = 256  # records waiting for the writer; each is a bounded window (tens of KB at most)
BATCH = 64  # records appended under one taking of the lock
FAILURE_LOG_INTERVAL = 60.0  # seconds between two `recording_failed` lines while the disk refuses
TEXT_CHARS = MAX_TURN_CHARS * 4  # what the decision reads of any text (conversation._clean cuts there first)
ARGUMENT_CHARS = MAX_ARGUMENT_CHARS + 1  # longer arguments are no hint; one character more keeps them so
ID_CHARS = 256  # ids, names, keys
VALUE_NODES = 200  # values kept of one free-form object (parameters, tool arguments)
VALUE_CHARS = 2 * TEXT_CHARS  # characters kept of one free-form object
VALUE_DEPTH = 6
MAX_TRANSFERS_KEPT = 50  # the latest transfer per catalogue destination; a call reaches a handful

_DIGIT_WORDS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                "six": "6", "seven": "7", "eight": "8", "nine": "9", "double": "", "triple": ""}
_TOKEN = re.compile(r"\d+|[^\W\d_]+|\S", re.UNICODE)
_SEPARATORS = set("+()-./,\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u00b7#*")

MESSAGE_FIELDS = ("role", "message", "time", "endTime", "secondsFromStart", "duration", "name", "result",
                  "toolCalls", "toolCallId")
OPENAI_FIELDS = ("role", "content", "tool_calls", "tool_call_id", "name")
TOOL_CALL_FIELDS = ("id", "type", "function")
TIMING = frozenset({"time", "endTime", "secondsFromStart", "duration"})
VIEWS = {"messages": (MESSAGE_FIELDS, "toolCalls"), "messagesOpenAIFormatted": (OPENAI_FIELDS, "tool_calls")}
RESULTS = ("written", "failed", "dropped")


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


# --- the window: what the decision used, copied with bounded work (on the event loop) ---

class _Budget:
    __slots__ = ("chars", "nodes")

    def __init__(self, nodes: int = VALUE_NODES, chars: int = VALUE_CHARS) -> None:
        self.nodes, self.chars = nodes, chars


def _bounded(value: Any, budget: _Budget, depth: int = 0, text_chars: int = TEXT_CHARS) -> Any:
    """A copy of JSON data that stops at the budget: strings cut to what the decision reads, containers cut
    when the budget's values or characters run out, nothing deeper than VALUE_DEPTH."""
    if budget.nodes <= 0:
        return None
    budget.nodes -= 1
    if isinstance(value, str):
        cut = value[:max(0, min(text_chars, budget.chars))]
        budget.chars -= len(cut)
        return cut
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= VALUE_DEPTH:
        return None
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if budget.nodes <= 0 or budget.chars <= 0:
                break
            key = str(k)[:ID_CHARS]
            budget.chars -= len(key)
            out[key] = _bounded(v, budget, depth + 1, text_chars)
        return out
    if isinstance(value, list):
        items: list[Any] = []
        for v in value:
            if budget.nodes <= 0 or budget.chars <= 0:
                break
            items.append(_bounded(v, budget, depth + 1, text_chars))
        return items
    return None


def _tool_call(calls: Any) -> list[dict[str, Any]] | None:
    """Of a message's tool calls, the one the hint is read from: the last with a function."""
    if not isinstance(calls, list):
        return None
    for call in reversed(calls[-MAX_SCAN:]):
        if isinstance(call, dict) and isinstance(call.get("function"), dict):
            function = call["function"]
            kept: dict[str, Any] = {k: _bounded(call[k], _Budget(1), text_chars=ID_CHARS)
                                    for k in ("id", "type") if k in call}
            copy: dict[str, Any] = {}
            if "name" in function:
                copy["name"] = _bounded(function["name"], _Budget(1), text_chars=ID_CHARS)
            if "arguments" in function:
                copy["arguments"] = _bounded(function["arguments"], _Budget(), text_chars=ARGUMENT_CHARS)
            kept["function"] = copy
            return [kept]
    return []


def _message(item: Any, view: str) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        return None
    fields, calls_key = VIEWS[view]
    out: dict[str, Any] = {}
    budget = _Budget()
    for key in fields:
        if key in item:
            out[key] = _tool_call(item[key]) if key == calls_key else _bounded(item[key], budget)
    return out


def _last_tool_call(items: Any, view: str) -> int | None:
    """Where the hint's tool call is, looked for as the decision looks (conversation._last_index)."""
    if not isinstance(items, list):
        return None
    wanted = "tool_calls" if view == "messages" else "assistant"
    calls_key = VIEWS[view][1]
    for i in range(len(items) - 1, max(-1, len(items) - 1 - MAX_SCAN), -1):
        raw = items[i]
        if isinstance(raw, dict) and raw.get("role") == wanted and (view == "messages" or raw.get(calls_key)):
            return i
    return None


def _transcript(text: str, positions: tuple[int, ...]) -> str:
    """The transcript's lines the window read: each turn's speaker line and the lines that continue it."""
    lines = text.splitlines()
    kept: list[str] = []
    for i in positions:
        if not 0 <= i < len(lines):
            continue
        kept.append(lines[i][:TEXT_CHARS])
        for follow in lines[i + 1: i + 1 + 20]:  # as conversation._transcript_view reads them
            if _TRANSCRIPT_LINE.match(follow):
                break
            kept.append(follow[:TEXT_CHARS])
    return "\n".join(kept)


def window(message: dict[str, Any], query: Query | None, catalogue: Catalogue | None) -> dict[str, Any]:
    """The part of a request its decision used, as a request of the same shape: replayed by `eval`, it gives
    the router the same turns (without the "messages omitted" line), hint and left-out destinations."""
    out: dict[str, Any] = {k: _bounded(message[k], _Budget(1), text_chars=ID_CHARS)
                           for k in ("type", "timestamp") if k in message}
    artifact = message.get("artifact")
    if isinstance(artifact, dict):
        kept: dict[str, Any] = {}
        conversation = query.conversation if query is not None else None
        if conversation is not None:
            source = conversation.source
            picks: dict[str, list[int]] = {view: [] for view in VIEWS}
            if source in VIEWS:
                picks[source] = list(conversation.positions)
            elif isinstance(artifact.get("transcript"), str):
                kept["transcript"] = _transcript(artifact["transcript"], conversation.positions)
            for view in VIEWS if source == "transcript" else (source,):  # where the hint's tool call is
                at = _last_tool_call(artifact.get(view), view)
                if at is not None:
                    picks[view] = sorted({*picks[view], at})
            for view, positions in picks.items():
                items = artifact.get(view)
                if positions and isinstance(items, list):
                    copies = (_message(items[i], view) for i in positions if 0 <= i < len(items))
                    kept[view] = [c for c in copies if c is not None]
        if query is not None and catalogue is not None and isinstance(artifact.get("transfers"), list):
            items = artifact["transfers"]
            deciding = latest_indices(items, catalogue, query.subset or query.allowed, query.kind)
            kept["transfers"] = [_bounded(items[i], _Budget(40)) for i in deciding[-MAX_TRANSFERS_KEPT:]]
        out["artifact"] = kept
    for holder, fields in (("assistant", ("id", "name")), ("call", ("id", "assistantId")),
                           ("chat", ("id", "assistantId"))):
        value = message.get(holder)
        if isinstance(value, dict):
            picked = {k: value[k][:ID_CHARS] for k in fields if isinstance(value.get(k), str)}
            if picked:
                out[holder] = picked
    if isinstance(message.get("parameters"), dict):
        out["parameters"] = _bounded(message["parameters"], _Budget())
    return out


# --- the allow-list and redaction (in the writer thread) ---

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


# --- the recorder ---

class RecordingError(Exception):
    """The recording directory cannot be used; the message names the setting."""


@dataclass(frozen=True, slots=True)
class _Item:
    """One record waiting for the writer: the window (bounded) and the decision, not yet redacted."""

    id: str
    message: dict[str, Any]
    decision: dict[str, Any]
    catalogue: Catalogue | None


def _record_id(message: dict[str, Any]) -> str:
    holder = message.get("call") if isinstance(message.get("call"), dict) else message.get("chat")
    found = holder.get("id") if isinstance(holder, dict) else None
    call_id = found if isinstance(found, str) else "rec"
    stamp = message.get("timestamp")
    # One call can ask more than once (after a failed transfer): the id stays unique per request.
    finite = isinstance(stamp, int | float) and not isinstance(stamp, bool) and math.isfinite(stamp)
    suffix = str(int(stamp)) if finite and isinstance(stamp, int | float) else str(time.time_ns())
    return f"{call_id[:ID_CHARS]}-{suffix[:40]}"


def _query(message: dict[str, Any], catalogue: Catalogue | None) -> Query | None:
    """For a record made without the service's query: the conversation as the service would read it."""
    try:
        request = parse_request(message)
        conversation = extract(request)
    except (PayloadError, NoConversation):
        return None
    kind = "handoff" if request.type == HANDOFF_REQUEST else "transfer"
    return Query(conversation, "", catalogue.ids if catalogue else (), kind)


class Recorder:
    def __init__(self, directory: Path, redact_payloads: bool = True, *, registry: Any = None,
                 queue_size: int = RECORD_QUEUE, logger: logging.Logger | None = None) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self.path = directory / f"calls-{socket.gethostname()}-{os.getpid()}.jsonl"
            with locked(self.path):
                os.close(self._open())  # prove now, at start-up, that the file can be written
        except OSError as exc:
            raise RecordingError(f"SWITCHBOARD_RECORD_DIR={str(directory)!r}: cannot write there "
                                 f"({exc.strerror or exc}); choose a writable directory or unset it") from None
        self.redact = redact_payloads
        self.logger = logger or logging.getLogger(LOGGER)
        self.counts = dict.fromkeys(RESULTS, 0)
        self._metric: Any = None
        if registry is not None:
            from prometheus_client import Counter

            self._metric = Counter("switchboard_recordings", "Calls recorded (written), not recorded because the "
                                   "disk refused (failed), or because the writer was behind (dropped)",
                                   ["result"], registry=registry)
            for result in RESULTS:
                self._metric.labels(result)
        self.write: Callable[[int, bytes], int] = os.write  # the one system call an append makes (tests fail it)
        self._queue: queue.Queue[_Item | None] = queue.Queue(queue_size)
        self._thread: threading.Thread | None = None
        self._report_lock = threading.Lock()
        self._unreported = dict.fromkeys(("failed", "dropped"), 0)
        self._next_report = 0.0
        self._refusing = False  # records were lost since the last report: the next one written says so
        self._known: tuple[Catalogue | None, frozenset[str]] = (None, frozenset())

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)

    # On the event loop

    def submit(self, message: dict[str, Any], decision: Decision, catalogue: Catalogue | None,
               query: Query | None) -> None:
        """Queue a record of this answered request. Takes the bounded window's time, never waits for the
        disk and never raises: a recording problem is counted and logged, and the caller is answered."""
        try:
            item = self._item(message, decision, catalogue, query)
        except Exception as exc:  # a bug in the copy must cost the record, not the caller's answer
            self._count("failed", f"cannot copy the request ({type(exc).__name__}: {exc})")
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="switchboard-recorder", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._count("dropped", f"the writer is {self._queue.maxsize} records behind")

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the writer (at shutdown; blocks: call it off the event loop)."""
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)
        self._thread = None

    # Anywhere

    def record(self, message: dict[str, Any], decision: Decision, catalogue: Catalogue | None = None,
               query: Query | None = None) -> bool:
        """Record one request now, in this thread. False if it could not be written (counted and logged)."""
        try:
            item = self._item(message, decision, catalogue, query or _query(message, catalogue))
        except Exception as exc:
            self._count("failed", f"cannot copy the request ({type(exc).__name__}: {exc})")
            return False
        return self._append([item]) == 1

    def _item(self, message: dict[str, Any], decision: Decision, catalogue: Catalogue | None,
              query: Query | None) -> _Item:
        return _Item(_record_id(message), window(message, query, catalogue),
                     {"kind": decision.kind, "chosen": decision.chosen, "answered": decision.answered,
                      "outcome": decision.outcome, "router": decision.router, "model": decision.model,
                      "score": decision.score}, catalogue)

    # In the writer thread

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while batch[-1] is not None and len(batch) < BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            items = [item for item in batch if item is not None]
            if items:
                try:
                    self._append(items)
                except Exception as exc:  # a bug here must not stop recording for the life of the process
                    self._count("failed", f"{type(exc).__name__}: {exc}", len(items))
            if batch[-1] is None:
                return

    def _line(self, item: _Item) -> bytes:
        if item.catalogue is not self._known[0]:  # worked out once per catalogue, not per record
            self._known = (item.catalogue, catalogue_keys(item.catalogue))
        line = {"id": item.id, "expected": None, "tags": ["recorded"],
                "payload": {"message": keep(item.message, item.catalogue, self.redact, self._known[1])},
                "decision": item.decision}
        try:
            return (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate in the text: JSON escapes say it in ASCII
            return (json.dumps(line) + "\n").encode("ascii")

    def _append(self, items: list[_Item]) -> int:
        """Append each item's line with one write; returns how many were written."""
        lines: list[bytes] = []
        for item in items:
            try:
                lines.append(self._line(item))
            except (TypeError, ValueError) as exc:
                self._count("failed", f"cannot encode the record ({exc})")
        written = 0
        try:
            with locked(self.path):
                fd = self._open()
                try:
                    for data in lines:
                        self._write_one(fd, data)
                        written += 1
                finally:
                    os.close(fd)
        except OSError as exc:
            self._count("failed", f"{exc.strerror or exc} ({self.path})", len(lines) - written)
        if written:
            self._count("written", None, written)
        return written

    def _write_one(self, fd: int, data: bytes) -> None:
        """One append of the whole line. A short write leaves part of a line, which the next record would be
        glued onto: cut the file back to where it was, and report the write as failed."""
        size = os.fstat(fd).st_size  # the end: every append to this file happens under its lock
        try:
            done = self.write(fd, data)
        except OSError:
            _cut_back(fd, size)
            raise
        if done != len(data):
            _cut_back(fd, size)
            raise OSError(f"short write, {done} of {len(data)} bytes, taken back (is the disk full?)")

    def _count(self, result: str, error: str | None, n: int = 1) -> None:
        """Count records by result. Failures and drops are logged at most once per FAILURE_LOG_INTERVAL, with
        how many there were since the last line; so is the first record written after them."""
        if self._metric is not None:
            self._metric.labels(result).inc(n)
        with self._report_lock:  # the event loop (drops) and the writer (the rest) both count
            self.counts[result] += n
            now = time.monotonic()
            if result == "written":
                if not self._refusing or now < self._next_report:
                    return
                self._refusing = False
            else:
                self._unreported[result] += n
                self._refusing = True
                if now < self._next_report:
                    return
            self._next_report = now + FAILURE_LOG_INTERVAL
            unreported, self._unreported = self._unreported, dict.fromkeys(self._unreported, 0)
        if result == "written":
            event(self.logger, "recording_resumed", path=str(self.path), **unreported)
        else:
            event(self.logger, "recording_failed", logging.WARNING, path=str(self.path), error=error, **unreported,
                  hint="callers are answered as usual; records are lost until this is fixed (free space, or make "
                       f"SWITCHBOARD_RECORD_DIR writable); the next report comes {FAILURE_LOG_INTERVAL:g} s "
                       "later at the soonest")


def _cut_back(fd: int, size: int) -> None:
    with contextlib.suppress(OSError):  # not a regular file (a device): nothing was kept to take back
        os.ftruncate(fd, size)
