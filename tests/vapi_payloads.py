"""Builds transfer-destination-request bodies in Vapi's exact shape, for tests, the sample dataset and the
benchmark. Shapes follow ServerMessageTransferDestinationRequest and Artifact in Vapi's openapi.json."""

from __future__ import annotations

import json
from typing import Any

SYSTEM_PROMPT = ("You are Brightline Broadband's phone assistant. Greet the caller, find out what they need, "
                 "and transfer them with the transferCall tool when a person or team should help. ") * 4
START_MS = 1_764_010_800_000  # Monday 24 Nov 2025, 11:00 in Los Angeles: the sample catalogue is open


def transfer_request(
    turns: list[tuple[str, str]],
    *,
    views: tuple[str, ...] = ("messages", "messagesOpenAIFormatted", "transcript"),
    hint: dict[str, Any] | None = None,
    assistant: dict[str, Any] | None = None,
    call_id: str = "call-0001",
    customer_number: str = "+14155559876",
    envelope: bool = True,
    transfers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """turns: [("user" | "bot", text), ...] in order. The transfer tool call comes last. transfers: the call's
    earlier transfers (artifact.transfers), e.g. [failed_transfer("+14155550142", "no-answer")]."""
    t = START_MS
    messages: list[dict[str, Any]] = [{"role": "system", "message": SYSTEM_PROMPT, "time": t, "secondsFromStart": 0}]
    openai_msgs: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT}]
    lines = []
    for role, text in turns:
        duration = 800 + 60 * len(text.split())
        messages.append({"role": role, "message": text, "time": t, "endTime": t + duration,
                         "secondsFromStart": round((t - START_MS) / 1000, 2), "duration": duration})
        openai_msgs.append({"role": "user" if role == "user" else "assistant", "content": text})
        lines.append(f"{'User' if role == 'user' else 'AI'}: {text}")
        t += duration + 400
    arguments = json.dumps(hint or {})
    tool_call = {"id": "call_tr_1", "type": "function", "function": {"name": "transferCall", "arguments": arguments}}
    messages.append({"role": "tool_calls", "toolCalls": [tool_call], "message": "", "time": t,
                     "secondsFromStart": round((t - START_MS) / 1000, 2)})
    openai_msgs.append({"role": "assistant", "content": "", "tool_calls": [tool_call]})
    artifact: dict[str, Any] = {}
    if "messages" in views:
        artifact["messages"] = messages
    if "messagesOpenAIFormatted" in views:
        artifact["messagesOpenAIFormatted"] = openai_msgs
    if "transcript" in views:
        artifact["transcript"] = "\n".join(lines)
    if transfers is not None:
        artifact["transfers"] = transfers
    message = {
        "type": "transfer-destination-request",
        "timestamp": t,
        "artifact": artifact,
        "assistant": assistant or {"id": "asst-main", "name": "Brightline Front Line"},
        "customer": {"number": customer_number, "name": "Pat Example"},
        "phoneNumber": {"id": "pn-1", "provider": "twilio", "number": "+14155550100",
                        "twilioAccountSid": "AC00000000000000000000000000000000",
                        "twilioAuthToken": "secret-token-should-never-be-logged"},
        "call": {"id": call_id, "orgId": "org-1", "type": "inboundPhoneCall", "status": "in-progress"},
    }
    return {"message": message} if envelope else message


def handoff_request(turns: list[tuple[str, str]], parameters: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """A handoff-destination-request: the same conversation, the handoff tool's call last, and `parameters`
    (the arguments the voice assistant's model wrote for it), as ServerMessageHandoffDestinationRequest."""
    body = transfer_request(turns, hint=parameters, **kwargs)
    message = body.get("message", body)
    message["type"] = "handoff-destination-request"
    message["parameters"] = parameters
    for item in message["artifact"].get("messages", []):
        for call in item.get("toolCalls") or []:
            call["function"]["name"] = "handoff_to_assistant"
    for item in message["artifact"].get("messagesOpenAIFormatted", []):
        for call in item.get("tool_calls") or []:
            call["function"]["name"] = "handoff_to_assistant"
    return body


def earlier_transfer(destination: dict[str, Any], status: str, mode: str = "blind-transfer") -> dict[str, Any]:
    """One entry of artifact.transfers (Vapi's TransferArtifact)."""
    return {"destination": destination, "mode": mode, "status": status, "transcript": ""}
