"""Log lines: valid JSON whatever the values, phone numbers masked in strings only, text format, request ids."""

from __future__ import annotations

import json
import logging

from app.logs import _Formatter, mask_phones, request_id


def record(**fields):
    rec = logging.LogRecord("switchboard", logging.INFO, __file__, 1, "decision", None, None)
    rec.fields = fields
    return rec


def test_json_lines_stay_json_and_numbers_are_not_phones():
    line = _Formatter("json", reveal=False).format(record(total_ms=1234567.5, note="call me on +1 415 555 0123"))
    data = json.loads(line)
    assert data["total_ms"] == 1234567.5 and isinstance(data["ts"], float)
    assert "415 555 0123" not in line and "<phone:23>" in data["note"]


def test_reveal_keeps_numbers_when_opted_in():
    line = _Formatter("json", reveal=True).format(record(note="+1 415 555 0123"))
    assert "+1 415 555 0123" in line


def test_text_format_and_request_id():
    token = request_id.set("req-42")
    try:
        line = _Formatter("text", reveal=False).format(record(outcome="routed"))
    finally:
        request_id.reset(token)
    assert "decision" in line and "outcome=routed" in line and "request_id=req-42" in line


def test_mask_leaves_short_numbers():
    assert mask_phones("extension 204, 3 attempts") == "extension 204, 3 attempts"
