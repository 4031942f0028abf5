"""One home for the errors that are the user's to fix (app/errors.py), one place that turns them into an `Error:`
line and exit 2 (the CLI's group), and small facts written once: the logger's name, prometheus-client's
directory variable, the shortest timeout, the first pydantic error in words, the base model for others' JSON."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import BaseModel, ValidationError

from app.errors import UserError, first_error
from tests.conftest import ROOT

APP = ROOT / "app"
ENV = {"SWITCHBOARD_DESTINATIONS": str(ROOT / "destinations.json"),
       "SWITCHBOARD_PROMPT": str(ROOT / "prompts/route.md")}


def modules() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(encoding="utf-8"))) for path in sorted(APP.rglob("*.py"))]


def code_strings(tree: ast.Module) -> list[str]:
    """String constants that are not docstrings."""
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs]


def test_every_user_facing_error_is_a_user_error():
    from app.catalogue.destinations import CatalogueError
    from app.dataset.labelling import LabelError
    from app.dataset.recording import RecordingError
    from app.evaluation.run import DatasetError
    from app.loading import ConfigError
    from app.routers.prompt import PromptError
    from app.service.server import ServeError
    from app.settings import SettingsError
    from app.vapi.messages import PayloadError

    for error in (CatalogueError, PromptError, ConfigError, SettingsError, PayloadError, RecordingError, ServeError,
                  LabelError, DatasetError):
        assert issubclass(error, UserError), error


def test_any_user_error_is_one_line_and_exit_2(monkeypatch):
    """Whatever the command and whichever UserError, even one the CLI has never heard of."""
    import app.loading
    from app.cli import cli

    class NewKindOfProblem(UserError):
        pass

    def refuse(settings):
        raise NewKindOfProblem("the widget is sideways; set SWITCHBOARD_WIDGET=upright")

    monkeypatch.setattr(app.loading, "startup_checks", refuse)
    result = CliRunner().invoke(cli, ["check"], env=ENV)
    assert result.exit_code == 2
    assert result.stderr == "Error: the widget is sideways; set SWITCHBOARD_WIDGET=upright\n"
    assert "Traceback" not in result.output


def test_only_the_cli_exits():
    """Library code raises a UserError for the CLI to say. The one exception is app/service/hangups.py: it turns a
    stop signal during serve's start into SystemExit (so serve's clean-up runs) and then ends by that signal,
    which is the process's way to stop, not an error to word."""
    found = []
    for path, tree in modules():
        if path.is_relative_to(APP / "cli") or path == APP / "service/hangups.py":
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr == "exit") or \
                    (isinstance(node, ast.Name) and node.id in ("SystemExit", "exit")):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == [], "library code raises (a UserError); only app/cli exits"


def test_the_logger_is_named_in_one_place():
    literal = [f"{path.relative_to(ROOT)}:{node.lineno}" for path, tree in modules() for node in ast.walk(tree)
               if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
               and node.func.attr == "getLogger" and any(isinstance(a, ast.Constant) for a in node.args)]
    assert literal == [], "use logging.getLogger(app.logs.LOGGER)"


def test_prometheus_directory_variable_is_named_in_one_place():
    holders = [str(path.relative_to(ROOT)) for path, tree in modules()
               if "PROMETHEUS_MULTIPROC_DIR" in code_strings(tree)]
    assert holders == ["app/service/server.py"], "use app.service.server.METRICS_DIR_ENV"


def test_the_shortest_timeout_is_what_the_decider_keeps_back_plus_one_attempt():
    from app.decision import decider
    from app.settings import MIN_ATTEMPT_S, MIN_TIMEOUT, RESERVE_S, Settings

    assert (decider.RESERVE_S, decider.MIN_ATTEMPT_S) == (RESERVE_S, MIN_ATTEMPT_S)
    assert MIN_TIMEOUT == RESERVE_S + MIN_ATTEMPT_S
    assert Settings(timeout=MIN_TIMEOUT).timeout == MIN_TIMEOUT
    with pytest.raises(ValidationError, match=r"greater than or equal to 0\.3"):
        Settings(timeout=MIN_TIMEOUT - 0.01)


def test_the_first_pydantic_error_is_put_into_words_in_one_place():
    copies = [f"{path.relative_to(ROOT)}:{node.lineno}" for path, tree in modules() if path != APP / "errors.py"
              for node in ast.walk(tree)
              if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Call)
              and isinstance(node.value.func, ast.Attribute) and node.value.func.attr == "errors"]
    assert copies == [], "use app.errors.first_error"


def test_first_error():
    class Inner(BaseModel):
        role: str

    class Outer(BaseModel):
        items: list[Inner]
        n: int

    with pytest.raises(ValidationError) as caught:
        Outer.model_validate({"items": [{"role": "user"}, {}], "n": "x"})
    first = first_error(caught.value, "message")
    assert (first.where, first.loc, first.message, first.type, first.count) == (
        "message.items.1.role", ("items", 1, "role"), "Field required", "missing", 2)
    with pytest.raises(ValidationError) as caught:
        Outer.model_validate([1])
    whole = first_error(caught.value)
    assert (whole.where, whole.type, whole.input) == ("", "model_type", [1])


def test_one_base_model_for_what_other_parties_send():
    bases = [str(path.relative_to(ROOT)) for path, tree in modules() for node in ast.walk(tree)
             if isinstance(node, ast.ClassDef) and node.name.lstrip("_") == "Loose"]
    assert bases == ["app/vapi/messages.py"], "import Loose from app.vapi.messages"


def test_unknown_setting_warnings_come_before_a_settings_error():
    """Reported: SWITCHBOARD_TIMOUT=10 SWITCHBOARD_HEDGE_DELAY=6 only said the hedge delay was not shorter than
    the timeout (5): the typo that explained it was never shown."""
    from app.cli import cli

    result = CliRunner().invoke(cli, ["check"], env={**ENV, "SWITCHBOARD_TIMOUT": "10", "SWITCHBOARD_HEDGE_DELAY": "6"})
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Warning: SWITCHBOARD_TIMOUT (did you mean 'SWITCHBOARD_TIMEOUT'?)"), lines
    assert lines[1].startswith("Error: Invalid settings: SWITCHBOARD_HEDGE_DELAY=6"), lines


def test_a_bad_value_from_a_flag_names_the_flag(monkeypatch):
    """Reported: `serve --port 70000` blamed SWITCHBOARD_PORT=70000."""
    from app.cli import cli, settings_from
    from app.settings import SettingsError

    monkeypatch.setenv("SWITCHBOARD_PORT", "8001")  # set, but not what was wrong
    with pytest.raises(SettingsError) as caught:
        settings_from(port=70000)
    assert "--port 70000: Input should be less than or equal to 65535" in str(caught.value)
    assert "SWITCHBOARD_PORT" not in str(caught.value)
    monkeypatch.setenv("SWITCHBOARD_PORT", "70000")  # from the environment: the variable is named as before
    with pytest.raises(SettingsError, match="SWITCHBOARD_PORT='70000'"):
        settings_from()
    monkeypatch.delenv("SWITCHBOARD_PORT")
    result = CliRunner().invoke(cli, ["serve", "--port", "70000"], env=ENV)  # refused before binding anything
    assert result.exit_code == 2 and "--port 70000:" in result.stderr and "SWITCHBOARD_PORT" not in result.stderr


def test_a_dot_env_name_in_any_case_is_read_and_named_as_set(tmp_path, monkeypatch):
    """pydantic-settings reads a .env's names in any case; the settings' own look-ups in the file did not: a
    .env's `switchboard_destinations=nothere.json` was said to be "the default of SWITCHBOARD_DESTINATIONS", and
    `switchboard_timeout=0.01` was refused as SWITCHBOARD_TIMEOUT=None (the value it had, unseen)."""
    from app.cli import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("switchboard_destinations=nothere.json\n")
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 2
    assert f"(looked for it at {tmp_path / 'nothere.json'}: SWITCHBOARD_DESTINATIONS in {tmp_path / '.env'}, " \
           f"taken from {tmp_path})" in result.stderr, result.stderr
    (tmp_path / ".env").write_text("Switchboard_Timeout=0.01\n")
    result = CliRunner().invoke(cli, ["check"], env=ENV)
    assert result.exit_code == 2 and "SWITCHBOARD_TIMEOUT='0.01': Input should be greater than" in result.stderr, \
        result.stderr


def test_where_a_path_came_from_is_worded_in_one_place():
    """"X, taken from FOLDER" was written four times in app/settings.py (eval's -p had its own copy): one
    origin_text says it for every path setting and flag."""
    from app.settings import origin_text

    found = [(str(path.relative_to(ROOT)), text) for path, tree in modules() for text in code_strings(tree)
             if text.rstrip().endswith("taken from")]
    assert found == [("app/settings.py", ", taken from ")], found
    assert origin_text("-p", Path("p.md")) == f"-p, taken from {Path.cwd()}"
    assert origin_text("-p", Path("/p.md")) == "-p"
