"""Vapi's handoff tool with a dynamic destination: handoff-destination-request, answered with the catalogue
entry's `handoff` object, on the same decision path as transfers. And earlier transfers in the call: a
destination that just failed is not offered again."""

from __future__ import annotations

import json

import pytest

from app.catalogue.destinations import CatalogueError, parse
from tests.conftest import ROOT, decision_logs
from tests.fake_openai import HANG, answer
from tests.vapi_payloads import earlier_transfer, handoff_request, transfer_request
from tests.vapi_sdk import handoff_request_sdk

CATALOGUE = json.loads((ROOT / "destinations.json").read_text())
HANDOFF = {e["id"]: e["handoff"] for e in CATALOGUE["destinations"] if "handoff" in e}
BILLING = [("bot", "Brightline, how can I help?"), ("user", "I was charged twice on my bill this month.")]


def enum(request):
    return request["response_format"]["json_schema"]["schema"]["properties"]["destination"]["enum"]


def test_handoff_is_answered_with_the_entrys_handoff(llm_service, fake, log_records):
    """Before: Switchboard answered {} and the handoff failed."""
    fake.script(answer("billing"))
    service = llm_service()
    response = service.post(handoff_request(BILLING, {"destination": "billing team", "reason": "double charge"}))
    assert response.status_code == 200
    assert response.json() == {"destination": HANDOFF["billing"]}
    # only entries with a handoff are offered, and the tool's arguments are a hint, never the answer
    assert enum(fake.requests[-1]) == [*HANDOFF, "none"]
    assert "Hint from the voice assistant (a suggestion, not the answer): destination: billing team, reason: " \
           "double charge" in fake.requests[-1]["messages"][-1]["content"]
    log = decision_logs(log_records)[-1]
    assert log["type"] == "handoff-destination-request" and log["answered"] == "billing"
    metrics = service.client.get("/metrics").text
    assert 'switchboard_decisions_total{destination="billing",kind="handoff",outcome="routed"} 1.0' in metrics
    assert 'switchboard_requests_total{status="200",type="handoff-destination-request"} 1.0' in metrics


def test_transfers_choose_only_entries_with_a_destination(llm_service, fake, catalogue_path):
    data = json.loads(catalogue_path.read_text())
    data["destinations"].append({"id": "concierge", "description": "Premium customers' concierge assistant.",
                                 "handoff": {"type": "assistant", "assistantName": "Concierge"}})
    catalogue_path.write_text(json.dumps(data))
    fake.default = answer("billing")
    service = llm_service()
    service.post(transfer_request(BILLING))
    assert "concierge" not in enum(fake.requests[-1])
    service.post(handoff_request(BILLING, {}))
    assert "concierge" in enum(fake.requests[-1]) and "sales" not in enum(fake.requests[-1])


def test_a_handoff_the_model_cannot_make_uses_the_failure_policy(llm_service, fake, log_records):
    fake.script(HANG)
    body = llm_service(timeout=1).post(handoff_request(BILLING, {})).json()
    assert body == {"destination": HANDOFF["front_desk"]}  # the fallback's handoff
    assert decision_logs(log_records)[-1]["rescued_by"] == "fallback"


def test_a_handoff_with_no_handoff_entries_is_an_error(service_factory, catalogue_path):
    data = json.loads(catalogue_path.read_text())
    for entry in data["destinations"]:
        entry.pop("handoff", None)
    catalogue_path.write_text(json.dumps(data))
    body = service_factory(router="offline").post(handoff_request(BILLING, {})).json()
    assert body == {"error": "no handoff destination left to offer: the catalogue has none for this assistant"}


def test_offline_router_and_per_assistant_subsets_apply_to_handoffs(service_factory):
    service = service_factory(router="offline")
    # "Brightline Sales Line" may use sales, billing, front_desk, spanish; of those billing has a handoff
    body = handoff_request(BILLING, {}, assistant={"name": "Brightline Sales Line"})
    assert service.post(body).json() == {"destination": HANDOFF["billing"]}


def test_an_sdk_built_handoff_request(service_factory):
    body = handoff_request_sdk(BILLING, parameters={"reason": "the caller was charged twice"})
    response = service_factory(router="offline").post(body)  # the SDK's response type checks the answer
    assert response.json() == {"destination": HANDOFF["billing"]}


def test_handoff_recorded_and_evaluated(service_factory, tmp_path):
    from tests.test_recording_and_labelling import recorded

    service = service_factory(router="offline", record_dir=tmp_path / "rec")
    service.post(handoff_request(BILLING, {"reason": "double charge, call me on 415 555 0143"}))
    row = json.loads(recorded(tmp_path / "rec")[0].read_text().splitlines()[0])
    assert row["decision"]["kind"] == "handoff"
    assert row["payload"]["message"]["parameters"] == {"reason": "double charge, call me on <redacted>"}


@pytest.mark.parametrize(("handoff", "words"), [
    ({"type": "dynamic", "server": {"url": "https://x"}}, "'dynamic' would ask this service again"),
    ({"type": "assistant", "assistantNmae": "Billing"},
     "unknown field 'assistantNmae' (did you mean 'assistantName'?)"),
    ({"type": "assistant", "assistantName": "B", "contextEngineeringPlan": {"type": "lastNMessages"}},
     "'maxMessages' is a required property"),
])
def test_broken_handoffs_are_refused_naming_the_field(handoff, words):
    data = json.loads(json.dumps(CATALOGUE))
    data["destinations"][0]["handoff"] = handoff
    with pytest.raises(CatalogueError) as err:
        parse(data)
    assert "destinations[0] (id 'billing'): handoff" in str(err.value) and words in str(err.value)


def test_an_entry_needs_a_destination_or_a_handoff():
    data = json.loads(json.dumps(CATALOGUE))
    del data["destinations"][2]["destination"]
    with pytest.raises(CatalogueError, match=r"destinations\[2\] \(id 'sales'\): needs a \"destination\""):
        parse(data)


# -- earlier transfers in this call ------------------------------------------------------------------------

def test_a_destination_that_just_failed_is_not_offered(llm_service, fake, log_records):
    """Reported: a caller whose transfer to billing went unanswered was sent to billing again."""
    fake.script(answer("front_desk"))
    failed = [earlier_transfer({"type": "number", "number": "+14155550142"}, "no-answer")]
    body = llm_service().post(transfer_request(BILLING, transfers=failed)).json()
    assert body["destination"]["sipUri"] == "sip:frontdesk@pbx.brightline.example"
    assert "billing" not in enum(fake.requests[-1])
    assert "could not be reached at: billing (the transfer ended no-answer)" in \
        fake.requests[-1]["messages"][-1]["content"]
    assert fake.requests[-1]["messages"][0]["content"].count("- billing:") == 1  # the cached system part stays
    assert decision_logs(log_records)[-1]["unreachable"] == ["billing (no-answer)"]


@pytest.mark.parametrize(("destination", "status", "left_out"), [
    ({"type": "number", "number": "+1 (415) 555-0142"}, "busy", "billing"),
    ({"type": "sip", "sipUri": "SIP:Retention@PBX.brightline.example"}, "failed", "cancellations"),
    ({"type": "assistant", "assistantName": "Outage Status"}, "voicemail", "outages"),
    ({"type": "number", "number": "+14155550142"}, "connected", None),
    ({"type": "number", "number": "+14155550142"}, "completed", None),
    ({"type": "number", "number": "+14155550142"}, "cancelled", None),
])
def test_matching_earlier_transfers(service_factory, log_records, destination, status, left_out):
    service = service_factory(router="offline")
    service.post(transfer_request(BILLING, transfers=[earlier_transfer(destination, status)]))
    log = decision_logs(log_records)[-1]
    assert log["unreachable"] == ([f"{left_out} ({status})"] if left_out else None)
    if left_out == "billing":
        assert log["answered"] != "billing"


def test_nothing_left_is_answered_by_the_failure_policy(service_factory, catalogue_path):
    data = json.loads(catalogue_path.read_text())
    data["assistants"]["Billing Only"] = ["billing"]
    catalogue_path.write_text(json.dumps(data))
    failed = [earlier_transfer({"type": "number", "number": "+14155550142"}, "no-answer")]
    body = service_factory(router="offline").post(
        transfer_request(BILLING, transfers=failed, assistant={"name": "Billing Only"})).json()
    assert body == {"error": "no transfer destination left to offer: every allowed one failed earlier in this call"}


def test_the_fallback_is_not_answered_when_it_just_failed(llm_service, fake):
    fake.script(HANG)
    failed = [earlier_transfer({"type": "sip", "sipUri": "sip:frontdesk@pbx.brightline.example"}, "no-answer")]
    body = llm_service(timeout=1).post(transfer_request(BILLING, transfers=failed)).json()
    assert body == {"error": "routing timed out"}


def test_extensions_tell_destinations_on_one_number_apart(service_factory, catalogue_path, log_records):
    data = json.loads(catalogue_path.read_text())
    sales = next(d for d in data["destinations"] if d["id"] == "sales")
    sales["destination"].update({"number": "+14155550142", "extension": "310"})  # billing's number, another ext
    catalogue_path.write_text(json.dumps(data))
    service = service_factory(router="offline")
    failed = [earlier_transfer({"type": "number", "number": "+14155550142", "extension": "204"}, "no-answer")]
    service.post(transfer_request(BILLING, transfers=failed))
    assert decision_logs(log_records)[-1]["unreachable"] == ["billing (no-answer)"]  # not sales on ext 310


def test_a_later_transfer_that_went_through_clears_a_failure(service_factory, log_records):
    number = {"type": "number", "number": "+14155550142", "extension": "204"}
    transfers = [earlier_transfer(number, "busy"), earlier_transfer(number, "completed")]
    service_factory(router="offline").post(transfer_request(BILLING, transfers=transfers))
    log = decision_logs(log_records)[-1]
    assert log["unreachable"] is None and log["answered"] == "billing"
