"""The webhook body Vapi sends: parsing and validation at the edge.

Vapi posts `{"message": {...}}`; its older dynamic-transfer guide shows the bare message. Both are accepted.
Two message types ask for an answer: `transfer-destination-request` (the transferCall tool) and
`handoff-destination-request` (the handoff tool with a dynamic destination). Only the fields Switchboard
reads are typed; the conversation's messages are typed one at a time, when the window reaches them.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any, TypeVar

import pydantic_core
from pydantic import BaseModel, ConfigDict, ValidationError

from app.catalogue.hours import read_moment
from app.errors import UserError, first_error

TRANSFER_REQUEST = "transfer-destination-request"
HANDOFF_REQUEST = "handoff-destination-request"
DESTINATION_REQUESTS = (TRANSFER_REQUEST, HANDOFF_REQUEST)
OTHER_TYPE = "other"  # the metrics label for a type Vapi does not define: labels come from a fixed set


class PayloadError(UserError):
    """The body cannot be used. `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Loose(BaseModel):
    """A message from another party (Vapi here, a model server in routers/completion.py), read for the fields typed on
    it. Unread fields are dropped, not copied: the raw dict is kept where the whole body is needed (recording)."""

    model_config = ConfigDict(extra="ignore")


class ToolFunction(Loose):
    name: str | None = None
    arguments: Any = None  # a JSON string or an object; anything unreadable is simply no hint


class ToolCall(Loose):
    function: ToolFunction | None = None


class ArtifactMessage(Loose):
    role: str
    message: str | None = None
    toolCalls: list[ToolCall] | None = None
    name: str | None = None
    result: str | None = None
    secondsFromStart: float | None = None


class OpenAIFormattedMessage(Loose):
    role: str
    content: str | list[Any] | None = None
    tool_calls: list[ToolCall] | None = None


class Artifact(Loose):
    """The conversation views stay raw lists here: only the messages inside the window are typed."""

    messages: list[Any] | None = None
    messagesOpenAIFormatted: list[Any] | None = None
    transcript: str | None = None
    transfers: list[Any] | None = None  # the call's earlier transfers (TransferArtifact)


M = TypeVar("M", bound=BaseModel)


def typed_item(model: type[M], items: list[Any], index: int, where: str) -> M:
    """Validate one message of a conversation view; errors name it, e.g. `message.artifact.messages.3.role`."""
    try:
        return model.model_validate(items[index])
    except ValidationError as exc:
        first = first_error(exc, index)
        raise PayloadError(f"{where}.{first.where}: {first.message}.") from None


class Named(Loose):
    id: str | None = None
    name: str | None = None


class Call(Loose):
    """The call, or for a chat (no call at all) the chat: both carry an id and the assistant's id."""

    id: str | None = None
    assistantId: str | None = None  # when the request carries no assistant object


class DestinationRequest(Loose):
    """A transfer-destination-request or a handoff-destination-request."""

    type: str
    artifact: Artifact | None = None
    assistant: Named | None = None
    call: Call | None = None
    chat: Call | None = None  # chats (Vapi's text channel) have no call
    # Any type: a timestamp that names no moment is no reason to leave a caller untransferred (see below)
    timestamp: Any = None
    parameters: dict[str, Any] | None = None  # handoffs: the arguments the voice assistant wrote for the tool

    @property
    def is_handoff(self) -> bool:
        return self.type == HANDOFF_REQUEST

    @property
    def call_id(self) -> str | None:
        return next((c.id for c in (self.call, self.chat) if c is not None and c.id), None)

    @property
    def timestamp_ignored(self) -> str | None:
        """The request's `timestamp`, shortened, when it names no usable moment (none, or outside years 2 to
        9997): the decision is then made as of its receipt, and the decision line says so."""
        if self.timestamp is None or read_moment(self.timestamp) is not None:
            return None
        return str(self.timestamp)[:40]

    @property
    def assistant_keys(self) -> tuple[str | None, str | None]:
        """(id, name) of the voice assistant asking, for per-assistant subsets."""
        ids = (self.assistant.id if self.assistant else None, *(c.assistantId for c in (self.call, self.chat) if c))
        return next((i for i in ids if i), None), self.assistant.name if self.assistant else None


def parse_json(body: bytes) -> dict[str, Any]:
    """Decode the body into the message object, from either envelope."""
    try:
        data = pydantic_core.from_json(body)  # about twice as fast as json.loads on Vapi's long bodies
    except ValueError as exc:
        raise PayloadError(f"Body is not valid JSON ({exc}). Send the webhook body as Vapi posts it.") from None
    if not isinstance(data, dict):
        raise PayloadError(f"Body must be a JSON object, got {type(data).__name__}.")
    message = data.get("message")
    if isinstance(message, dict):
        data = message
    elif "type" not in data:
        raise PayloadError("Body has no 'message' object and no 'type': expected {\"message\": {\"type\": ...}}.")
    kind = data.get("type")
    if not isinstance(kind, str) or not kind:
        raise PayloadError("'message.type' must be a non-empty string, e.g. \"transfer-destination-request\".")
    return data


def parse_request(message: dict[str, Any]) -> DestinationRequest:
    try:
        return DestinationRequest.model_validate(message)
    except ValidationError as exc:
        first = first_error(exc, "message")
        raise PayloadError(f"{first.where}: {first.message} ({first.count} problem(s) in the request).") from None


@cache
def known_types() -> frozenset[str]:
    """The server message types Vapi defines (app/data/vapi_message_types.json, from Vapi's openapi.json)."""
    text = resources.files("app.vapi").joinpath("data/vapi_message_types.json").read_text()
    return frozenset(json.loads(text)["types"])


def type_label(kind: str) -> str:
    """A metrics label for a message type: one of Vapi's, or `other`. Any other string would become a new
    time series that is never freed (150 distinct 1 MiB types once cost 151 MB)."""
    return kind if kind in known_types() else OTHER_TYPE
