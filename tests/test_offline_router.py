"""The offline router: clear cases, none on out-of-scope calls, threshold, hint, same contract as the LLM."""

from __future__ import annotations

import asyncio

import pytest

from app.catalogue.destinations import parse
from app.routers.base import Query
from app.routers.offline import OfflineRouter, stem, tokens
from app.vapi.conversation import extract, render
from app.vapi.messages import parse_request
from tests.test_catalogue import SAMPLE
from tests.vapi_payloads import transfer_request

CATALOGUE = parse(SAMPLE)


def query(turns, hint=None, allowed=None):
    conv = extract(parse_request(transfer_request(turns, hint=hint)["message"]))
    return Query(conv, render(conv), allowed or CATALOGUE.ids)


def choose(router, q):
    return asyncio.run(router.choose(q, 1.0))


@pytest.fixture
def router():
    return OfflineRouter.for_catalogue(CATALOGUE, threshold=0.4)


@pytest.mark.parametrize(("said", "expected"), [
    ("I was charged twice this month and I want a refund", "billing"),
    ("my wifi keeps dropping and the router light is red", "tech_support"),
    ("I'd like to sign up for a faster internet plan", "sales"),
    ("please cancel my service, I'm switching providers", "cancellations"),
    ("is there an outage in my area, the whole street is down", "outages"),
    ("I'm moving next month, transfer my service to the new address", "moving"),
    ("someone hacked my account and changed my password", "account_security"),
    ("hola, necesito ayuda en español por favor", "spanish"),
    ("can I speak to a manager, I have a complaint", "front_desk"),
])
def test_clear_cases(router, said, expected):
    choice = choose(router, query([("bot", "How can I help?"), ("user", said)]))
    assert choice.destination == expected
    assert choice.score is not None and choice.score >= 0.4


@pytest.mark.parametrize("said", ["What's the weather like tomorrow?", "I'd like a large pepperoni pizza",
                                  "Transfer me to +1 900 555 0199 right now"])
def test_out_of_scope_is_none(router, said):
    choice = choose(router, query([("bot", "How can I help?"), ("user", said)]))
    assert choice.destination == "none"
    assert choice.score is not None and choice.score < 0.4


def test_threshold_decides_between_id_and_none():
    q = query([("user", "I have a question about a charge")])
    confidence = OfflineRouter.for_catalogue(CATALOGUE, 0.0).rank(q)[1]
    assert 0 < confidence < 1
    assert choose(OfflineRouter.for_catalogue(CATALOGUE, confidence - 0.01), q).destination == "billing"
    assert choose(OfflineRouter.for_catalogue(CATALOGUE, confidence + 0.01), q).destination == "none"


def test_hint_tips_a_vague_call(router):
    turns = [("bot", "How can I help?"), ("user", "It's about my account, it's complicated.")]
    assert choose(router, query(turns, hint={"department": "billing refund"})).destination == "billing"


def test_caller_outweighs_assistant_and_recent_outweighs_old(router):
    turns = [("bot", "Would you like to hear about our faster plans and deals and upgrades?"),
             ("user", "No. My internet is not working, the modem is dead.")]
    assert choose(router, query(turns)).destination == "tech_support"
    turns = [("user", "I want to cancel my service."), ("bot", "Before you go, we have faster plans."),
             ("user", "Actually, forget cancelling, upgrade me to the faster plan.")]
    assert choose(router, query(turns)).destination == "sales"


def test_respects_the_allowed_subset(router):
    q = query([("user", "my wifi is broken, I was charged twice")], allowed=("billing", "front_desk"))
    assert choose(router, q).destination == "billing"


def test_stemming_meets_word_forms():
    assert stem("charged") == stem("charges") == stem("charge") == stem("charging")
    assert tokens("I'm MOVING to the new apartment!") == ["mov", "new", "apart"]
