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

One file per process (`calls-<host>-<pid>.jsonl`). The window is cut in app/dataset/window.py, and the allow-list
and redaction are app/dataset/redaction.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.catalogue.destinations import Catalogue
from app.dataset.locking import locked
from app.dataset.redaction import catalogue_keys, keep
from app.dataset.window import ID_CHARS, window
from app.decision.decider import Decision
from app.errors import UserError
from app.logs import LOGGER, event
from app.routers.base import Query
from app.vapi.conversation import NoConversation, extract
from app.vapi.messages import HANDOFF_REQUEST, PayloadError, parse_request

RECORD_QUEUE = 256  # records waiting for the writer; each is a bounded window (tens of KB at most)
BATCH = 64  # records appended under one taking of the lock
FAILURE_LOG_INTERVAL = 60.0  # seconds between two `recording_failed` lines while the disk refuses
RESULTS = ("written", "failed", "dropped")


class RecordingError(UserError):
    """The recording directory cannot be used; the message names the setting."""


@dataclass(frozen=True, slots=True)
class _Item:
    """One record waiting for the writer: the window (bounded) and the decision, not yet redacted."""

    id: str
    message: dict[str, Any]
    decision: dict[str, Any]
    catalogue: Catalogue | None
    then: Callable[[str | None], None] | None = None  # told the line written (None: no line), e.g. the store


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
               query: Query | None, then: Callable[[str | None], None] | None = None) -> None:
        """Queue a record of this answered request. Takes the bounded window's time, never waits for the
        disk and never raises: a recording problem is counted and logged, and the caller is answered.
        `then` is called once, by the writer thread with the record's line (the decision store keeps it), or
        with None when there is no line."""
        try:
            item = self._item(message, decision, catalogue, query, then)
        except Exception as exc:  # a bug in the copy must cost the record, not the caller's answer
            self._count("failed", f"cannot copy the request ({type(exc).__name__}: {exc})")
            _tell(then, None)
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="switchboard-recorder", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._count("dropped", f"the writer is {self._queue.maxsize} records behind")
            _tell(then, None)

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
              query: Query | None, then: Callable[[str | None], None] | None = None) -> _Item:
        return _Item(_record_id(message), window(message, query, catalogue),
                     {"kind": decision.kind, "chosen": decision.chosen, "answered": decision.answered,
                      "outcome": decision.outcome, "router": decision.router, "model": decision.model,
                      "score": decision.score}, catalogue, then)

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
                _tell(item.then, None)
                continue
            _tell(item.then, lines[-1][:-1].decode("utf-8"))
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


def _tell(then: Callable[[str | None], None] | None, line: str | None) -> None:
    """Hand the record's line on (the store); its failure must not cost the recording."""
    if then is not None:
        with contextlib.suppress(Exception):
            then(line)


def _cut_back(fd: int, size: int) -> None:
    with contextlib.suppress(OSError):  # not a regular file (a device): nothing was kept to take back
        os.ftruncate(fd, size)
