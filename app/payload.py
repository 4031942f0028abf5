"""The webhook body Vapi sends: parsing and validation at the edge.

Vapi posts `{"message": {...}}`; its older dynamic-transfer guide shows the bare message. Both are accepted.
Only the fields Switchboard reads are typed and validated; everything else is ignored.
"""

from __future__ import annotations

from typing import Any

import pydantic_core
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

TRANSFER_REQUEST = "transfer-destination-request"


class PayloadError(Exception):
    """The body cannot be used. `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class _Loose(BaseModel):
    # Unread fields are dropped, not copied: the raw dict is kept where the whole body is needed (recording).
    model_config = ConfigDict(extra="ignore")


class ToolFunction(_Loose):
    name: str | None = None
    arguments: str | dict[str, Any] | None = None


class ToolCall(_Loose):
    function: ToolFunction | None = None


class ArtifactMessage(_Loose):
    role: str
    message: str | None = None
    toolCalls: list[ToolCall] | None = None
    name: str | None = None
    result: str | None = None
    secondsFromStart: float | None = None


class OpenAIFormattedMessage(_Loose):
    role: str
    content: str | list[Any] | None = None
    tool_calls: list[ToolCall] | None = None


_MESSAGES = TypeAdapter(list[ArtifactMessage])
_OPENAI_MESSAGES = TypeAdapter(list[OpenAIFormattedMessage])


class Artifact(_Loose):
    """The conversation views are typed when first read: a request usually carries all three, and only the
    first with caller words is used, so the others are not worth validating on the hot path."""

    messages: list[Any] | None = None
    messagesOpenAIFormatted: list[Any] | None = None
    transcript: str | None = None

    def typed_messages(self) -> list[ArtifactMessage]:
        return _typed(_MESSAGES, self.messages, "message.artifact.messages")

    def typed_openai_messages(self) -> list[OpenAIFormattedMessage]:
        return _typed(_OPENAI_MESSAGES, self.messagesOpenAIFormatted, "message.artifact.messagesOpenAIFormatted")


def _typed(adapter: TypeAdapter[list[Any]], items: list[Any] | None, where: str) -> list[Any]:
    if not items:
        return []
    try:
        return adapter.validate_python(items)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise PayloadError(f"{where}.{loc}: {first['msg']}.") from None


class Named(_Loose):
    id: str | None = None
    name: str | None = None


class Call(_Loose):
    id: str | None = None
    assistantId: str | None = None  # when the request carries no assistant object


class TransferRequest(_Loose):
    type: str
    artifact: Artifact | None = None
    assistant: Named | None = None
    call: Call | None = None
    timestamp: float | str | None = None

    @property
    def call_id(self) -> str | None:
        return self.call.id if self.call else None

    @property
    def assistant_keys(self) -> tuple[str | None, str | None]:
        """(id, name) of the voice assistant asking, for per-assistant subsets."""
        assistant_id = (self.assistant.id if self.assistant else None) or (self.call.assistantId if self.call else None)
        return assistant_id, self.assistant.name if self.assistant else None


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


def parse_transfer_request(message: dict[str, Any]) -> TransferRequest:
    try:
        return TransferRequest.model_validate(message)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "message." + ".".join(str(p) for p in first["loc"])
        raise PayloadError(f"{where}: {first['msg']} ({exc.error_count()} problem(s) in the request).") from None
