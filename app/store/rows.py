"""What the store keeps: one row per decision, one per thing Vapi told us about a call, and outcome updates.

Rows are plain frozen dataclasses, built by the service on the event loop and handed to the store as they are;
everything that costs more than building them (bounds, cleaning, the database) happens on the store's own thread.
Caller text is never a field, except `request_json`: the recorded, already redacted request, which the service
fills only while recording is on (SWITCHBOARD_RECORD_DIR).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime

MESSAGE_TYPES = ("transfer", "handoff")
OUTCOMES = ("pending", "reached", "unreachable", "hung_up", "rerouted", "unknown")
ID_CHARS = 256  # ids, hashes, event kinds, statuses: longer ones are cut (a hostile call id cannot bloat the store)
KEY_CHARS = 1024  # a destination key: a SIP URI with its headers, a number with an extension
MAX_KEYS = 16  # keys of one destination (an assistant by name and by id, a squad...): a handful
REQUEST_CHARS = 4 * 1024 * 1024  # the recorded request: a bounded window, a few KB; far beyond that is a bug


class RowRejected(ValueError):
    """A row that cannot be kept as it is; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """One answered destination request. `destination_keys` are the answered destination's keys as the outcome
    messages name it (number with extension, SIP URI, assistant name or id; app/vapi/outcomes.destination_keys):
    what the join compares with EventRow.destination_keys."""

    decision_id: str
    call_id: str
    request_id: str
    at: datetime
    message_type: str  # one of MESSAGE_TYPES
    chosen: str | None = None  # the router's pick (a catalogue id)
    answered: str | None = None  # what the caller was sent to (after hours, fallback, low confidence included)
    destination_keys: tuple[str, ...] = ()
    outcome: str = "pending"  # one of OUTCOMES
    outcome_at: datetime | None = None  # when the outcome was last set (OutcomeRow.at)
    confidence: float | None = None
    prompt_hash: str | None = None
    latency_ms: float | None = None
    catalogue_hash: str | None = None
    request_json: str | None = None  # only with recording on: the recorded, redacted request


@dataclass(frozen=True, slots=True)
class EventRow:
    """One thing Vapi reported about a call (a transfer's status, an assistant taking the call, a forwarding, the
    call's endedReason): app/vapi/outcomes.OutcomeEvent as it is kept. `event_key` makes it idempotent: a resent
    message gives the same key (event_key(source, position)), and a key already kept is not written again."""

    event_key: str
    call_id: str
    kind: str  # OutcomeEvent.kind: transfer, activation, handoff, report, ended, forwarding
    at: datetime  # Vapi's timestamp, else when it was received (timed=False)
    destination_keys: tuple[str, ...] = ()
    status: str | None = None  # a transfer's status (connected, no-answer, ...) or the endedReason, as kind says
    source: str | None = None  # fingerprint of the message it came from (resends share it)
    position: int = 0  # its place in that message (artifact.transfers[] is ordered)
    timed: bool = True


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    """The outcome of a decision, as the join of its call's events decided it; later rows win."""

    decision_id: str
    outcome: str  # one of OUTCOMES
    at: datetime


Row = DecisionRow | EventRow | OutcomeRow
DECISION_COLUMNS = tuple(f.name for f in dataclasses.fields(DecisionRow))  # the tables' columns, in this order
EVENT_COLUMNS = tuple(f.name for f in dataclasses.fields(EventRow))


@dataclass(frozen=True, slots=True)
class CallRecord:
    """Everything kept of one call: its decisions and its events, each in time order."""

    call_id: str
    decisions: tuple[DecisionRow, ...]
    events: tuple[EventRow, ...]


def keys_text(keys: tuple[str, ...]) -> str:
    """Destination keys as the tables keep them: a JSON array."""
    return json.dumps(list(keys), ensure_ascii=False, separators=(",", ":"))


def keys_from(text: str | None) -> tuple[str, ...]:
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return ()
    return tuple(k for k in value if isinstance(k, str)) if isinstance(value, list) else ()


def event_key(*parts: object) -> str:
    """A dedupe key from what identifies a message (its kind, the call, its timestamp, the transfer's index...):
    the same parts give the same key, in every process, so a resent message is kept once."""
    text = json.dumps([str(p) if not isinstance(p, int | float | str | None) else p for p in parts],
                      ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def utc(at: datetime) -> datetime:
    """`at` in UTC; a naive time is taken to be UTC already (what datetime.utcnow() gives)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _required(value: object, field: str, limit: int = ID_CHARS) -> str:
    text = _text(value, field, limit)
    if not text:
        raise RowRejected(f"{field} is {'missing' if text is None else 'empty'}")
    return text


def _text(value: object, field: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise RowRejected(f"{field} is {type(value).__name__}, not text")
    text = value[:limit]
    if not text.isascii():  # lone surrogates cannot be encoded, and PostgreSQL's text refuses NUL
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _keys(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, tuple | list):
        raise RowRejected(f"destination_keys is {type(value).__name__}, not a tuple of texts")
    keys = [_text(k, "destination_keys", KEY_CHARS) for k in value[:MAX_KEYS]]
    return tuple(dict.fromkeys(k for k in keys if k))


def _integer(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise RowRejected(f"{field} is {value!r}, not a whole number from 0 to 2**31-1")
    return value


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _time(value: object, field: str) -> datetime:
    if not isinstance(value, datetime):
        raise RowRejected(f"{field} is {type(value).__name__}, not a datetime")
    return utc(value)


def clean(row: Row) -> Row:
    """The row as it can be written: texts bounded and encodable, times in UTC, numbers finite. Raises RowRejected
    for a row no database should take (a missing id, an unknown outcome)."""
    if isinstance(row, DecisionRow):
        if row.message_type not in MESSAGE_TYPES:
            raise RowRejected(f"message_type {row.message_type!r} is not one of {', '.join(MESSAGE_TYPES)}")
        if row.outcome not in OUTCOMES:
            raise RowRejected(f"outcome {row.outcome!r} is not one of {', '.join(OUTCOMES)}")
        return dataclasses.replace(
            row,
            decision_id=_required(row.decision_id, "decision_id"),
            call_id=_required(row.call_id, "call_id"),
            request_id=_required(row.request_id, "request_id"),
            at=_time(row.at, "at"),
            outcome_at=None if row.outcome_at is None else _time(row.outcome_at, "outcome_at"),
            chosen=_text(row.chosen, "chosen", ID_CHARS),
            answered=_text(row.answered, "answered", ID_CHARS),
            destination_keys=_keys(row.destination_keys),
            confidence=_number(row.confidence),
            prompt_hash=_text(row.prompt_hash, "prompt_hash", ID_CHARS),
            latency_ms=_number(row.latency_ms),
            catalogue_hash=_text(row.catalogue_hash, "catalogue_hash", ID_CHARS),
            request_json=_request(row.request_json),
        )
    if isinstance(row, EventRow):
        return dataclasses.replace(
            row,
            event_key=_required(row.event_key, "event_key"),
            call_id=_required(row.call_id, "call_id"),
            kind=_required(row.kind, "kind"),
            at=_time(row.at, "at"),
            destination_keys=_keys(row.destination_keys),
            status=_text(row.status, "status", ID_CHARS),
            source=_text(row.source, "source", ID_CHARS),
            position=_integer(row.position, "position"),
            timed=bool(row.timed),
        )
    if isinstance(row, OutcomeRow):
        if row.outcome not in OUTCOMES:
            raise RowRejected(f"outcome {row.outcome!r} is not one of {', '.join(OUTCOMES)}")
        return dataclasses.replace(row, decision_id=_required(row.decision_id, "decision_id"),
                                   at=_time(row.at, "at"))
    raise RowRejected(f"not a store row: {type(row).__name__}")


def _request(value: str | None) -> str | None:
    if value is not None and isinstance(value, str) and len(value) > REQUEST_CHARS:
        raise RowRejected(f"request_json is {len(value):,} characters, over the {REQUEST_CHARS:,} a record may hold")
    return _text(value, "request_json", REQUEST_CHARS)


def call_id_of(row: Row) -> str | None:
    """The call a row belongs to (an outcome row names only its decision)."""
    return row.call_id if isinstance(row, DecisionRow | EventRow) else None
