"""Log lines: valid JSON whatever the values; ids, keys and timestamps exactly as given; no caller words."""

from __future__ import annotations

import json
import logging
import uuid

from app.logs import _Formatter, request_id
from tests.conftest import decision_logs
from tests.fake_openai import answer
from tests.vapi_payloads import transfer_request


def record(**fields):
    rec = logging.LogRecord("switchboard", logging.INFO, __file__, 1, "decision", None, None)
    rec.fields = fields
    return rec


def test_json_lines_stay_json_and_values_are_not_altered():
    ids = ["7a1c3e52-1234-4567-8901-23456789abcd", "call-20261129-0001234567", "a1b2c3d4e5f60718"]
    line = _Formatter("json").format(record(total_ms=1234567.5, call_id=ids[0], request_id=ids[1], key=ids[2]))
    data = json.loads(line)
    assert data["total_ms"] == 1234567.5 and isinstance(data["ts"], float)
    assert (data["call_id"], data["request_id"], data["key"]) == tuple(ids)  # was "7a1c3e<phone:89>abcd"


def test_generated_ids_are_never_altered():
    """Reported: 33% of UUID call ids and 11% of request ids were changed by phone masking."""
    formatter = _Formatter("json")
    for _ in range(300):
        call_id, rid = str(uuid.uuid4()), uuid.uuid4().hex[:16]
        data = json.loads(formatter.format(record(call_id=call_id, request_id=rid)))
        assert (data["call_id"], data["request_id"]) == (call_id, rid)


def test_text_format_and_request_id():
    token = request_id.set("req-42")
    try:
        line = _Formatter("text").format(record(outcome="routed"))
    finally:
        request_id.reset(token)
    assert "decision" in line and "outcome=routed" in line and "request_id=req-42" in line


def test_caller_words_and_numbers_stay_out_of_the_service_log(llm_service, fake, log_records):
    fake.script(answer("billing"))
    call_id = "7a1c3e52-1234-4567-8901-23456789abcd"
    body = transfer_request([("user", "my number is 415 555 0143 and my bill is wrong")], call_id=call_id,
                            customer_number="+14155550143")
    llm_service().post(body)
    assert decision_logs(log_records)[-1]["call_id"] == call_id
    text = "\n".join(_Formatter("json").format(r) for r in log_records)
    for secret in ("555 0143", "5550143", "bill is wrong", "secret-token-should-never-be-logged"):
        assert secret not in text


def test_text_lines_cannot_be_forged_and_values_are_unambiguous():
    """Reported: with SWITCHBOARD_LOG_FORMAT=text, a call id with a newline wrote what looked like another event."""
    forged = "c-1\n12:00:00 INFO    decision outcome=forged"
    fields = {"call_id": forged, "spaced": "a b", "eq": "k=v", "quote": 'say "hi"', "slash": "a\\b",
              "breaks": "\r\x85\u2028\u2029\x0b\x0c\x1c", "bidi": "\u202eevil", "nul": "\x00", "empty": "",
              "plain": "billing", "number": 1.5, "none": None}
    line = _Formatter("text").format(record(**fields))
    assert len(line.splitlines()) == 1 and line.isprintable()
    assert 'call_id="c-1\\n12:00:00 INFO    decision outcome=forged"' in line
    assert ' spaced="a b" eq="k=v" quote="say \\"hi\\"" slash="a\\\\b" ' in line
    assert 'breaks="\\r\\x85\\u2028\\u2029\\x0b\\x0c\\x1c" bidi="\\u202eevil" nul="\\x00" empty=""' in line
    assert line.endswith(" plain=billing number=1.5 none=None")


def test_text_traces_cannot_start_an_event_line():
    try:
        raise ValueError("bad id\n12:00:00 INFO    decision outcome=forged")
    except ValueError:
        import sys

        rec = logging.LogRecord("switchboard", logging.ERROR, __file__, 1, "internal_error", None, sys.exc_info())
    lines = _Formatter("text").format(rec).splitlines()
    assert all(line.startswith("  ") for line in lines[1:]) and "forged" in lines[-1]


def test_json_lines_escape_the_line_separators_json_leaves_alone():
    line = _Formatter("json").format(record(call_id="a\u2028b\u2029c\x85d"))
    assert len(line.splitlines()) == 1 and json.loads(line)["call_id"] == "a\u2028b\u2029c\x85d"


def test_every_line_names_its_process():
    """Reported: with serve --workers 2 nothing told which worker wrote a line."""
    import os

    data = json.loads(_Formatter("json").format(record(outcome="routed")))
    assert data["pid"] == os.getpid() and list(data)[:4] == ["ts", "level", "event", "pid"]
    line = _Formatter("text").format(record(outcome="routed"))
    assert f" [{os.getpid()}] decision outcome=routed" in line


def test_an_unknown_setting_event_keeps_a_name_with_a_space_whole(monkeypatch, log_records):
    """The event was built by re-parsing the CLI's "NAME (did you mean 'X'?)" text at its first space, and an
    environment variable's name may hold one: `SWITCHBOARD_TIMOUT X` logged variable=SWITCHBOARD_TIMOUT and a
    hint starting "X (did you mean". Settings now give (name, guess) pairs; each says them in its own format."""
    from app import logs
    from app.settings import unknown_variables

    monkeypatch.setenv("SWITCHBOARD_TIMOUT X", "3")
    monkeypatch.setenv("SWITCHBOARD_NOTHING_LIKE_IT", "1")
    logs.unknown_settings(logging.getLogger(logs.LOGGER), unknown_variables(None))
    said = {r.fields["variable"]: r.fields.get("hint") for r in log_records  # type: ignore[attr-defined]
            if r.getMessage() == "unknown_setting"}
    assert said == {"SWITCHBOARD_TIMOUT X": "did you mean 'SWITCHBOARD_TIMEOUT'?", "SWITCHBOARD_NOTHING_LIKE_IT": None}
