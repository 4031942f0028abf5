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
