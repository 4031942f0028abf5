"""Recording keeps an allow-list and redacts numbers in every written form; labelling and recording share a
lock, so labelling while calls are recorded loses no line and keeps the file's mode."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest
from click.testing import CliRunner

from app.dataset.labelling import label_file
from app.dataset.recording import Recorder, RecordingError
from app.dataset.redaction import REDACTED, keep, redact_text
from app.decision.decider import Decision
from app.loading import load_catalogue as load
from tests.conftest import ROOT
from tests.vapi_payloads import transfer_request

TURNS = [("bot", "How can I help?"), ("user", "My bill is wrong, call me back on 415 555 0123.")]
CATALOGUE = load(ROOT / "destinations.json")


def hostile_message():
    """A request carrying secrets and caller details in all the places Vapi may put them."""
    message = transfer_request(TURNS, customer_number="+14155559876")["message"]
    message["assistant"] = {"id": "asst-1", "name": "Front Line", "credentials": [{"provider": "x",
                            "apiKey": "sk-live-assistant-credential"}],
                            "server": {"url": "https://x", "headers": {"Authorization": "Bearer srv-header-secret"}},
                            "model": {"messages": [{"role": "system", "content": "Caller Pat Example, acct 99"}]}}
    message["call"]["customer"] = {"name": "Pat Nested-Customer", "number": "+14155550001"}
    message["call"]["phoneCallProviderId"] = "CA-provider-secret"
    message["chat"] = {"id": "chat-1", "customer": {"name": "Chat Customer"}}
    message["artifact"]["messages"][1]["metadata"] = {"callerName": "Pat Metadata"}
    message["artifact"]["variableValues"] = {"customer": {"name": "Pat Variables"}}
    message["artifact"]["transfers"] = [
        {"destination": {"type": "number", "number": "+14155550142"}, "status": "no-answer", "mode": "blind-transfer",
         "transcript": "Agent: hi Pat Transfer-Transcript"},
        {"destination": {"type": "number", "number": "+14155557777"}, "status": "failed"},
    ]
    return message


def test_recording_keeps_only_the_allow_list():
    kept = keep(hostile_message(), CATALOGUE)
    text = json.dumps(kept)
    for secret in ("+14155559876", "Pat Example", "secret-token-should-never-be-logged", "AC0000000000",
                   "415 555 0123", "sk-live-assistant-credential", "srv-header-secret", "Pat Nested-Customer",
                   "CA-provider-secret", "Chat Customer", "Pat Metadata", "Pat Variables", "Pat Transfer-Transcript",
                   "+14155557777"):
        assert secret not in text, secret
    assert set(kept) == {"type", "timestamp", "artifact", "assistant", "call", "chat"}
    assert kept["chat"] == {"id": "chat-1"}
    assert kept["assistant"] == {"id": "asst-1", "name": "Front Line"}
    assert kept["call"] == {"id": "call-0001"}
    assert set(kept["artifact"]) == {"messages", "messagesOpenAIFormatted", "transcript", "transfers"}
    assert "My bill is wrong, call me back on <redacted>." in text
    # the catalogue's own destination is the business's number: kept, so evaluation can replay the exclusion
    assert kept["artifact"]["transfers"][0] == {"status": "no-answer", "mode": "blind-transfer",
                                                "destination": {"type": "number", "number": "+14155550142"}}
    assert kept["artifact"]["transfers"][1]["destination"]["number"] == REDACTED
    tool_call = kept["artifact"]["messages"][-1]["toolCalls"][0]
    assert tool_call["function"]["name"] == "transferCall"


@pytest.mark.parametrize("written", [
    "415 555 0143", "(415) 555-0143", "415.555.0143", "415/555/0143", "415\u2013555\u20130143",
    "415\u2014555\u20140143", "+1 415 555 0143", "+14155550143", "4155550143", "+44 20 7946 0958",
    "four one five five five five zero one four three", "four one five, five five five, oh one four three",
    "415 five five five 0143", "415-555-0143 ext 12",
])
def test_numbers_redacted_in_every_written_form(written):
    out = redact_text(f"call me on {written} please")
    assert out.startswith("call me on <redacted>") and out.endswith("please"), out
    assert not any(d in out.replace("<redacted>", "") for d in ("0143", "0958", "555", "four one"))


@pytest.mark.parametrize("text", ["extension 204", "it was $45.99 on 12/03", "3 attempts in 2026",
                                  "one or two things", "I have 1 question"])
def test_short_numbers_and_words_stay(text):
    assert redact_text(text) == text


def test_numbers_as_json_integers_and_object_keys():
    message = transfer_request(TURNS)["message"]
    message["parameters"] = {"callback": 4155550143, "+14155550143": "caller", "seats": 3,
                             "nested": [{"n": 44207946095}]}
    call = message["artifact"]["messages"][-1]["toolCalls"][0]
    call["function"]["arguments"] = {"phone": 4155550143, "note": "415/555/0143"}
    kept = keep(message, CATALOGUE)
    text = json.dumps(kept)
    assert "4155550143" not in text and "44207946095" not in text and "0143" not in text
    assert kept["parameters"]["seats"] == 3
    assert kept["artifact"]["messages"][1]["time"] == message["artifact"]["messages"][1]["time"]  # timings stay


def decision(chosen="billing"):
    return Decision(outcome="routed", body={}, router="offline", chosen=chosen, answered=chosen)


def test_recording_ids_are_unique_when_a_call_asks_twice(tmp_path):
    recorder = Recorder(tmp_path)
    first = transfer_request(TURNS, call_id="call-9")["message"]
    second = dict(first, timestamp=first["timestamp"] + 5000)
    recorder.record(first, decision(), CATALOGUE)
    recorder.record(second, decision(), CATALOGUE)
    ids = [json.loads(line)["id"] for line in recorder.path.read_text().splitlines()]
    assert len(set(ids)) == 2 and all(i.startswith("call-9-") for i in ids)


def test_unwritable_record_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(RecordingError, match="SWITCHBOARD_RECORD_DIR"):
        Recorder(blocker / "rec")


def test_unwritable_record_dir_stops_serve_with_one_line(tmp_path):
    from app.cli import cli
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = CliRunner().invoke(cli, ["serve"], env={"SWITCHBOARD_RECORD_DIR": str(blocker / "rec"),
                                                     "SWITCHBOARD_DESTINATIONS": str(ROOT / "destinations.json"),
                                                     "SWITCHBOARD_PROMPT": str(ROOT / "prompts/route.md")})
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "SWITCHBOARD_RECORD_DIR" in result.stderr
    assert "Traceback" not in result.output


def recorded(directory, lines=1):
    """The recording is written after the answer is sent (a background task), so wait briefly for it."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        files = list(directory.glob("calls-*.jsonl"))
        if files and len(files[0].read_text().splitlines()) >= lines:
            return files
        time.sleep(0.01)
    raise AssertionError("nothing recorded")


def test_service_records_answered_requests(service_factory, tmp_path):
    record_dir = tmp_path / "rec"
    service = service_factory(router="offline", record_dir=record_dir)
    service.post(transfer_request(TURNS, call_id="call-rec-1"))
    service.post({"message": {"type": "status-update"}})  # not recorded
    files = recorded(record_dir)
    assert len(files) == 1
    rows = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert len(rows) == 1
    row = rows[0]
    assert row["id"].startswith("call-rec-1-") and row["expected"] is None
    assert row["decision"]["chosen"] == "billing" and row["decision"]["outcome"] == "routed"
    assert "+14155559876" not in json.dumps(row) and row["payload"]["message"]["type"] == "transfer-destination-request"


def test_recording_without_redaction_when_opted_out(service_factory, tmp_path):
    service = service_factory(router="offline", record_dir=tmp_path, record_redact=False)
    service.post(transfer_request(TURNS, customer_number="+14155559876"))
    text = recorded(tmp_path)[0].read_text()
    assert "415 555 0123" in text  # the caller's words as said
    assert "+14155559876" not in text  # customer details are not on the allow-list at all


def dataset(tmp_path, n=3):
    path = tmp_path / "calls.jsonl"
    rows = [{"id": f"c{i}", "expected": None, "tags": [], "payload": transfer_request(TURNS),
             "decision": {"chosen": "billing"}} for i in range(n)]
    rows[1]["expected"] = "sales"  # already labelled: not asked
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path.chmod(0o644)
    return path


def labels(path):
    return [json.loads(line)["expected"] for line in path.read_text().splitlines()]


def test_label_accept_correct_skip(tmp_path):
    path = dataset(tmp_path, 4)
    answers = iter(["", "nonsense", "tech_support", "s", ""])  # the last Enter: at the end of the file
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


def test_calls_recorded_while_labelling_are_kept(tmp_path):
    """Reported: labelling rewrote the file from the copy it read at start, so 5 lines became 2."""
    recorder = Recorder(tmp_path / "rec")
    path = recorder.path
    path.chmod(0o644)
    for i in range(2):
        recorder.record(transfer_request(TURNS, call_id=f"early-{i}")["message"], decision(), CATALOGUE)

    def ask(prompt):
        if prompt.startswith("end of "):  # every call offered: go on
            return ""
        # the service goes on recording while the operator labels
        recorder.record(transfer_request(TURNS, call_id=f"late-{ask.n}")["message"], decision("sales"), CATALOGUE)
        ask.n += 1
        return ""
    ask.n = 0

    counts = label_file(path, {"billing", "sales", "none"}, ask, lambda _: None)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert counts["labelled"] == 2
    assert len(rows) == 4 and [r["expected"] for r in rows] == ["billing", "billing", None, None]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644  # was turned into 0600


def test_label_several_files(tmp_path):
    from app.cli import cli
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = dataset(tmp_path / "a", 3), dataset(tmp_path / "b", 3)
    # per file: two calls (piped answers: no question at the end of a file)
    result = CliRunner().invoke(cli, ["label", str(first), str(second)], input="\n\n" * 2,
                                env={"SWITCHBOARD_DESTINATIONS": str(ROOT / "destinations.json")})
    assert result.exit_code == 0, result.output
    assert labels(first) == ["billing", "sales", "billing"] and labels(second) == ["billing", "sales", "billing"]
    assert "labelled 4, skipped 0, left 0" in result.output


def test_label_names_the_file_and_line_of_a_broken_row(tmp_path):
    from app.cli import cli
    path = dataset(tmp_path, 2)
    path.write_text(path.read_text() + "{not json\n")
    result = CliRunner().invoke(cli, ["label", str(path)], env={"SWITCHBOARD_DESTINATIONS":
                                                                 str(ROOT / "destinations.json")})
    assert result.exit_code == 2 and f"{path}:3: not JSON" in result.stderr


def test_a_timestamp_that_is_no_number_still_records(tmp_path):
    recorder = Recorder(tmp_path)
    message = transfer_request(TURNS, call_id="call-inf")["message"]
    message["timestamp"] = float("inf")
    recorder.record(message, decision(), CATALOGUE)
    chat = transfer_request(TURNS)["message"]
    del chat["call"]
    chat["chat"] = {"id": "chat-7", "assistantId": "asst-9", "customer": {"name": "Pat"}}
    recorder.record(chat, decision(), CATALOGUE)
    rows = [json.loads(line) for line in recorder.path.read_text().splitlines()]
    assert rows[0]["id"].startswith("call-inf-") and rows[1]["id"].startswith("chat-7-")
    assert rows[1]["payload"]["message"]["chat"] == {"id": "chat-7", "assistantId": "asst-9"}


def test_numbers_as_json_floats_are_redacted_like_integers():
    """Reported: a phone number written as a JSON float (4155550123.0) was recorded as it was."""
    import pydantic_core

    message = transfer_request(TURNS)["message"]
    message["parameters"] = pydantic_core.from_json(
        '{"callback": 4155550123.0, "exponent": 4.15555e9, "negative": -4155550123.0, "big": 1e300, '
        '"price": 45.99, "six_digits": 123456.7, "ratio": 0.5, "text": "4.155550123e9", "nested": [4155550123.5]}')
    call = message["artifact"]["messages"][-1]["toolCalls"][0]
    call["function"]["arguments"] = {"phone": 4155550143.0}
    kept = keep(message, CATALOGUE)
    params = kept["parameters"]
    assert params["callback"] == params["exponent"] == params["negative"] == params["big"] == REDACTED
    assert params["nested"] == [REDACTED] and params["text"] == f"{REDACTED}e9"
    assert (params["price"], params["six_digits"], params["ratio"]) == (45.99, 123456.7, 0.5)  # not numbers to dial
    assert kept["artifact"]["messages"][-1]["toolCalls"][0]["function"]["arguments"] == {"phone": REDACTED}
    assert "415555" not in json.dumps(kept)


def big_conversation(chars: int = 900_000) -> dict:
    turns: list[tuple[str, str]] = [("user", "Hi, I'm calling about my account, my number is 415 555 0143.")]
    last = ("user", "Please put me through to someone about my bill.")
    while len(json.dumps(transfer_request([*turns, last]))) < chars:
        turns += [("bot", "Could you tell me more? " * 8), ("user", "My internet drops every evening. " * 8)] * 40
    return transfer_request([*turns, last], call_id="call-big")


def replayed(row_or_message: dict, engine):
    from app.vapi.messages import parse_request

    message = row_or_message["payload"]["message"] if "payload" in row_or_message else row_or_message
    return engine.query(parse_request(message))


def test_a_big_conversation_is_recorded_as_the_window_the_router_saw(service_factory, tmp_path):
    """Reported: beside clients posting 0.9 MiB conversations, recording took normal callers' median from 28 ms
    to 514-611 ms: every record redacted and wrote the whole body."""
    from app.vapi.messages import parse_request

    service = service_factory(router="offline", record_dir=tmp_path, record_redact=False)
    body = big_conversation()
    assert len(json.dumps(body)) > 850_000
    assert service.post(body).status_code == 200
    files = recorded(tmp_path)
    line = files[0].read_text()
    assert len(line) < 64_000  # a bounded window, not the 0.9 MiB body
    engine = service.state.engine
    original = engine.query(parse_request(body["message"]))
    again = replayed(json.loads(line), engine)
    assert again.conversation.turns == original.conversation.turns and original.conversation.omitted > 500
    assert again.conversation.hint == original.conversation.hint and again.allowed == original.allowed


def test_recording_waits_for_no_disk(service_factory, tmp_path, monkeypatch):
    """The writer, not the caller, waits for the disk: while the recording file's lock cannot be had, callers
    on one keep-alive connection are still answered, and the records are written once it can."""
    import contextlib
    import http.client
    import threading

    import app.dataset.recording as recording

    release = threading.Event()
    real_locked = recording.locked

    @contextlib.contextmanager
    def stuck(path):
        release.wait(20)
        with real_locked(path):
            yield

    service = service_factory(router="offline", record_dir=tmp_path)
    monkeypatch.setattr(recording, "locked", stuck)
    conn = http.client.HTTPConnection("127.0.0.1", service.thread.port, timeout=5)
    try:
        for i in range(3):
            conn.request("POST", "/webhook", json.dumps(transfer_request(TURNS, call_id=f"wait-{i}")),
                         {"content-type": "application/json"})
            response = conn.getresponse()
            assert response.status == 200 and json.loads(response.read())["destination"]
    finally:
        release.set()
        conn.close()
    assert len(recorded(tmp_path, 3)[0].read_text().splitlines()) == 3


@pytest.mark.parametrize("budget", [8000, 500])
def test_a_recorded_window_replays_to_what_the_router_saw(budget):
    """Every call of the shipped datasets (all three views, hints, handoffs, per-assistant subsets), recorded
    and replayed: the same turns, hint, and allowed and left-out destinations, even when the window is small."""
    from app.dataset.window import window
    from app.engine import build_engine
    from app.evaluation.run import iter_cases
    from app.loading import load_routing
    from app.settings import Settings
    from app.vapi.messages import parse_json, parse_request

    settings = Settings(router="offline", destinations=ROOT / "destinations.json", conversation_chars=budget)
    engine = build_engine(settings, load_routing(settings), None)
    cases = list(iter_cases([ROOT / "datasets/sample.jsonl", ROOT / "datasets/holdout.jsonl"]))
    assert len(cases) > 90
    for where, case in cases:
        message = parse_json(json.dumps(case.payload).encode())
        query = engine.query(parse_request(message))
        copy = keep(window(message, query, engine.catalogue), engine.catalogue, redact=False)
        again = engine.query(parse_request(copy))
        assert again.conversation.turns == query.conversation.turns, where
        assert again.conversation.hint == query.conversation.hint, where
        assert (again.allowed, again.unreachable) == (query.allowed, query.unreachable), where


@pytest.mark.parametrize("later", [60, 5000])
def test_a_failed_destination_stays_out_after_many_later_transfers(service_factory, tmp_path, log_records, later):
    """Reported: with more than 50 later transfers the failed one was no longer read, and billing came back."""
    from app.vapi.messages import parse_request
    from tests.conftest import decision_logs
    from tests.vapi_payloads import earlier_transfer

    failed = earlier_transfer({"type": "number", "number": "+14155550142", "extension": "204"}, "no-answer")
    others = [earlier_transfer({"type": "number", "number": "+14155550123"}, "completed"),
              earlier_transfer({"type": "number", "number": "+19995550100"}, "busy")]  # not in the catalogue
    transfers = [failed] + [others[i % 2] for i in range(later)]
    service = service_factory(router="offline", record_dir=tmp_path)
    body = service.post(transfer_request(TURNS, transfers=transfers)).json()
    assert body["destination"].get("extension") != "204"
    log = decision_logs(log_records)[-1]
    assert log["unreachable"] == ["billing (no-answer)"] and log["answered"] != "billing"
    row = json.loads(recorded(tmp_path)[0].read_text())
    kept = row["payload"]["message"]["artifact"]["transfers"]
    assert len(kept) <= 2  # the latest to each catalogue destination, not 5,000
    assert {"status": "no-answer", "mode": "blind-transfer",
            "destination": {"type": "number", "number": "+14155550142", "extension": "204"}} in kept
    again = service.state.engine.query(parse_request(row["payload"]["message"]))
    assert again.unreachable == (("billing", "no-answer"),)
