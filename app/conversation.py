"""The conversation so far, taken from the request's artifact and rendered for a router.

Vapi may send up to three views of the same call; the richest one present wins:
`messages`, then `messagesOpenAIFormatted`, then `transcript`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .payload import Artifact, ToolCall, TransferRequest

Speaker = Literal["caller", "assistant", "tool", "system"]
LABELS: dict[Speaker, str] = {"caller": "Caller", "assistant": "Assistant", "tool": "Tool", "system": "System"}
MAX_TURN_CHARS = 1200  # one runaway turn must not crowd out the rest
OPENING_CALLER_TURNS = 2  # why they called is usually said first


class NoConversation(Exception):
    """The request carries no caller words to route on."""


@dataclass(frozen=True, slots=True)
class Turn:
    speaker: Speaker
    text: str


@dataclass(frozen=True, slots=True)
class Conversation:
    turns: tuple[Turn, ...]
    hint: str | None
    source: str

    def caller_text(self) -> str:
        return " ".join(t.text for t in self.turns if t.speaker == "caller")


def extract(request: TransferRequest, *, include_system_prompt: bool = False) -> Conversation:
    artifact = request.artifact or Artifact()
    views: tuple[tuple[str, Callable[[], list[Turn]]], ...] = (  # built only until one has caller words
        ("messages", lambda: _from_messages(artifact, include_system_prompt)),
        ("messagesOpenAIFormatted", lambda: _from_openai(artifact, include_system_prompt)),
        ("transcript", lambda: _from_transcript(artifact.transcript)),
    )
    for source, build in views:
        turns = build()
        if any(t.speaker == "caller" for t in turns):
            # The transfer tool's arguments live in the structured views only.
            if source == "messagesOpenAIFormatted":
                hint = _hint_from_openai(artifact)
            elif source == "messages":
                hint = _hint_from_messages(artifact)
            else:
                hint = _hint_from_messages(artifact) or _hint_from_openai(artifact)
            return Conversation(turns=tuple(turns), hint=hint, source=source)
    raise NoConversation(
        "no usable conversation: message.artifact has no caller turns in messages, "
        "messagesOpenAIFormatted or transcript"
    )


def _clean(text: str | None) -> str:
    return " ".join((text or "").split())[:MAX_TURN_CHARS]


def _from_messages(artifact: Artifact, include_system: bool) -> list[Turn]:
    turns: list[Turn] = []
    for m in artifact.typed_messages():
        text = _clean(m.message)
        if m.role == "user" and text:
            turns.append(Turn("caller", text))
        elif m.role in ("bot", "assistant") and text:
            turns.append(Turn("assistant", text))
        elif m.role == "system" and include_system and text:
            turns.append(Turn("system", text))
        elif m.role == "tool_call_result" and m.result and m.name and not _is_transfer(m.name):
            turns.append(Turn("tool", f"{m.name} returned: {_clean(m.result)[:300]}"))
    return turns


def _from_openai(artifact: Artifact, include_system: bool) -> list[Turn]:
    roles: dict[str, Speaker] = {"user": "caller", "assistant": "assistant", "system": "system"}
    turns: list[Turn] = []
    for m in artifact.typed_openai_messages():
        speaker = roles.get(m.role)
        if speaker is None or (speaker == "system" and not include_system):
            continue
        content = m.content
        if isinstance(content, list):  # content parts: keep the text ones
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        text = _clean(content)
        if text:
            turns.append(Turn(speaker, text))
    return turns


_TRANSCRIPT_LINE = re.compile(r"^\s*(AI|Assistant|Bot|User|Customer|Caller)\s*:\s*(.*)$", re.IGNORECASE)


def _from_transcript(transcript: str | None) -> list[Turn]:
    turns: list[Turn] = []
    for line in (transcript or "").splitlines():
        match = _TRANSCRIPT_LINE.match(line)
        if match:
            who = match.group(1).lower()
            speaker: Speaker = "caller" if who in ("user", "customer", "caller") else "assistant"
            text = _clean(match.group(2))
            if text:
                turns.append(Turn(speaker, text))
        elif line.strip() and turns:  # a wrapped line continues the previous turn
            last = turns[-1]
            turns[-1] = Turn(last.speaker, _clean(last.text + " " + line))
    return turns


def _is_transfer(name: str | None) -> bool:
    return bool(name) and "transfer" in (name or "").lower()


def _arguments_hint(calls: list[ToolCall] | None) -> str | None:
    for call in reversed(calls or []):
        fn = call.function
        if fn is None:
            continue
        args = fn.arguments
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else None
            except json.JSONDecodeError:
                args = {"text": args}
        if isinstance(args, dict):
            args = {k: v for k, v in args.items() if v not in (None, "", [], {})}
        if args:
            hint = ", ".join(f"{k}: {v}" for k, v in args.items()) if isinstance(args, dict) else str(args)
            return _clean(hint)[:500]
        return None
    return None


def _hint_from_messages(artifact: Artifact) -> str | None:
    for m in reversed(artifact.typed_messages()):
        if m.role == "tool_calls":
            return _arguments_hint(m.toolCalls)
    return None


def _hint_from_openai(artifact: Artifact) -> str | None:
    for m in reversed(artifact.typed_openai_messages()):
        if m.role == "assistant" and m.tool_calls:
            return _arguments_hint(m.tool_calls)
    return None


def render(conversation: Conversation, budget_chars: int) -> str:
    """Lines of `Speaker: text`, cut to the budget: opening caller turns and the most recent turns stay."""
    lines = [f"{LABELS[t.speaker]}: {t.text}" for t in conversation.turns]
    if sum(len(line) + 1 for line in lines) <= budget_chars:
        return "\n".join(lines)
    keep_head: list[int] = []
    for i, t in enumerate(conversation.turns):
        if t.speaker == "caller":
            keep_head.append(i)
            if len(keep_head) == OPENING_CALLER_TURNS:
                break
    head = [lines[i] for i in keep_head]
    used = sum(len(line) + 1 for line in head) + 40
    tail: list[str] = []
    for i in range(len(lines) - 1, (keep_head[-1] if keep_head else -1), -1):
        if used + len(lines[i]) + 1 > budget_chars:
            break
        used += len(lines[i]) + 1
        tail.append(lines[i])
    tail.reverse()
    omitted = len(lines) - len(head) - len(tail)
    marker = f"[... {omitted} turns omitted ...]"
    return "\n".join([*head, marker, *tail]) if omitted else "\n".join([*head, *tail])
