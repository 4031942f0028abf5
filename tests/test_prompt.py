"""Prompt files: header, placeholders, static part first, output schema."""

from __future__ import annotations

import pytest

from app.catalogue.destinations import parse as parse_catalogue
from app.routers.prompt import PromptError, compile_all, load, parse
from tests.conftest import ROOT
from tests.test_catalogue import SAMPLE

GOOD = '+++\nname = "t"\n+++\nPick one.\n{{catalogue}}\n---\n{{conversation}}\n{{hint}}\n'


@pytest.mark.parametrize(("text", "words"), [
    ("no header {{catalogue}} {{conversation}}", "must start with a '+++' line"),
    ('+++\nname = "t"\n{{catalogue}}', "no closing '+++'"),
    ("+++\nname = \n+++\n{{catalogue}}{{conversation}}", "not valid TOML"),
    ('+++\nname = "t"\ncolour = 1\n+++\n{{catalogue}}{{conversation}}', "header field colour"),
    ('+++\nname = "t"\ntemperature = 9\n+++\n{{catalogue}}{{conversation}}', "header field temperature"),
    ('+++\nname = "t"\n+++\n{{catalogue}} {{conversation}} {{caller_name}}', "unknown placeholders: caller_name"),
    ('+++\nname = "t"\n+++\n{{conversation}}', "missing placeholders: {{catalogue}}"),
    ('+++\nname = "t"\n+++\n{{catalogue}}', "missing placeholders: {{conversation}}"),
    ('+++\nname = "t"\n+++\n{{conversation}} {{catalogue}}', "put {{catalogue}} before {{conversation}}"),
    ('+++\nname = "t"\n+++\n{{hint}} {{catalogue}} {{conversation}}', "put {{hint}} after {{conversation}}"),
])
def test_bad_prompts_say_what_to_fix(text, words):
    with pytest.raises(PromptError) as info:
        parse(text, "prompts/x.md")
    assert words in str(info.value) and str(info.value).startswith("prompts/x.md: ")


def test_static_part_is_the_system_message_and_built_once_per_subset():
    cat = parse_catalogue(SAMPLE)
    compiled = compile_all(parse(GOOD), cat)
    assert set(compiled) == cat.subsets()  # transfer and handoff sets, for everyone and per assistant
    assert {cat.ids, cat.assistants["Brightline Sales Line"]} <= set(compiled)
    full = compiled[cat.ids]
    messages = full.messages("Caller: hi", "billing")
    assert messages[0]["content"].startswith("Pick one.\n- billing:")
    assert "- none: No destination fits" in messages[0]["content"]
    assert messages[1]["content"].startswith("Caller: hi")
    assert "Hint from the voice assistant" in messages[1]["content"]
    assert full.schema["properties"]["destination"]["enum"][-1] == "none"
    assert full.schema["additionalProperties"] is False


def test_shipped_prompts_load_and_differ():
    a, b = load(ROOT / "prompts/route.md"), load(ROOT / "prompts/route-with-reason.md")
    assert a.hash != b.hash and len(a.hash) == 12
    assert not a.header.reason and b.header.reason
    schema = compile_all(b, parse_catalogue(SAMPLE))[parse_catalogue(SAMPLE).ids].schema
    assert list(schema["properties"]) == ["reason", "destination"]  # reason comes first


def test_missing_prompt_file(tmp_path):
    with pytest.raises(PromptError, match="SWITCHBOARD_PROMPT"):
        load(tmp_path / "nope.md")
