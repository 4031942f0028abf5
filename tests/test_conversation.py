"""Extracting the conversation from the three views, the hint, and the size budget."""

from __future__ import annotations

import pytest

from app.vapi.conversation import NoConversation, extract, render
from app.vapi.messages import PayloadError, parse_request
from tests.vapi_payloads import transfer_request

TURNS = [("bot", "Hi, Brightline here."), ("user", "My bill is wrong."), ("bot", "Sorry to hear."),
         ("user", "Also my wifi drops.")]


def req(**kw):
    return parse_request(transfer_request(TURNS, **kw)["message"])


@pytest.mark.parametrize("view", ["messages", "messagesOpenAIFormatted", "transcript"])
def test_every_view_gives_the_same_turns(view):
    conv = extract(req(views=(view,)), budget_chars=10_000)
    assert conv.source == view
    assert render(conv) == ("Assistant: Hi, Brightline here.\nCaller: My bill is wrong.\n"
                                    "Assistant: Sorry to hear.\nCaller: Also my wifi drops.")


def test_messages_view_wins_when_all_present():
    assert extract(req()).source == "messages"


def test_system_prompt_left_out_unless_asked():
    assert all(t.speaker != "system" for t in extract(req()).turns)
    assert extract(req(), include_system_prompt=True).turns[0].speaker == "system"


def test_hint_from_transfer_arguments():
    assert extract(req(hint={"destination": "billing", "reason": ""})).hint == "destination: billing"
    assert extract(req(hint={})).hint is None
    assert extract(req(hint={"why": "x"}, views=("messagesOpenAIFormatted",))).hint == "why: x"


def test_no_caller_turns_is_no_conversation():
    with pytest.raises(NoConversation):
        extract(parse_request(transfer_request([("bot", "Hello?")])["message"]))


def test_long_call_keeps_opening_caller_turns_and_the_end():
    turns = [("user", "I need help with a refund for a double charge.")]
    turns += [("bot" if i % 2 else "user", f"filler turn number {i} " + "blah " * 20) for i in range(200)]
    turns += [("user", "So can you put me through to billing please?")]
    conv = extract(parse_request(transfer_request(turns)["message"]), budget_chars=3000)
    text = render(conv)
    assert len(text) <= 3000
    assert text.startswith("Caller: I need help with a refund")
    assert text.endswith("Caller: So can you put me through to billing please?")
    assert "messages omitted ...]" in text


def test_work_is_bounded_by_the_window_not_the_body(monkeypatch):
    """Reported: a 1 MiB body of ~31,000 turns was validated twice in full and ranked turn by turn (0.8-1.1 s
    of CPU). Only the messages the window reaches are validated, once each."""
    import app.vapi.conversation as conversation

    seen: list[int] = []
    real = conversation.typed_item

    def counting(model, items, index, where):
        seen.append(index)
        return real(model, items, index, where)

    monkeypatch.setattr(conversation, "typed_item", counting)
    turns = [("user" if i % 2 else "bot", f"turn {i} " + "words " * 3) for i in range(31_000)]
    request = parse_request(transfer_request(turns, views=("messages",))["message"])
    conv = extract(request, budget_chars=8000)
    assert len(seen) == len(set(seen)), "a message was validated twice"
    assert len(seen) < 600, len(seen)  # 8,000 characters of ~30-character turns, and the opening turns
    assert conv.turns[0].text.startswith("turn 1 ") and conv.turns[-1].text.startswith("turn 30999")
    assert 30_000 < conv.omitted < 31_002
    assert len(render(conv)) <= 8000


def test_messages_outside_the_window_are_not_validated():
    """A malformed message far back in a long call does not fail the request; inside the window it does."""
    turns = [("user", f"turn {i} " + "words " * 30) for i in range(400)]
    body = transfer_request(turns, views=("messages",))
    body["message"]["artifact"]["messages"][150]["message"] = 12
    assert extract(parse_request(body["message"]), budget_chars=3000).turns
    body["message"]["artifact"]["messages"][-3]["message"] = 12
    with pytest.raises(PayloadError, match=r"message\.artifact\.messages\.399\.message"):
        extract(parse_request(body["message"]), budget_chars=3000)


def test_a_small_budget_keeps_the_latest_caller_words():
    """The opening caller turns take at most half the budget: the latest request is never crowded out."""
    turns = [("user", "Hello, I have a long story about my account. " * 6), ("bot", "Go on."),
             ("user", "And another long part of the story, with many details. " * 5)]
    turns += [("bot", f"filler {i} " * 10) for i in range(30)]
    turns += [("user", "So please put me through to billing.")]
    conv = extract(parse_request(transfer_request(turns)["message"]), budget_chars=500)
    text = render(conv)
    assert text.endswith("Caller: So please put me through to billing.") and len(text) <= 500
