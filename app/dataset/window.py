"""The window of a request: the part its decision used, copied with bounded work (on the event loop, as the
request is answered) in the shape of a request, so that `eval` replaying it gives the router the same turns, hint
and left-out destinations. A 1 MiB conversation becomes the few kilobytes the router read."""

from __future__ import annotations

from typing import Any

from app.catalogue.destinations import Catalogue
from app.routers.base import Query
from app.vapi.conversation import _TRANSCRIPT_LINE, MAX_ARGUMENT_CHARS, MAX_SCAN, MAX_TURN_CHARS
from app.vapi.transfers import latest_indices

TEXT_CHARS = MAX_TURN_CHARS * 4  # what the decision reads of any text (conversation._clean cuts there first)
ARGUMENT_CHARS = MAX_ARGUMENT_CHARS + 1  # longer arguments are no hint; one character more keeps them so
ID_CHARS = 256  # ids, names, keys
VALUE_NODES = 200  # values kept of one free-form object (parameters, tool arguments)
VALUE_CHARS = 2 * TEXT_CHARS  # characters kept of one free-form object
VALUE_DEPTH = 6
MAX_TRANSFERS_KEPT = 50  # the latest transfer per catalogue destination; a call reaches a handful

MESSAGE_FIELDS = ("role", "message", "time", "endTime", "secondsFromStart", "duration", "name", "result",
                  "toolCalls", "toolCallId")
OPENAI_FIELDS = ("role", "content", "tool_calls", "tool_call_id", "name")
VIEWS = {"messages": (MESSAGE_FIELDS, "toolCalls"), "messagesOpenAIFormatted": (OPENAI_FIELDS, "tool_calls")}


class _Budget:
    __slots__ = ("chars", "nodes")

    def __init__(self, nodes: int = VALUE_NODES, chars: int = VALUE_CHARS) -> None:
        self.nodes, self.chars = nodes, chars


def _bounded(value: Any, budget: _Budget, depth: int = 0, text_chars: int = TEXT_CHARS) -> Any:
    """A copy of JSON data that stops at the budget: strings cut to what the decision reads, containers cut
    when the budget's values or characters run out, nothing deeper than VALUE_DEPTH."""
    if budget.nodes <= 0:
        return None
    budget.nodes -= 1
    if isinstance(value, str):
        cut = value[:max(0, min(text_chars, budget.chars))]
        budget.chars -= len(cut)
        return cut
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= VALUE_DEPTH:
        return None
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if budget.nodes <= 0 or budget.chars <= 0:
                break
            key = str(k)[:ID_CHARS]
            budget.chars -= len(key)
            out[key] = _bounded(v, budget, depth + 1, text_chars)
        return out
    if isinstance(value, list):
        items: list[Any] = []
        for v in value:
            if budget.nodes <= 0 or budget.chars <= 0:
                break
            items.append(_bounded(v, budget, depth + 1, text_chars))
        return items
    return None


def _tool_call(calls: Any) -> list[dict[str, Any]] | None:
    """Of a message's tool calls, the one the hint is read from: the last with a function."""
    if not isinstance(calls, list):
        return None
    for call in reversed(calls[-MAX_SCAN:]):
        if isinstance(call, dict) and isinstance(call.get("function"), dict):
            function = call["function"]
            kept: dict[str, Any] = {k: _bounded(call[k], _Budget(1), text_chars=ID_CHARS)
                                    for k in ("id", "type") if k in call}
            copy: dict[str, Any] = {}
            if "name" in function:
                copy["name"] = _bounded(function["name"], _Budget(1), text_chars=ID_CHARS)
            if "arguments" in function:
                copy["arguments"] = _bounded(function["arguments"], _Budget(), text_chars=ARGUMENT_CHARS)
            kept["function"] = copy
            return [kept]
    return []


def _message(item: Any, view: str) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        return None
    fields, calls_key = VIEWS[view]
    out: dict[str, Any] = {}
    budget = _Budget()
    for key in fields:
        if key in item:
            out[key] = _tool_call(item[key]) if key == calls_key else _bounded(item[key], budget)
    return out


def _last_tool_call(items: Any, view: str) -> int | None:
    """Where the hint's tool call is, looked for as the decision looks (conversation._last_index)."""
    if not isinstance(items, list):
        return None
    wanted = "tool_calls" if view == "messages" else "assistant"
    calls_key = VIEWS[view][1]
    for i in range(len(items) - 1, max(-1, len(items) - 1 - MAX_SCAN), -1):
        raw = items[i]
        if isinstance(raw, dict) and raw.get("role") == wanted and (view == "messages" or raw.get(calls_key)):
            return i
    return None


def _transcript(text: str, positions: tuple[int, ...]) -> str:
    """The transcript's lines the window read: each turn's speaker line and the lines that continue it."""
    lines = text.splitlines()
    kept: list[str] = []
    for i in positions:
        if not 0 <= i < len(lines):
            continue
        kept.append(lines[i][:TEXT_CHARS])
        for follow in lines[i + 1: i + 1 + 20]:  # as conversation._transcript_view reads them
            if _TRANSCRIPT_LINE.match(follow):
                break
            kept.append(follow[:TEXT_CHARS])
    return "\n".join(kept)


def window(message: dict[str, Any], query: Query | None, catalogue: Catalogue | None) -> dict[str, Any]:
    """The part of a request its decision used, as a request of the same shape: replayed by `eval`, it gives
    the router the same turns (without the "messages omitted" line), hint and left-out destinations."""
    out: dict[str, Any] = {k: _bounded(message[k], _Budget(1), text_chars=ID_CHARS)
                           for k in ("type", "timestamp") if k in message}
    artifact = message.get("artifact")
    if isinstance(artifact, dict):
        kept: dict[str, Any] = {}
        conversation = query.conversation if query is not None else None
        if conversation is not None:
            source = conversation.source
            picks: dict[str, list[int]] = {view: [] for view in VIEWS}
            if source in VIEWS:
                picks[source] = list(conversation.positions)
            elif isinstance(artifact.get("transcript"), str):
                kept["transcript"] = _transcript(artifact["transcript"], conversation.positions)
            for view in VIEWS if source == "transcript" else (source,):  # where the hint's tool call is
                at = _last_tool_call(artifact.get(view), view)
                if at is not None:
                    picks[view] = sorted({*picks[view], at})
            for view, positions in picks.items():
                items = artifact.get(view)
                if positions and isinstance(items, list):
                    copies = (_message(items[i], view) for i in positions if 0 <= i < len(items))
                    kept[view] = [c for c in copies if c is not None]
        if query is not None and catalogue is not None and isinstance(artifact.get("transfers"), list):
            items = artifact["transfers"]
            deciding = latest_indices(items, catalogue, query.subset or query.allowed, query.kind)
            kept["transfers"] = [_bounded(items[i], _Budget(40)) for i in deciding[-MAX_TRANSFERS_KEPT:]]
        out["artifact"] = kept
    for holder, fields in (("assistant", ("id", "name")), ("call", ("id", "assistantId")),
                           ("chat", ("id", "assistantId"))):
        value = message.get(holder)
        if isinstance(value, dict):
            picked = {k: value[k][:ID_CHARS] for k in fields if isinstance(value.get(k), str)}
            if picked:
                out[holder] = picked
    if isinstance(message.get("parameters"), dict):
        out["parameters"] = _bounded(message["parameters"], _Budget())
    return out
