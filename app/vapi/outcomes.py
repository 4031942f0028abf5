"""Vapi's outcome messages: what happened to a call after Switchboard answered its destination request.

Vapi posts three messages to the same server URL that say whether a transfer worked (fields from Vapi's
openapi.json: ServerMessageEndOfCallReport, ServerMessageStatusUpdate, ServerMessageTransferUpdate,
TransferArtifact, Artifact, AssistantActivation):

- `end-of-call-report` (default `serverMessages`): `endedReason`, `destination` (where the call was forwarded),
  `artifact.transfers[]` (each transfer's `destination` and `status`), `artifact.assistantActivations[]`.
- `status-update` (default): status `forwarding` with `destination`; status `ended` with `endedReason`.
- `transfer-update` (NOT in the default list: operators add it to the assistant's `serverMessages`):
  `destination`, and `toAssistant` / `fromAssistant` when the destination is an assistant.

Each message becomes a few `OutcomeEvent`s: plain values a store can keep and the join in
app/dataset/outcomes.py can read. Parsing is lenient (Vapi adds fields often; a field of the wrong type is read
as absent, never a reason to drop the message) and bounded: strings are cut at KEY_CHARS / TEXT_CHARS, and the
lists (transfers, activations) are read with a cap that keeps their latest MAX_ITEMS entries.

`destination_keys` says which destination a Vapi destination object (or a catalogue entry's `destination` /
`handoff`) is, written the same way whoever wrote it, so both sides of the join compare equal.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationError, model_validator

from app.catalogue.hours import read_moment
from app.vapi.messages import Loose as _Loose  # one base for what other parties send: unread fields dropped

END_OF_CALL_REPORT = "end-of-call-report"
STATUS_UPDATE = "status-update"
TRANSFER_UPDATE = "transfer-update"
OUTCOME_TYPES = frozenset({END_OF_CALL_REPORT, STATUS_UPDATE, TRANSFER_UPDATE})

MAX_ITEMS = 64  # transfers or activations read per message (the latest); a real call has a handful
KEY_CHARS = 256  # a number, URI, name or id longer than this is cut: no real destination is that long
TEXT_CHARS = 128  # statuses and endedReasons (Vapi's longest endedReason is under 100 characters)

# The outcome classes a signal can give (the join adds `rerouted`, `pending` and `unknown`).
REACHED, UNREACHABLE, HUNG_UP = "reached", "unreachable", "hung_up"

# artifact.transfers[].status (TransferArtifact.status in openapi.json)
TRANSFER_REACHED = frozenset({"connected", "completed"})
TRANSFER_UNREACHABLE = frozenset({"no-answer", "busy", "voicemail", "failed"})
TRANSFER_HUNG_UP = frozenset({"cancelled"})

# endedReason values about a transfer (ServerMessageEndOfCallReport.endedReason, 627 values in openapi.json
# as of 2026-08-18; these are all the ones naming a transfer or forwarding). Others say nothing of a transfer.
# Left out on purpose: call.ringing.hook-executed-transfer, call.ending.hook-executed-transfer and
# assistant-request-returned-forwarding-phone-number are transfers made by hooks or by the assistant-request,
# never by a destination Switchboard answered.
ENDED_REACHED = frozenset({"assistant-forwarded-call"})
ENDED_UNREACHABLE = frozenset({
    "call.forwarding.no-answer",
    "call.forwarding.operator-busy",
    "call.in-progress.error-transfer-failed",
    "call.in-progress.error-warm-transfer-max-duration",
    "call.in-progress.error-warm-transfer-assistant-cancelled",
    "call.in-progress.error-warm-transfer-silence-timeout",
    "call.in-progress.error-warm-transfer-microphone-timeout",
})
ENDED_HUNG_UP = frozenset({
    "customer-ended-call-during-transfer",
    "customer-ended-call-before-warm-transfer",
    "customer-ended-call-after-warm-transfer-attempt",
})

# Event kinds, from the most specific signal down (see OutcomeEvent.rank)
TRANSFER = "transfer"  # one entry of artifact.transfers[]: that transfer's own status
ACTIVATION = "activation"  # artifact.assistantActivations[i], i > 0: an assistant that took the call
HANDOFF = "handoff"  # transfer-update to an assistant: the handoff took
REPORT = "report"  # end-of-call-report: endedReason, about `destination` when it names one
ENDED = "ended"  # status-update ended: endedReason, about the transfer in progress
FORWARDING = "forwarding"  # status-update forwarding, or transfer-update to a number or SIP: an attempt, no outcome
REPORT_KINDS = frozenset({TRANSFER, ACTIVATION, REPORT})  # what one end-of-call-report says


# --- destination keys -----------------------------------------------------------------------------------------


def _short(value: Any, limit: int = KEY_CHARS) -> str | None:
    """A non-empty string cut at `limit`, with control characters and runs of spaces made single spaces."""
    if not isinstance(value, str):
        return None
    text = " ".join(value[:limit].split())
    return text or None


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isascii() and ch.isdigit())


def _number_key(number: Any, extension: Any) -> str | None:
    """`tel:<digits>` or `tel:<digits>;ext=<digits>`: punctuation, spaces and the `+` are how it is written, not
    which line it is; an extension is part of the destination (one number, two desks)."""
    text = _short(number)
    digits = _digits(text) if text else ""
    if not digits:
        return None
    ext_text = _short(extension)
    ext = _digits(ext_text) if ext_text else ""
    return f"tel:{digits};ext={ext}" if ext else f"tel:{digits}"


def _sip_key(uri: Any) -> str | None:
    """`sip:user@host`: scheme and host are case-insensitive in SIP (RFC 3261 19.1.4), the user part is not;
    URI parameters (`;transport=tls`) and headers (`?X-Queue=1`) choose how to reach it, not what it is."""
    text = _short(uri)
    if not text:
        return None
    text = text.strip("<>").strip()
    scheme, sep, rest = text.partition(":")
    if not sep or scheme.lower() not in ("sip", "sips"):
        scheme, rest = "sip", text
    rest = rest.split("?", 1)[0]
    user, at, host = rest.rpartition("@")
    host = host.split(";", 1)[0].strip().lower()
    if not host:
        return None
    return f"{scheme.lower()}:{user}{at}{host}"


def _assistant_keys(name: Any, ident: Any) -> list[str]:
    """An assistant by name (compared without case or extra spaces) and by id: Vapi writes one or both."""
    found = []
    if (text := _short(name)) is not None:
        found.append(f"assistant:{text.lower()}")
    if (text := _short(ident)) is not None:
        found.append(f"assistant-id:{text.lower()}")
    return found


def destination_keys(destination: Any) -> tuple[str, ...]:
    """Every key a destination answers to, most telling first; () for anything that names none.

    Reads Vapi's destination objects (TransferDestinationNumber / Sip / Assistant, HandoffDestinationAssistant /
    Squad) and so a catalogue entry's `destination` or `handoff` too. A number: `tel:14155550142;ext=204`; a SIP
    URI: `sip:retention@pbx.brightline.example`; an assistant: `assistant:billing assistant` and, when its id is
    known, `assistant-id:...`; a squad: its entry assistant's name, and `squad-id:...`. Two destinations are the
    same when their keys share one (see `same_destination`).
    """
    if not isinstance(destination, dict):
        return ()
    kind = destination.get("type")
    found: list[str] = []
    if kind in (None, "number") and (key := _number_key(destination.get("number"), destination.get("extension"))):
        found.append(key)
    if kind in (None, "sip") and (key := _sip_key(destination.get("sipUri"))):
        found.append(key)
    if kind in (None, "assistant"):
        found += _assistant_keys(destination.get("assistantName"), destination.get("assistantId"))
        inline = destination.get("assistant")  # a transient assistant, written out in full
        if isinstance(inline, dict):
            found += _assistant_keys(inline.get("name"), inline.get("id"))
    if kind == "squad":
        found += _assistant_keys(destination.get("entryAssistantName"), None)
        if (text := _short(destination.get("squadId"))) is not None:
            found.append(f"squad-id:{text.lower()}")
    return tuple(dict.fromkeys(found))


def destination_key(destination: Any) -> str | None:
    """The one key to show or store for a destination (its first, see destination_keys); None if it has none."""
    keys = destination_keys(destination)
    return keys[0] if keys else None


def same_destination(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Whether two destinations' keys name the same destination (an assistant by name on one side and by id
    on the other matches when either side carries both)."""
    return not set(a).isdisjoint(b)


# --- the messages, leniently ----------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    return _short(value, TEXT_CHARS)


def _key_text(value: Any) -> str | None:
    return _short(value, KEY_CHARS)


def _object(value: Any) -> Any:
    """An object field of the wrong type is read as absent: it would identify nothing anyway."""
    return value if isinstance(value, dict) else None


def _latest(value: Any) -> list[Any]:
    """A list read with a cap that keeps its latest entries (they decide outcomes); entries that are not
    objects are dropped here, so one odd entry does not cost the others."""
    if not isinstance(value, list):
        return []
    return [item for item in value[-MAX_ITEMS:] if isinstance(item, dict)]


Text = Annotated[str | None, BeforeValidator(_text)]
KeyText = Annotated[str | None, BeforeValidator(_key_text)]


class Destination(_Loose):
    """The parts of a destination that say which one it is; `keys` is destination_keys of what was sent."""

    type: KeyText = None
    keys: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {"type": data.get("type"), "keys": destination_keys(data)}


OptionalDestination = Annotated[Destination | None, BeforeValidator(_object)]


class AssistantRef(_Loose):
    name: KeyText = None
    id: KeyText = None

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(_assistant_keys(self.name, self.id))


class TransferRecord(_Loose):
    """One entry of artifact.transfers[] (TransferArtifact)."""

    destination: OptionalDestination = None
    status: Text = None


class Activation(_Loose):
    """One entry of artifact.assistantActivations[] (AssistantActivation)."""

    assistantName: KeyText = None
    assistantId: KeyText = None

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(_assistant_keys(self.assistantName, self.assistantId))


class OutcomeArtifact(_Loose):
    transfers: Annotated[list[TransferRecord], BeforeValidator(_latest)] = Field(default_factory=list)
    assistantActivations: Annotated[list[Activation], BeforeValidator(_latest)] = Field(default_factory=list)
    # How many activations Vapi listed: the first of a complete list is the assistant the call started with
    activations_listed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _count(cls, data: Any) -> Any:
        if isinstance(data, dict):
            listed = data.get("assistantActivations")
            data = {**data, "activations_listed": len(listed) if isinstance(listed, list) else 0}
        return data


class CallRef(_Loose):
    id: KeyText = None
    type: Text = None


OptionalCall = Annotated[CallRef | None, BeforeValidator(_object)]
OptionalAssistant = Annotated[AssistantRef | None, BeforeValidator(_object)]


class _OutcomeMessage(_Loose):
    type: str
    call: OptionalCall = None
    chat: OptionalCall = None  # chats have no call; their id is the chat's
    timestamp: Any = None  # epoch ms as Vapi sends it; read with read_moment

    @property
    def call_id(self) -> str | None:
        return next((c.id for c in (self.call, self.chat) if c is not None and c.id), None)


class EndOfCallReport(_OutcomeMessage):
    endedReason: Text = None
    destination: OptionalDestination = None
    artifact: Annotated[OutcomeArtifact | None, BeforeValidator(_object)] = None
    endedAt: Any = None  # ISO 8601: the call's end, when the message has no timestamp


class StatusUpdate(_OutcomeMessage):
    status: Text = None
    endedReason: Text = None
    destination: OptionalDestination = None


class TransferUpdate(_OutcomeMessage):
    destination: OptionalDestination = None
    toAssistant: OptionalAssistant = None
    fromAssistant: OptionalAssistant = None


OutcomeMessage = EndOfCallReport | StatusUpdate | TransferUpdate
_MODELS: dict[str, type[EndOfCallReport] | type[StatusUpdate] | type[TransferUpdate]] = {
    END_OF_CALL_REPORT: EndOfCallReport, STATUS_UPDATE: StatusUpdate, TRANSFER_UPDATE: TransferUpdate}


def parse_outcome(message: dict[str, Any]) -> OutcomeMessage | None:
    """The typed outcome message (the `message` object, unwrapped: app.vapi.messages.parse_json does that), or
    None for any other type. Never raises on odd field values: they are read as absent."""
    kind = message.get("type")
    model = _MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        return None
    try:
        return model.model_validate(message)
    except ValidationError:  # only `type` is required, and it is a string here; kept as a last resort
        return None


# --- events ---------------------------------------------------------------------------------------------------


def classify(kind: str, status: str | None) -> str | None:
    """The outcome class one event gives its transfer (reached, unreachable, hung_up), or None when it says
    nothing about how the transfer went (an attempt, an unknown status, an endedReason about something else)."""
    if kind in (ACTIVATION, HANDOFF):
        return REACHED
    if status is None:
        return None
    if kind == TRANSFER:
        sets = (TRANSFER_REACHED, TRANSFER_UNREACHABLE, TRANSFER_HUNG_UP)
    elif kind in (REPORT, ENDED):
        sets = (ENDED_REACHED, ENDED_UNREACHABLE, ENDED_HUNG_UP)
    else:
        return None
    for outcome, values in zip((REACHED, UNREACHABLE, HUNG_UP), sets, strict=True):
        if status in values:
            return outcome
    return None


_RANKS = {TRANSFER: 3, ACTIVATION: 2, HANDOFF: 2, REPORT: 1, ENDED: 1, FORWARDING: 0}


@dataclass(frozen=True, slots=True)
class OutcomeEvent:
    """One thing Vapi said about a call's transfers: a row a store can keep as it is.

    `source` fingerprints the message's content (not its arrival), so a resent message gives the same
    (source, index) pairs, and keeping each pair once makes ingest idempotent.
    """

    call_id: str
    kind: str  # TRANSFER, ACTIVATION, HANDOFF, REPORT, ENDED or FORWARDING
    keys: tuple[str, ...]  # the destination it is about (destination_keys); () when it names none
    status: str | None  # the transfer's status, or the endedReason; None for attempts and activations
    at: float  # epoch seconds: the message's timestamp, else when it was received
    source: str  # fingerprint of the message (resends share it)
    index: int = 0  # its position in the message (transfers[] and activations are ordered)
    timed: bool = True  # `at` is Vapi's timestamp (False: the time it was received)

    @property
    def key(self) -> str | None:
        return self.keys[0] if self.keys else None

    @property
    def signal(self) -> str | None:
        """reached / unreachable / hung_up, or None (see classify)."""
        return classify(self.kind, self.status)

    @property
    def rank(self) -> int:
        """How specific the event is about one transfer, for conflicts: a transfer's own status (3) beats an
        assistant taking the call (2), which beats an endedReason (1); among equals the latest wins. A report's
        endedReason that names its destination counts 2: it says which transfer it is about."""
        if self.kind == REPORT and self.keys:
            return 2
        return _RANKS.get(self.kind, 0)


def _at(message: _OutcomeMessage, received: float) -> tuple[float, bool]:
    moment = read_moment(message.timestamp)
    if moment is None and isinstance(message, EndOfCallReport):
        moment = read_moment(message.endedAt)
    return (moment.timestamp(), True) if moment is not None else (received, False)


def _fingerprint(message: OutcomeMessage) -> str:
    """What the message says, hashed: its parsed fields (bounded), not its raw bytes, so a resend that differs
    only in fields Switchboard does not read (costs, analysis) is still the same message."""
    content = message.model_dump(mode="json", exclude={"call", "chat"})
    content["call_id"] = message.call_id
    text = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def outcome_events(message: dict[str, Any], received: float) -> list[OutcomeEvent]:
    """The events one message carries (empty for other types, or without a call or chat id to join on).
    `received`: epoch seconds when it arrived, used only when the message has no timestamp."""
    parsed = parse_outcome(message)
    if parsed is None or parsed.call_id is None:
        return []
    call_id = parsed.call_id
    at, timed = _at(parsed, received)
    source = _fingerprint(parsed)
    out: list[OutcomeEvent] = []

    def add(kind: str, keys: tuple[str, ...], status: str | None, index: int = 0) -> None:
        out.append(OutcomeEvent(call_id, kind, keys, status, at, source, index, timed))

    if isinstance(parsed, EndOfCallReport):
        add(REPORT, parsed.destination.keys if parsed.destination else (), parsed.endedReason)
        artifact = parsed.artifact or OutcomeArtifact()
        for i, record in enumerate(artifact.transfers):
            if record.destination is not None and record.destination.keys:
                add(TRANSFER, record.destination.keys, record.status, 1 + i)
        activations = artifact.assistantActivations
        # The first entry of a complete list is the assistant the call began with: no handoff took it there
        first = 1 if artifact.activations_listed <= MAX_ITEMS else 0
        for i, activation in enumerate(activations[first:], start=first):
            if activation.keys:
                add(ACTIVATION, activation.keys, None, 1 + MAX_ITEMS + i)
    elif isinstance(parsed, StatusUpdate):
        if parsed.status == "forwarding" and parsed.destination is not None and parsed.destination.keys:
            add(FORWARDING, parsed.destination.keys, None)
        elif parsed.status == "ended":
            add(ENDED, (), parsed.endedReason)
    else:
        keys = parsed.destination.keys if parsed.destination else ()
        to_assistant = parsed.toAssistant.keys if parsed.toAssistant else ()
        if to_assistant or (parsed.destination is not None and parsed.destination.type == "assistant"):
            add(HANDOFF, tuple(dict.fromkeys(keys + to_assistant)), None)
        elif keys:
            add(FORWARDING, keys, None)
    return out
