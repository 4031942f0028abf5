"""The CLI in-process: route, check, settings (environment, .env, unknown names, contradictions), help that is
quick to show and whose examples run in a fresh clone."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import pytest
from click.testing import CliRunner

from app.cli import COMMANDS, cli
from tests.conftest import ROOT
from tests.fake_openai import answer
from tests.vapi_payloads import transfer_request

BASE = {"SWITCHBOARD_DESTINATIONS": str(ROOT / "destinations.json"),
        "SWITCHBOARD_PROMPT": str(ROOT / "prompts/route.md")}


def run(args, env=None, stdin=None):
    return CliRunner().invoke(cli, args, env={**BASE, **(env or {})}, input=stdin)


def test_route_offline_from_stdin():
    body = json.dumps(transfer_request([("user", "I want to cancel my service")]))
    result = run(["route", "--router", "offline", "-"], stdin=body)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert json.loads(lines[0])["destination"]["sipUri"] == "sip:retention@pbx.brightline.example"
    details = json.loads(result.stderr.strip().splitlines()[-1])  # serve's decision line, in serve's format
    assert details["event"] == "decision" and details["level"] == "info"
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


def test_check_takes_the_catalogue_as_an_argument(tmp_path):
    broken = tmp_path / "mine.json"
    broken.write_text('{"destinations": []}')
    result = run(["check", str(broken)])
    assert result.exit_code == 2 and f"{broken}: destinations" in result.stderr
    assert run(["check", str(ROOT / "destinations.json")]).exit_code == 0


@pytest.mark.parametrize(("env", "words"), [
    ({"SWITCHBOARD_ROUTER": "llm"}, "SWITCHBOARD_ROUTER=llm needs OPENAI_API_KEY"),
    ({"SWITCHBOARD_ON_LLM_FAILURE": "fallback", "SWITCHBOARD_DESTINATIONS": "{no_fallback}"},
     "SWITCHBOARD_ON_LLM_FAILURE=fallback needs a top-level \"fallback\""),
    ({"SWITCHBOARD_RECORD_DIR": "{a_file}/rec"}, "SWITCHBOARD_RECORD_DIR="),
    ({"SWITCHBOARD_TIMEOUT": "2", "SWITCHBOARD_HEDGE_DELAY": "3"}, "SWITCHBOARD_HEDGE_DELAY=3 is not shorter than"),
    ({"SWITCHBOARD_SECRET_HEADER": "X-Token"}, "SWITCHBOARD_SECRET is unset"),
    ({"SWITCHBOARD_PORT": "99999"}, "SWITCHBOARD_PORT='99999'"),
])
def test_check_makes_every_start_up_check_serve_makes(tmp_path, env, words):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    no_fallback = tmp_path / "nf.json"
    data = json.loads((ROOT / "destinations.json").read_text())
    del data["fallback"]
    for entry in data["destinations"]:
        entry.pop("after_hours", None)
        entry.pop("closed_message", None)  # heard only when after_hours answers: refused without it
    no_fallback.write_text(json.dumps(data))
    env = {k: v.format(a_file=a_file, no_fallback=no_fallback) for k, v in env.items()}
    for command in (["check"], ["serve"]):
        result = run(command, env=env)
        assert result.exit_code == 2, (command, result.output)
        assert words in result.stderr and "Traceback" not in result.output, (command, result.stderr)


def test_bad_setting_names_the_variable():
    result = run(["check"], env={"SWITCHBOARD_TIMEOUT": "soon"})
    assert result.exit_code == 2 and "SWITCHBOARD_TIMEOUT='soon'" in result.stderr


def test_an_unknown_setting_is_a_warning_with_a_guess():
    """Reported: SWITCHBOARD_TIMOUT=3 was silently ignored."""
    result = run(["check"], env={"SWITCHBOARD_TIMOUT": "3"})
    assert result.exit_code == 0
    assert "Warning: SWITCHBOARD_TIMOUT (did you mean 'SWITCHBOARD_TIMEOUT'?) is not a Switchboard setting" in \
        result.stderr


def test_settings_from_a_dot_env_file(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("SWITCHBOARD_ROUTER=OFFLINE\nSWITCHBOARD_OFFLINE_TRESHOLD=0.5\n"
                                   f"SWITCHBOARD_DESTINATIONS={ROOT / 'destinations.json'}\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["check", "--prompt", str(ROOT / "prompts/route.md")])
    assert result.exit_code == 0, result.output
    assert "router: offline (SWITCHBOARD_ROUTER=offline)" in result.stdout  # any case is accepted
    assert "SWITCHBOARD_OFFLINE_TRESHOLD (did you mean 'SWITCHBOARD_OFFLINE_THRESHOLD'?)" in result.stderr
    monkeypatch.setenv("SWITCHBOARD_ROUTER", "llm")  # the environment wins over the file
    result = CliRunner().invoke(cli, ["check", "--prompt", str(ROOT / "prompts/route.md")])
    assert "needs OPENAI_API_KEY" in result.stderr


def test_serve_llm_without_key_fails_fast():
    result = run(["serve"], env={"SWITCHBOARD_ROUTER": "llm"})
    assert result.exit_code == 2 and "OPENAI_API_KEY" in result.stderr


def test_python_dash_m_app_is_the_same_command():
    out = subprocess.run([sys.executable, "-m", "app", "--help"], capture_output=True, text=True, cwd=ROOT, check=True)
    for command in ("serve", "route", "check", "eval", "label"):
        assert command in out.stdout
    assert "switchboard label recordings/calls-*.jsonl" in out.stdout  # the loop, on the first screen


def test_help_imports_no_heavy_module():
    """`switchboard --help` took 0.8-1.0 s because the openai client was imported at start."""
    code = ("import sys, app.cli; from click.testing import CliRunner; CliRunner().invoke(app.cli.cli, ['--help']); "
            "print(sorted(m for m in ('openai', 'starlette', 'uvicorn', 'jsonschema', 'pydantic', 'aiohttp') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
    code = code.replace("['--help']", "['check', '--help']")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def examples(command: str) -> list[str]:
    text = run([command, "--help"]).output
    block = text.split("Examples:", 1)[1] if "Examples:" in text else text.split("Example:", 1)[1]
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip().startswith("switchboard ")]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_has_examples_naming_files_that_exist(command):
    lines = examples(command)
    assert lines, f"`switchboard {command} --help` shows no example"
    for line in lines:
        for word in shlex.split(line)[1:]:
            if re.search(r"\.(json|jsonl|md)$", word) and not word.startswith(("recordings/", "eval-out/", "/tmp/")):
                assert (ROOT / word).exists(), f"{command} --help names {word}, which a fresh clone does not have"


@pytest.mark.parametrize("command", ["route", "check"])
def test_route_and_check_examples_run(command, monkeypatch):
    monkeypatch.chdir(ROOT)
    for line in examples(command):
        words = shlex.split(line)
        env = {}
        while "=" in words[0]:
            key, value = words.pop(0).split("=", 1)
            env[key] = value
        result = CliRunner().invoke(cli, words[1:], env=env)
        expected = 2 if env.get("SWITCHBOARD_ROUTER") == "llm" else 0  # the example that shows a refusal
        assert result.exit_code == expected, (line, result.output)


@pytest.mark.parametrize(("env", "words"), [
    ({"SWITCHBOARD_TIMEOUT": "0.1"}, "SWITCHBOARD_TIMEOUT='0.1': Input should be greater than or equal to 0.3"),
    ({"SWITCHBOARD_HMAC_SECRET": "not base64!", "SWITCHBOARD_HMAC_SECRET_IS_BASE64": "true"},
     "SWITCHBOARD_HMAC_SECRET is not valid base64"),
])
def test_settings_that_cannot_work_are_refused(env, words):
    result = run(["check"], env=env)
    assert result.exit_code == 2 and words in result.stderr, result.output
