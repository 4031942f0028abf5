"""A broken catalogue refuses to load, naming the entry and the field."""

from __future__ import annotations

import copy
import json

import pytest

from app.catalogue.destinations import CatalogueError, parse
from app.loading import load_catalogue as load
from tests.conftest import ROOT

SAMPLE = json.loads((ROOT / "destinations.json").read_text())


def broken(mutate):
    data = copy.deepcopy(SAMPLE)
    mutate(data)
    return data


def test_sample_catalogue_loads_with_all_three_kinds():
    cat = parse(SAMPLE)
    assert 6 <= len(cat.entries) <= 10
    assert {e.destination["type"] for e in cat.entries if e.destination} == {"number", "sip", "assistant"}
    assert cat.fallback == "front_desk"
    assert cat.allowed_for(None, "Brightline Sales Line") == ("billing", "sales", "spanish", "front_desk")
    assert cat.allowed_for("someone-else", None) == cat.ids


@pytest.mark.parametrize(("mutate", "words"), [
    (lambda d: d["destinations"][1]["destination"].update(number="4155550177"),
     "destinations[1] (id 'tech_support'): destination.number: '4155550177' is not E.164"),
    (lambda d: d["destinations"][0]["destination"].update(trasferPlan={"mode": "blind-transfer"}),
     "destinations[0] (id 'billing'): destination: unknown field 'trasferPlan' (did you mean 'transferPlan'?)"),
    (lambda d: d["destinations"][1]["destination"]["transferPlan"].update(mode="warm-ish"),
     "destinations[1] (id 'tech_support'): destination.transferPlan.mode"),
    (lambda d: d["destinations"][3]["destination"].pop("sipUri"),
     "destinations[3] (id 'cancellations'): destination: 'sipUri' is a required property"),
    (lambda d: d["destinations"][4]["destination"].update(transferMode="teleport"),
     "destinations[4] (id 'outages'): destination.transferMode"),
    (lambda d: d["destinations"][0]["destination"].update(type="fax"), "destination.type: must be one of"),
    (lambda d: d["destinations"][0]["destination"].update(extension="12345678901"),
     "destinations[0] (id 'billing'): destination.extension"),
    (lambda d: d["destinations"][2].update(id="billing"), "destinations[2] (id 'billing'): id is used twice"),
    (lambda d: d["destinations"][2].update(id="Sales Team"), "destinations[2].id: 'Sales Team' must be lowercase"),
    (lambda d: d["destinations"][2].update(id="none"), "id 'none' is reserved"),
    (lambda d: d["destinations"][2].pop("description"), "destinations[2] (id 'sales'): description: Field required"),
    (lambda d: d["destinations"][2].update(description="   "), "description is empty"),
    (lambda d: d["destinations"][2].update(examples="buy"), "destinations[2] (id 'sales'): examples"),
    (lambda d: d["destinations"][2].update(colour="red"),
     "destinations[2] (id 'sales'): colour: unknown field (fields: id, description, examples, destination, handoff, "
     "hours, after_hours, closed_message)"),
    (lambda d: d.update(fallback="reception"), "fallback: 'reception' is not the id of any destination"),
    (lambda d: d["assistants"].update(Sales=["sales", "nope"]), "assistants['Sales']: unknown destination id"),
    (lambda d: d["assistants"].update(Sales=[]), "assistants['Sales']: the list is empty"),
    (lambda d: d.update(destinations=[]), "destinations: List should have at least 1 item"),
    (lambda d: d.pop("destinations"), "destinations: Field required"),
])
def test_broken_catalogue_names_entry_and_field(mutate, words):
    with pytest.raises(CatalogueError) as info:
        parse(broken(mutate), "destinations.json")
    assert words in str(info.value)
    assert str(info.value).startswith("destinations.json: ")


def test_non_e164_number_allowed_when_check_disabled():
    data = broken(lambda d: d["destinations"][0]["destination"].update(number="5550142", numberE164CheckEnabled=False))
    assert parse(data).get("billing").destination["number"] == "5550142"


def test_file_errors(tmp_path):
    with pytest.raises(CatalogueError, match="file not found; set SWITCHBOARD_DESTINATIONS"):
        load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(CatalogueError, match="not valid JSON"):
        load(bad)
    bad.write_text("[]")
    with pytest.raises(CatalogueError, match="top level"):
        load(bad)


def test_service_refuses_to_start_on_a_broken_catalogue(service_factory, catalogue_path):
    catalogue_path.write_text(json.dumps(broken(lambda d: d["destinations"][5]["destination"].update(number="12"))))
    with pytest.raises(CatalogueError, match=r"destinations\[5\] \(id 'moving'\): destination.number"):
        service_factory(router="offline")


@pytest.mark.parametrize("index", [0, 3, 4])  # a number, a SIP and an assistant destination
def test_display_name_from_vapi_sdk_3_is_accepted(index):
    """Vapi's SDK 3.0 adds `name` to every transfer destination; `check` used to refuse it as unknown."""
    data = copy.deepcopy(SAMPLE)
    data["destinations"][index]["destination"]["name"] = "Shown in Vapi's dashboard"
    assert parse(data).entries[index].destination["name"] == "Shown in Vapi's dashboard"


@pytest.mark.parametrize(("patch", "words"), [
    ({"nmae": "x"}, "unknown field 'nmae' (did you mean 'name'?)"),
    ({"trasferPlan": {"mode": "blind-transfer"}}, "unknown field 'trasferPlan' (did you mean 'transferPlan'?)"),
    ({"transferPlan": {"mode": "blind-transfer", "sipVerb": "shout"}}, "transferPlan.sipVerb: 'shout' is not one of"),
])
def test_real_typos_are_still_refused(patch, words):
    data = copy.deepcopy(SAMPLE)
    data["destinations"][3]["destination"].update(patch)
    with pytest.raises(CatalogueError) as err:
        parse(data)
    assert words in str(err.value)


def test_sip_verb_dial_with_a_caller_id():
    """Vapi's schema declares sipVerb `type: object` with a string enum, so no value passed; `dial` is what
    callerId on a SIP destination needs. The extracted schema is corrected (scripts/extract_vapi_schemas.py)."""
    data = copy.deepcopy(SAMPLE)
    data["destinations"][3]["destination"].update({"callerId": "+14155550100",
                                                   "transferPlan": {"mode": "blind-transfer", "sipVerb": "dial"}})
    assert parse(data).entries[3].destination["transferPlan"]["sipVerb"] == "dial"


# --- Typos at every level (issue 17): the same help as inside `destination`, no stray dot ------------------------


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda d: d["destinations"][1].update(after_hour="front_desk"),
     "destinations.json: destinations[1] (id 'tech_support'): after_hour: unknown field "
     "(did you mean 'after_hours'?)"),
    (lambda d: d.update(fallbak="front_desk"), "destinations.json: fallbak: unknown field (did you mean 'fallback'?)"),
    (lambda d: d["destinations"][2].update(exmaples=["x"]),
     "destinations.json: destinations[2] (id 'sales'): exmaples: unknown field (did you mean 'examples'?)"),
    (lambda d: d["destinations"][0].update(closed_mesage="x"),
     "destinations.json: destinations[0] (id 'billing'): closed_mesage: unknown field (did you mean "
     "'closed_message'?)"),
    (lambda d: d["hours"].update(closd=["2026-12-24"]),
     "destinations.json: hours.closd: unknown field (did you mean 'closed'?)"),
    (lambda d: d["destinations"][2]["hours"].update(closd=["2026-12-24"]),
     "destinations.json: destinations[2] (id 'sales'): hours.closd: unknown field (did you mean 'closed'?)"),
    (lambda d: d["destinations"][2]["hours"].update(timezon="UTC"),
     "destinations.json: destinations[2] (id 'sales'): hours.timezon: unknown field (did you mean 'timezone'?)"),
    (lambda d: d.update(closed=["2026-12-24"]),
     "destinations.json: closed: unknown field (it belongs inside \"hours\": {\"closed\": ...})"),
    (lambda d: d["destinations"][5].update(open={"mon": "09:00-17:00"}),
     "destinations.json: destinations[5] (id 'moving'): open: unknown field (it belongs inside \"hours\": "
     "{\"open\": ...})"),
])
def test_unknown_fields_get_a_did_you_mean_at_every_level(mutate, expected):
    """Before: `destinations[1] (id 'tech_support').after_hour: Extra inputs are not permitted` (a stray dot, no
    hint), `fallbak: Extra inputs are not permitted`, and `hours: unknown field 'closd' (fields: ...)`."""
    with pytest.raises(CatalogueError) as info:
        parse(broken(mutate), "destinations.json")
    assert str(info.value) == expected


@pytest.mark.parametrize(("mutate", "meant"), [
    (lambda d: d["destinations"][0]["destination"].update(trasferPlan={}), "transferPlan"),  # targets.py
    (lambda d: d["destinations"][0].update(after_hour="front_desk"), "after_hours"),  # destinations.py
    (lambda d: d.update(fallbak="front_desk"), "fallback"),
    (lambda d: d["hours"].update(closd=[]), "closed"),  # hours.py, the shared calendar
    (lambda d: d["destinations"][2]["hours"].update(timezon="UTC"), "timezone"),  # hours.py, an entry's
    (lambda d: d["destinations"][1].update(hours="Allways"), "always"),  # hours.py, "always"
    (lambda d: d["destinations"][0].update(closed_message="Back {open}."), "{opens}"),  # messages.py: as written
])
def test_every_did_you_mean_in_the_catalogue_is_worded_alike(mutate, meant):
    """One helper (app.errors.did_you_mean) words them all: before, `hours` said (did you mean "always"?) and a
    closed_message (did you mean {opens}? ...), each module with its own difflib call and cutoff (0.5 there)."""
    from app.errors import did_you_mean

    with pytest.raises(CatalogueError) as info:
        parse(broken(mutate), "destinations.json")
    assert did_you_mean(meant, [meant]) == f" (did you mean {meant!r}?)"  # the helper's words, whole
    assert str(info.value).count(did_you_mean(meant, [meant])) == 1, str(info.value)


def test_the_catalogue_has_no_did_you_mean_of_its_own():
    """A new check in app/catalogue gets app.errors' wording and its length cap, not a difflib call of its own."""
    sources = {p.name: p.read_text() for p in (ROOT / "app/catalogue").glob("*.py")}
    assert len(sources) >= 5
    assert [name for name, text in sources.items() if "difflib" in text or "did you mean" in text] == []


# --- Numbers and SIP URIs that cannot work (issue 17) -----------------------------------------------------------


def test_every_number_in_the_sample_is_valid_for_its_country():
    import phonenumbers

    numbers = [e["destination"]["number"] for e in SAMPLE["destinations"]
               if e.get("destination", {}).get("type") == "number"]
    assert len(numbers) >= 5
    for number in numbers:
        assert phonenumbers.is_valid_number(phonenumbers.parse(number)), number
    parse(SAMPLE)


@pytest.mark.parametrize(("number", "words"), [
    ("+1602555013", "'+1602555013' is too short for +1 (North America: 10 digits after +1)"),
    ("+160255501300", "is too long for +1 (North America: 10 digits after +1)"),
    ("+19995550100", "is not a valid number for +1 (North America): its plan has no such area code"),
    ("+3361234567", "is too short for +33 (France: 9 digits after +33)"),
    ("+4420718387", "is too short for +44 (United Kingdom: 7, 9 or 10 digits after +44)"),
    ("+9991234567", "does not start with a country calling code"),
    ("4155550177", "is not E.164"),
])
def test_numbers_that_cannot_be_dialled_are_refused(number, words):
    with pytest.raises(CatalogueError) as info:
        parse(broken(lambda d: d["destinations"][0]["destination"].update(number=number)))
    message = str(info.value)
    assert "destinations[0] (id 'billing'): destination.number: " in message and words in message, message
    assert "\"numberE164CheckEnabled\": false" in message  # the way out, for a number Vapi should dial as written


@pytest.mark.parametrize("number", ["+16025550130", "+442071838750", "+33612345678", "+4915112345678",
                                    "+80012345678"])
def test_numbers_valid_in_their_country_pass(number):
    assert parse(broken(lambda d: d["destinations"][0]["destination"].update(number=number))).entries[0]


def test_a_number_outside_the_plan_names_the_data_version_and_the_upgrade():
    """The plan is phonenumbers' copy of it (review 13): a range opened after that release is refused until an
    upgrade, so the error says which data refused it and how to get newer data, before the Vapi-side way out."""
    import phonenumbers

    with pytest.raises(CatalogueError) as info:
        parse(broken(lambda d: d["destinations"][0]["destination"].update(number="+19995550100")))
    message = str(info.value)
    assert f"(in phonenumbers {phonenumbers.__version__}'s data)" in message, message
    assert message.index("pip install -U phonenumbers") < message.index("\"numberE164CheckEnabled\": false")


def test_the_number_check_can_be_turned_off():
    data = broken(lambda d: d["destinations"][0]["destination"].update(number="+1602555013",
                                                                       numberE164CheckEnabled=False))
    assert parse(data).get("billing").destination["number"] == "+1602555013"


@pytest.mark.parametrize(("uri", "ok"), [
    ("finance@pbx.example", False), ("sip:", False), ("sips: ", False), ("http://pbx.example", False),
    ("tel:+14155550142", False), ("", False),
    ("sip:finance@pbx.example", True), ("SIP:Finance@PBX.example", True), ("sips:finance@pbx.example:5061", True),
])
def test_sip_uris_need_their_scheme(uri, ok):
    data = broken(lambda d: d["destinations"][3]["destination"].update(sipUri=uri))
    if ok:
        assert parse(data).get("cancellations").destination["sipUri"] == uri
        return
    with pytest.raises(CatalogueError) as info:
        parse(data)
    assert f"destinations[3] (id 'cancellations'): destination.sipUri: {uri!r} is not a SIP URI: it must start " \
        "with \"sip:\" or \"sips:\"" in str(info.value)


def test_a_sip_uri_without_its_scheme_is_shown_with_it():
    with pytest.raises(CatalogueError) as info:
        parse(broken(lambda d: d["destinations"][3]["destination"].update(sipUri="finance@pbx.example")))
    assert str(info.value).endswith('like "sip:finance@pbx.example"')
