"""The webhook body Vapi sends: parsing and validation at the edge.

Vapi posts `{"message": {...}}`; its older dynamic-transfer guide shows the bare message. Both are accepted.
Only the fields Switchboard reads are typed; everything else passes through untouched (and is ignored).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

TRANSFER_REQUEST = "transfer-destination-request"


class PayloadError(Exception):
    """The body cannot be used. `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


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


class Artifact(_Loose):
    messages: list[ArtifactMessage] | None = None
    messagesOpenAIFormatted: list[OpenAIFormattedMessage] | None = None
    transcript: str | None = None


class Named(_Loose):
    id: str | None = None
    name: str | None = None


class TransferRequest(_Loose):
    type: str
    artifact: Artifact | None = None
    assistant: Named | None = None
    call: Named | None = None
    timestamp: float | str | None = None

    @property
    def call_id(self) -> str | None:
        return self.call.id if self.call else None


def parse_json(body: bytes) -> dict[str, Any]:
    """Decode the body into the message object, from either envelope."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"Body is not valid JSON ({exc}). Send the webhook body as Vapi posts it.") from None
    except RecursionError:
        raise PayloadError("Body is nested too deeply to be a Vapi webhook.") from None
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
