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
