"""Every failure path answers in time (budget + 100 ms, measured here with a margin for a loaded machine),
with an error or the configured fallback, and never with anything the model wrote."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import decision_logs
from tests.fake_openai import HANG, MALFORMED, REFUSAL, answer, content, status
from tests.vapi_payloads import transfer_request

TURNS = [("bot", "Brightline, how can I help?"), ("user", "My internet keeps dropping every evening.")]
BUDGET = 1.0
# The contract is budget + 100 ms; a shared CI machine can stall a thread, so the test allows 400 ms more.
SLACK = 0.5


def no_fallback(catalogue_path):
    data = json.loads(catalogue_path.read_text())
    data.pop("fallback")
    catalogue_path.write_text(json.dumps(data))


def timed_post(service, body):
    t0 = time.monotonic()
    response = service.post(body)
    return response, time.monotonic() - t0


@pytest.mark.parametrize(("script", "failure", "outcome"), [
    ([HANG], "timeout", "timeout"),
    ([status(500)] * 5, "server_error", "llm_error"),
    ([status(503)] * 5, "server_error", "llm_error"),
    ([MALFORMED] * 5, "bad_response", "llm_error"),
    ([REFUSAL] * 5, "invalid_answer", "invalid_answer"),
    ([content("I think billing is best")] * 5, "invalid_answer", "invalid_answer"),
    ([answer("not_an_id")] * 5, "invalid_answer", "invalid_answer"),
    ([status(401)], "auth", "llm_error"),
    ([answer("billing", latency=3.0)], "timeout", "timeout"),
])
def test_failure_answers_an_error_in_time(llm_service, fake, catalogue_path, log_records, script, failure, outcome):
    no_fallback(catalogue_path)
    fake.script(*script)
    service = llm_service(timeout=BUDGET)
    response, elapsed = timed_post(service, transfer_request(TURNS))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"error"}, body
    assert elapsed < BUDGET + SLACK, elapsed
    log = decision_logs(log_records)[-1]
    assert log["outcome"] == outcome
    assert log["failure"] == failure or failure in (log["errors"] or [])


def test_failure_answers_the_fallback_in_time(llm_service, fake):
    fake.script(HANG)
    response, elapsed = timed_post(llm_service(timeout=BUDGET), transfer_request(TURNS))
    assert response.json()["destination"]["sipUri"] == "sip:frontdesk@pbx.brightline.example"
    assert elapsed < BUDGET + SLACK


def test_transient_errors_are_retried_then_routed(llm_service, fake, log_records):
    fake.script(status(500), MALFORMED, answer("tech_support"))
    body = llm_service(timeout=3).post(transfer_request(TURNS)).json()
    assert body["destination"]["number"] == "+14155550177"
    log = decision_logs(log_records)[-1]
    assert log["attempts"] == 3 and log["outcome"] == "routed"
    assert log["errors"] == ["server_error", "bad_response"]


def test_429_retry_after_is_honoured_when_it_fits(llm_service, fake, log_records):
    fake.script(status(429, headers={"retry-after-ms": "300"}), answer("tech_support"))
    t0 = time.monotonic()
    body = llm_service(timeout=3).post(transfer_request(TURNS)).json()
    assert body["destination"]["number"] == "+14155550177"
    assert time.monotonic() - t0 >= 0.3


def test_429_retry_after_that_does_not_fit_stops_at_once(llm_service, fake, catalogue_path, log_records):
    no_fallback(catalogue_path)
    fake.script(status(429, headers={"retry-after": "30"}), answer("tech_support"))
    response, elapsed = timed_post(llm_service(timeout=2), transfer_request(TURNS))
    assert response.json() == {"error": "routing model unavailable"}
    assert elapsed < 1.0  # did not sleep into the budget for nothing
    assert decision_logs(log_records)[-1]["attempts"] == 1


def test_bad_request_is_not_retried(llm_service, fake, log_records):
    fake.script(status(404), answer("billing"))
    llm_service().post(transfer_request(TURNS))
    assert decision_logs(log_records)[-1]["attempts"] == 1


def test_model_server_down_answers_in_time(service_factory, catalogue_path, log_records):
    no_fallback(catalogue_path)
    service = service_factory(openai_base_url="http://127.0.0.1:9/v1", timeout=BUDGET)  # nothing listens
    response, elapsed = timed_post(service, transfer_request(TURNS))
    assert response.json() == {"error": "routing model unavailable"}
    assert elapsed < BUDGET + SLACK
    assert decision_logs(log_records)[-1]["failure"] == "connection"


@pytest.mark.parametrize("policy", ["error", "fallback", "offline"])
def test_deadline_holds_in_every_failure_mode(llm_service, fake, policy):
    fake.script(HANG)
    service = llm_service(timeout=BUDGET, on_llm_failure=policy)
    response, elapsed = timed_post(service, transfer_request(TURNS))
    assert response.status_code == 200 and elapsed < BUDGET + SLACK


def test_offline_policy_rescues_with_a_confident_choice(llm_service, fake, log_records):
    fake.script(HANG)
    service = llm_service(timeout=BUDGET, on_llm_failure="offline")
    body = service.post(transfer_request(TURNS)).json()
    assert body["destination"]["number"] == "+14155550177"  # tech_support, by the offline router
    log = decision_logs(log_records)[-1]
    assert log["outcome"] == "fallback" and log["rescued_by"] == "offline" and log["failure"] == "timeout"


def test_offline_policy_not_confident_uses_the_fallback(llm_service, fake, log_records):
    fake.script(status(500), status(500), status(500))
    turns = [("bot", "Hi, how can I help?"), ("user", "What's the weather like on Mars?")]
    body = llm_service(on_llm_failure="offline").post(transfer_request(turns)).json()
    assert body["destination"]["sipUri"] == "sip:frontdesk@pbx.brightline.example"
    assert decision_logs(log_records)[-1]["rescued_by"] == "fallback"


def test_json_schema_unsupported_steps_down_to_json_object(llm_service, fake):
    fake.json_schema_supported = False
    service = llm_service()
    fake.script(answer("tech_support"), answer("tech_support"))
    assert service.post(transfer_request(TURNS)).json()["destination"]["number"] == "+14155550177"
    formats = [r.get("response_format", {}).get("type") for r in fake.requests]
    assert formats == ["json_schema", "json_object"]
    service.post(transfer_request(TURNS))
    assert fake.requests[-1]["response_format"]["type"] == "json_object"  # remembered: no second refusal


def test_text_mode_parses_a_plain_id(llm_service, fake):
    fake.script(content("tech_support"))
    service = llm_service(output_mode="text")
    assert service.post(transfer_request(TURNS)).json()["destination"]["number"] == "+14155550177"
    assert "response_format" not in fake.requests[-1]


def test_hedged_request_wins_when_the_first_is_slow(llm_service, fake, log_records):
    fake.script(answer("billing", latency=5), answer("tech_support"))
    service = llm_service(timeout=3, hedge_delay=0.3)
    t0 = time.monotonic()
    body = service.post(transfer_request(TURNS)).json()
    assert body["destination"]["number"] == "+14155550177"
    assert time.monotonic() - t0 < 2
    log = decision_logs(log_records)[-1]
    assert log["hedges"] == 1 and log["attempts"] == 1
    assert len(fake.requests) == 2


def test_hedge_goes_to_the_fallback_model(llm_service, fake):
    fake.script(answer("billing", latency=5), answer("tech_support"))
    llm_service(timeout=3, hedge_delay=0.2, fallback_model="small-backup").post(transfer_request(TURNS))
    assert [r["model"] for r in fake.requests] == ["gpt-4.1-mini", "small-backup"]


def test_circuit_breaker_opens_and_answers_at_once(llm_service, fake, catalogue_path, log_records):
    no_fallback(catalogue_path)
    fake.default = status(500)
    service = llm_service(timeout=2, breaker_failures=3, breaker_cooldown=0.5, max_attempts=1)
    for _ in range(3):
        service.post(transfer_request(TURNS))
    calls = len(fake.requests)
    response, elapsed = timed_post(service, transfer_request(TURNS))
    assert response.json() == {"error": "routing model unavailable"}
    assert len(fake.requests) == calls and elapsed < 0.3  # no model call while open
    assert decision_logs(log_records)[-1]["failure"] == "breaker_open"
    assert "switchboard_breaker_state 2.0" in service.client.get("/metrics").text
    time.sleep(0.6)
    fake.default = answer("tech_support")
    assert "destination" in service.post(transfer_request(TURNS)).json()  # the probe closes it
    assert service.state.runtime.breaker.state == "closed"


def test_an_unexpected_router_error_still_answers(service_factory, log_records):
    service = service_factory(router="offline")

    async def broken(query, timeout, **_):
        raise RuntimeError("a bug")

    service.state.engine.decider.router.choose = broken
    body = service.post(transfer_request(TURNS)).json()
    assert body["destination"]["sipUri"] == "sip:frontdesk@pbx.brightline.example"  # the catalogue's fallback
    assert decision_logs(log_records)[-1]["failure"] == "internal"
    assert any(r.getMessage() == "router_crashed" and r.exc_info for r in log_records)


def test_fallback_outside_an_assistants_subset_is_not_answered(llm_service, fake, catalogue_path):
    data = json.loads(catalogue_path.read_text())
    data["assistants"]["Billing Only"] = ["billing"]
    catalogue_path.write_text(json.dumps(data))
    fake.script(HANG)
    service = llm_service(timeout=BUDGET)
    body = service.post(transfer_request(TURNS, assistant={"name": "Billing Only"})).json()
    assert body == {"error": "routing timed out"}  # front_desk is the fallback, but not this assistant's to use
    fake.script(answer("none"))
    assert service.post(transfer_request(TURNS, assistant={"name": "Billing Only"})).json() == {
        "error": "no suitable destination"}
