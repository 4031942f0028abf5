"""Shared calendars and closed messages (issue 17): a top-level `hours` every entry inherits (a company holiday
written once), entries overriding it or opting out with "always", errors naming the field, one Hours object per
distinct calendar; and `closed_message`, what the caller hears when an entry is closed and its after_hours entry
answers, with `{opens}` filled as spoken English, checked at load and accepted by Vapi's own SDK."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.catalogue.destinations import CatalogueError, parse
from app.catalogue.hours import Hours
from tests.conftest import ROOT, decision_logs
from tests.vapi_payloads import handoff_request, transfer_request
from tests.vapi_sdk import parse_transfer_answer

LA = ZoneInfo("America/Los_Angeles")
SAMPLE_TEXT = (ROOT / "destinations.json").read_text()
SAMPLE = json.loads(SAMPLE_TEXT)
NUMBER = {"type": "number", "number": "+14155550100"}


def at(text: str, zone: ZoneInfo = LA) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=zone)


def entry(entry_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": entry_id, "description": f"Calls for {entry_id}.", "destination": dict(NUMBER), **extra}


def catalogue(*entries: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"destinations": list(entries), **top}


SHARED = {"timezone": "America/Los_Angeles", "open": {"mon-fri": "09:00-17:00"}, "closed": ["2026-12-25"]}


# --- Shared calendars --------------------------------------------------------------------------------------------


def test_entries_inherit_override_extend_or_opt_out_of_the_shared_calendar():
    cat = parse(catalogue(
        entry("plain"),  # inherits the whole calendar
        entry("late", hours={"open": {"mon-sat": "09:00-21:00"}}),  # its own opening hours, the shared holidays
        entry("extra", hours={"closed": ["2026-12-24"]}),  # the shared hours, one more holiday
        entry("paris", hours={"timezone": "Europe/Paris"}),  # the same hours and holidays, in Paris
        entry("always", hours="always"),
        hours=SHARED))
    plain, late, extra, paris, always = (cat.get(i) for i in ("plain", "late", "extra", "paris", "always"))
    assert always.hours is None
    tuesday, christmas, eve = at("2026-12-01T10:00"), at("2026-12-25T10:00"), at("2026-12-24T10:00")
    assert plain.hours.is_open(tuesday) and not plain.hours.is_open(christmas) and plain.hours.is_open(eve)
    assert late.hours.is_open(at("2026-12-05T20:00")) and not late.hours.is_open(christmas)  # Saturday evening
    assert not extra.hours.is_open(eve) and not extra.hours.is_open(christmas) and extra.hours.is_open(tuesday)
    assert paris.hours.timezone == "Europe/Paris" and not paris.hours.is_open(at("2026-12-25T10:00", ZoneInfo(
        "Europe/Paris"))) and paris.hours.is_open(at("2026-12-01T10:00", ZoneInfo("Europe/Paris")))
    assert cat.timezone == "America/Los_Angeles"  # `route --at` and `outcomes` read it as before
    assert cat.hours_now(christmas)["always_open"] == ["always"]


def test_the_sample_writes_each_company_holiday_once():
    assert SAMPLE_TEXT.count('"2026-12-25"') == 1 and SAMPLE_TEXT.count('"2026-11-26"') == 1
    cat = parse(SAMPLE)
    christmas = at("2026-12-25T11:00")
    state = cat.hours_now(christmas)
    assert set(state["closed"]) == {"billing", "sales", "moving"} and not state["open"]
    assert {"tech_support", "front_desk"} <= set(state["always_open"])
    assert cat.get("sales").hours.is_open(at("2026-12-01T13:45")) and not cat.get("billing").hours.is_open(
        at("2026-12-01T07:30"))
    overriding = [e["id"] for e in SAMPLE["destinations"] if isinstance(e.get("hours"), dict)]
    assert overriding and any(e.get("hours") == "always" for e in SAMPLE["destinations"])
    assert any("{opens}" in e.get("closed_message", "") for e in SAMPLE["destinations"])


def test_a_catalogue_without_shared_hours_behaves_as_before():
    cat = parse(catalogue(entry("a"), entry("b", hours={"open": {"mon": "09:00-10:00"}}), timezone="UTC"))
    assert cat.get("a").hours is None and cat.get("b").hours.timezone == "UTC" and cat.timezone == "UTC"


def test_a_shared_calendar_of_holidays_only_leaves_entries_without_hours_always_open():
    cat = parse(catalogue(entry("a"), entry("b", hours={"open": {"mon-sun": "00:00-24:00"}}),
                          hours={"timezone": "UTC", "closed": ["2026-12-25"]}))
    christmas = dt.datetime(2026, 12, 25, 12, tzinfo=dt.UTC)
    assert cat.get("a").hours is None and not cat.get("b").hours.is_open(christmas)


def test_calendars_are_one_object_per_distinct_calendar():
    """Entries that end up with the same calendar share one Hours: memory for a large catalogue, and hours_now
    (healthz, check) works each distinct calendar out once."""
    entries = [entry(f"e{i}") for i in range(6)] + [entry("lunch", hours={"open": {"mon-fri": "09:00-12:00"}}),
                                                    entry("lunch2", hours={"open": {"mon-fri": "09:00-12:00"}}),
                                                    entry("eve", hours={"closed": ["2026-12-24"]})]
    cat = parse(catalogue(*entries, hours=SHARED))
    distinct = {id(e.hours) for e in cat.entries}
    assert len(distinct) == 3
    assert cat.get("lunch").hours is cat.get("lunch2").hours and cat.get("e0").hours is cat.get("e5").hours


def test_hours_now_on_3000_entries_works_each_calendar_out_once(monkeypatch):
    entries = [entry(f"d{i:04d}", **({"hours": {"open": {"mon-fri": "08:00-18:00"}}} if i % 3 == 0 else
                                     {"hours": "always"} if i % 3 == 1 else {})) for i in range(3000)]
    cat = parse(catalogue(*entries, hours=SHARED))
    calls: list[int] = []
    original = Hours.is_open
    monkeypatch.setattr(Hours, "is_open", lambda self, moment: calls.append(1) or original(self, moment))
    state = cat.hours_now(at("2026-12-01T10:00"))
    assert len(calls) == 2  # two distinct calendars, 2,000 entries with hours
    assert len(state["open"]) == 2000 and len(state["always_open"]) == 1000


@pytest.mark.parametrize(("top", "entries", "expected"), [
    ({"hours": {**SHARED, "closed": ["2026-12-25", "2026-12-26", "Dec 31"]}}, [entry("a")],
     "destinations.json: hours.closed[2]: 'Dec 31' is not a date like \"2026-12-25\""),
    ({"hours": SHARED}, [entry("a"), entry("b"), entry("c"), entry("parts", hours={"open": {"sat": "9-1"}})],
     "destinations.json: destinations[3] (id 'parts'): hours.open.sat: '9-1' is not a range like \"09:00-17:30\""),
    ({"hours": {**SHARED, "open": {"sat": "10:00-09:00"}}}, [entry("a")],
     "destinations.json: hours.open.sat: '10:00-09:00' ends before it starts"),
    ({"hours": "always"}, [entry("a")], "destinations.json: hours: must be an object"),
    ({"hours": {"open": {"mon": "09:00-17:00"}}}, [entry("a")],
     "destinations.json: hours.timezone: missing; the shared opening hours need a time zone"),
    ({"hours": {**SHARED, "timezone": "Europe/Paris"}, "timezone": "America/Los_Angeles"}, [entry("a")],
     "destinations.json: hours.timezone: 'Europe/Paris' differs from the top-level \"timezone\" "
     "'America/Los_Angeles'; give the time zone once"),
    ({"hours": {**SHARED, "timezone": "Mars/Base"}}, [entry("a")],
     "destinations.json: hours.timezone: 'Mars/Base' is not a time zone"),
    ({"hours": {"timezone": "UTC", "closed": ["2026-12-25"]}}, [entry("a", hours={"closed": ["2026-12-24"]})],
     "destinations.json: destinations[0] (id 'a'): hours.open: needs at least one day"),
    ({"hours": SHARED}, [entry("a", hours="always", after_hours="b"), entry("b")],
     "destinations.json: destinations[0] (id 'a'): after_hours: has no effect: the entry is always open "
     "(\"hours\": \"always\")"),
    ({}, [entry("a", after_hours="b"), entry("b")],
     "destinations.json: destinations[0] (id 'a'): after_hours: has no effect: the entry is always open (it has "
     "no \"hours\" and the catalogue no shared opening hours)"),
    ({"hours": {**SHARED, "opne": {}}}, [entry("a")], "destinations.json: hours.opne: unknown field (did you mean "
                                                      "'open'?)"),
])
def test_calendar_errors_name_the_field(top, entries, expected):
    with pytest.raises(CatalogueError) as info:
        parse(catalogue(*entries, **top), "destinations.json")
    assert str(info.value).startswith(expected), str(info.value)


def test_the_top_level_timezone_alone_and_the_shared_one_agreeing_both_work():
    agreeing = parse(catalogue(entry("a"), timezone="UTC", hours={**SHARED, "timezone": "UTC"}))
    assert agreeing.get("a").hours.timezone == "UTC" and agreeing.timezone == "UTC"
    only_shared = parse(catalogue(entry("a"), hours={**SHARED, "timezone": "Europe/Paris"}))
    assert only_shared.timezone == "Europe/Paris"


# --- Closed messages ---------------------------------------------------------------------------------------------


def stamped(when: str, turns: list[tuple[str, str]], **kwargs: Any) -> dict[str, Any]:
    body = transfer_request(turns, **kwargs)
    body["message"]["timestamp"] = int(at(when).timestamp() * 1000)
    return body


BILLING_CALL = [("bot", "Brightline, how can I help?"), ("user", "I was charged twice on my bill.")]
MOVING_CALL = [("user", "I'm moving next month and need to transfer my service to my new address")]
FRONT_DESK = next(e["destination"] for e in SAMPLE["destinations"] if e["id"] == "front_desk")


@pytest.mark.parametrize(("when", "opens"), [
    ("2026-12-01T07:30", "today at 8:00 AM"),
    ("2026-12-01T21:00", "tomorrow at 8:00 AM"),
    ("2026-12-05T15:00", "on Monday at 8:00 AM"),  # Saturday after 14:00
    ("2026-11-26T11:00", "tomorrow at 8:00 AM"),  # Thanksgiving, from the shared calendar
])
def test_the_after_hours_answer_carries_the_closed_entrys_message(service_factory, log_records, when, opens):
    """Before, the caller heard front_desk's own "Transferring you to a member of our team." at lunch, at night and
    on holidays alike; now billing's closed_message, saying when billing opens."""
    service = service_factory(router="offline")
    response = service.post(stamped(when, BILLING_CALL))
    assert response.status_code == 200
    body = response.json()
    assert body == {"destination": {**FRONT_DESK, "message": f"Our billing team is closed right now; they open "
                                    f"{opens}. Let me put you through to our front desk instead."}}
    parse_transfer_answer(body)  # Vapi's own SDK reads it
    log = decision_logs(log_records)[-1]
    assert (log["outcome"], log["chosen"], log["answered"], log["closed"]) == ("closed", "billing", "front_desk",
                                                                               "billing")


def test_the_catalogue_object_is_never_changed_by_a_filled_message(service_factory):
    """The destination answered is the catalogue's; only the message is filled, on a copy."""
    service = service_factory(router="offline")
    closed = service.post(stamped("2026-12-01T21:00", BILLING_CALL)).json()
    assert closed["destination"]["message"].startswith("Our billing team is closed")
    desk = service.post(stamped("2026-12-01T21:00", [("user", "can I speak to a real person, operator please")]))
    assert desk.json() == {"destination": FRONT_DESK}  # front_desk chosen itself: its own message
    assert FRONT_DESK["message"] == "Transferring you to a member of our team."


def test_an_open_entry_and_one_without_closed_message_keep_their_own_messages(service_factory, catalogue_path):
    data = copy.deepcopy(SAMPLE)
    for item in data["destinations"]:
        if item["id"] == "billing":
            del item["closed_message"]
            billing = item["destination"]
    catalogue_path.write_text(json.dumps(data))
    service = service_factory(router="offline")
    assert service.post(stamped("2026-12-01T10:00", BILLING_CALL)).json() == {"destination": billing}
    assert service.post(stamped("2026-12-01T21:00", BILLING_CALL)).json() == {"destination": FRONT_DESK}


def test_along_a_chain_the_message_is_the_first_closed_entrys(service_factory, catalogue_path):
    data = copy.deepcopy(SAMPLE)
    for item in data["destinations"]:
        if item["id"] == "moving":
            item["after_hours"] = "billing"
    catalogue_path.write_text(json.dumps(data))
    service = service_factory(router="offline")
    # Saturday 11:00: moving closed (weekdays only), billing open: billing's number, moving's message
    saturday = service.post(stamped("2026-12-05T11:00", MOVING_CALL)).json()
    assert saturday["destination"]["number"] == "+14155550142"
    assert saturday["destination"]["message"].startswith("Our moves and appointments team is closed right now; "
                                                         "they open on Monday at 8:00 AM.")
    late = service.post(stamped("2026-12-05T15:00", MOVING_CALL)).json()  # billing closed too: the front desk
    assert late["destination"]["sipUri"] == FRONT_DESK["sipUri"] and "on Monday at 8:00 AM" in \
        late["destination"]["message"]
    parse_transfer_answer(saturday)
    parse_transfer_answer(late)


def test_a_message_in_the_closed_entrys_own_time_zone(service_factory, catalogue_path):
    data = copy.deepcopy(SAMPLE)
    for item in data["destinations"]:
        if item["id"] == "billing":
            item["hours"] = {"timezone": "America/New_York"}  # billing in New York, the front desk in LA
    catalogue_path.write_text(json.dumps(data))
    service = service_factory(router="offline")
    body = service.post(stamped("2026-12-01T05:30", BILLING_CALL)).json()  # 08:30 in New York: open
    assert body["destination"]["number"] == "+14155550142"
    body = service.post(stamped("2026-12-01T17:30", BILLING_CALL)).json()  # 20:30 in New York
    assert "they open tomorrow at 8:00 AM" in body["destination"]["message"]


def test_handoffs_are_answered_as_written(service_factory):
    """Vapi's handoff destinations have no `message` (HandoffDestinationAssistant, HandoffDestinationSquad):
    the after-hours handoff is answered as the catalogue writes it."""
    from tests.vapi_sdk import parse_handoff_answer

    body = handoff_request(BILLING_CALL, {})
    body["message"]["timestamp"] = int(at("2026-12-01T21:00").timestamp() * 1000)
    answer = service_factory(router="offline").post(body).json()
    desk = next(e["handoff"] for e in SAMPLE["destinations"] if e["id"] == "front_desk")
    assert answer == {"destination": desk}
    parse_handoff_answer(answer)


def test_nothing_open_is_an_error_that_says_when_in_words(service_factory):
    body = service_factory(router="offline").post(stamped("2026-12-06T12:00", [("user", "I want a faster plan")]))
    assert body.json() == {"error": "sales is closed now; it opens tomorrow at 9:00 AM"}
    parse_transfer_answer(body.json())


def test_ids_are_read_out_as_words_in_the_error():
    cat = parse(catalogue(entry("tech_support", hours={"open": {"mon": "09:00-10:00"}}), hours=SHARED))
    target, why = cat.open_target("tech_support", at("2026-12-01T10:00"), cat.ids)
    assert target is None and why == "tech support is closed now; it opens on Monday at 9:00 AM"


@pytest.mark.parametrize(("message", "expected"), [
    ("Closed; back {open}.", "closed_message: unknown placeholder {open} (did you mean '{opens}'?); Vapi's "
                             "variables take two braces, like {{customer.number}}"),
    ("Closed; back {Opens}.", "(did you mean '{opens}'?)"),
    ("Closed until {when}.", "unknown placeholder {when} (the only placeholder is {opens}); Vapi's variables take "
                             "two braces, like {{customer.number}}"),
    ("Closed; back {opens.", "'{' at character 14 is not closed"),
    ("Closed; back opens}.", "'}' at character 19 closes nothing"),
    ("Closed; back {{opens}}.", "{{opens}} is Vapi's templating; Switchboard's placeholder takes one pair of braces"),
    ("Call {{customer.number", "'{{' at character 6 has no closing '}}'"),
    ("   ", "closed_message: must be the sentence the caller hears"),
    (42, "closed_message: must be the sentence the caller hears"),
    ("x" * 1001, "closed_message: 1001 characters; keep it under 1000"),
])
def test_a_malformed_closed_message_is_refused_at_load(message, expected):
    data = copy.deepcopy(SAMPLE)
    data["destinations"][0]["closed_message"] = message
    with pytest.raises(CatalogueError) as info:
        parse(data, "destinations.json")
    assert str(info.value).startswith("destinations.json: destinations[0] (id 'billing'): closed_message: ")
    assert expected in str(info.value), str(info.value)


def test_vapi_variables_pass_through_and_opens_may_repeat(service_factory, catalogue_path):
    data = copy.deepcopy(SAMPLE)
    data["destinations"][0]["closed_message"] = "{opens}: billing, {{customer.name}}. Again: {opens}."
    catalogue_path.write_text(json.dumps(data))
    body = service_factory(router="offline").post(stamped("2026-12-01T21:00", BILLING_CALL)).json()
    assert body["destination"]["message"] == ("tomorrow at 8:00 AM: billing, {{customer.name}}. Again: tomorrow "
                                              "at 8:00 AM.")


@pytest.mark.parametrize(("change", "expected"), [
    ({"after_hours": None}, "closed_message: has no effect without \"after_hours\""),
    ({"destination": None}, "closed_message: has no effect on an entry without a \"destination\""),
])
def test_a_closed_message_that_would_never_be_heard_is_refused(change, expected):
    data = copy.deepcopy(SAMPLE)
    data["destinations"][0].update(change)
    with pytest.raises(CatalogueError) as info:
        parse(data)
    assert str(info.value).startswith(f"destinations.json: destinations[0] (id 'billing'): {expected}")


def test_a_calendar_with_no_opening_in_a_year_says_so():
    closed_all_year = [str(dt.date(2026, 12, 1) + dt.timedelta(days=d)) for d in range(420)]
    data = catalogue(entry("a", hours={"closed": closed_all_year}, after_hours="b",
                           closed_message="A is closed; it opens {opens}."), entry("b", hours="always"),
                     hours=SHARED)
    cat = parse(data)
    assert cat.closed_message("a", at("2026-12-02T10:00")) == "A is closed; it opens at a later date."
    assert cat.open_target("a", at("2026-12-02T10:00"), ("a",))[1] == \
        "a is closed now; it has no opening time in the coming year"
