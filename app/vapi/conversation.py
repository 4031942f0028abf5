"""The conversation so far, taken from the request's artifact and cut to the window a router sees.

Vapi may send up to three views of the same call; the first with caller words wins: `messages`, then
`messagesOpenAIFormatted`, then `transcript`. The window (the opening caller turns and the most recent turns
that fit the size budget) is chosen first, and only the messages inside it are validated and read, so the
work per request is bounded by the budget, not by the size of the body: a 1 MiB body of 31,000 turns costs
what an 8,000-character conversation costs.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import pydantic_core

from app.vapi.messages import ArtifactMessage, DestinationRequest, OpenAIFormattedMessage, ToolCall, typed_item

Speaker = Literal["caller", "assistant", "tool", "system"]
LABELS: dict[Speaker, str] = {"caller": "Caller", "assistant": "Assistant", "tool": "Tool", "system": "System"}
MAX_TURN_CHARS = 1200  # one runaway turn must not crowd out the rest
OPENING_CALLER_TURNS = 2  # why they called is usually said first
MAX_SCAN = 2000  # messages looked at from each end; turns that add no text (tool calls) still cost a look
MAX_ARGUMENT_CHARS = 4000  # a tool call's arguments longer than this are not read: no hint is that long
HINT_CHARS = 500
MARKER_CHARS = 48  # room kept for the "[... N messages omitted ...]" line


class NoConversation(Exception):
    """The request carries no caller words to route on."""


@dataclass(frozen=True, slots=True)
class Turn:
    speaker: Speaker
    text: str

    @property
    def line(self) -> str:
        return f"{LABELS[self.speaker]}: {self.text}"


@dataclass(frozen=True, slots=True)
class Conversation:
    """The window of the call a router sees. `omitted` messages were skipped after the first `head` turns."""

    turns: tuple[Turn, ...]
    hint: str | None
    source: str
    omitted: int = 0
    head: int = 0
    # Where each turn is in its source view (a transcript's: its speaker line): recording keeps only these.
    positions: tuple[int, ...] = ()


class _Typed:
    """A raw list of messages, each validated on first use and only once (the window and the hint share it)."""

    def __init__(self, items: list[Any] | None, model: type[Any], where: str) -> None:
        self.items, self.model, self.where = items or [], model, where
        self._typed: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.items)

    def raw(self, index: int) -> Any:
        return self.items[index]

    def __getitem__(self, index: int) -> Any:
        if index not in self._typed:
            self._typed[index] = typed_item(self.model, self.items, index, self.where)
        return self._typed[index]


class _View:
    """One conversation view as a sequence of messages, each read (and validated) only when looked at."""

    def __init__(self, size: int, read: Callable[[int], Turn | None]) -> None:
        self.size, self._read = size, read
        self._seen: dict[int, Turn | None] = {}

    def turn(self, index: int) -> Turn | None:
        if index not in self._seen:
            self._seen[index] = self._read(index)
        return self._seen[index]

    def positions(self, turns: tuple[Turn, ...]) -> tuple[int, ...]:
        at = {id(turn): i for i, turn in self._seen.items() if turn is not None}
        return tuple(at[id(turn)] for turn in turns)


def extract(request: DestinationRequest, *, include_system_prompt: bool = False,
            budget_chars: int = 8000) -> Conversation:
    artifact = request.artifact
    messages = _Typed(artifact.messages if artifact else None, ArtifactMessage, "message.artifact.messages")
    openai = _Typed(artifact.messagesOpenAIFormatted if artifact else None, OpenAIFormattedMessage,
                    "message.artifact.messagesOpenAIFormatted")
    views: list[tuple[str, Callable[[], _View | None]]] = [
        ("messages", lambda: _messages_view(messages, include_system_prompt)),
        ("messagesOpenAIFormatted", lambda: _openai_view(openai, include_system_prompt)),
        ("transcript", lambda: _transcript_view(artifact.transcript if artifact else None)),
    ]
    for source, build in views:
        view = build()
        if view is None or view.size == 0:
            continue
        window = _window(view, budget_chars)
        if window is not None:
            turns, omitted, head = window
            return Conversation(turns, _hint(request, source, messages, openai), source, omitted, head,
                                view.positions(turns))
    raise NoConversation(
        "no usable conversation: message.artifact has no caller turns in messages, "
        "messagesOpenAIFormatted or transcript"
    )


def _window(view: _View, budget: int) -> tuple[tuple[Turn, ...], int, int] | None:
    """All turns if they fit; else the opening caller turns, then the most recent turns that fit.
    None when the view has no caller turn within reach."""
    tail, reached = _scan_back(view, view.size - 1, -1, budget)
    if reached:
        return (tuple(tail), 0, 0) if any(t.speaker == "caller" for t in tail) else None
    head: list[tuple[int, Turn]] = []
    head_cost = MARKER_CHARS
    for i in range(min(view.size, MAX_SCAN)):
        turn = view.turn(i)
        if turn is not None and turn.speaker == "caller":
            if head_cost + len(turn.line) + 1 > budget // 2:  # the opening never crowds out the latest words
                break
            head.append((i, turn))
            head_cost += len(turn.line) + 1
            if len(head) == OPENING_CALLER_TURNS:
                break
    stop = head[-1][0] if head else -1
    tail, _ = _scan_back(view, view.size - 1, stop, budget - head_cost)
    turns = tuple(t for _, t in head) + tuple(tail)
    if not any(t.speaker == "caller" for t in turns):
        return None
    omitted = view.size - 1 - stop - len(tail)  # messages between the head and the tail, tool calls included
    return turns, max(omitted, 0), len(head)


def _scan_back(view: _View, start: int, stop: int, budget: int) -> tuple[list[Turn], bool]:
    """Turns from `start` down to (not including) `stop` while they fit the budget, oldest first; and whether
    every message down to `stop` was taken."""
    taken: list[Turn] = []
    used = 0
    looked = 0
    index = start
    while index > stop:
        if looked == MAX_SCAN:
            return taken[::-1], False
        looked += 1
        turn = view.turn(index)
        if turn is not None:
            cost = len(turn.line) + 1
            if used + cost > budget:
                return taken[::-1], False
            used += cost
            taken.append(turn)
        index -= 1
    return taken[::-1], True


def _clean(text: str | None) -> str:
    # Cut before splitting: a 1 MB message is not worth splitting into words.
    return " ".join((text or "")[: MAX_TURN_CHARS * 4].split())[:MAX_TURN_CHARS]


def _messages_view(items: _Typed, include_system: bool) -> _View | None:
    if not items:
        return None

    def read(i: int) -> Turn | None:
        m: ArtifactMessage = items[i]
        text = _clean(m.message)
        if m.role == "user" and text:
            return Turn("caller", text)
        if m.role in ("bot", "assistant") and text:
            return Turn("assistant", text)
        if m.role == "system" and include_system and text:
            return Turn("system", text)
        if m.role == "tool_call_result" and m.result and m.name and not _is_transfer(m.name):
            return Turn("tool", f"{m.name} returned: {_clean(m.result)[:300]}")
        return None

    return _View(len(items), read)


def _openai_view(items: _Typed, include_system: bool) -> _View | None:
    if not items:
        return None
    roles: dict[str, Speaker] = {"user": "caller", "assistant": "assistant", "system": "system"}

    def read(i: int) -> Turn | None:
        m: OpenAIFormattedMessage = items[i]
        speaker = roles.get(m.role)
        if speaker is None or (speaker == "system" and not include_system):
            return None
        content = m.content
        if isinstance(content, list):  # content parts: keep the text ones
            content = " ".join(str(p.get("text", "")) for p in content[:50] if isinstance(p, dict))
        text = _clean(content)
        return Turn(speaker, text) if text else None

    return _View(len(items), read)


_TRANSCRIPT_LINE = re.compile(r"^\s*(AI|Assistant|Bot|User|Customer|Caller)\s*:\s*(.*)$", re.IGNORECASE)


def _transcript_view(transcript: str | None) -> _View | None:
    """Each speaker line is a turn; a line with no speaker continues the turn above it."""
    if not transcript or not transcript.strip():
        return None
    lines = transcript.splitlines()

    def read(i: int) -> Turn | None:
        match = _TRANSCRIPT_LINE.match(lines[i])
        if not match:
            return None
        parts = [match.group(2)]
        for follow in lines[i + 1: i + 1 + 20]:  # wrapped lines, as far as the next speaker
            if _TRANSCRIPT_LINE.match(follow):
                break
            parts.append(follow)
        text = _clean(" ".join(parts))
        if not text:
            return None
        return Turn("caller" if match.group(1).lower() in ("user", "customer", "caller") else "assistant", text)

    return _View(len(lines), read)


def _is_transfer(name: str | None) -> bool:
    return bool(name) and "transfer" in (name or "").lower()


def _hint(request: DestinationRequest, source: str, messages: _Typed, openai: _Typed) -> str | None:
    """The arguments the voice assistant's model wrote for the transfer or handoff: a hint, never the answer."""
    if request.parameters:
        return _format_arguments(request.parameters)
    if source == "messagesOpenAIFormatted":
        return _hint_from_openai(openai)
    if source == "messages":
        return _hint_from_messages(messages)
    return _hint_from_messages(messages) or _hint_from_openai(openai)


def _last_index(items: _Typed, wanted: Callable[[dict[str, Any]], bool]) -> int | None:
    """The last raw message matching `wanted`, looking at most MAX_SCAN back (the tool call is the last one)."""
    for i in range(len(items) - 1, max(-1, len(items) - 1 - MAX_SCAN), -1):
        raw = items.raw(i)
        if isinstance(raw, dict) and wanted(raw):
            return i
    return None


def _hint_from_messages(items: _Typed) -> str | None:
    i = _last_index(items, lambda m: m.get("role") == "tool_calls")
    return _arguments_hint(items[i].toolCalls) if i is not None else None


def _hint_from_openai(items: _Typed) -> str | None:
    i = _last_index(items, lambda m: m.get("role") == "assistant" and bool(m.get("tool_calls")))
    return _arguments_hint(items[i].tool_calls) if i is not None else None


def _arguments_hint(calls: list[ToolCall] | None) -> str | None:
    for call in reversed(calls or []):
        if call.function is not None:
            return _format_arguments(read_arguments(call.function.arguments))
    return None


def read_arguments(args: Any) -> Any:
    """A tool call's arguments as data. Arguments that cannot be read (not JSON, too long, nested too deep,
    numbers too large) are no hint: None, never an exception."""
    if not isinstance(args, str):
        return args
    text = args.strip()
    if not text or len(text) > MAX_ARGUMENT_CHARS:
        return None
    try:
        return pydantic_core.from_json(text)  # bounded recursion and number size, unlike json.loads
    except (ValueError, TypeError):
        return None


def _format_arguments(args: Any) -> str | None:
    if isinstance(args, dict):
        args = {k: v for k, v in list(args.items())[:20] if v not in (None, "", [], {})}
        text = ", ".join(f"{k}: {_short(v)}" for k, v in args.items())
    elif isinstance(args, str | int | float) and not isinstance(args, bool):
        text = str(args)
    else:
        return None
    return _clean(text)[:HINT_CHARS] or None


_SHORT = reprlib.Repr()  # keyword arguments to Repr() arrived only in Python 3.12
_SHORT.maxlevel, _SHORT.maxdict, _SHORT.maxlist, _SHORT.maxstring, _SHORT.maxother = 3, 8, 8, 200, 80


def _short(value: Any) -> str:
    """A value for the hint line, without walking (or printing) all of a large nested structure."""
    return value if isinstance(value, str) else _SHORT.repr(value)


def render(conversation: Conversation) -> str:
    """Lines of `Speaker: text`, with a marker where messages were left out."""
    lines = [t.line for t in conversation.turns]
    if conversation.omitted:
        lines.insert(conversation.head, f"[... {conversation.omitted} messages omitted ...]")
    return "\n".join(lines)
