"""Business hours and holidays per destination: open, closed, lunch break, weekend, holiday, a daylight-saving
change day, after_hours chains, bad formats refused naming the entry and field, and the decision time taken
from the request's timestamp."""

from __future__ import annotations

import copy
import datetime as dt
import json
import time
from zoneinfo import ZoneInfo

import pytest

from app.catalogue.destinations import CatalogueError, parse
from app.catalogue.hours import HoursError, moment
from app.catalogue.hours import parse as parse_hours
from tests.conftest import ROOT, decision_logs
from tests.fake_openai import answer
from tests.vapi_payloads import transfer_request

LA = ZoneInfo("America/Los_Angeles")
PHARMACY = {"timezone": "America/Los_Angeles",
            "open": {"mon-fri": "09:00-12:30,13:30-18:00", "sat": "10:00-14:00"},
            "closed": ["2026-12-25", "2027-01-01"]}


def at(text: str, zone: ZoneInfo = LA) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=zone)


@pytest.mark.parametrize(("when", "is_open"), [
    ("2026-12-01T09:00", True),   # Tuesday, opening minute
    ("2026-12-01T08:59", False),  # before opening
    ("2026-12-01T12:45", False),  # lunch break
    ("2026-12-01T13:30", True),   # back from lunch
    ("2026-12-01T18:00", False),  # closing time is closed
    ("2026-12-05T11:00", True),   # Saturday
    ("2026-12-06T11:00", False),  # Sunday
    ("2026-12-25T11:00", False),  # a holiday (a Friday)
])
def test_open_and_closed(when, is_open):
    assert parse_hours(PHARMACY, None).is_open(at(when)) is is_open


def test_when_it_opens_for_the_operator_is_the_callers_words_and_the_zone():
    """check, /healthz and route --explain say what a caller is told (one way to put a day into words), with
    the calendar's time zone: never a weekday for tomorrow there and 'tomorrow' to the caller."""
    hours = parse_hours(PHARMACY, None)
    assert hours.opens_text(at("2026-12-06T11:00")) == "it opens tomorrow at 9:00 AM (America/Los_Angeles)"
    assert hours.opens_text(at("2026-12-01T12:45")) == "it opens today at 1:30 PM (America/Los_Angeles)"
    assert hours.opens_text(at("2026-12-24T19:00")) == \
        "it opens on Saturday at 10:00 AM (America/Los_Angeles)"  # skips the 25th
    assert hours.opens_sentence(at("2026-12-24T19:00")) == "it opens on Saturday at 10:00 AM"
    for when in ("2026-12-06T11:00", "2026-12-01T12:45", "2026-12-05T15:00", "2026-12-24T19:00"):
        assert hours.opens_text(at(when)) == f"it opens {hours.spoken_opening(at(when))} (America/Los_Angeles)"
    never = parse_hours({"timezone": "UTC", "open": {"mon": "09:00-10:00"},
                         "closed": [str(dt.date(2026, 12, 7) + dt.timedelta(weeks=w)) for w in range(60)]}, None)
    assert never.opens_text(dt.datetime(2026, 12, 6, tzinfo=dt.UTC)) == "it has no opening time in the coming year"


def test_when_it_opens_does_not_follow_the_process_locale(monkeypatch):
    """strftime's %a and %b follow the process's locale: with LC_TIME French, 'Mon 09:00' was 'lun. 09:00'.
    datetime.strftime formats through time.strftime, so one that answers in another language shows any use."""
    hours = parse_hours({"timezone": "Europe/Paris", "open": {"mon": "09:00-12:00"},
                         "closed": ["2026-12-07"]}, None)
    moments = [at(when, ZoneInfo("Europe/Paris")) for when in ("2026-12-06T10:00", "2026-12-09T10:00")]
    words = [(hours.opens_text(m), hours.spoken_opening(m)) for m in moments]
    assert words[0][1] == "on Monday, December 14 at 9:00 AM" and words[1][1] == "on Monday at 9:00 AM"
    monkeypatch.setattr(time, "strftime", lambda *args: "lun. déc.")
    assert [(hours.opens_text(m), hours.spoken_opening(m)) for m in moments] == words


@pytest.mark.parametrize(("when", "spoken"), [
    ("2026-12-01T12:45", "today at 1:30 PM"),      # lunch break
    ("2026-12-01T07:00", "today at 9:00 AM"),
    ("2026-12-01T19:00", "tomorrow at 9:00 AM"),
    ("2026-12-05T15:00", "on Monday at 9:00 AM"),  # Saturday afternoon: Sunday is closed
    ("2026-12-24T19:00", "on Saturday at 10:00 AM"),  # Christmas (a Friday) skipped
    ("2026-12-24T08:00", "today at 9:00 AM"),
])
def test_when_it_opens_spoken(when, spoken):
    """What a caller is told: the voice assistant reads it out, so no '13:30 (America/Los_Angeles)'."""
    assert parse_hours(PHARMACY, None).spoken_opening(at(when)) == spoken


def test_when_it_opens_spoken_a_week_or_more_ahead_and_at_noon_and_midnight():
    summer = parse_hours({"timezone": "Europe/Paris", "open": {"mon": "00:00-12:00", "wed": "12:00-13:00"},
                          "closed": ["2026-12-07", "2026-12-09"]}, None)
    paris = ZoneInfo("Europe/Paris")
    assert summer.spoken_opening(at("2026-12-06T10:00", paris)) == "on Monday, December 14 at 12:00 AM"
    assert summer.spoken_opening(at("2026-12-15T10:00", paris)) == "tomorrow at 12:00 PM"
    assert summer.spoken_opening(at("2026-12-15T10:00", LA)) == "tomorrow at 12:00 PM"  # in the calendar's zone
    never = parse_hours({"timezone": "UTC", "open": {"mon": "09:00-10:00"},
                         "closed": [str(dt.date(2026, 12, 7) + dt.timedelta(weeks=w)) for w in range(60)]}, None)
    assert never.spoken_opening(dt.datetime(2026, 12, 6, tzinfo=dt.UTC)) is None


def test_daylight_saving_change_day():
    """On 8 March 2026 Los Angeles skips from 02:00 to 03:00: opening hours are local wall-clock times."""
    hours = parse_hours({"timezone": "America/Los_Angeles", "open": {"sun": "01:00-04:00,09:00-17:00"}}, None)
    before = dt.datetime(2026, 3, 8, 9, 30, tzinfo=dt.UTC)  # 01:30 PST
    after = dt.datetime(2026, 3, 8, 10, 30, tzinfo=dt.UTC)  # 03:30 PDT: one hour later in UTC, two on the wall
    assert hours.is_open(before) and hours.is_open(after)
    nine = dt.datetime(2026, 3, 8, 16, 0, tzinfo=dt.UTC)  # 09:00 PDT (it would be 08:00 PST)
    assert hours.is_open(nine) and not hours.is_open(nine - dt.timedelta(minutes=1))
    autumn = parse_hours({"timezone": "Europe/Paris", "open": {"sun": "09:00-17:00"}}, None)
    assert autumn.is_open(dt.datetime(2026, 10, 25, 8, 0, tzinfo=dt.UTC))  # 09:00 CET, the day clocks go back


def test_ranges_of_days_wrap_and_lists():
    hours = parse_hours({"timezone": "UTC", "open": {"fri-mon": "10:00-24:00", "wed": "10:00-11:00"}}, None)
    assert [bool(hours.open[d]) for d in range(7)] == [True, False, True, False, True, True, True]
    assert hours.is_open(dt.datetime(2026, 12, 7, 23, 59, tzinfo=dt.UTC))  # Monday, until midnight


@pytest.mark.parametrize(("hours", "words"), [
    ({"open": {"mon": "09:00-17:00"}}, "hours.timezone: missing"),
    ({"timezone": "Mars/Olympus", "open": {"mon": "09:00-17:00"}}, "hours.timezone: 'Mars/Olympus' is not a time zone"),
    ({"timezone": "UTC", "open": {"monday": "09:00-17:00"}}, "hours.open: 'monday' is not a day"),
    ({"timezone": "UTC", "open": {"mon": "9-5"}}, "hours.open.mon: '9-5' is not a range"),
    ({"timezone": "UTC", "open": {"mon": "09:00-25:00"}}, "hours.open.mon: '09:00-25:00' is not a time of day"),
    ({"timezone": "UTC", "open": {"mon": "22:00-02:00"}}, "ends before it starts; a range past midnight is two"),
    ({"timezone": "UTC", "open": {"mon": "09:00-12:00,11:00-13:00"}}, "hours.open.mon: ranges overlap"),
    ({"timezone": "UTC", "open": {"mon-fri": "09:00-17:00", "fri": "10:00-12:00"}}, "fri is in both"),
    ({"timezone": "UTC", "open": {}}, "hours.open: needs at least one day"),
    ({"timezone": "UTC", "open": {"mon": "09:00-17:00"}, "closed": ["25/12/2026"]}, "hours.closed[0]: '25/12/2026'"),
    ({"timezone": "UTC", "open": {"mon": "09:00-17:00"}, "holidays": []},
     "hours.holidays: unknown field (fields: timezone, open, closed)"),
    ("sometimes", "hours: 'sometimes' is not \"always\" or an object"),
    ("allways", "(did you mean 'always'?)"),
    ([], "hours: must be an object"),
])
def test_bad_hours_are_refused_naming_entry_and_field(hours, words):
    data = json.loads((ROOT / "destinations.json").read_text())
    shared = data.pop("hours")  # every other entry gets the shared calendar written out, with its own zone
    for entry in data["destinations"]:
        if isinstance(entry.get("hours"), dict):
            entry["hours"] = {**shared, **entry["hours"], "timezone": data["timezone"]}
        elif "hours" not in entry:
            entry["hours"] = {**shared, "timezone": data["timezone"]}
    data.pop("timezone")
    data["destinations"][1]["hours"] = hours
    with pytest.raises(CatalogueError) as err:
        parse(data)
    assert "destinations[1] (id 'tech_support'): " in str(err.value) and words in str(err.value), str(err.value)


def catalogue_with(**changes):
    data = json.loads((ROOT / "destinations.json").read_text())
    for entry in data["destinations"]:
        entry.update(changes.get(entry["id"], {}))
    return data


@pytest.mark.parametrize(("changes", "words"), [
    ({"billing": {"after_hours": "nowhere"}}, "after_hours: 'nowhere' is not the id of any destination"),
    ({"moving": {"after_hours": "sales"}, "sales": {"after_hours": "moving"}},
     "the chain sales -> moving -> sales comes back on itself"),
    ({"tech_support": {"after_hours": "front_desk"}},
     "after_hours: has no effect: the entry is always open (\"hours\": \"always\")"),
    ({"billing": {"after_hours": "cancellations"}}, "'cancellations' has no handoff"),
])
def test_bad_after_hours_chains_are_refused(changes, words):
    with pytest.raises(CatalogueError) as err:
        parse(catalogue_with(**changes))
    assert words in str(err.value), str(err.value)


def test_a_wrong_catalogue_timezone_is_named():
    data = catalogue_with()
    data["timezone"] = "Pacific Time"
    with pytest.raises(CatalogueError, match="timezone: 'Pacific Time' is not a time zone"):
        parse(data)


BILLING_CALL = [("bot", "Brightline, how can I help?"), ("user", "I was charged twice on my bill.")]


def stamped(when: str, turns=BILLING_CALL, **kwargs):
    body = transfer_request(turns, **kwargs)
    body["message"]["timestamp"] = int(at(when).timestamp() * 1000)  # Vapi sends epoch milliseconds
    return body


FRONT_DESK = next(e["destination"] for e in json.loads((ROOT / "destinations.json").read_text())["destinations"]
                  if e["id"] == "front_desk")


def test_closed_answers_the_after_hours_entry(service_factory, log_records):
    service = service_factory(router="offline")
    body = service.post(stamped("2026-11-26T11:00")).json()  # billing is closed on Thanksgiving
    assert body["destination"]["sipUri"] == "sip:frontdesk@pbx.brightline.example"  # billing's after_hours
    assert body == {"destination": {**FRONT_DESK, "message": "Our billing team is closed right now; they open "
                                    "tomorrow at 8:00 AM. Let me put you through to our front desk instead."}}
    log = decision_logs(log_records)[-1]
    assert (log["outcome"], log["chosen"], log["answered"], log["closed"]) == ("closed", "billing", "front_desk",
                                                                               "billing")


def with_front_desk_hours(catalogue_path):
    """The sample with a front desk that keeps the shared holidays and closes at night."""
    data = catalogue_with(front_desk={"hours": {"open": {"mon-sun": "07:00-22:00"}}})
    catalogue_path.write_text(json.dumps(data))


def test_christmas_closes_the_after_hours_entry_too(service_factory, catalogue_path):
    with_front_desk_hours(catalogue_path)
    body = service_factory(router="offline").post(stamped("2026-12-25T11:00")).json()
    assert body == {"error": "billing is closed now; it opens tomorrow at 9:00 AM"}


def test_closed_at_night_with_nowhere_to_go_says_when_it_opens(service_factory, catalogue_path, log_records):
    with_front_desk_hours(catalogue_path)
    service = service_factory(router="offline")
    body = service.post(stamped("2026-12-01T23:30")).json()  # billing closed, and front_desk (its after_hours)
    assert body == {"error": "billing is closed now; it opens tomorrow at 8:00 AM"}
    log = decision_logs(log_records)[-1]
    assert log["outcome"] == "closed" and log["answered"] is None


NIGHT = "2026-12-01T23:30"  # a Tuesday: billing, moving and (with_front_desk_hours) the front desk are closed
GIBBERISH = [("user", "zxqv blorf")]  # nothing in the catalogue: the offline router answers none


@pytest.mark.parametrize(("path", "turns", "error"), [
    ("offline router", BILLING_CALL, "billing is closed now; it opens tomorrow at 8:00 AM"),
    ("offline no_match, the catalogue's fallback", GIBBERISH, "front desk is closed now; it opens tomorrow at 7:00 AM"),
    ("LLM", BILLING_CALL, "billing is closed now; it opens tomorrow at 8:00 AM"),
    ("LLM none, the catalogue's fallback", BILLING_CALL, "front desk is closed now; it opens tomorrow at 7:00 AM"),
    ("LLM failed, offline rescue", BILLING_CALL, "billing is closed now; it opens tomorrow at 8:00 AM"),
    ("LLM failed, fallback rescue", BILLING_CALL, "front desk is closed now; it opens tomorrow at 7:00 AM"),
    ("offline router, handoff", BILLING_CALL, "billing is closed now; it opens tomorrow at 8:00 AM"),
])
def test_every_path_that_answers_closed_says_when_in_spoken_words(path, turns, error, service_factory, llm_service,
                                                                  fake, catalogue_path, log_records):
    """The error is read out to the caller: 'tomorrow at 8:00 AM', never the operator's 'Wed 08:00 (zone)'."""
    from tests.fake_openai import status
    from tests.vapi_payloads import handoff_request

    with_front_desk_hours(catalogue_path)
    fake.default = {"LLM": answer("billing"), "LLM none, the catalogue's fallback": answer("none")}.get(
        path, status(500))
    if path.startswith("LLM"):
        failure = "offline" if "offline rescue" in path else "fallback" if "fallback rescue" in path else "error"
        service = llm_service(on_llm_failure=failure, max_attempts=1)
    else:
        service = service_factory(router="offline")
    body = handoff_request(turns, {}) if "handoff" in path else transfer_request(turns)
    body["message"]["timestamp"] = int(at(NIGHT).timestamp() * 1000)
    assert service.post(body).json() == {"error": error}
    log = decision_logs(log_records)[-1]
    assert log["closed"] == error.split(" is closed")[0].replace(" ", "_") and log["answered"] is None


def test_a_chain_of_after_hours(service_factory, catalogue_path):
    data = catalogue_with(moving={"after_hours": "billing"})
    catalogue_path.write_text(json.dumps(data))
    service = service_factory(router="offline")
    turns = [("user", "I'm moving next month and need to transfer my service to my new address")]
    # Saturday 11:00: moving is closed on weekends, billing is open on Saturdays until 14:00
    assert service.post(stamped("2026-12-05T11:00", turns)).json()["destination"]["number"] == "+14155550142"
    # Saturday 15:00: moving and billing closed; billing's after_hours front_desk is open
    assert service.post(stamped("2026-12-05T15:00", turns)).json()["destination"]["sipUri"] == \
        "sip:frontdesk@pbx.brightline.example"


def test_no_hours_is_always_open_and_the_llm_path_too(llm_service, fake):
    fake.default = answer("tech_support")
    service = llm_service()
    body = service.post(stamped("2026-12-25T03:00", [("user", "my internet keeps dropping")])).json()
    assert body["destination"]["number"] == "+14155550177"
    fake.default = answer("sales")
    body = service.post(stamped("2026-12-06T12:00", [("user", "I want a faster plan")])).json()
    assert body == {"error": "sales is closed now; it opens tomorrow at 9:00 AM"}


def test_handoffs_follow_the_hours_too(service_factory):
    from tests.vapi_payloads import handoff_request

    body = handoff_request(BILLING_CALL, {})
    body["message"]["timestamp"] = int(at("2026-11-26T11:00").timestamp() * 1000)
    answer_ = service_factory(router="offline").post(body).json()
    assert answer_["destination"]["assistantName"] == "Front Desk Assistant"
    assert "message" not in answer_["destination"]  # Vapi's handoff destinations take none: no closed_message


def test_decision_time_from_the_request():
    assert moment(1_764_010_800_000) == dt.datetime(2025, 11, 24, 19, 0, tzinfo=dt.UTC)  # epoch milliseconds
    assert moment(1_764_010_800) == dt.datetime(2025, 11, 24, 19, 0, tzinfo=dt.UTC)  # seconds
    assert moment("2025-11-24T11:00:00-08:00") == dt.datetime(2025, 11, 24, 19, 0, tzinfo=dt.UTC)
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    for broken in (None, "yesterday", float("nan"), 10**30, "2025-11-24T11:00"):
        assert moment(broken, now) == now


def test_healthz_shows_what_is_open_now(service_factory):
    hours = service_factory(router="offline").client.get("/healthz").json()["hours"]
    assert set(hours) == {"open", "closed", "always_open"}
    assert set(hours["open"]) | set(hours["closed"]) == {"billing", "sales", "moving"}
    assert "front_desk" in hours["always_open"] and "tech_support" in hours["always_open"]
    assert all(text.startswith("it opens ") for text in hours["closed"].values())


def test_route_at_a_given_local_time():
    from click.testing import CliRunner

    from app.cli import cli

    env = {"SWITCHBOARD_DESTINATIONS": str(ROOT / "destinations.json"),
           "SWITCHBOARD_PROMPT": str(ROOT / "prompts/route.md")}
    request = str(ROOT / "examples/transfer-request.json")
    holiday = CliRunner().invoke(cli, ["route", request, "--at", "2026-11-26T11:00"], env=env)  # Thanksgiving
    assert holiday.exit_code == 0, holiday.output
    assert json.loads(holiday.stdout.splitlines()[0])["destination"]["sipUri"] == "sip:frontdesk@pbx.brightline.example"
    assert json.loads(holiday.stderr.strip().splitlines()[-1])["closed"] == "billing"
    weekday = CliRunner().invoke(cli, ["route", request, "--at", "2026-12-01T11:00-08:00"], env=env)
    assert json.loads(weekday.stdout.splitlines()[0])["destination"]["number"] == "+14155550142"
    bad = CliRunner().invoke(cli, ["route", request, "--at", "tomorrow"], env=env)
    assert bad.exit_code == 2 and "is not a time like 2026-12-25T11:00" in bad.output


def test_catalogue_parse_error_class_is_hours_error_inside():
    with pytest.raises(HoursError):
        parse_hours(copy.deepcopy({"timezone": "UTC"}), None)


@pytest.mark.parametrize("stamp", [-62135596800000, -62135596799000, -62135596800, 253402300799000,
                                   253402214400000, "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00",
                                   "9999-12-31T23:59:59Z", "9999-12-31T23:59:59-14:00", 1e20, float("inf"), [1]])
def test_timestamps_at_the_ends_of_the_range_are_no_moment(stamp):
    """Years 1 and 9999 (and anything a year of looking ahead would take past them) are refused, not used: the
    request is decided as of its receipt."""
    from app.catalogue.hours import read_moment

    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert read_moment(stamp) is None and moment(stamp, now) == now


def test_the_range_kept_is_wide():
    from app.catalogue.hours import EARLIEST, LATEST, read_moment

    assert read_moment(int(EARLIEST.timestamp() * 1000)) == EARLIEST
    assert read_moment(int(LATEST.timestamp() * 1000)) == LATEST
    assert read_moment(0) == dt.datetime(1970, 1, 1, tzinfo=dt.UTC)  # as before: a number is a moment
    assert read_moment("2999-06-01T10:00:00+02:00") == dt.datetime(2999, 6, 1, 8, tzinfo=dt.UTC)


def test_opening_times_near_the_ends_of_the_range_never_raise():
    """An instant outside the range (route --at 9999-12-31) is moved inside it, never an OverflowError."""
    from app.catalogue.hours import LATEST

    hours = parse_hours({"timezone": "Pacific/Kiritimati", "open": {"mon": "09:00-10:00"}}, None)
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    assert hours.is_open(far) is False
    assert hours.next_opening(far) is not None and hours.next_opening(far) > LATEST
    catalogue = parse(catalogue_with())
    for at in (dt.datetime.min.replace(tzinfo=dt.UTC), far):
        state = catalogue.hours_now(at)
        assert set(state["open"]) | set(state["closed"]) == {"billing", "sales", "moving"}
