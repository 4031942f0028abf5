"""The README stays true: its settings table is the one app/settings.py generates, and CI runs its test command."""

from __future__ import annotations

from scripts.settings_table import table
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_settings_table_matches_the_code():
    start = README.index("<!-- settings-table -->") + len("<!-- settings-table -->")
    end = README.index("<!-- /settings-table -->")
    assert README[start:end].strip() == table(), "run: python scripts/settings_table.py, paste into README.md"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci/run").read_text()
    assert "test-command" in ci and "bash -c" in ci
    block = README.split("<!-- test-command -->", 1)[1]
    assert "pytest" in block.split("```")[1]


def block_after(heading: str, lang: str) -> str:
    section = README.split(heading, 1)[1]
    return section.split(f"```{lang}\n", 1)[1].split("```", 1)[0]


def test_readme_catalogue_example_is_valid():
    import json

    from app.catalogue.destinations import parse

    catalogue = parse(json.loads(block_after("## The catalogue", "json")))
    assert {e.destination["type"] for e in catalogue.entries if e.destination} == {"number", "sip", "assistant"}


def test_readme_prompt_example_is_valid():
    from app.routers.prompt import parse

    text = block_after("## Routing prompts", "markdown").replace("You route phone calls for ...", "Route.")
    prompt = parse(text)
    assert prompt.name == "route" and not prompt.header.reason


def test_readme_vapi_answer_example_is_what_the_service_answers():
    import json

    from click.testing import CliRunner

    from app.cli import cli
    line = next(line for line in README.splitlines() if line.startswith('# {"destination"'))
    shown = json.loads(line[2:])
    result = CliRunner().invoke(cli, ["route", "--router", "offline", str(ROOT / "examples/transfer-request.json")],
                                env={"SWITCHBOARD_DESTINATIONS": str(ROOT / "destinations.json"),
                                     "SWITCHBOARD_PROMPT": str(ROOT / "prompts/route.md")})
    assert json.loads(result.stdout.splitlines()[0]) == shown
