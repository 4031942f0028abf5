"""Vapi's own Python SDK (`vapi-server-sdk`, PyPI, 3.0.0) as a second, independent check of the wire format.

Builders make webhook bodies from the SDK's types (`vapi.types.*`), serialised by the SDK's own request-body
serialiser, and `parse_*_answer` reads answers with the SDK's response types, refusing what the SDK refuses and
a little more (see `parse_transfer_answer`). Code Vapi's authors wrote, not ours, so a shared misreading of
`openapi.json` (tests/data, tests/vapi_payloads.py) cannot hide here.

How the SDK serialises: its HTTP client passes every JSON body through `vapi.core.jsonable_encoder
.jsonable_encoder` (core/http_client.py, `maybe_filter_request_body`), which calls the models'
`dict(by_alias=True)`: camelCase wire names, fields never set are left out, fields set explicitly to None are
kept as null (so the builders never pass None). `wire()` below is exactly that.

How the SDK parses: its clients use `construct_type`, which never validates (anything goes). The strict path the
SDK offers is pydantic validation (`Model.model_validate`, what its `parse_obj_as` does); that is used here.

Import cost: the response types load in about 0.2 s, but anything that reaches `CreateAssistantDto` (the request
envelopes, `Call`, `Chat`, `CreateCustomerDto`, `HandoffDestinationAssistant`) builds pydantic schemas for ~600
modules: about 9 s (2-core machine) on first use. Every SDK import is therefore inside a cached loader, paid once
per session and only by tests that build requests or read handoff answers.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import json
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

from tests.vapi_payloads import START_MS, SYSTEM_PROMPT

ALL_VIEWS = ("messages", "messagesOpenAIFormatted", "transcript")
PHONE_PROVIDERS = ("twilio", "vonage", "vapi", "telnyx", "byo-phone-number")  # every variant the SDK has
TRANSFER_STATUSES = ("connected", "no-answer", "busy", "voicemail", "failed", "completed", "cancelled")
LINE_NUMBER = "+14155550100"
ORG_ID = "org-1"

# Earlier transfers in the same call, in wire form (artifact.transfers[]), one per status. The SDK's
# TransferArtifact.destination is number | sip only (as in openapi.json): an assistant destination is refused.
# The unsuccessful ones (no-answer, busy, voicemail, failed) go to numbers and URIs outside the sample catalogue,
# so they do not rule out a catalogue destination for a service that skips destinations that just failed.
EARLIER_TRANSFERS: list[dict[str, Any]] = [
    {"destination": {"type": "number", "number": "+14155550111", "extension": "12", "name": "Old billing desk"},
     "mode": "blind-transfer", "status": "no-answer"},
    {"destination": {"type": "sip", "sipUri": "sip:overflow@pbx.brightline.example",
                     "sipHeaders": {"X-Queue": "overflow"}},
     "mode": "warm-transfer-say-summary", "status": "busy"},
    {"destination": {"type": "number", "number": "+14155550112",
                     "transferPlan": {"mode": "warm-transfer-experimental", "sipVerb": "dial", "timeout": 30}},
     "mode": "warm-transfer-experimental", "status": "voicemail",
     "transcript": "AI: Hi, I have a customer on the line.\nUser: You've reached the team, leave a message."},
    {"destination": {"type": "sip", "sipUri": "sip:nightdesk@pbx.brightline.example", "callerId": "+14155550100"},
     "mode": "blind-transfer", "status": "failed"},
    {"destination": {"type": "number", "number": "+14155550123", "callerId": "{{customer.number}}"},
     "mode": "warm-transfer-say-message", "status": "completed"},
    {"destination": {"type": "number", "number": "+14155550166", "message": "One moment."},
     "mode": "blind-transfer", "status": "cancelled"},
    {"destination": {"type": "sip", "sipUri": "sip:frontdesk@pbx.brightline.example", "name": "Front desk"},
     "mode": "warm-transfer-wait-for-operator-to-speak-first-and-then-say-summary", "status": "connected",
     "messages": [{"role": "bot", "message": "Hi, I have a customer with a question.", "time": START_MS,
                   "endTime": START_MS + 2000, "secondsFromStart": 0.0}]},
]


# ---------------------------------------------------------------------------------------------------------------
# Loading the SDK (lazily: see the module docstring)


def _load(module: str, *names: str) -> tuple[Any, ...]:
    mod = importlib.import_module(f"vapi.{module}")
    return tuple(getattr(mod, name) for name in names)


@functools.cache
def wire_encoder() -> Any:
    """The SDK's own request-body serialiser."""
    return _load("core.jsonable_encoder", "jsonable_encoder")[0]


def wire(model: Any) -> Any:
    """A model (or a structure of models) as the SDK would put it on the wire."""
    return wire_encoder()(model)


@functools.cache
def _transfer_response_types() -> dict[str, Any]:
    (answer,) = _load("types.server_message_response_transfer_destination_request",
                      "ServerMessageResponseTransferDestinationRequest")
    dest = _load("types.server_message_response_transfer_destination_request_destination",
                 "ServerMessageResponseTransferDestinationRequestDestination_Number",
                 "ServerMessageResponseTransferDestinationRequestDestination_Sip",
                 "ServerMessageResponseTransferDestinationRequestDestination_Assistant")
    msg = _load("types.server_message_response_transfer_destination_request_message",
                "ServerMessageResponseTransferDestinationRequestMessage_RequestStart",
                "ServerMessageResponseTransferDestinationRequestMessage_RequestComplete",
                "ServerMessageResponseTransferDestinationRequestMessage_RequestFailed",
                "ServerMessageResponseTransferDestinationRequestMessage_RequestResponseDelayed")
    (plan,) = _load("types.transfer_plan", "TransferPlan")
    return {"answer": answer, "plan": plan,
            "destinations": dict(zip(("number", "sip", "assistant"), dest, strict=True)),
            "messages": {cls.model_fields["type"].default: cls for cls in msg}}


@functools.cache
def _destination_types() -> dict[str, Any]:
    """The stand-alone destination types (what a catalogue entry is)."""
    return {"number": _load("types.transfer_destination_number", "TransferDestinationNumber")[0],
            "sip": _load("types.transfer_destination_sip", "TransferDestinationSip")[0],
            "assistant": _load("types.transfer_destination_assistant", "TransferDestinationAssistant")[0]}


@functools.cache
def _handoff_response_types() -> dict[str, Any]:
    return {"answer": _load("types.server_message_response_handoff_destination_request",
                            "ServerMessageResponseHandoffDestinationRequest")[0],
            "assistant": _load("types.handoff_destination_assistant", "HandoffDestinationAssistant")[0],
            "squad": _load("types.handoff_destination_squad", "HandoffDestinationSquad")[0]}


@functools.cache
def _request_types() -> types.SimpleNamespace:
    t = "types."
    ns = types.SimpleNamespace()
    (ns.Artifact,) = _load(t + "artifact", "Artifact")
    (ns.UserMessage,) = _load(t + "user_message", "UserMessage")
    (ns.BotMessage,) = _load(t + "bot_message", "BotMessage")
    (ns.SystemMessage,) = _load(t + "system_message", "SystemMessage")
    (ns.ToolCallMessage,) = _load(t + "tool_call_message", "ToolCallMessage")
    (ns.ToolCallResultMessage,) = _load(t + "tool_call_result_message", "ToolCallResultMessage")
    (ns.ToolCall,) = _load(t + "tool_call", "ToolCall")
    (ns.ToolCallFunction,) = _load(t + "tool_call_function", "ToolCallFunction")
    (ns.OpenAiMessage,) = _load(t + "open_ai_message", "OpenAiMessage")
    (ns.TransferArtifact,) = _load(t + "transfer_artifact", "TransferArtifact")
    (ns.Call,) = _load(t + "call", "Call")
    (ns.Chat,) = _load(t + "chat", "Chat")
    (ns.CreateCustomerDto,) = _load(t + "create_customer_dto", "CreateCustomerDto")
    (ns.CreateAssistantDto,) = _load(t + "create_assistant_dto", "CreateAssistantDto")
    return ns


@functools.cache
def _envelope(kind: str) -> tuple[Any, dict[str, Any]]:
    """The request type for "transfer" or "handoff", and its phoneNumber variants by provider."""
    stem = f"ServerMessage{kind.title()}DestinationRequest"
    module = f"types.server_message_{kind}_destination_request"
    (envelope,) = _load(module, stem)
    variants = {"twilio": "Twilio", "vonage": "Vonage", "vapi": "Vapi", "telnyx": "Telnyx",
                "byo-phone-number": "ByoPhoneNumber"}
    classes = _load(module + "_phone_number", *(f"{stem}PhoneNumber_{v}" for v in variants.values()))
    return envelope, dict(zip(variants, classes, strict=True))


def sdk_phone_providers() -> tuple[str, ...]:
    """The `provider` values of the SDK's phoneNumber union (to check PHONE_PROVIDERS is complete)."""
    (union,) = _load("types.server_message_transfer_destination_request_phone_number",
                     "ServerMessageTransferDestinationRequestPhoneNumber")
    return tuple(cls.model_fields["provider"].default for cls in typing.get_args(typing.get_args(union)[0]))


# ---------------------------------------------------------------------------------------------------------------
# The schema bug: TransferPlan.sipVerb
#
# Vapi's openapi.json declares `TransferPlan.sipVerb` as `type: object` with a string enum, so no value is valid;
# the SDK copies it as `Optional[Dict[str, Any]]`. Validating `"sipVerb": "dial"` (what Vapi actually takes)
# therefore fails (`Input should be a valid dictionary`), while the SDK's own unchecked reader (`construct_type`)
# passes the string through untouched and its serialiser writes it back (with a pydantic serializer warning).
# So a string sipVerb is taken out before validation, checked against the values the SDK itself documents for
# the field (refer, bye, dial), and put back for the round-trip comparison. A dict sipVerb is left to the SDK.


@functools.cache
def sip_verbs() -> frozenset[str]:
    """The SIP verbs the SDK documents in TransferPlan.sipVerb's description."""
    plan = _load("types.transfer_plan", "TransferPlan")[0]
    verbs = frozenset(re.findall(r"- '(\w+)'", plan.model_fields["sip_verb"].description or ""))
    assert verbs, "the SDK no longer documents TransferPlan.sipVerb's values: revisit the sipVerb workaround"
    return verbs


def _take_sip_verbs(obj: Any, path: str = "") -> tuple[Any, list[tuple[str, str]]]:
    """A deep copy of obj without string `transferPlan.sipVerb` values, and the (path, value) pairs taken."""
    taken: list[tuple[str, str]] = []

    def copy(value: Any, where: str, parent_key: str | None) -> Any:
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                if parent_key == "transferPlan" and key == "sipVerb" and isinstance(item, str):
                    taken.append((f"{where}.sipVerb", item))
                    continue
                out[key] = copy(item, f"{where}.{key}", key)
            return out
        if isinstance(value, list):
            return [copy(item, f"{where}[{i}]", None) for i, item in enumerate(value)]
        return value

    stripped = copy(obj, path, None)
    for where, verb in taken:
        if verb not in sip_verbs():
            raise AssertionError(f"{where}: {verb!r} is not a SIP verb the SDK documents ({sorted(sip_verbs())})")
    return stripped, taken


def _put_sip_verbs(obj: Any, taken: list[tuple[str, str]]) -> Any:
    """Put taken sipVerbs back; paths are relative to obj (".artifact.transfers[0].destination...")."""
    for where, verb in taken:
        node = obj
        for part in re.findall(r"\.(\w+)|\[(\d+)\]", where)[:-1]:
            node = node[part[0]] if part[0] else node[int(part[1])]
        node["sipVerb"] = verb
    return obj


# ---------------------------------------------------------------------------------------------------------------
# Strict checks around the SDK's (lenient) pydantic models


def _validate(cls: Any, data: Any, where: str) -> Any:
    import pydantic

    try:
        return cls.model_validate(data)
    except pydantic.ValidationError as exc:
        reasons = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']} (got {_short(e['input'])})"
                            for e in exc.errors()[:4])
        refusal = f"{where}: the SDK's {cls.__name__} refuses it: {reasons}. Value: {_short(data)}"
        raise AssertionError(refusal) from None


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _flatten(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _flatten(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _flatten(arg)]
    return [annotation]


def _open_enum(annotation: Any) -> frozenset[Any] | None:
    """The SDK types enums as `Union[Literal[...], Any]`, so validation accepts any value; the Literal part is
    the set of values the SDK knows."""
    members = _flatten(annotation)
    literals = [v for m in members if typing.get_origin(m) is typing.Literal for v in typing.get_args(m)]
    return frozenset(literals) if literals and Any in members else None


_DOCUMENTED = re.compile(r"`([a-z][\w.-]*)`")


@functools.cache
def _documented(alias: str) -> frozenset[str]:
    """Values the SDK documents (in backticks) for a field of this wire name on the stand-alone destination types.

    Needed because the SDK's Literal lists can lag its own documentation: TransferMode is
    Literal["rolling-history", "swap-system-message-in-history"], while TransferDestinationAssistant.transferMode's
    description (and openapi.json) also list `swap-system-message-in-history-and-remove-transfer-tool-messages`
    and `delete-history`. The response-side variants carry no descriptions, hence the stand-alone types."""
    found: set[str] = set()
    for cls in _destination_types().values():
        for name, field in cls.model_fields.items():
            if (field.alias or name) == alias:
                found.update(_DOCUMENTED.findall(field.description or ""))
    return frozenset(found)


def _check_tree(model: Any, where: str, allowed_extras: frozenset[tuple[str, str]] = frozenset()) -> None:
    """Every model in the tree has no field the SDK does not declare (the SDK keeps unknown fields as "extras"
    instead of refusing them; Vapi ignores them, so a typo silently drops a setting), and every enum value is one
    the SDK knows."""
    import pydantic

    problems: list[str] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, pydantic.BaseModel):
            cls = type(value)
            unknown = sorted(k for k in (value.model_extra or {}) if (cls.__name__, k) not in allowed_extras)
            if unknown:
                problems.append(f"{path}: {unknown} not field(s) of the SDK's {cls.__name__}")
            for name, field in cls.model_fields.items():
                item = getattr(value, name)
                if item is None:
                    continue
                alias = field.alias or name
                key = f"{path}.{alias}"
                known = _open_enum(field.annotation)
                if known is not None and isinstance(item, str) and item not in known:
                    documented = set(_DOCUMENTED.findall(field.description or "")) | _documented(alias)
                    if item not in documented:
                        problems.append(f"{key}: {item!r} is neither one of the SDK's values {sorted(known)} nor "
                                        f"documented by the SDK for {alias!r}")
                walk(item, key)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]")
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}")

    walk(model, where)
    if problems:
        raise AssertionError("; ".join(problems))


def _first_difference(a: Any, b: Any, path: str) -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a:
                return f"{path}.{key}: added by the SDK ({b[key]!r})"
            if key not in b:
                return f"{path}.{key}: dropped or renamed by the SDK (was {a[key]!r})"
            diff = _first_difference(a[key], b[key], f"{path}.{key}")
            if diff:
                return diff
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items became {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            diff = _first_difference(x, y, f"{path}[{i}]")
            if diff:
                return diff
        return None
    if a != b or (type(a) is not type(b) and not (isinstance(a, int | float) and isinstance(b, int | float))):
        return f"{path}: {a!r} became {b!r}"
    return None


def _round_trip(model: Any, original: Any, where: str) -> None:
    """Re-serialised by the SDK, the model must give back exactly what was sent: catches snake_case names the SDK
    silently renames (it accepts `sip_uri` for `sipUri`; Vapi would ignore it), coerced values ("30" -> 30.0)
    and anything dropped."""
    diff = _first_difference(original, wire(model), where)
    if diff:
        raise AssertionError(f"not the same after the SDK's parse and re-serialisation: {diff}")


def _strict(cls: Any, data: Any, where: str, allowed_extras: frozenset[tuple[str, str]] = frozenset()) -> Any:
    """Validate with the SDK type, then no unknown fields, only known enum values, and an exact round trip;
    string sipVerbs are handled as explained above."""
    stripped, _ = _take_sip_verbs(data, where)
    model = _validate(cls, stripped, where)
    _check_tree(model, where, allowed_extras)
    _round_trip(model, stripped, where)
    return model


def _pick(kinds: dict[str, Any], value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise AssertionError(f"{where} must be an object, got {value!r}")
    kind = value.get("type")
    if kind not in kinds:
        # The SDK would guess a variant from the other fields (no `type` + `assistantName` passes as an assistant);
        # Vapi needs the discriminator.
        raise AssertionError(f"{where}.type must be one of {sorted(kinds)}, got {kind!r} in {value!r}")
    return kinds[kind]


# ---------------------------------------------------------------------------------------------------------------
# Reading answers


def parse_transfer_answer(body: Any) -> Any:
    """The answer to a transfer-destination-request, parsed by the SDK's
    ServerMessageResponseTransferDestinationRequest; AssertionError with the reason if the SDK (or the stricter
    checks) refuse it. Returns the SDK model.

    Strictness: the SDK model alone accepts unknown fields (extra="allow"), any enum value, snake_case names, a
    missing `type` (the union is not discriminated for pydantic; it picks whatever variant fits), `{}` and
    coercible values ("30" for a number). Here: the destination and message variants are chosen by `type`
    (which must be present), no unknown field at any depth, enum values must be ones the SDK lists, the SDK's
    re-serialisation must equal the answer, and exactly one of `destination` / `error` must be given (an answer
    with neither does nothing in Vapi; the SDK itself allows it).
    """
    r = _transfer_response_types()
    if not isinstance(body, dict):
        raise AssertionError(f"answer must be a JSON object, got {body!r}")
    given = [key for key in ("destination", "error") if body.get(key) is not None]
    if len(given) != 1:
        raise AssertionError(f"answer must carry exactly one of 'destination' / 'error', got {sorted(body)}: {body}")
    data = dict(body)
    if body.get("destination") is not None:
        variant = _pick(r["destinations"], body["destination"], "answer.destination")
        data["destination"] = _strict(variant, body["destination"], "answer.destination")
    if isinstance(body.get("message"), dict):
        variant = _pick(r["messages"], body["message"], "answer.message")
        data["message"] = _strict(variant, body["message"], "answer.message")
    model = _validate(r["answer"], data, "answer")
    _check_tree(model, "answer")
    stripped, _ = _take_sip_verbs(body, "answer")
    _round_trip(model, stripped, "answer")
    return model


def parse_destination(destination: Any, where: str = "destination") -> Any:
    """A catalogue destination, parsed by the SDK's stand-alone TransferDestinationNumber / Sip / Assistant with
    the same strict checks. Number and Sip declare no `type` field in the SDK (Assistant does), so `type` is
    checked here and set aside for them."""
    cls = _pick(_destination_types(), destination, where)
    data = dict(destination)
    if "type" not in cls.model_fields:
        data.pop("type")
    return _strict(cls, data, where)


@dataclass(frozen=True)
class HandoffAnswer:
    response: Any  # ServerMessageResponseHandoffDestinationRequest
    destination: Any  # HandoffDestinationAssistant | HandoffDestinationSquad | None (for an error)


def parse_handoff_answer(body: Any, *, allow_error_without_destination: bool = False) -> HandoffAnswer:
    """The answer to a handoff-destination-request, parsed by the SDK's
    ServerMessageResponseHandoffDestinationRequest (`destination` required, typed only as a dict; `result`,
    `error` optional). The destination is then parsed by the SDK's HandoffDestinationAssistant or
    HandoffDestinationSquad, chosen by `type`, with the strict checks of `parse_transfer_answer`.

    As in openapi.json, the SDK requires `destination` even in an error answer: `{"error": "..."}` alone is
    refused. With an error, `destination` may be `{}`. The SDK's HandoffDestinationSquad declares no `type`
    field (openapi.json requires `"type": "squad"`): it is checked here and set aside. Vapi's rule "provide
    either assistantName or assistantId" (or an inline `assistant`; for squads `squadId` or `squad`) is
    documented in the SDK but not enforced by it; it is enforced here.

    allow_error_without_destination=True accepts `{"error": "..."}` (checked as `{"destination": {}, ...}`), for
    a caller that deliberately departs from the SDK and openapi.json there.
    """
    r = _handoff_response_types()
    if not isinstance(body, dict):
        raise AssertionError(f"answer must be a JSON object, got {body!r}")
    if allow_error_without_destination and "destination" not in body and isinstance(body.get("error"), str):
        parsed = parse_handoff_answer({**body, "destination": {}})
        return HandoffAnswer(parsed.response, None)
    model = _validate(r["answer"], body, "answer")
    _check_tree(model, "answer")
    _round_trip(model, body, "answer")
    dest = body["destination"]
    if body.get("error") is not None and dest == {}:
        return HandoffAnswer(model, None)
    cls = _pick({"assistant": r["assistant"], "squad": r["squad"]}, dest, "answer.destination")
    data = dict(dest)
    if "type" not in cls.model_fields:
        data.pop("type")
    typed = _strict(cls, data, "answer.destination")
    needs = ("assistantName", "assistantId", "assistant") if dest["type"] == "assistant" else ("squadId", "squad")
    if not any(dest.get(key) for key in needs):
        raise AssertionError(f"answer.destination needs one of {list(needs)}, got {dest!r}")
    return HandoffAnswer(model, typed)


# ---------------------------------------------------------------------------------------------------------------
# Building requests


def _kw(**kwargs: Any) -> dict[str, Any]:
    """Only the fields given: the SDK's serialiser writes explicitly set None fields as null."""
    return {key: value for key, value in kwargs.items() if value is not None}


def _at(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


@dataclass(frozen=True)
class _Conversation:
    messages: list[Any]
    openai: list[Any]
    transcript: str
    end_ms: int


def _conversation(turns: list[tuple[str, str]], *, tool_name: str, arguments: str, lookup: bool) -> _Conversation:
    """The three views of one conversation, built from the SDK's message types. `lookup` adds another tool's
    call and result after the first caller turn; the `tool_name` call (the transfer or handoff) comes last."""
    s = _request_types()
    t = START_MS

    def seconds(ms: int) -> float:
        return round((ms - START_MS) / 1000, 2)

    def tool_call(call_id: str, name: str, args: str) -> dict[str, Any]:
        return wire(s.ToolCall(id=call_id, type="function", function=s.ToolCallFunction(name=name, arguments=args)))

    messages: list[Any] = [s.SystemMessage(role="system", message=SYSTEM_PROMPT, time=t, seconds_from_start=0)]
    openai: list[Any] = [s.OpenAiMessage(role="system", content=SYSTEM_PROMPT)]
    lines: list[str] = []
    looked_up = not lookup
    for role, text in turns:
        duration = 800 + 60 * len(text.split())
        common = {"message": text, "time": t, "end_time": t + duration, "seconds_from_start": seconds(t),
                  "duration": duration}
        if role == "user":
            messages.append(s.UserMessage(role="user", confidence=0.93, confidence_source="provider", **common))
            openai.append(s.OpenAiMessage(role="user", content=text))
            lines.append(f"User: {text}")
        elif role == "bot":
            messages.append(s.BotMessage(role="bot", source="model", **common))
            openai.append(s.OpenAiMessage(role="assistant", content=text))
            lines.append(f"AI: {text}")
        else:
            raise ValueError(f"turn role must be 'user' or 'bot', got {role!r}")
        t += duration + 400
        if role == "user" and not looked_up:
            looked_up = True
            call = tool_call("call_lookup_1", "lookupAccount", json.dumps({"phone": "{{customer.number}}"}))
            result = "Account found: residential customer since 2019."
            messages.append(s.ToolCallMessage(role="tool_calls", tool_calls=[call], message="", time=t,
                                              seconds_from_start=seconds(t)))
            messages.append(s.ToolCallResultMessage(role="tool_call_result", tool_call_id="call_lookup_1",
                                                    name="lookupAccount", result=result, time=t + 300,
                                                    seconds_from_start=seconds(t + 300)))
            # The SDK's OpenAiMessage declares only role and content; OpenAI's tool_calls / tool_call_id are
            # passed as extra fields, which the SDK models allow and serialise as given.
            openai.append(s.OpenAiMessage(role="assistant", tool_calls=[call]))
            openai.append(s.OpenAiMessage(role="tool", content=result, tool_call_id="call_lookup_1"))
            t += 700
    final = tool_call("call_tr_1", tool_name, arguments)
    messages.append(s.ToolCallMessage(role="tool_calls", tool_calls=[final], message="", time=t,
                                      seconds_from_start=seconds(t)))
    openai.append(s.OpenAiMessage(role="assistant", content="", tool_calls=[final]))
    return _Conversation(messages, openai, "\n".join(lines), t)


_OPENAI_EXTRAS = frozenset({("OpenAiMessage", "tool_calls"), ("OpenAiMessage", "tool_call_id")})


def _phone_number(kind: str, provider: str) -> Any:
    classes = _envelope(kind)[1]
    if provider not in classes:
        raise ValueError(f"phone_provider must be one of {sorted(classes)} or None, got {provider!r}")
    cls = classes[provider]
    common = {"name": "Brightline main line", "assistant_id": "asst-main"}
    if provider == "twilio":
        return cls(number=LINE_NUMBER, twilio_account_sid="AC00000000000000000000000000000000",
                   twilio_auth_token="secret-token-should-never-be-logged", sms_enabled=False, **common)
    if provider == "vapi":  # the SDK's Vapi variant has no `number`: Vapi picks one by area code
        return cls(number_desired_area_code="415", **common)
    if provider == "byo-phone-number":
        return cls(number=LINE_NUMBER, credential_id="cred-byo-1", number_e_164_check_enabled=True, **common)
    return cls(number=LINE_NUMBER, credential_id=f"cred-{provider}-1", **common)


def _message(
    kind: str,
    turns: list[tuple[str, str]],
    *,
    views: tuple[str, ...],
    tool_name: str,
    arguments: str,
    lookup: bool,
    phone_provider: str | None,
    call: bool,
    call_type: str,
    transfers: list[dict[str, Any]] | None,
    assistant_name: str | None,
    assistant_id: str | None,
    call_id: str,
    customer_number: str | None,
    extra: dict[str, Any],
) -> dict[str, Any]:
    s = _request_types()
    unknown_views = set(views) - set(ALL_VIEWS)
    if unknown_views:
        raise ValueError(f"unknown views {sorted(unknown_views)}; use {ALL_VIEWS}")
    conv = _conversation(turns, tool_name=tool_name, arguments=arguments, lookup=lookup)
    taken: list[tuple[str, str]] = []
    transfer_models = []
    for i, transfer in enumerate(transfers or []):
        where = f".artifact.transfers[{i}]"
        stripped, verbs = _take_sip_verbs(transfer, where)
        transfer_models.append(_strict(s.TransferArtifact, stripped, f"transfers[{i}]"))
        taken += verbs
    artifact = s.Artifact(**_kw(
        messages=conv.messages if "messages" in views else None,
        messages_open_ai_formatted=conv.openai if "messagesOpenAIFormatted" in views else None,
        transcript=conv.transcript if "transcript" in views else None,
        transfers=transfer_models or None,
    ))
    customer = s.CreateCustomerDto(**_kw(number=customer_number, name="Pat Example"))
    created = _at(START_MS - 1000)
    if call:
        provider = phone_provider if phone_provider in ("twilio", "vonage", "vapi", "telnyx") else None
        call_model = s.Call(**_kw(
            id=call_id, org_id=ORG_ID, created_at=created, updated_at=_at(conv.end_ms), started_at=created,
            type=call_type, status="in-progress", assistant_id=assistant_id, customer=customer,
            phone_call_provider=provider,
            phone_call_transport=None if phone_provider is None else "sip" if provider is None else "pstn",
        ))
        chat_model = None
    else:
        call_model = None
        chat_model = s.Chat(**_kw(id=call_id, org_id=ORG_ID, created_at=created, updated_at=_at(conv.end_ms),
                                  assistant_id=assistant_id, input=turns[-1][1] if turns else None))
    message = _envelope(kind)[0](**_kw(
        type=f"{kind}-destination-request",
        timestamp=conv.end_ms,
        artifact=artifact,
        assistant=s.CreateAssistantDto(name=assistant_name) if assistant_name else None,
        customer=customer,
        phone_number=_phone_number(kind, phone_provider) if phone_provider else None,
        call=call_model,
        chat=chat_model,
        **extra,
    ))
    _check_tree(message, "message", _OPENAI_EXTRAS)
    return {"message": _put_sip_verbs(wire(message), taken)}


def transfer_request_sdk(
    turns: list[tuple[str, str]],
    *,
    views: tuple[str, ...] = ALL_VIEWS,
    hint: dict[str, Any] | None = None,
    lookup: bool = True,
    phone_provider: str | None = "twilio",
    call: bool = True,
    call_type: str = "inboundPhoneCall",
    transfers: list[dict[str, Any]] | None = None,
    assistant_name: str | None = "Brightline Front Line",
    assistant_id: str | None = "asst-main",
    call_id: str = "call-0001",
    customer_number: str | None = "+14155559876",
) -> dict[str, Any]:
    """A `{"message": ...}` transfer-destination-request made of the SDK's types and serialised by the SDK.

    turns: [("user" | "bot", text), ...]; the transferCall tool call comes last, its `function.arguments` the
    JSON string of `hint` (`{}` without one). views: which of messages / messagesOpenAIFormatted / transcript the
    artifact carries. lookup: another tool's call and result after the first caller turn. phone_provider: one of
    PHONE_PROVIDERS, or None for no phoneNumber (a web call or a chat). call=False sends a `chat` and no `call`.
    transfers: earlier artifact.transfers in wire form (see EARLIER_TRANSFERS), validated by the SDK's
    TransferArtifact. assistant_id goes into call.assistantId (the SDK's CreateAssistantDto has no id), the name
    into assistant.name. customer_number=None sends a customer without a number.
    """
    return _message("transfer", turns, views=views, tool_name="transferCall", arguments=json.dumps(hint or {}),
                    lookup=lookup, phone_provider=phone_provider, call=call, call_type=call_type,
                    transfers=transfers, assistant_name=assistant_name, assistant_id=assistant_id, call_id=call_id,
                    customer_number=customer_number, extra={})


def handoff_request_sdk(
    turns: list[tuple[str, str]],
    *,
    parameters: dict[str, Any],
    views: tuple[str, ...] = ALL_VIEWS,
    lookup: bool = True,
    phone_provider: str | None = "twilio",
    call: bool = True,
    call_type: str = "inboundPhoneCall",
    transfers: list[dict[str, Any]] | None = None,
    assistant_name: str | None = "Brightline Front Line",
    assistant_id: str | None = "asst-main",
    call_id: str = "call-0001",
    customer_number: str | None = "+14155559876",
    tool_name: str = "handoff",
) -> dict[str, Any]:
    """A `{"message": ...}` handoff-destination-request (ServerMessageHandoffDestinationRequest): the same as
    transfer_request_sdk, plus the required `parameters` (the arguments the voice assistant's model wrote for the
    handoff tool call, which is also the last tool call in the artifact, named `tool_name`)."""
    return _message("handoff", turns, views=views, tool_name=tool_name, arguments=json.dumps(parameters),
                    lookup=lookup, phone_provider=phone_provider, call=call, call_type=call_type,
                    transfers=transfers, assistant_name=assistant_name, assistant_id=assistant_id, call_id=call_id,
                    customer_number=customer_number, extra={"parameters": parameters})
