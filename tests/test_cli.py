"""The CLI in-process: route, check, and settings errors that tell the fix."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from app.cli import _register, cli
from tests.conftest import ROOT
from tests.fake_openai import answer
from tests.vapi_payloads import transfer_request

_register()


def run(args, env=None, stdin=None):
    base = {"SWITCHBOARD_DESTINATIONS": str(ROOT / "destinations.json"),
            "SWITCHBOARD_PROMPT": str(ROOT / "prompts/route.md")}
    return CliRunner().invoke(cli, args, env={**base, **(env or {})}, input=stdin)


def test_route_offline_from_stdin():
    body = json.dumps(transfer_request([("user", "I want to cancel my service")]))
    result = run(["route", "--router", "offline", "-"], stdin=body)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert json.loads(lines[0])["destination"]["sipUri"] == "sip:retention@pbx.brightline.example"
    details = json.loads(result.stderr.strip().splitlines()[-1])
    assert details["chosen"] == "cancellations" and details["router"] == "offline" and "total_ms" in details


def test_route_with_the_llm(fake, tmp_path):
    fake.script(answer("moving"))
    path = tmp_path / "call.json"
    path.write_text(json.dumps(transfer_request([("user", "I'm moving house")])))
    result = run(["route", str(path)], env={"OPENAI_BASE_URL": fake.base_url})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[0])["destination"]["number"] == "+14155550166"
    details = json.loads(result.stderr.strip().splitlines()[-1])
    assert details["prompt_tokens"] == 321 and details["model"] == "gpt-4.1-mini"


def test_route_bad_input_exits_2():
    result = run(["route", "--router", "offline", "-"], stdin="{nope")
    assert result.exit_code == 2 and "not valid JSON" in result.stderr


def test_check_ok_and_broken(tmp_path):
    ok = run(["check"])
    assert ok.exit_code == 0 and "9 destinations" in ok.output and "router: offline" in ok.output
    broken = tmp_path / "d.json"
    data = json.loads((ROOT / "destinations.json").read_text())
    data["destinations"][2]["destination"]["number"] = "555"
    broken.write_text(json.dumps(data))
    result = run(["check"], env={"SWITCHBOARD_DESTINATIONS": str(broken)})
    assert result.exit_code == 2
    assert "destinations[2] (id 'sales'): destination.number: '555' is not E.164" in result.stderr


def test_bad_setting_names_the_variable():
    result = run(["check"], env={"SWITCHBOARD_TIMEOUT": "soon"})
    assert result.exit_code == 2 and "SWITCHBOARD_TIMEOUT='soon'" in result.stderr


def test_serve_llm_without_key_fails_fast():
    result = run(["serve"], env={"SWITCHBOARD_ROUTER": "llm"})
    assert result.exit_code == 2 and "OPENAI_API_KEY" in result.stderr


def test_python_dash_m_app_is_the_same_command():
    out = subprocess.run([sys.executable, "-m", "app", "--help"], capture_output=True, text=True, cwd=ROOT, check=True)
    for command in ("serve", "route", "check", "eval", "label"):
        assert command in out.stdout
