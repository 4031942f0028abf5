"""OpenAI-compatible servers as they behave in the wild (reproduced by the fake, see tests/fake_openai.py):
llama-cpp-python's 500 on json_schema, llama.cpp's free-form json_object, padded answers cut at max_tokens,
cached prompt tokens, tokens of failed attempts, retries that tell the model why, and hedging that follows
the model's own latency."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

from app.decision.hedging import Hedging
from tests.conftest import decision_logs
from tests.fake_openai import answer, content, status
from tests.vapi_payloads import transfer_request

TURNS = [("bot", "Brightline, how can I help?"), ("user", "Someone hacked my account and changed my password.")]
SECURITY = "+14155550199"  # account_security: the longest id in the sample catalogue


def formats(fake):
    return [(r.get("response_format") or {}).get("type", "text") + ("+schema" if "schema" in
            (r.get("response_format") or {}) else "") for r in fake.requests]


def test_a_500_naming_the_format_steps_down(llm_service, fake, log_records):
    """llama-cpp-python answers json_schema with HTTP 500 ("type must be text or json_object"): the old auto
    mode stepped down only on a 400, retried three times and opened the breaker (0 of 30 calls routed)."""
    fake.json_schema_supported = False
    fake.json_schema_refusal_status = 500
    fake.json_schema_refusal_message = "type must be text or json_object"
    fake.default = answer("account_security")
    service = llm_service(breaker_failures=3)
    routed = [service.post(transfer_request(TURNS)).json()["destination"].get("number") for _ in range(30)]
    assert routed == [SECURITY] * 30
    assert formats(fake)[:3] == ["json_schema", "json_object+schema", "json_object+schema"]
    assert formats(fake).count("json_schema") == 1  # learned once, for this server
    learned = [r.fields for r in log_records if r.getMessage() == "model_server"]  # type: ignore[attr-defined]
    assert learned and learned[0]["mode"] == "json_object_schema"


def test_json_object_carries_the_schema(llm_service, fake):
    """Without a schema, llama.cpp-based servers produced arbitrary JSON in json_object mode (30 of 30 answers
    invalid); with `{"type": "json_object", "schema": ...}` they are constrained by it."""
    fake.json_object_needs_schema = True
    fake.default = answer("account_security")
    service = llm_service(output_mode="json_object")
    routed = [service.post(transfer_request(TURNS)).json()["destination"].get("number") for _ in range(10)]
    assert routed == [SECURITY] * 10
    sent = fake.requests[-1]["response_format"]
    assert sent["type"] == "json_object" and sent["schema"]["properties"]["destination"]["enum"][-1] == "none"


def test_a_server_refusing_the_schema_key_gets_bare_json_object(llm_service, fake):
    fake.default = answer("account_security")
    fake.script(status(400, message="Unrecognized request argument supplied: response_format.schema"))
    service = llm_service(output_mode="json_object")
    assert service.post(transfer_request(TURNS)).json()["destination"]["number"] == SECURITY
    assert formats(fake) == ["json_object+schema", "json_object"]


def test_padded_answers_fit_max_tokens(llm_service, fake, prompt_path):
    """A grammar lets a small model pad with whitespace: max_tokens = 20 cut off 5 of 33 answers. It is now
    sized from the longest allowed id, with room for padding."""
    fake.pad = 20
    fake.default = answer("account_security")
    service = llm_service()
    assert service.post(transfer_request(TURNS)).json()["destination"]["number"] == SECURITY
    assert fake.requests[-1]["max_tokens"] >= len('{"destination": "account_security"}') + 20
    # An explicit max_tokens that is too small is still honoured, and the cut-off answer is never routed.
    prompt_path.write_text(prompt_path.read_text().replace("temperature = 0.0", "temperature = 0.0\nmax_tokens = 20"))
    fake.requests.clear()
    body = llm_service(max_attempts=1).post(transfer_request(TURNS)).json()
    assert body["destination"].get("number") != SECURITY and fake.requests[-1]["max_tokens"] == 20


def test_the_reason_is_bounded(llm_service, fake, prompt_path, tmp_path):
    from tests.conftest import ROOT

    reason_prompt = tmp_path / "reason.md"
    reason_prompt.write_text((ROOT / "prompts/route-with-reason.md").read_text())
    fake.default = answer("account_security", reason="The caller says the account was hacked.")
    llm_service(prompt=reason_prompt).post(transfer_request(TURNS))
    sent = fake.requests[-1]
    schema = sent["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["reason"]["maxLength"] == 160
    assert list(schema["properties"]) == ["reason", "destination"]
    assert sent["max_tokens"] >= 2 * 160


def test_a_server_refusing_length_keywords_gets_the_schema_without_them(llm_service, fake, tmp_path):
    from tests.conftest import ROOT

    reason_prompt = tmp_path / "reason.md"
    reason_prompt.write_text((ROOT / "prompts/route-with-reason.md").read_text())
    fake.length_keywords_supported = False
    fake.default = answer("account_security", reason="Hacked account.")
    service = llm_service(prompt=reason_prompt)
    assert service.post(transfer_request(TURNS)).json()["destination"]["number"] == SECURITY
    assert service.post(transfer_request(TURNS)).json()["destination"]["number"] == SECURITY
    schemas = [r["response_format"]["json_schema"]["schema"]["properties"]["reason"] for r in fake.requests]
    assert ["maxLength" in s for s in schemas] == [True, False, False]
    assert formats(fake) == ["json_schema"] * 3  # still strict json_schema: only the keyword went


def test_tokens_of_failed_attempts_are_counted(llm_service, fake, log_records):
    """Reported: evaluations showed 0 tokens for calls that each made three requests."""
    fake.cached_tokens = 256
    fake.script(answer("not_an_id"), content("I think it is billing"), answer("account_security"))
    service = llm_service()
    service.post(transfer_request(TURNS))
    log = decision_logs(log_records)[-1]
    assert log["attempts"] == 3 and log["outcome"] == "routed"
    assert log["prompt_tokens"] == 3 * 321 and log["cached_tokens"] == 3 * 256
    assert log["completion_tokens"] > 0
    text = service.client.get("/metrics").text
    assert 'switchboard_tokens_total{kind="prompt"} 963.0' in text
    assert 'switchboard_tokens_total{kind="cached_prompt"} 768.0' in text


def test_a_retry_after_an_invalid_answer_tells_the_model(llm_service, fake):
    """At temperature 0 the same question gets the same answer: the retry carries the refused answer and why."""
    fake.script(answer("sales_department"), answer("account_security"))
    body = llm_service().post(transfer_request(TURNS)).json()
    assert body["destination"]["number"] == SECURITY
    first, second = fake.requests
    assert len(second["messages"]) == len(first["messages"]) + 2
    assert "sales_department" in second["messages"][-2]["content"]
    assert second["messages"][-1]["role"] == "user" and "refused" in second["messages"][-1]["content"]
    assert "account_security" in second["messages"][-1]["content"]


def test_hedging_follows_the_models_own_latency_and_is_capped():
    """A fixed 1.5 s hedge doubled the load on a CPU server whose normal latency was about 1 s (18 of 30 calls
    hedged). The delay now follows the 95th percentile of recent latencies, and at most 5% are hedged."""
    hedging = Hedging(floor=0.5, max_share=0.05)
    assert hedging.delay() == 0.5
    for latency in [0.9 + 0.01 * (i % 20) for i in range(100)]:  # a model that takes 0.9-1.1 s
        hedging.observe(latency)
    assert 1.05 <= hedging.delay() <= 1.1
    hedges = 0
    for _ in range(200):
        hedging.attempt_started()
        hedges += hedging.take()
    assert hedges <= 1 + 0.05 * 200


def test_hedged_requests_stay_under_the_share(llm_service, fake, log_records):
    fake.default = answer("account_security", latency=0.15)
    service = llm_service(hedge_delay=0.05, hedge_max_share=0.1, timeout=3)
    for _ in range(30):
        assert service.post(transfer_request(TURNS)).json()["destination"]["number"] == SECURITY
    hedges = sum(log["hedges"] for log in decision_logs(log_records))
    assert 1 <= hedges <= 1 + 0.1 * 30, hedges  # before: every one of the 30 was hedged
    assert 30 <= len(fake.requests) <= 30 + hedges  # a hedge cancelled at once may never reach the server


def test_healthz_shows_what_was_learned(llm_service, fake):
    fake.json_schema_supported = False
    fake.logprobs_supported = False
    service = llm_service()
    before = service.client.get("/healthz").json()
    assert before["output_mode"] == "json_schema" and before["confidence"].startswith("not known")
    service.post(transfer_request(TURNS))
    after = service.client.get("/healthz").json()
    assert after["output_mode"] == "json_object_schema"
    assert re.match(r"unavailable: the server refused log-probabilities", after["confidence"])


def test_a_burst_of_refusals_steps_down_once(llm_service, fake):
    """Ten requests in flight when the server refuses json_schema: one step down (to json_object with the
    schema), not ten (which went all the way to plain text, for the life of the process)."""
    fake.json_schema_supported = False
    fake.logprobs_supported = False
    fake.default = answer("account_security", latency=0.3)
    service = llm_service(timeout=5)
    body = transfer_request(TURNS)
    with ThreadPoolExecutor(10) as pool:
        numbers = list(pool.map(lambda _: service.post(body).json()["destination"].get("number"), range(10)))
    assert numbers == [SECURITY] * 10  # no call failed on a refusal another request had already learned
    assert service.client.get("/healthz").json()["output_mode"] == "json_object_schema"
    assert {f for f in formats(fake)} == {"json_schema", "json_object+schema"}


def test_what_one_model_refuses_is_learned_for_that_model_only(llm_service, fake, log_records):
    """A fallback model on the same server that refuses log-probabilities must not switch them off for the
    primary (every score would be lost, and SWITCHBOARD_MIN_CONFIDENCE with them)."""
    fake.logprobs_refused_by = {"small-backup"}
    fake.script(answer("billing", latency=5), answer("account_security"))
    service = llm_service(timeout=3, hedge_delay=0.2, fallback_model="small-backup")
    service.post(transfer_request(TURNS))
    fake.script(answer("account_security", confidence=0.9))
    service.post(transfer_request(TURNS))
    assert fake.requests[-1]["model"] == "gpt-4.1-mini" and fake.requests[-1]["logprobs"] is True
    assert decision_logs(log_records)[-1]["score"] is not None
