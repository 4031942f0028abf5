"""`switchboard route --text`: the request built from what the caller said (valid for Vapi's own SDK, and answered
as a saved body would be), a conversation from several --text, FILE and --text exclusive, --handoff, --assistant,
--at and --explain; route's decision line is serve's (same fields, same format); --catalogue and --prompt."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from app.cli import cli
from app.cli.route import text_request, text_turn
from tests import vapi_sdk
from tests.conftest import ROOT, assert_valid_answer
from tests.vapi_payloads import transfer_request

BILLING_NUMBER = "+14155550142"
TUESDAY_11 = "2026-12-01T11:00"  # billing is open (America/Los_Angeles)
THANKSGIVING_11 = "2026-11-26T11:00"  # billing is closed; front_desk answers
ENV = {"SWITCHBOARD_DESTINATIONS": str(ROOT / "destinations.json"),
       "SWITCHBOARD_PROMPT": str(ROOT / "prompts/route.md")}


def run(args: list[str], env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["route", "-r", "offline", *args], env={**ENV, **(env or {})}, input=stdin)


def answer_of(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def decision_line(result: Result) -> dict[str, Any]:
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert line["event"] == "decision", line
    return line  # type: ignore[no-any-return]


def sdk_check(body: dict[str, Any]) -> None:
    """Vapi's SDK parses the message (ServerMessageTransfer/HandoffDestinationRequest) with no unknown field, only
    values it knows, and gives back exactly what was built."""
    kind = "handoff" if body["message"]["type"] == "handoff-destination-request" else "transfer"
    vapi_sdk._strict(vapi_sdk._envelope(kind)[0], body["message"], "message")


# --- the request built ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("handoff", "assistant"), [(False, None), (True, None), (False, "Brightline Sales Line")])
def test_the_built_request_is_valid_for_vapis_sdk(handoff: bool, assistant: str | None) -> None:
    turns = [text_turn("Hi, I was charged twice"), text_turn("assistant: Which month?"), text_turn("November")]
    at = dt.datetime(2026, 12, 1, 19, 0, 1, 500_000, tzinfo=dt.UTC)
    body = text_request(turns, at, handoff=handoff, assistant=assistant)
    sdk_check(body)
    message = body["message"]
    assert message["timestamp"] == int(at.timestamp() * 1000)
    assert [(m["role"], m["message"]) for m in message["artifact"]["messages"][:-1]] == [
        ("user", "Hi, I was charged twice"), ("bot", "Which month?"), ("user", "November")]
    assert message["artifact"]["messages"][-1]["toolCalls"][0]["function"]["name"] == \
        ("handoff" if handoff else "transferCall")


def test_turns_assistant_and_caller_prefixes() -> None:
    assert text_turn("I was charged twice") == ("user", "I was charged twice")
    assert text_turn("Assistant: How can I help?") == ("bot", "How can I help?")
    assert text_turn("  BOT:hello") == ("bot", "hello")
    assert text_turn("caller: assistant: is a word I said") == ("user", "assistant: is a word I said")
    assert text_turn("the assistant: no, only a leading one counts") == \
        ("user", "the assistant: no, only a leading one counts")


def test_route_text_answers_as_the_same_request_saved_to_a_file(tmp_path: Path, service_factory: Any) -> None:
    result = run(["--text", "I was charged twice", "--at", TUESDAY_11])
    answer = answer_of(result)
    assert answer["destination"]["number"] == BILLING_NUMBER
    assert_valid_answer(answer)
    line = decision_line(result)
    assert line["chosen"] == "billing" and line["type"] == "transfer-destination-request"
    # the same request, built and saved: route FILE and the service answer it the same way
    at = dt.datetime.fromisoformat(TUESDAY_11 + "-08:00")
    body = text_request([("user", "I was charged twice")], at)
    (tmp_path / "call.json").write_text(json.dumps(body))
    assert answer_of(run([str(tmp_path / "call.json")])) == answer
    service = service_factory(router="offline")
    reply = service.post(body)
    assert reply.status_code == 200 and reply.json() == answer


def test_several_texts_are_a_conversation_with_assistant_turns() -> None:
    result = run(["--text", "hi, I'm moving", "--text", "assistant: where to?", "--text", "Denver, next month",
                  "--at", TUESDAY_11, "--explain"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "from messages: 3 turns" in out
    assert "  Caller: hi, I'm moving\n  Assistant: where to?\n  Caller: Denver, next month\n" in out
    assert "Decided as of Tue 01 Dec 2026 11:00 (America/Los_Angeles)" in out
    assert "answered: moving" in out


def test_at_decides_the_built_request_at_that_time() -> None:
    result = run(["--text", "I was charged twice", "--at", THANKSGIVING_11])
    answer = answer_of(result)
    assert answer["destination"]["sipUri"] == "sip:frontdesk@pbx.brightline.example"
    line = decision_line(result)
    assert line["closed"] == "billing" and line["answered"] == "front_desk"
    assert line["timestamp_ignored"] is None  # the request's own timestamp is that moment


def test_handoff_and_assistant() -> None:
    result = run(["--text", "I want to upgrade my plan", "--handoff", "--at", TUESDAY_11])
    answer = answer_of(result)
    assert answer["destination"]["type"] == "assistant"
    assert_valid_answer(answer, "handoff")
    assert decision_line(result)["type"] == "handoff-destination-request"
    sales = run(["--text", "My modem is broken", "--assistant", "Brightline Sales Line", "--at", TUESDAY_11,
                 "--explain"])
    assert sales.exit_code == 0, sales.output
    assert "tech_support, cancellations, outages, moving, account_security: not in this assistant's set" in \
        sales.stdout
    unknown = run(["--text", "My modem is broken", "--assistant", "Nobody", "--at", TUESDAY_11])
    assert unknown.exit_code == 0 and "--assistant 'Nobody' is not in" in unknown.stderr
    assert "every entry is offered" in unknown.stderr


@pytest.mark.parametrize(("args", "words"), [
    ([], "no call to decide: give FILE (a saved webhook body, or - for stdin) or --text"),
    ([str(ROOT / "examples/transfer-request.json"), "--text", "hi"], "FILE and --text both given"),
    (["-", "--text", "hi"], "not both"),
    ([str(ROOT / "examples/transfer-request.json"), "--handoff"], "--handoff and --assistant build a request"),
    (["--text", "   "], "has no words"),
    (["--text", "assistant:"], "has no words"),
])
def test_file_or_text_is_a_usage_error_naming_both_ways(args: list[str], words: str) -> None:
    result = run(args, stdin="{}")
    assert result.exit_code == 2 and words in result.stderr, result.output
    assert "Traceback" not in result.output


# --- the decision line is serve's ---------------------------------------------------------------------------------

def test_routes_decision_line_has_serves_fields(tmp_path: Path) -> None:
    """route printed its own `details` JSON (other fields: no assistant, hedges, errors, catalogue hash, no
    event or time); now its line is the one `switchboard serve` writes, compared here with a real serve's."""
    import httpx2

    from tests.service_process import ServiceProcess

    # and a request with no caller words (outcome no_conversation): route's line lacked serve's catalogue_hash
    silent = tmp_path / "silent.json"
    silent.write_text(json.dumps(transfer_request([("bot", "Brightline, how can I help?")])))
    bodies = [ROOT / "examples/transfer-request.json", silent]
    service = ServiceProcess({**ENV, "SWITCHBOARD_ROUTER": "offline"}, tmp_path / "serve.log")
    try:
        for body in bodies:
            reply = httpx2.post(service.url + "/webhook", content=body.read_bytes(),
                                headers={"content-type": "application/json"}, timeout=10)
            assert reply.status_code == 200
    finally:
        service.stop()
    served = [json.loads(line) for line in (tmp_path / "serve.log").read_text().splitlines()
              if line.startswith("{") and '"event": "decision"' in line]
    assert len(served) == 2, (tmp_path / "serve.log").read_text()[-2000:]
    assert [s["outcome"] for s in served] == ["routed", "no_conversation"]
    for body, serves in zip(bodies, served, strict=True):
        line = decision_line(run([str(body)]))
        assert set(line) == set(serves), body.name
        for same in ("outcome", "chosen", "answered", "prompt_hash", "catalogue_hash", "call_id", "router"):
            if same in serves:
                assert line[same] == serves[same], (body.name, same)


def test_route_honours_the_log_format() -> None:
    result = run(["--text", "I was charged twice", "--at", TUESDAY_11], env={"SWITCHBOARD_LOG_FORMAT": "text"})
    assert result.exit_code == 0, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert " INFO " in last and " decision type=transfer-destination-request " in last
    assert " chosen=billing " in last and not last.startswith("{")
    json.loads(result.stdout)  # the answer alone on stdout


def test_route_leaves_the_callers_logging_as_it_was() -> None:
    import logging

    logger = logging.getLogger("switchboard")
    before = (logger.handlers[:], logger.level, logger.propagate)
    run(["--text", "I was charged twice"])
    assert (logger.handlers[:], logger.level, logger.propagate) == before


# --- --catalogue and --prompt -------------------------------------------------------------------------------------

def test_catalogue_and_prompt_flags_win_over_the_settings(tmp_path: Path) -> None:
    data = json.loads((ROOT / "destinations.json").read_text())
    for entry in data["destinations"]:
        if entry["id"] == "billing":
            entry["id"] = "accounts"
    data["assistants"] = {name: [i if i != "billing" else "accounts" for i in ids]
                          for name, ids in data.get("assistants", {}).items()}
    catalogue = tmp_path / "mine.json"
    catalogue.write_text(json.dumps(data))
    prompt = tmp_path / "mine.md"
    prompt.write_text((ROOT / "prompts/route.md").read_text().replace('name = "route"', 'name = "mine"', 1))
    env = {"SWITCHBOARD_DESTINATIONS": str(tmp_path / "missing.json"),
           "SWITCHBOARD_PROMPT": str(tmp_path / "missing.md")}
    result = run(["--text", "I was charged twice", "--at", TUESDAY_11, "--catalogue", str(catalogue),
                  "--prompt", str(prompt)], env=env)
    assert result.exit_code == 0, result.output
    line = decision_line(result)
    assert line["chosen"] == "accounts" and line["prompt"] == "mine"
    assert answer_of(result)["destination"]["number"] == BILLING_NUMBER
