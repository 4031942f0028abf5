"""Confidence from the LLM: the probability of the id it wrote, from token log-probabilities located by
character offset; SWITCHBOARD_MIN_CONFIDENCE and the failure policy; servers that refuse or ignore them."""

from __future__ import annotations

import math

import pytest

from app.routers.confidence import TokenLogprob, id_span, measure, probability
from tests.conftest import decision_logs
from tests.fake_openai import answer
from tests.vapi_payloads import transfer_request

TURNS = [("bot", "How can I help?"), ("user", "Someone hacked my account and changed my password.")]
SECURITY = "+14155550199"
FRONT_DESK = "sip:frontdesk@pbx.brightline.example"


def tokens(*pairs):
    return [TokenLogprob(text, math.log(p)) for text, p in pairs]


def test_an_id_split_over_several_tokens():
    text = '{"destination": "account_security"}'
    toks = tokens(('{"', 1.0), ("destination", 1.0), ('":', 1.0), (' "', 1.0), ("account", 0.9), ("_", 0.99),
                  ("security", 0.95), ('"}', 1.0))
    span = id_span(text, "account_security", json_answer=True)
    assert text[span[0]:span[1]] == "account_security"
    assert probability(text, span, toks) == pytest.approx(0.9 * 0.99 * 0.95)


def test_a_token_shared_with_the_quote_counts():
    text = '{"destination":"billing"}'
    toks = tokens(('{"destination":', 1.0), ('"bill', 0.8), ("ing", 0.5), ('"}', 0.7))
    assert probability(text, id_span(text, "billing", True), toks) == pytest.approx(0.4)  # the '"}' is not the id


def test_the_destination_value_not_a_mention_in_the_reason():
    text = '{"reason": "not billing: the caller was hacked", "destination": "account_security"}'
    span = id_span(text, "account_security", json_answer=True)
    assert span[0] > text.index("destination")
    assert id_span(text, "billing", json_answer=True) is None


def test_bytes_locate_tokens_in_non_ascii_text():
    text = '{"reason": "café", "destination": "billing"}'
    raw = text.encode()
    cut = raw.index("é".encode()) + 1  # a token boundary inside the two bytes of 'é'
    toks = [TokenLogprob("", 0.0, tuple(raw[:cut])), TokenLogprob("", 0.0, tuple(raw[cut:raw.index(b"billing")])),
            TokenLogprob("billing", math.log(0.6), tuple(b"billing")), TokenLogprob('"}', 0.0, tuple(b'"}'))]
    assert probability(text, id_span(text, "billing", True), toks) == pytest.approx(0.6)


def test_tokens_that_do_not_spell_the_answer_give_no_figure():
    text = '{"destination": "billing"}'
    assert probability(text, id_span(text, "billing", True), tokens(("something else", 0.5))) is None


def test_unusable_log_probabilities_give_a_reason_not_an_exception():
    """bytes(...) raised ValueError on a `bytes` value over 255, and a lone surrogate in the answer raised
    UnicodeEncodeError: each crashed the attempt (router_crashed)."""
    text = '{"destination": "billing"}'
    span = id_span(text, "billing", True)
    for bad in ((300,), (-1,)):
        value, why = measure(text, span, [TokenLogprob("x", 0.0, bad)])
        assert value is None and "bytes" in why
    for logprob in (math.nan, math.inf, 0.5):
        value, why = measure(text, span, [TokenLogprob(text, logprob)])
        assert value is None and "log-probability" in why
    assert measure(text, span, [TokenLogprob(text, -math.inf)]) == (0.0, "")
    assert measure(text, span, [TokenLogprob(text, 1e-6)]) == (1.0, "")  # float noise above 0: certain
    odd = '{"reason": "\ud800", "destination": "billing"}'
    assert probability(odd, id_span(odd, "billing", True), [TokenLogprob(odd, math.log(0.5))]) == pytest.approx(0.5)


def test_plain_text_answers():
    assert id_span("Billing.", "billing", json_answer=False) == (0, 7)
    assert probability("billing", (0, 7), tokens(("bill", 0.5), ("ing", 0.5))) == pytest.approx(0.25)


def test_confidence_reaches_the_decision_log_and_metrics(llm_service, fake, log_records):
    fake.script(answer("account_security", confidence=0.83))
    service = llm_service()
    service.post(transfer_request(TURNS))
    log = decision_logs(log_records)[-1]
    assert log["score"] == pytest.approx(0.83, abs=1e-3) and log["outcome"] == "routed"
    assert fake.requests[-1]["logprobs"] is True and fake.requests[-1]["top_logprobs"] == 3
    text = service.client.get("/metrics").text
    assert 'switchboard_decision_score_bucket{le="0.8",router="llm"} 0.0' in text
    assert 'switchboard_decision_score_bucket{le="0.9",router="llm"} 1.0' in text



@pytest.mark.parametrize(("confidence", "outcome", "number"), [
    (0.95, "routed", SECURITY),
    (0.6, "fallback", None),  # below 0.8: the catalogue's fallback (front_desk) answers
])
def test_min_confidence(llm_service, fake, log_records, confidence, outcome, number):
    fake.script(answer("account_security", confidence=confidence))
    body = llm_service(min_confidence=0.8).post(transfer_request(TURNS)).json()
    log = decision_logs(log_records)[-1]
    assert log["outcome"] == outcome and log["score"] == pytest.approx(confidence, abs=1e-3)
    if number:
        assert body["destination"]["number"] == number
    else:
        assert body["destination"]["sipUri"] == FRONT_DESK and log["failure"] == "low_confidence"
        assert log["candidate"] == "account_security" and log["chosen"] is None and log["answered"] == "front_desk"


def test_low_confidence_without_a_fallback_is_an_error(llm_service, fake, catalogue_path):
    import json

    data = json.loads(catalogue_path.read_text())
    del data["fallback"]
    catalogue_path.write_text(json.dumps(data))
    fake.script(answer("account_security", confidence=0.3))
    body = llm_service(min_confidence=0.5).post(transfer_request(TURNS)).json()
    assert body == {"error": "routing was not confident enough to transfer"}


def test_low_confidence_with_the_offline_policy(llm_service, fake, log_records):
    fake.script(answer("billing", confidence=0.2))  # the model is unsure, and wrong
    body = llm_service(min_confidence=0.5, on_llm_failure="offline").post(transfer_request(TURNS)).json()
    assert body["destination"]["number"] == SECURITY  # the offline router is confident: account_security
    log = decision_logs(log_records)[-1]
    assert log["rescued_by"] == "offline" and log["failure"] == "low_confidence"


def test_a_confident_none_is_kept_as_a_no_match(llm_service, fake, log_records):
    fake.script(answer("none", confidence=0.97))
    llm_service(min_confidence=0.5).post(transfer_request([("user", "What's the weather on Mars?")]))
    log = decision_logs(log_records)[-1]
    assert log["outcome"] == "no_match" and log["chosen"] == "none" and log["score"] == pytest.approx(0.97, abs=1e-3)


def test_a_server_that_refuses_log_probabilities(llm_service, fake, log_records):
    """OpenAI's reasoning models answer 400 to `logprobs`: asked once, then never again, and said so."""
    fake.logprobs_supported = False
    fake.default = answer("account_security")
    service = llm_service(min_confidence=0.9)
    for _ in range(3):
        assert service.post(transfer_request(TURNS)).json()["destination"]["number"] == SECURITY
    assert [bool(r.get("logprobs")) for r in fake.requests] == [True, False, False, False]
    assert all(log["score"] is None for log in decision_logs(log_records))  # the threshold cannot apply
    said = [r for r in log_records if r.getMessage() == "model_server"]
    assert len(said) == 1 and "cannot apply" in said[0].fields["confidence"]  # type: ignore[attr-defined]
    assert "SWITCHBOARD_MIN_CONFIDENCE=0.9 cannot apply" in service.client.get("/healthz").json()["confidence"]


def test_a_server_that_ignores_log_probabilities(llm_service, fake):
    """Some servers take the parameter and give nothing back: stop asking after the first answer."""
    fake.logprobs_returned = False
    fake.default = answer("account_security")
    service = llm_service()
    for _ in range(3):
        service.post(transfer_request(TURNS))
    assert [bool(r.get("logprobs")) for r in fake.requests] == [True, False, False]
    assert service.client.get("/healthz").json()["confidence"].startswith("unavailable: the server gives no")


def test_text_mode_confidence(llm_service, fake, log_records):
    fake.script(answer("account_security", confidence=0.7))
    llm_service(output_mode="text").post(transfer_request(TURNS))
    assert decision_logs(log_records)[-1]["score"] == pytest.approx(0.7, abs=1e-3)
