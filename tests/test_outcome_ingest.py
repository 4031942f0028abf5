"""The service ingests Vapi's outcome messages: answered 200 {} at once, events kept, each decision joined to what
happened next in the background, once (resends change nothing), within a bound on what is in flight.

The real app on loopback, the offline router (no model needed), the sample catalogue in a temp folder, and the
store's embedded SQLite file in the test's own data folder (conftest sets SWITCHBOARD_DATA_DIR).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

from app.service import outcomes as outcomes_mod
from app.store import CallRecord
from tests.conftest import Service
from tests.conftest import poll as shared_poll
from tests.test_outcomes import BILLING, report, transfer_update
from tests.vapi_payloads import handoff_request, transfer_request

WAIT = 20.0  # seconds to wait for the store's thread and a background join: generous, for a busy machine
TECH = {"type": "number", "number": "+14155550177"}
BILLING_TURNS = [("bot", "How can I help?"), ("user", "I was charged twice this month and I want a refund")]
TECH_TURNS = [("bot", "Anything else?"), ("user", "my internet keeps dropping and the router light is blinking red")]


poll = functools.partial(shared_poll, timeout=WAIT)  # tests.conftest.poll, with this file's patience


def record(service: Service, call_id: str) -> CallRecord:
    return service.state.store.call_sync(call_id)  # type: ignore[no-any-return]


def decide(service: Service, turns: list[tuple[str, str]], call_id: str, answered: str,
           handoff: bool = False) -> str:
    """A destination request answered with `answered`; its decision row once the store has it (its id)."""
    body = handoff_request(turns, {"destination": "billing"}, call_id=call_id) if handoff else \
        transfer_request(turns, call_id=call_id)
    before = len(record(service, call_id).decisions)
    response = service.post(body)
    assert response.status_code == 200
    rows = poll(lambda: record(service, call_id).decisions[before:], f"the decision of {call_id} in the store")
    assert rows[0].answered == answered
    return str(rows[0].decision_id)


def outcome_of(service: Service, call_id: str, decision_id: str) -> str:
    return next(d.outcome for d in record(service, call_id).decisions if d.decision_id == decision_id)


def wait_outcome(service: Service, call_id: str, decision_id: str, outcome: str) -> None:
    poll(lambda: outcome_of(service, call_id, decision_id) == outcome, f"{decision_id} to be {outcome}")


def settled(service: Service) -> dict[tuple[str, str], float]:
    """switchboard_transfer_outcomes_total, by (destination, outcome)."""
    found = {}
    for line in service.client.get("/metrics").text.splitlines():
        if line.startswith("switchboard_transfer_outcomes_total{"):
            labels, value = line[len("switchboard_transfer_outcomes_total{"):].split("} ")
            parts = dict(p.split("=", 1) for p in labels.split(","))
            found[(parts["destination"].strip('"'), parts["outcome"].strip('"'))] = float(value)
    return found


def metric(service: Service, name: str) -> float:
    for line in service.client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def post_outcome(service: Service, message: dict[str, Any]) -> None:
    response = service.post({"message": message})
    assert response.status_code == 200 and response.json() == {}


def quiet(service: Service) -> None:
    """Every outcome message posted so far ingested and joined."""
    poll(lambda: not service.state.outcomes._joins and not service.state.outcomes._ingesting, "joins to finish")
    assert service.state.store.flush_sync(WAIT)


def test_a_decision_then_its_end_of_call_report_sets_the_outcome_and_the_metric(service_factory):
    service = service_factory(router="offline")
    decision = decide(service, BILLING_TURNS, "call-eocr", "billing")
    row = record(service, "call-eocr").decisions[0]
    assert row.destination_keys == ("tel:14155550142;ext=204",) and row.message_type == "transfer"
    assert row.prompt_hash and row.latency_ms is not None and row.request_json is None
    # the catalogue named as the decision log line, /healthz and the metrics name it: one hash, not a second kind
    assert row.catalogue_hash == service.state.engine.routing.catalogue_hash != ""
    assert row.outcome == "pending"
    now = time.time()
    post_outcome(service, report("call-eocr", "assistant-forwarded-call", at=now + 30, destination=BILLING,
                                 transfers=[(BILLING, "connected")]))
    wait_outcome(service, "call-eocr", decision, "reached")
    assert settled(service) == {("billing", "reached"): 1.0}
    kept = record(service, "call-eocr").events
    assert {e.kind for e in kept} == {"report", "transfer"}


def test_a_report_resent_twice_is_kept_and_counted_once(service_factory):
    service = service_factory(router="offline")
    decision = decide(service, BILLING_TURNS, "call-resent", "billing")
    message = report("call-resent", "call.forwarding.no-answer", at=time.time() + 20, destination=BILLING,
                     transfers=[(BILLING, "no-answer")])
    post_outcome(service, message)
    wait_outcome(service, "call-resent", decision, "unreachable")
    events = len(record(service, "call-resent").events)
    post_outcome(service, message)
    post_outcome(service, dict(message, cost=0.05))  # a resend may differ in fields the join does not read
    quiet(service)
    assert len(record(service, "call-resent").events) == events
    assert settled(service) == {("billing", "unreachable"): 1.0}
    assert metric(service, 'switchboard_outcome_messages_total{result="ingested"}') == 3.0


def test_a_report_before_the_transfer_update_joins_the_same(service_factory):
    """Vapi's messages may arrive out of order: the report (saying nothing of the handoff) first, then the
    transfer-update that happened before it. The outcome follows Vapi's timestamps, not arrival."""
    service = service_factory(router="offline")
    decision = decide(service, BILLING_TURNS, "call-late-update", "billing", handoff=True)
    now = time.time()
    post_outcome(service, report("call-late-update", "customer-ended-call", at=now + 60))
    wait_outcome(service, "call-late-update", decision, "unknown")
    post_outcome(service, transfer_update("call-late-update", at=now + 1, destination=
                                          {"type": "assistant", "assistantName": "Billing Assistant"},
                                          to={"name": "Billing Assistant"}))
    wait_outcome(service, "call-late-update", decision, "reached")
    quiet(service)
    assert settled(service) == {("billing", "reached"): 1.0}  # unknown is not a settled outcome


def test_a_call_with_two_decisions(service_factory):
    """Billing was reached, then the caller asked again and went to tech support: billing was the wrong route."""
    service = service_factory(router="offline")
    first = decide(service, BILLING_TURNS, "call-two", "billing")
    second = decide(service, BILLING_TURNS + TECH_TURNS[1:], "call-two", "tech_support")
    post_outcome(service, report("call-two", "assistant-forwarded-call", at=time.time() + 60, destination=TECH,
                                 transfers=[(BILLING, "connected"), (TECH, "completed")]))
    wait_outcome(service, "call-two", first, "rerouted")
    wait_outcome(service, "call-two", second, "reached")
    quiet(service)
    assert settled(service) == {("billing", "rerouted"): 1.0, ("tech_support", "reached"): 1.0}


def test_messages_of_calls_without_a_decision_are_kept_and_join_nothing(service_factory):
    service = service_factory(router="offline")
    post_outcome(service, report("call-nobody", at=time.time(), transfers=[(BILLING, "connected")]))
    quiet(service)
    assert len(record(service, "call-nobody").events) == 2 and settled(service) == {}


def test_outcome_messages_are_authenticated_like_the_webhook(service_factory):
    service = service_factory(router="offline", secret="s3cret")
    response = service.post({"message": report("call-auth", at=time.time())})
    assert response.status_code == 401
    time.sleep(0.3)
    assert record(service, "call-auth").events == ()


def test_a_flood_of_reports_is_bounded_and_never_costs_an_answer(service_factory, monkeypatch, log_records):
    """At most MAX_IN_FLIGHT messages in flight: beyond, each is answered 200 {} and dropped, counted, and logged
    once per interval, never queued without limit; destination requests are answered meanwhile."""
    monkeypatch.setattr(outcomes_mod, "MAX_IN_FLIGHT", 3)
    gate = asyncio.Event()
    held: list[str] = []

    async def slow_join(self: Any, batch: Any) -> None:
        held.extend(call_id for call_id, _ in batch)
        await gate.wait()

    monkeypatch.setattr(outcomes_mod.Outcomes, "join_batch", slow_join)
    monkeypatch.setattr(outcomes_mod, "JOIN_BATCH", 1)
    service = service_factory(router="offline")
    for n in range(10):
        post_outcome(service, report(f"call-flood-{n}", at=time.time()))
    poll(lambda: len(held) == 3, "three joins held")
    assert service.post(transfer_request(BILLING_TURNS, call_id="call-during")).json()["destination"]
    assert metric(service, 'switchboard_outcome_messages_total{result="dropped"}') == 7.0
    assert metric(service, 'switchboard_outcome_messages_total{result="ingested"}') == 3.0
    assert [r.getMessage() for r in log_records].count("outcome_messages_dropped") == 1
    loop = next(iter(service.state.outcomes._joins)).get_loop()  # the gate is the server loop's
    loop.call_soon_threadsafe(gate.set)
    poll(lambda: not service.state.outcomes._joins, "the held joins to end")
    post_outcome(service, report("call-after", at=time.time()))
    poll(lambda: "call-after" in held, "a message after the flood to be ingested")


def test_with_the_store_off_the_service_still_answers(service_factory, tmp_path):
    service = service_factory(router="offline", database_url="none")
    assert service.post(transfer_request(BILLING_TURNS, call_id="call-off")).json()["destination"]
    post_outcome(service, report("call-off", at=time.time()))
    assert service.client.get("/healthz").json()["store"] == {"kind": "none", "connected": False, "buffered": 0}
    assert service.state.outcomes is None and not (tmp_path / "data" / "switchboard.db").exists()


def test_recorded_requests_go_into_the_store_as_the_recorder_writes_them(service_factory, tmp_path):
    service = service_factory(router="offline", record_dir=tmp_path / "rec")
    decide(service, BILLING_TURNS, "call-rec", "billing")
    row = record(service, "call-rec").decisions[0]
    lines = [line for f in (tmp_path / "rec").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert row.request_json is not None and row.request_json == lines[0]
    assert "+14155559876" not in row.request_json  # the caller's number, redacted as in the file


def test_health_and_metrics_show_the_store(service_factory):
    service = service_factory(router="offline")
    decide(service, BILLING_TURNS, "call-health", "billing")
    time.sleep(1.1)  # /healthz reads the store's state at most once a second
    store = service.client.get("/healthz").json()["store"]
    assert store["kind"] == "sqlite" and store["connected"] is True and store["buffered"] == 0
    assert metric(service, 'switchboard_store_rows_total{result="written"}') >= 1.0
    assert metric(service, "switchboard_store_connected") == 1.0


def test_the_decision_log_and_answer_are_unchanged_by_a_store_that_drops(service_factory, log_records):
    """A full buffer costs rows, never answers."""
    service = service_factory(router="offline", store_buffer=100)
    store = service.state.store
    store.capacity = 0  # every row is dropped from now on
    assert service.post(transfer_request(BILLING_TURNS, call_id="call-drop")).json()["destination"]
    poll(lambda: store.stats().dropped >= 1, "the row to be dropped")
    assert any(r.getMessage() == "store_rows_dropped" and r.levelno == logging.WARNING for r in log_records)


def test_messages_of_one_call_share_one_waiting_join(service_factory, monkeypatch):
    """A join per message held a slot each: a flood of 3,000 messages a second dropped 86% of them, the callers' own
    reports among them (bench/chaos.py report-flood). A call's messages now join the join already waiting for it."""
    monkeypatch.setattr(outcomes_mod, "MAX_IN_FLIGHT", 3)
    gate = asyncio.Event()
    held: list[tuple[str, int]] = []

    async def slow_join(self: Any, batch: Any) -> None:
        held.extend((call_id, len(received)) for call_id, received in batch)
        await gate.wait()

    monkeypatch.setattr(outcomes_mod.Outcomes, "join_batch", slow_join)
    service = service_factory(router="offline")
    for n in range(20):
        post_outcome(service, report("call-busy", at=time.time() + n))
    poll(lambda: len(held) >= 1, "a join held")
    assert metric(service, 'switchboard_outcome_messages_total{result="dropped"}') == 0.0
    assert metric(service, 'switchboard_outcome_messages_total{result="ingested"}') == 20.0
    loop = next(iter(service.state.outcomes._joins)).get_loop()
    loop.call_soon_threadsafe(gate.set)
    poll(lambda: not service.state.outcomes._joins, "the joins to end")
    assert {call for call, _ in held} == {"call-busy"}
    assert len(held) <= 3 and sum(n for _, n in held) == 20  # 20 messages, a few joins, every event in one of them
