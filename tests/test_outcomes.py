"""Vapi's outcome messages (end-of-call-report, status-update, transfer-update) and the join that gives each
decision its outcome: reached, unreachable, hung_up, rerouted, pending, or unknown.

The Vapi vocabulary checked here (transfer statuses, the transfer-related endedReason values) was copied from
Vapi's openapi.json (ServerMessageEndOfCallReport.endedReason, TransferArtifact.status) into
app/vapi/outcomes.py; the SDK-built messages below check the wire format against Vapi's own Python SDK
(vapi-server-sdk 3.0.0), which the first test to use it pays about 9 s to import.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.catalogue.destinations import parse as parse_catalogue
from app.dataset.outcomes import (
    HUNG_UP,
    MAX_CALL_EVENTS,
    OUTCOMES,
    PENDING,
    REACHED,
    REROUTED,
    UNKNOWN,
    UNREACHABLE,
    Counts,
    _deduped,
    decided,
    hour_label,
    hour_of_week,
    join,
    join_call,
    summarise,
)
from app.vapi.messages import parse_json
from app.vapi.outcomes import (
    ENDED_HUNG_UP,
    ENDED_REACHED,
    ENDED_UNREACHABLE,
    KEY_CHARS,
    MAX_ITEMS,
    TRANSFER_HUNG_UP,
    TRANSFER_REACHED,
    TRANSFER_UNREACHABLE,
    classify,
    destination_key,
    destination_keys,
    outcome_events,
    parse_outcome,
)
from tests.vapi_sdk import _check_tree, wire

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = parse_catalogue(json.loads((ROOT / "destinations.json").read_text()))

T0 = 1764000006.18  # examples/transfer-request.json's timestamp (Monday 24 Nov 2025, 16:00:06 UTC)
RECEIVED = T0 + 10_000.0  # when a message without a timestamp is taken to have arrived

BILLING = {"type": "number", "number": "+14155550142", "extension": "204"}
BILLING_OTHER_DESK = {"type": "number", "number": "+14155550142", "extension": "205"}
SALES = {"type": "number", "number": "+14155550123"}
RETENTION = {"type": "sip", "sipUri": "sip:retention@pbx.brightline.example"}
OUTAGES = {"type": "assistant", "assistantName": "Outage Status"}
ELSEWHERE = {"type": "number", "number": "+14155550999"}  # a fallback plan's number, no decision's


def ms(seconds: float) -> int:
    return round(seconds * 1000)


# --- wire-form builders (what Vapi posts, unwrapped) ---------------------------------------------------------


def report(call: str = "call-1", reason: str = "customer-ended-call", *, at: float = T0 + 90,
           destination: dict[str, Any] | None = None, transfers: list[tuple[dict[str, Any], str]] = (),
           activations: list[dict[str, str]] = (), chat: bool = False) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "end-of-call-report", "endedReason": reason, "timestamp": ms(at),
        "artifact": {"transfers": [{"destination": d, "mode": "blind-transfer", "status": s} for d, s in transfers],
                     "assistantActivations": list(activations)},
        "analysis": {"summary": "A call."},
        "chat" if chat else "call": {"id": call},
    }
    if destination is not None:
        message["destination"] = destination
    return message


def status(call: str, state: str, *, at: float, destination: dict[str, Any] | None = None,
           reason: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "status-update", "status": state, "timestamp": ms(at), "call": {"id": call}}
    if destination is not None:
        message["destination"] = destination
    if reason is not None:
        message["endedReason"] = reason
    return message


def transfer_update(call: str, *, at: float, destination: dict[str, Any],
                    to: dict[str, str] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "transfer-update", "timestamp": ms(at), "destination": destination,
                               "call": {"id": call}}
    if to is not None:
        message["toAssistant"] = to
        message["fromAssistant"] = {"name": "Brightline Front Line"}
    return message


def events(*messages: dict[str, Any]) -> list[Any]:
    return [e for m in messages for e in outcome_events(m, RECEIVED)]


def outcomes(decisions: list[Any], *messages: dict[str, Any]) -> dict[str, str]:
    return {j.decision.decision_id: j.outcome for j in join(decisions, events(*messages))}


def d(decision_id: str, destination: dict[str, Any] | None, *, at: float = T0, call: str = "call-1",
      entry: str = "billing") -> Any:
    return decided(decision_id, call, at, entry if destination is not None else None, destination)


# --- destination keys ----------------------------------------------------------------------------------------


def test_number_keys_ignore_how_the_number_is_written_but_not_the_extension():
    assert destination_key(BILLING) == "tel:14155550142;ext=204"
    assert destination_key({"type": "number", "number": "+1 (415) 555-0142", "extension": " 204"}) == \
        destination_key(BILLING)
    assert destination_key(BILLING_OTHER_DESK) != destination_key(BILLING)
    assert destination_key({"type": "number", "number": "+14155550142"}) == "tel:14155550142"  # the main line
    assert destination_key({"type": "number", "number": "+14155550142"}) != destination_key(BILLING)


@pytest.mark.parametrize("written", ["sip:retention@pbx.brightline.example", "SIP:retention@PBX.Brightline.EXAMPLE",
                                     "sip:retention@pbx.brightline.example;transport=tls",
                                     "<sip:retention@pbx.brightline.example?X-Queue=retention>"])
def test_sip_scheme_and_host_are_case_insensitive_and_params_are_not_the_destination(written):
    assert destination_key({"type": "sip", "sipUri": written}) == "sip:retention@pbx.brightline.example"


def test_sip_user_part_is_case_sensitive():
    assert destination_key({"type": "sip", "sipUri": "sip:Retention@pbx.brightline.example"}) != \
        destination_key(RETENTION)


def test_assistant_keys_by_name_and_id():
    assert destination_keys(OUTAGES) == ("assistant:outage status",)
    both = {"type": "assistant", "assistantName": "Billing  Assistant", "assistantId": "ASST-Billing"}
    assert destination_keys(both) == ("assistant:billing assistant", "assistant-id:asst-billing")
    assert destination_keys({"type": "squad", "squadId": "sq-1", "entryAssistantName": "Triage"}) == \
        ("assistant:triage", "squad-id:sq-1")


@pytest.mark.parametrize("value", [None, "sip:x@y", [], {}, {"type": "number", "number": 14155550142},
                                   {"type": "number", "number": "no digits"}, {"type": "sip", "sipUri": "sip:user@"}])
def test_what_names_no_destination_has_no_key(value):
    assert destination_key(value) is None


def test_every_sample_catalogue_destination_has_its_own_key():
    transfer = [destination_key(e.destination) for e in CATALOGUE.entries if e.destination]
    handoff = [destination_key(e.handoff) for e in CATALOGUE.entries if e.handoff]
    assert None not in transfer and None not in handoff
    assert len(set(transfer)) == len(transfer), transfer
    assert len(set(handoff)) == len(handoff), handoff


def test_keys_are_bounded():
    key = destination_key({"type": "assistant", "assistantName": "x" * 100_000})
    assert key is not None and len(key) <= KEY_CHARS + len("assistant:")


# --- parsing, leniently and bounded ---------------------------------------------------------------------------


def test_other_message_types_and_messages_without_an_id_give_no_events():
    assert outcome_events({"type": "conversation-update", "call": {"id": "c"}}, RECEIVED) == []
    assert outcome_events({"type": "status-update", "status": "in-progress", "call": {"id": "c"}}, RECEIVED) == []
    assert outcome_events(report() | {"call": None}, RECEIVED) == []


def test_fields_of_the_wrong_type_are_read_as_absent_and_unknown_fields_ignored():
    message = report(transfers=[(BILLING, "no-answer")]) | {"destination": "billing", "endedReason": 42,
                                                            "somethingNew": {"deep": [1, 2]}}
    message["artifact"]["transfers"] += ["junk", {"destination": "x", "status": "busy"}, {"status": ["no"]}]
    message["artifact"]["assistantActivations"] = "not a list"
    found = outcome_events(message, RECEIVED)
    assert [(e.kind, e.keys, e.status) for e in found] == [
        ("report", (), None), ("transfer", ("tel:14155550142;ext=204",), "no-answer")]
    parsed = parse_outcome({"type": "transfer-update", "toAssistant": "Billing", "call": ["c"]})
    assert parsed is not None and parsed.call_id is None


def test_a_long_transfer_list_is_read_with_a_cap_that_keeps_the_latest():
    transfers = [(SALES, "no-answer")] * 10_000 + [(BILLING, "connected")]
    found = [e for e in outcome_events(report(transfers=transfers), RECEIVED) if e.kind == "transfer"]
    assert len(found) == MAX_ITEMS
    assert found[-1].keys == ("tel:14155550142;ext=204",) and found[-1].status == "connected"
    assert outcomes([d("d1", BILLING)], report(transfers=transfers)) == {"d1": REACHED}


def test_long_strings_are_cut():
    message = status("c", "ended", at=T0, reason="x" * 1_000_000)
    (event,) = outcome_events(message, RECEIVED)
    assert len(event.status) <= 128


def test_time_is_vapis_timestamp_else_the_report_end_else_arrival():
    (timed,) = outcome_events(status("c", "ended", at=T0 + 5, reason="customer-ended-call"), RECEIVED)
    assert timed.at == pytest.approx(T0 + 5) and timed.timed
    untimed = report() | {"endedAt": "2025-11-24T16:01:35.000Z"}
    del untimed["timestamp"]
    assert outcome_events(untimed, RECEIVED)[0].at == dt.datetime(2025, 11, 24, 16, 1, 35, tzinfo=dt.UTC).timestamp()
    del untimed["endedAt"]
    (event,) = outcome_events(untimed, RECEIVED)
    assert event.at == RECEIVED and not event.timed


def test_the_first_activation_is_the_assistant_the_call_began_with():
    front = {"assistantName": "Brightline Front Line", "assistantId": "asst-main"}
    found = outcome_events(report(activations=[front, {"assistantName": "Outage Status"}]), RECEIVED)
    assert [(e.kind, e.keys) for e in found if e.kind == "activation"] == [("activation", ("assistant:outage status",))]
    # A decision that sent the call to the assistant it began with is not reached by the call beginning there
    assert outcomes([d("d1", {"type": "assistant", "assistantName": "Brightline Front Line"})],
                    report(activations=[front])) == {"d1": UNKNOWN}


# --- the classes (one test each) -------------------------------------------------------------------------------


@pytest.mark.parametrize(("values", "kind", "expected"), [
    (TRANSFER_REACHED, "transfer", REACHED), (TRANSFER_UNREACHABLE, "transfer", UNREACHABLE),
    (TRANSFER_HUNG_UP, "transfer", HUNG_UP), (ENDED_REACHED, "report", REACHED),
    (ENDED_UNREACHABLE, "report", UNREACHABLE), (ENDED_HUNG_UP, "ended", HUNG_UP)])
def test_vapi_vocabulary_classifies(values, kind, expected):
    assert values and all(classify(kind, v) == expected for v in values)


def test_the_vocabulary_is_vapis():
    # Transfer statuses: TransferArtifact.status in openapi.json, and the SDK's TransferArtifactStatus
    status_type = importlib.import_module("vapi.types.transfer_artifact_status").TransferArtifactStatus
    sdk_statuses = set(status_type.__args__[0].__args__)
    assert sdk_statuses == TRANSFER_REACHED | TRANSFER_UNREACHABLE | TRANSFER_HUNG_UP
    # endedReason: every value used is one of the SDK's (it copies openapi.json's 627)
    reason_type = importlib.import_module("vapi.types.server_message_end_of_call_report_ended_reason")
    sdk_reasons = set(reason_type.ServerMessageEndOfCallReportEndedReason.__args__[0].__args__)
    assert len(sdk_reasons) > 600
    assert sdk_reasons >= ENDED_REACHED | ENDED_UNREACHABLE | ENDED_HUNG_UP
    transferish = {r for r in sdk_reasons if "transfer" in r or "forward" in r or "during-transfer" in r}
    ignored = {"call.ringing.hook-executed-transfer", "call.ending.hook-executed-transfer",
               "assistant-request-returned-forwarding-phone-number"}  # not a transfer Switchboard answered
    assert transferish - ignored == ENDED_REACHED | ENDED_UNREACHABLE | ENDED_HUNG_UP
    assert classify("report", "customer-ended-call") is None and classify("transfer", "ringing") is None


def test_reached():
    assert outcomes([d("d1", BILLING)], report(transfers=[(BILLING, "connected")])) == {"d1": REACHED}
    assert outcomes([d("d1", BILLING)], report(reason="assistant-forwarded-call", destination=BILLING)) == \
        {"d1": REACHED}


@pytest.mark.parametrize("state", sorted(TRANSFER_UNREACHABLE))
def test_unreachable(state):
    assert outcomes([d("d1", BILLING)], report(transfers=[(BILLING, state)])) == {"d1": UNREACHABLE}


@pytest.mark.parametrize("reason", sorted(ENDED_UNREACHABLE))
def test_unreachable_by_ended_reason(reason):
    assert outcomes([d("d1", BILLING)], report(reason=reason)) == {"d1": UNREACHABLE}


@pytest.mark.parametrize("reason", sorted(ENDED_HUNG_UP))
def test_hung_up(reason):
    assert outcomes([d("d1", BILLING)], report(reason=reason)) == {"d1": HUNG_UP}
    assert outcomes([d("d1", BILLING)], report(transfers=[(BILLING, "cancelled")])) == {"d1": HUNG_UP}


def test_rerouted():
    first, second = d("d1", OUTAGES), d("d2", BILLING, at=T0 + 30)
    found = outcomes([first, second], transfer_update("call-1", at=T0 + 1, destination=OUTAGES,
                                                      to={"name": "Outage Status"}))
    assert found == {"d1": REROUTED, "d2": PENDING}


def test_pending_then_unknown_once_the_report_says_nothing():
    assert outcomes([d("d1", BILLING)]) == {"d1": PENDING}
    assert outcomes([d("d1", BILLING)], status("call-1", "ended", at=T0 + 50, reason="customer-ended-call")) == \
        {"d1": PENDING}  # the report, with the transfers, is still to come
    (joined,) = join([d("d1", BILLING)], events(report()))
    assert joined.outcome == UNKNOWN and "says nothing" in joined.evidence


def test_chats_and_web_calls():
    # A chat's handoff is reached through its assistant activations; a number it was sent to never rings
    chat = [d("d1", OUTAGES, call="chat-1"), d("d2", SALES, call="chat-2", at=T0 + 1)]
    found = outcomes(chat, report("chat-1", "assistant-ended-call", activations=[
        {"assistantName": "Brightline Front Line"}, {"assistantName": "Outage Status"}], chat=True),
        report("chat-2", "assistant-ended-call", chat=True))
    assert found == {"d1": REACHED, "d2": UNKNOWN}


def test_a_decision_with_no_destination_is_not_joined():
    found = join([d("d1", None), d("d2", BILLING, at=T0 + 1)], events(report(reason="call.forwarding.no-answer")))
    assert [(j.decision.decision_id, j.outcome) for j in found] == [("d1", UNKNOWN), ("d2", UNREACHABLE)]


# --- join rules (one test each) --------------------------------------------------------------------------------


def test_by_call_id():
    found = outcomes([d("d1", BILLING, call="call-1"), d("d2", BILLING, call="call-2")],
                     report("call-2", transfers=[(BILLING, "busy")]),
                     report("call-3", transfers=[(BILLING, "connected")]))
    assert found == {"d1": PENDING, "d2": UNREACHABLE}


def test_extensions_are_different_destinations():
    message = report(transfers=[(BILLING_OTHER_DESK, "no-answer"), (BILLING, "connected")])
    assert outcomes([d("d1", BILLING)], message) == {"d1": REACHED}
    assert outcomes([d("d1", BILLING_OTHER_DESK)], message) == {"d1": UNREACHABLE}
    assert outcomes([d("d1", {"type": "number", "number": "+14155550142"})], message) == {"d1": UNKNOWN}


def test_sip_case():
    written = {"type": "sip", "sipUri": "SIP:retention@PBX.brightline.example;transport=tls"}
    assert outcomes([d("d1", RETENTION)], report(transfers=[(written, "busy")])) == {"d1": UNREACHABLE}
    other_user = {"type": "sip", "sipUri": "sip:RETENTION@pbx.brightline.example"}
    assert outcomes([d("d1", RETENTION)], report(transfers=[(other_user, "busy")])) == {"d1": UNKNOWN}


def test_assistants_by_name_or_id():
    by_id = {"type": "assistant", "assistantId": "asst-billing"}
    by_name = {"type": "assistant", "assistantName": "billing assistant"}
    message = report(activations=[{"assistantName": "Brightline Front Line"},
                                  {"assistantName": "Billing Assistant", "assistantId": "asst-billing"}])
    assert outcomes([d("d1", by_id)], message) == {"d1": REACHED}
    assert outcomes([d("d1", by_name)], message) == {"d1": REACHED}
    handed = transfer_update("call-1", at=T0 + 1,
                             destination={"type": "assistant", "assistantName": "Billing Assistant"},
                             to={"name": "Billing Assistant", "id": "asst-billing"})
    assert outcomes([d("d1", by_id)], handed) == {"d1": REACHED}
    assert outcomes([d("d1", OUTAGES)], message, handed) == {"d1": UNKNOWN}


def test_resends_change_nothing():
    messages = [status("call-1", "forwarding", at=T0 + 1, destination=BILLING),
                status("call-1", "ended", at=T0 + 40, reason="call.forwarding.no-answer"),
                report(reason="call.forwarding.no-answer", transfers=[(BILLING, "no-answer")])]
    once = join([d("d1", BILLING)], events(*messages))
    twice = join([d("d1", BILLING)], events(*messages, *messages, messages[2]))
    assert once == twice and once[0].outcome == UNREACHABLE
    assert {(e.source, e.index) for e in events(*messages)} == {(e.source, e.index) for e in events(*messages * 2)}
    # A resend without a timestamp arrives later, but is the same message: the join keeps its first arrival, so
    # a late copy of the forwarding to billing does not take the second transfer's endedReason from sales
    untimed = {k: v for k, v in messages[0].items() if k != "timestamp"}
    first, again = outcome_events(untimed, T0 + 1), outcome_events(untimed, T0 + 35)
    assert (first[0].source, first[0].index) == (again[0].source, again[0].index) and first[0].at != again[0].at
    rest = events(status("call-1", "forwarding", at=T0 + 30.2, destination=SALES), messages[1])
    decisions = [d("d1", BILLING), d("d2", SALES, at=T0 + 30)]
    assert {j.decision.decision_id: j.outcome for j in join(decisions, first + again + rest)} == \
        {"d1": PENDING, "d2": UNREACHABLE}


def test_a_report_before_the_transfer_update_joins_the_same():
    decisions = [d("d1", OUTAGES), d("d2", BILLING, at=T0 + 30)]
    update = transfer_update("call-1", at=T0 + 1, destination=OUTAGES, to={"name": "Outage Status"})
    final = report(transfers=[(BILLING, "no-answer")])
    in_order = join(decisions, events(update, final))
    assert join(decisions, events(final, update)) == in_order
    assert [j.outcome for j in in_order] == [REROUTED, UNREACHABLE]


def test_a_call_with_two_decisions_each_joined_to_its_own_destination():
    decisions = [d("d1", OUTAGES), d("d2", BILLING, at=T0 + 30, entry="billing")]
    found = join(decisions, events(
        transfer_update("call-1", at=T0 + 1, destination=OUTAGES, to={"name": "Outage Status"}),
        report(transfers=[(BILLING, "connected")])))
    assert [(j.decision.decision_id, j.outcome) for j in found] == [("d1", REROUTED), ("d2", REACHED)]
    assert "then another request (d2)" in found[0].evidence


def test_rerouted_only_when_the_request_came_after_it_was_reached():
    decisions = [d("d1", OUTAGES), d("d2", BILLING, at=T0 + 5)]
    late = transfer_update("call-1", at=T0 + 20, destination=OUTAGES, to={"name": "Outage Status"})
    assert outcomes(decisions, late)["d1"] == REACHED
    unreached = report(transfers=[(SALES, "no-answer")])  # the first went nowhere: the next request is no reroute
    assert outcomes([d("d1", SALES), d("d2", BILLING, at=T0 + 30)], unreached)["d1"] == UNREACHABLE


def test_forwarding_then_ended_with_an_ended_reason():
    forwarding = status("call-1", "forwarding", at=T0 + 0.5, destination=BILLING)
    ended = status("call-1", "ended", at=T0 + 40, reason="call.forwarding.operator-busy")
    assert outcomes([d("d1", BILLING)], forwarding, ended) == {"d1": UNREACHABLE}
    # Two decisions: the ended reason belongs to the transfer in progress, the second
    second = status("call-1", "forwarding", at=T0 + 30.2, destination=SALES)
    assert outcomes([d("d1", BILLING), d("d2", SALES, at=T0 + 30)], forwarding, second, ended) == \
        {"d1": PENDING, "d2": UNREACHABLE}
    # A forwarding to a destination no decision named (a fallback plan's) takes the blame away from ours
    fallback = status("call-1", "forwarding", at=T0 + 20, destination=ELSEWHERE)
    assert outcomes([d("d1", BILLING)], forwarding, fallback, ended) == {"d1": PENDING}


def test_a_transfer_update_to_a_number_is_an_attempt_not_an_outcome():
    update = transfer_update("call-1", at=T0 + 0.5, destination=BILLING)
    ended = status("call-1", "ended", at=T0 + 40, reason="call.forwarding.no-answer")
    assert outcomes([d("d1", BILLING)], update) == {"d1": PENDING}
    assert outcomes([d("d1", BILLING)], update, ended) == {"d1": UNREACHABLE}


def test_several_transfers_to_different_destinations():
    decisions = [d("d1", SALES), d("d2", RETENTION, at=T0 + 20), d("d3", BILLING, at=T0 + 40)]
    message = report(transfers=[(SALES, "no-answer"), (RETENTION, "busy"), (BILLING, "completed")])
    assert outcomes(decisions, message) == {"d1": UNREACHABLE, "d2": UNREACHABLE, "d3": REACHED}


def test_two_decisions_to_one_destination_line_up_from_the_end():
    decisions = [d("d1", BILLING), d("d2", BILLING, at=T0 + 40)]
    message = report(transfers=[(BILLING, "no-answer"), (BILLING, "connected")])
    assert outcomes(decisions, message) == {"d1": UNREACHABLE, "d2": REACHED}


def test_conflicting_signals_the_most_specific_wins():
    # The transfer's own status beats the call's endedReason, whichever is later
    during = status("call-1", "ended", at=T0 + 95, reason="customer-ended-call-during-transfer")
    assert outcomes([d("d1", BILLING)], during, report(transfers=[(BILLING, "connected")])) == {"d1": REACHED}
    # An endedReason naming the destination beats one about whatever was in progress
    named = report(reason="call.forwarding.no-answer", destination=BILLING, at=T0 + 90)
    late = status("call-1", "ended", at=T0 + 95, reason="customer-ended-call-during-transfer")
    assert outcomes([d("d1", BILLING)], named, late) == {"d1": UNREACHABLE}


def test_conflicting_signals_among_equals_the_latest_wins():
    earlier = status("call-1", "ended", at=T0 + 40, reason="call.forwarding.no-answer")
    later = report(reason="customer-ended-call-during-transfer", at=T0 + 90)
    assert outcomes([d("d1", BILLING)], earlier, later) == {"d1": HUNG_UP}
    assert outcomes([d("d1", BILLING)], later, earlier) == {"d1": HUNG_UP}


def test_only_the_latest_report_of_a_call_is_read():
    first = report(transfers=[(BILLING, "no-answer")], at=T0 + 90)
    corrected = report(transfers=[(BILLING, "connected")], at=T0 + 95)
    assert outcomes([d("d1", BILLING)], first, corrected) == {"d1": REACHED}
    assert outcomes([d("d1", BILLING)], corrected, first) == {"d1": REACHED}
    # A newer report replaces an older one entirely, even the older one's more specific transfer status
    newer = report(reason="assistant-forwarded-call", destination=BILLING, at=T0 + 95)
    assert outcomes([d("d1", BILLING)], first, newer) == {"d1": REACHED}


def test_join_call_and_join_agree_and_decisions_are_kept_once():
    decisions = [d("d1", BILLING), d("d1", BILLING), d("d2", SALES, at=T0 + 1)]
    found = events(report(transfers=[(BILLING, "busy")]))
    assert join_call(decisions, found) == join(decisions, found)
    assert len(join(decisions, found)) == 2


def test_the_join_reads_a_bounded_number_of_events():
    flood = [status("call-1", "forwarding", at=T0 + i / 1000, destination=SALES) for i in range(5_000)]
    read = events(*flood, report(transfers=[(BILLING, "voicemail")]))
    assert len(read) > MAX_CALL_EVENTS and len(_deduped(read)) == MAX_CALL_EVENTS  # the latest, report included
    found = join([d("d1", BILLING, at=T0 + 10)], read)
    assert [j.outcome for j in found] == [UNREACHABLE]


# --- Vapi's SDK: messages built with its types, and the examples --------------------------------------------


@functools.cache
def sdk() -> Any:
    types = importlib.import_module("vapi.types")
    return types


def sdk_call(call_id: str) -> Any:
    t = sdk()
    at = dt.datetime.fromtimestamp(T0, dt.UTC)
    return t.Call(id=call_id, org_id="org-1", created_at=at, updated_at=at, type="inboundPhoneCall",
                  assistant_id="asst-main")


def posted(model: Any) -> dict[str, Any]:
    """What the service reads: the SDK's model on the wire, in Vapi's envelope, unwrapped by the webhook's parser."""
    _check_tree(model, "message")
    return parse_json(json.dumps({"message": wire(model)}).encode())


def test_sdk_end_of_call_report():
    t = sdk()
    model = t.ServerMessageEndOfCallReport(
        type="end-of-call-report", ended_reason="call.forwarding.no-answer", timestamp=ms(T0 + 90),
        destination=t.ServerMessageEndOfCallReportDestination_Number(number="+14155550142", extension="204"),
        artifact=t.Artifact(
            transfers=[
                t.TransferArtifact(destination=t.TransferArtifactDestination_Sip(
                    sip_uri="sip:retention@PBX.brightline.example", sip_headers={"X-Queue": "retention"}),
                    mode="warm-transfer-say-summary", status="busy"),
                t.TransferArtifact(destination=t.TransferArtifactDestination_Number(
                    number="+14155550142", extension="204"), mode="blind-transfer", status="no-answer"),
            ],
            assistant_activations=[t.AssistantActivation(assistant_name="Brightline Front Line", assistant_id="a1"),
                                   t.AssistantActivation(assistant_name="Outage Status", assistant_id="a2")]),
        analysis=t.Analysis(summary="Transferred twice; nobody answered.", success_evaluation="false"),
        call=sdk_call("call-1"))
    found = outcome_events(posted(model), RECEIVED)
    assert [(e.kind, e.keys, e.status) for e in found] == [
        ("report", ("tel:14155550142;ext=204",), "call.forwarding.no-answer"),
        ("transfer", ("sip:retention@pbx.brightline.example",), "busy"),
        ("transfer", ("tel:14155550142;ext=204",), "no-answer"),
        ("activation", ("assistant:outage status", "assistant-id:a2"), None)]
    assert {e.call_id for e in found} == {"call-1"} and found[0].at == pytest.approx(T0 + 90)
    decisions = [d("d1", OUTAGES), d("d2", RETENTION, at=T0 + 20), d("d3", BILLING, at=T0 + 40)]
    assert {j.decision.decision_id: j.outcome for j in join(decisions, found)} == \
        {"d1": REROUTED, "d2": UNREACHABLE, "d3": UNREACHABLE}


def test_sdk_status_updates():
    t = sdk()
    forwarding = t.ServerMessageStatusUpdate(
        type="status-update", status="forwarding", timestamp=ms(T0 + 0.4), call=sdk_call("call-1"),
        destination=t.ServerMessageStatusUpdateDestination_Sip(sip_uri="sip:retention@pbx.brightline.example"))
    ended = t.ServerMessageStatusUpdate(type="status-update", status="ended", timestamp=ms(T0 + 30),
                                        ended_reason="customer-ended-call-during-transfer", call=sdk_call("call-1"))
    found = outcome_events(posted(forwarding), RECEIVED) + outcome_events(posted(ended), RECEIVED)
    assert [(e.kind, e.keys, e.status) for e in found] == [
        ("forwarding", ("sip:retention@pbx.brightline.example",), None),
        ("ended", (), "customer-ended-call-during-transfer")]
    assert [j.outcome for j in join([d("d1", RETENTION)], found)] == [HUNG_UP]


def test_sdk_transfer_updates():
    t = sdk()
    handoff = t.ServerMessageTransferUpdate(
        type="transfer-update", timestamp=ms(T0 + 0.3), call=sdk_call("call-1"),
        destination=t.ServerMessageTransferUpdateDestination_Assistant(assistant_name="Outage Status"),
        to_assistant=t.CreateAssistantDto(name="Outage Status"),
        from_assistant=t.CreateAssistantDto(name="Brightline Front Line"))
    number = t.ServerMessageTransferUpdate(
        type="transfer-update", timestamp=ms(T0 + 20.3), call=sdk_call("call-1"),
        destination=t.ServerMessageTransferUpdateDestination_Number(number="+14155550123"))
    found = outcome_events(posted(handoff), RECEIVED) + outcome_events(posted(number), RECEIVED)
    assert [(e.kind, e.keys) for e in found] == [("handoff", ("assistant:outage status",)),
                                                 ("forwarding", ("tel:14155550123",))]
    assert [j.outcome for j in join([d("d1", OUTAGES), d("d2", SALES, at=T0 + 20)], found)] == [REROUTED, PENDING]


EXAMPLES = {"end-of-call-report": "ServerMessageEndOfCallReport", "status-update": "ServerMessageStatusUpdate",
            "transfer-update": "ServerMessageTransferUpdate"}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_examples_are_valid_for_the_sdk(name):
    body = json.loads((ROOT / "examples" / f"{name}.json").read_text())
    model = getattr(sdk(), EXAMPLES[name]).model_validate(body["message"])  # strict: pydantic validation
    _check_tree(model, f"examples/{name}.json")  # and no field the SDK does not know
    assert model.type == name


def test_the_worked_examples_join():
    """examples/transfer-request.json answered billing (call-0001); handoff-request.json answered the Billing
    Assistant (call-7f3a). Their outcome messages: status-update (forwarding), end-of-call-report, transfer-update."""
    read = {n: parse_json((ROOT / "examples" / f"{n}.json").read_bytes()) for n in EXAMPLES}
    billing = CATALOGUE.get("billing")
    assert billing is not None
    decisions = [decided("d-0001", "call-0001", T0, "billing", billing.destination),
                 decided("d-7f3a", "call-7f3a", 1764000005.88, "billing", billing.handoff)]
    found = join(decisions, [e for m in read.values() for e in outcome_events(m, RECEIVED)])
    assert [(j.decision.decision_id, j.outcome) for j in found] == [("d-7f3a", REACHED), ("d-0001", REACHED)]
    assert "artifact.transfers connected" in found[1].evidence  # the transfer's own status decided it


# --- the summary ---------------------------------------------------------------------------------------------


def test_summary_per_destination_worst_first_with_integer_counts():
    decisions = [decided(f"b{i}", f"cb{i}", T0 + i, "billing", BILLING) for i in range(4)]
    decisions += [decided(f"s{i}", f"cs{i}", T0 + i, "sales", SALES) for i in range(3)]
    decisions += [decided("o1", "co1", T0, "outages", OUTAGES), decided("x", "cx", T0, None, None)]
    messages = [report(f"cb{i}", transfers=[(BILLING, s)]) for i, s in enumerate(["connected", "connected",
                                                                                   "busy", "completed"])]
    messages += [report("cs0", transfers=[(SALES, "no-answer")]), report("cs1", transfers=[(SALES, "cancelled")])]
    summary = summarise(join(decisions, events(*messages)))
    data = summary.as_json()
    assert list(data["destinations"]) == ["sales", "billing", "outages"]  # 2/2 not reached, 1/4, none settled
    assert data["destinations"]["sales"] == {"decisions": 3, "reached": 0, "unreachable": 1, "hung_up": 1,
                                             "rerouted": 0, "pending": 1, "unknown": 0}
    assert data["destinations"]["billing"]["reached"] == 3 and data["destinations"]["billing"]["unreachable"] == 1
    assert data["destinations"]["outages"] == {"decisions": 1, **dict.fromkeys(OUTCOMES, 0), "pending": 1}
    for counts in data["destinations"].values():
        assert all(type(v) is int for v in counts.values())
        assert counts["decisions"] == sum(counts[o] for o in OUTCOMES)
    assert data["total"]["decisions"] == 8  # the decision that answered no destination is left out
    assert json.loads(json.dumps(data)) == data


def test_summary_by_hour_of_the_week_in_the_catalogue_time_zone():
    monday_16_utc = T0
    assert hour_of_week(monday_16_utc) == 16 and hour_label(16) == "mon 16"
    assert hour_of_week(monday_16_utc, ZoneInfo("America/Los_Angeles")) == 8  # 08:00 in San Francisco
    assert hour_label(167) == "sun 23"
    decisions = [decided("a", "c1", T0, "billing", BILLING), decided("b", "c2", T0 + 3600, "billing", BILLING),
                 decided("c", "c3", T0 + 6 * 86400, "billing", BILLING)]
    summary = summarise(join(decisions, events(report("c1", transfers=[(BILLING, "busy")]))),
                        ZoneInfo("America/Los_Angeles"))
    hours = summary.as_json()["by_hour_of_week"]["billing"]
    assert list(hours) == ["mon 08", "mon 09", "sun 08"]
    assert hours["mon 08"]["unreachable"] == 1 and hours["mon 09"]["pending"] == 1


def test_counts_refuse_an_unknown_outcome():
    with pytest.raises(ValueError, match="expected one of reached"):
        Counts().add("connected")
