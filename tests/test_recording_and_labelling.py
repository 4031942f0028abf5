"""Recording redacts by default; labelling writes back safely and survives interruption."""

from __future__ import annotations

import json
import time

import pytest

from app.labelling import label_file
from app.recording import redact
from tests.vapi_payloads import transfer_request

TURNS = [("bot", "How can I help?"), ("user", "My bill is wrong, call me back on 415 555 0123.")]


def test_redaction_removes_caller_details_and_secrets():
    message = transfer_request(TURNS, customer_number="+14155559876")["message"]
    out = json.dumps(redact(message))
    for secret in ("+14155559876", "Pat Example", "secret-token-should-never-be-logged", "AC0000000000",
                   "415 555 0123"):
        assert secret not in out
    assert redact(message)["phoneNumber"] == {"id": "pn-1", "provider": "twilio"}
    assert "My bill is wrong" in out


def recorded(directory, lines=1):
    """The recording is written after the answer is sent (a background task), so wait briefly for it."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        files = list(directory.glob("calls-*.jsonl"))
        if files and len(files[0].read_text().splitlines()) >= lines:
            return files
        time.sleep(0.01)
    raise AssertionError("nothing recorded")


def test_service_records_answered_transfer_requests(service_factory, tmp_path):
    record_dir = tmp_path / "rec"
    service = service_factory(router="offline", record_dir=record_dir)
    service.post(transfer_request(TURNS, call_id="call-rec-1"))
    service.post({"message": {"type": "status-update"}})  # not recorded
    files = recorded(record_dir)
    assert len(files) == 1
    rows = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert len(rows) == 1
    row = rows[0]
    assert row["id"] == "call-rec-1" and row["expected"] is None
    assert row["decision"]["chosen"] == "billing" and row["decision"]["outcome"] == "routed"
    assert "+14155559876" not in json.dumps(row) and row["payload"]["message"]["type"] == "transfer-destination-request"


def test_recording_without_redaction_when_opted_out(service_factory, tmp_path):
    service = service_factory(router="offline", record_dir=tmp_path, record_redact=False)
    service.post(transfer_request(TURNS, customer_number="+14155559876"))
    assert "+14155559876" in recorded(tmp_path)[0].read_text()


def dataset(tmp_path, n=3):
    path = tmp_path / "calls.jsonl"
    rows = [{"id": f"c{i}", "expected": None, "tags": [], "payload": transfer_request(TURNS),
             "decision": {"chosen": "billing"}} for i in range(n)]
    rows[1]["expected"] = "sales"  # already labelled: not asked
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def labels(path):
    return [json.loads(line)["expected"] for line in path.read_text().splitlines()]


def test_label_accept_correct_skip(tmp_path):
    path = dataset(tmp_path, 4)
    answers = iter(["", "nonsense", "tech_support", "s"])
    shown = []
    counts = label_file(path, {"billing", "sales", "tech_support", "none"}, lambda _: next(answers), shown.append)
    assert counts == {"labelled": 2, "skipped": 1, "remaining": 0}
    assert labels(path) == ["billing", "sales", "tech_support", None]
    assert any("'nonsense' is not an id" in s for s in shown)
    assert any("Caller: My bill is wrong" in s for s in shown)


def test_label_quit_keeps_what_was_given(tmp_path):
    path = dataset(tmp_path, 4)
    answers = iter(["none", "q"])
    counts = label_file(path, {"billing", "none"}, lambda _: next(answers), lambda _: None)
    assert counts["labelled"] == 1 and counts["remaining"] == 2
    assert labels(path) == ["none", "sales", None, None]


def test_label_interrupted_loses_no_lines(tmp_path):
    path = dataset(tmp_path, 5)

    def ask(_):
        if ask.n == 2:
            raise KeyboardInterrupt
        ask.n += 1
        return ""
    ask.n = 0

    with pytest.raises(KeyboardInterrupt):
        label_file(path, {"billing", "none"}, ask, lambda _: None)
    assert labels(path) == ["billing", "sales", "billing", None, None]
    assert len(path.read_text().splitlines()) == 5
    assert not list(tmp_path.glob(".calls.jsonl.*"))  # no temp file left behind
