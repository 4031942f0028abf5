"""The documentation stays true: the README and the pages under docs/ show what the code does.

Their settings table is the one app/settings.py generates, every example they show (catalogues, prompts,
dataset rows, answers) is what the code accepts or answers, every `switchboard ...` line they show runs
(a real command, real options, files that exist), the architecture page lists exactly the modules under
app/, and CI runs the README's test command, which builds the site strictly (broken links fail it).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from scripts.settings_table import table
from tests.conftest import ROOT

DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = sorted(DOCS.glob("*.md"))
EVERY_FILE = [README, *PAGES]
SAMPLE_ENV = {"SWITCHBOARD_DESTINATIONS": str(ROOT / "destinations.json"),
              "SWITCHBOARD_PROMPT": str(ROOT / "prompts/route.md")}
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)  # our own files only


def text(path: Path) -> str:
    return path.read_text()


def blocks(path: Path, *langs: str) -> list[str]:
    """The bodies of the fenced code blocks in a Markdown file, in order, of the given languages (all if none)."""
    return [body for lang, body in FENCE.findall(text(path)) if not langs or lang in langs]


def page(name: str) -> str:
    return text(DOCS / name)


def test_the_pages_exist_and_mkdocs_builds_them_all():
    names = {p.name for p in PAGES}
    assert {"index.md", "vapi.md", "catalogue.md", "routing.md", "evaluation.md", "operations.md",
            "reliability.md", "architecture.md"} <= names
    config = text(ROOT / "mkdocs.yml")
    assert all(f": {name}" in config for name in names), "every page in docs/ must be in mkdocs.yml's nav"


def test_readme_is_short():
    size = len(README.read_bytes())
    assert size < 15_000, f"README.md is {size} bytes: move detail to a page under docs/ and link to it"


def test_settings_table_matches_the_code():
    doc = page("operations.md")
    start = doc.index("<!-- settings-table -->") + len("<!-- settings-table -->")
    end = doc.index("<!-- /settings-table -->")
    assert doc[start:end].strip() == table(), "run: python scripts/settings_table.py, paste into docs/operations.md"
    assert "<!-- settings-table -->" not in text(README), "the settings table lives in docs/operations.md only"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci/run").read_text()
    assert "test-command" in ci and "bash -c" in ci
    command = text(README).split("<!-- test-command -->", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    assert "pytest" in command
    mkdocs = command.split(".venv/bin/mkdocs build --strict", 1)
    assert len(mkdocs) == 2, "the test command builds the docs with --strict"
    # -q hides warnings from --strict's count: a broken link would then pass (mkdocs 1.6).
    assert " -q" not in mkdocs[1].split("&&", 1)[0]


def test_catalogue_example_is_valid():
    from app.catalogue.destinations import parse

    catalogue = parse(json.loads(blocks(DOCS / "catalogue.md", "json")[0]))
    assert {e.destination["type"] for e in catalogue.entries if e.destination} == {"number", "sip", "assistant"}
    assert any(e.handoff for e in catalogue.entries) and catalogue.fallback == "billing"


def test_prompt_example_is_valid():
    from app.routers.prompt import parse

    text_ = blocks(DOCS / "routing.md", "markdown")[0].replace("You route phone calls for ...", "Route.")
    prompt = parse(text_)
    assert prompt.name == "route" and not prompt.header.reason


def _catalogue_with(fragment: dict[str, Any]) -> dict[str, Any]:
    """A catalogue around a fragment of one entry (such as its hours), with every id the fragment names."""
    named = {fragment.get("after_hours")} - {None}
    entries = [{"id": i, "description": "Anything.", "destination": {"type": "number", "number": "+14155550100"}}
               for i in named]
    entry = {"id": "sales", "description": "New plans.", "destination": {"type": "number", "number": "+14155550101"}}
    return {"destinations": [*entries, entry | fragment]}


def _run(args: list[str]) -> Any:
    from app.cli import cli

    return CliRunner().invoke(cli, args, env=SAMPLE_ENV)


def test_every_json_block_is_json_and_every_catalogue_dataset_row_and_request_in_them_is_accepted(tmp_path):
    from app.catalogue.destinations import parse

    kinds: list[str] = []
    for path in EVERY_FILE:
        for body in blocks(path, "json"):
            where = f"{path.name}: ```json block starting {body[:60]!r}"
            stripped = body.strip()
            data = json.loads(stripped if stripped.startswith("{") else "{" + stripped + "}")  # a fragment
            if not stripped.startswith("{"):
                kinds.append("entry fragment")
                parse(_catalogue_with(data), where)
            elif "destinations" in data:
                kinds.append("catalogue")
                parse(data, where)
            elif "payload" in data:  # a dataset row: eval must take it
                kinds.append("dataset row")
                rows = tmp_path / f"row{len(kinds)}.jsonl"
                rows.write_text(json.dumps(data) + "\n")
                result = _run(["eval", str(rows), "--router", "offline", "--no-cache",
                               "--cache", str(tmp_path / "cache.sqlite")])
                assert result.exit_code == 0, f"{where}: {result.output}"
            elif isinstance(data.get("message"), dict) or "artifact" in data:  # a webhook body: route decides it
                kinds.append("request")
                body_file = tmp_path / f"request{len(kinds)}.json"
                body_file.write_text(json.dumps(data))
                result = _run(["route", "--router", "offline", str(body_file)])
                assert result.exit_code == 0, f"{where}: {result.output}"
            else:
                kinds.append("other")
    # The blocks this test exists for are still there (so it cannot pass by finding nothing).
    assert kinds.count("catalogue") >= 2 and "entry fragment" in kinds and "dataset row" in kinds, kinds


def test_answer_examples_are_what_switchboard_route_answers():
    """Each `# {"destination": ...}` line under a `route FILE` or `curl ... -d @FILE` is what route answers."""
    checked = 0
    for path in EVERY_FILE:
        for body in blocks(path, "sh"):
            current: str | None = None
            for line in body.splitlines():
                file = re.search(r"(?:switchboard route|-d @)\s*(\S+\.json)", line)
                if file:
                    current = file.group(1)
                elif line.startswith('# {"destination"') or line.startswith('# {"error"'):
                    assert current, f"{path.name}: an answer shown with no request file before it: {line}"
                    result = _run(["route", "--router", "offline", str(ROOT / current)])
                    assert result.exit_code == 0, result.output
                    shown = json.loads(line[2:])
                    assert json.loads(result.stdout.splitlines()[0]) == shown, f"{path.name}: {current}"
                    checked += 1
    assert checked >= 4


# --- switchboard command lines ---------------------------------------------------------------------------------

PROGRAMS = (("switchboard",), (".venv/bin/switchboard",), ("python", "-m", "app"), (".venv/bin/python", "-m", "app"))
SEPARATORS = {"&&", "||", ";", "|", "&"}


def _commands(line: str) -> list[tuple[dict[str, str], list[str]]]:
    """(environment assignments, arguments after the program) for each switchboard command in a shell line."""
    words = shlex.split(line, comments=True)
    found = []
    while words:
        cut = next((i for i, w in enumerate(words) if w in SEPARATORS), len(words))
        part, words = words[:cut], words[cut + 1:]
        env = {}
        while part and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", part[0]):
            name, _, value = part.pop(0).partition("=")
            env[name] = value
        for program in PROGRAMS:
            if tuple(part[:len(program)]) == program:
                found.append((env, part[len(program):]))
    return found


def _placeholder(word: str) -> bool:
    return word.isupper() or word.startswith("[") or "..." in word or word.startswith("<")


def _must_exist(param: click.Parameter) -> bool:
    """Inputs: a path the command reads. Outputs (--out, --cache) need not exist yet."""
    kind = param.type
    if isinstance(kind, click.File):
        return "r" in kind.mode
    if isinstance(kind, click.Path):
        return bool(kind.exists) or isinstance(param, click.Argument)
    return False


def check_command(args: list[str], produced: set[str], complete: bool = True) -> list[str]:
    """What is wrong with `switchboard ARGS` as the docs show it; `produced` holds the paths earlier lines
    create (--out directories, SWITCHBOARD_RECORD_DIR), and gains this line's. `complete` is False for a
    command quoted in prose, which may stop before an option's value."""
    from app.cli import COMMANDS, cli

    if not args:
        return []
    name, rest = args[0], args[1:]
    if name.startswith("-"):
        return [] if name in ("--help", "-h", "--version") else [f"unknown option {name} for switchboard"]
    if name not in COMMANDS:
        return [f"no command {name!r}: switchboard has {', '.join(COMMANDS)}"]
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    options = {opt: p for p in command.params for opt in (*p.opts, *p.secondary_opts) if isinstance(p, click.Option)}
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    problems, values = [], []  # values: (param, value)
    i = 0
    while i < len(rest):
        word = rest[i]
        if word.startswith("-") and word not in ("-",):
            opt, eq, inline = word.partition("=")
            if opt in ("-h", "--help"):
                i += 1
                continue
            param = options.get(opt)
            if param is None:
                problems.append(f"switchboard {name}: no option {opt}")
                i += 1
                continue
            if param.is_flag:
                i += 1
                continue
            if eq:
                values.append((param, inline))
                i += 1
            elif i + 1 < len(rest):
                values.append((param, rest[i + 1]))
                i += 2
            else:
                if complete:
                    problems.append(f"switchboard {name}: {opt} needs a value")
                i += 1
        else:
            values.append((None, word))
            i += 1
    positional = iter(arguments)
    current = next(positional, None)
    for param, value in values:
        if param is None:
            param = current
            if param is None:
                problems.append(f"switchboard {name}: unexpected argument {value!r}")
                continue
            if param.nargs != -1:
                current = next(positional, None)
        if _placeholder(value) or value == "-":
            continue
        if isinstance(param.type, click.Path) and not param.type.file_okay:  # an output directory
            produced.add(value.rstrip("/"))
        if not _must_exist(param):
            continue
        if any(value == p or value.startswith(p + "/") for p in produced):
            continue
        if not (list(ROOT.glob(value)) if "*" in value else (ROOT / value).exists()):
            problems.append(f"switchboard {name}: {value} does not exist")
    return problems


def _shell_lines(body: str) -> list[str]:
    lines = body.replace("\\\n", " ").splitlines()
    return [line.removeprefix("$ ") for line in lines]


def _inline_commands(path: Path) -> list[str]:
    prose = FENCE.sub("", text(path)).replace("\n", " ")
    spans = re.findall(r"`([^`]+)`", prose)
    return [s for s in spans if s.startswith(("switchboard ", ".venv/bin/switchboard ", "python -m app "))]


def test_every_switchboard_command_line_names_a_real_command_real_options_and_existing_files():
    checked = 0
    problems: list[str] = []
    for path in EVERY_FILE:
        produced: set[str] = set()
        for body in blocks(path, "sh", ""):
            for line in _shell_lines(body):
                for env, args in _commands(line):
                    if "SWITCHBOARD_RECORD_DIR" in env:
                        produced.add(env["SWITCHBOARD_RECORD_DIR"].rstrip("/"))
                    problems += [f"{path.name}: {line.strip()}: {p}" for p in check_command(args, produced)]
                    checked += 1
        for span in _inline_commands(path):
            for _, args in _commands(span):
                problems += [f"{path.name}: `{span}`: {p}" for p in check_command(args, produced, complete=False)]
                checked += 1
    assert not problems, "\n".join(problems)
    assert checked >= 20


@pytest.mark.parametrize(("line", "problem"), [
    ("switchboard evaluate datasets/sample.jsonl", "no command 'evaluate'"),
    (".venv/bin/switchboard eval datasets/sample.jsonl --routers offline", "no option --routers"),
    ("switchboard eval datasets/missing.jsonl -r offline", "datasets/missing.jsonl does not exist"),
    ("switchboard route examples/nothing.json", "examples/nothing.json does not exist"),
    ("switchboard label recordings/calls-*.jsonl", "recordings/calls-*.jsonl does not exist"),
    ("switchboard eval datasets/sample.jsonl --baseline out/results.json", "out/results.json does not exist"),
])
def test_the_command_line_check_finds_what_is_wrong(line, problem):
    (_, args), = _commands(line)
    assert any(problem in p for p in check_command(args, set())), check_command(args, set())


def test_the_command_line_check_accepts_what_earlier_lines_produce():
    produced: set[str] = set()
    (_, first), = _commands("switchboard eval datasets/sample.jsonl -r offline --out eval-out")
    (_, second), = _commands("switchboard eval datasets/sample.jsonl -r offline --baseline eval-out/results.json")
    assert check_command(first, produced) == [] and check_command(second, produced) == []


# --- the architecture page and paths ---------------------------------------------------------------------------

def modules() -> set[str]:
    """Every module under app/, as a dotted path, and every package (a folder of them, __init__.py or not)."""
    found = set()
    for file in (ROOT / "app").rglob("*.py"):
        parts = file.relative_to(ROOT).with_suffix("").parts
        found.update(".".join(parts[:n]) for n in range(1, len(parts)))  # the packages it is in
        if parts[-1] != "__init__":
            found.add(".".join(parts))
    return found


def code_spans(doc: str) -> set[str]:
    return set(re.findall(r"`([^`\n]+)`", doc))


def test_architecture_page_lists_every_module_and_no_other():
    spans = code_spans(page("architecture.md"))
    missing = sorted(modules() - spans)
    assert not missing, f"docs/architecture.md does not list: {', '.join(missing)} (one line each on its job)"
    named = {s for s in spans if re.fullmatch(r"app(\.\w+)*", s)}
    gone = sorted(named - modules())
    assert not gone, f"docs/architecture.md names modules that do not exist: {', '.join(gone)}"


REPO_PATH = re.compile(r"(?<![\w/.])(?:app|tests|bench|scripts|datasets|examples|prompts|docs)/[\w./-]*")


def test_every_repository_path_the_docs_name_exists():
    missing = []
    for path in EVERY_FILE:
        for span in code_spans(text(path)):
            for name in REPO_PATH.findall(span):
                if not (ROOT / name).exists():
                    missing.append(f"{path.name}: `{span}` names {name}, which does not exist")
    assert not missing, "\n".join(missing)


def test_architecture_page_shows_the_layers_import_linter_enforces():
    import tomllib

    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    contracts = [c for c in tool.get("importlinter", {}).get("contracts", []) if c.get("type") == "layers"]
    if not contracts:
        pytest.skip("no import-linter layers contract in pyproject.toml yet")
    shown = blocks(DOCS / "architecture.md", "text")[0].split("\n")
    assert [line for line in shown if line] == contracts[0]["layers"], "copy the layers from pyproject.toml"


def test_readme_links_to_pages_and_sections_that_exist():
    """mkdocs checks the links between pages; the README is outside the site, so its links are checked here."""
    from markdown.extensions.toc import slugify

    links = re.findall(r"\]\((docs/[^)#\s]+)(?:#([^)\s]+))?\)", text(README))
    assert len(links) >= 8
    for target, anchor in links:
        assert (ROOT / target).is_file(), f"README.md links to {target}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", FENCE.sub("", text(ROOT / target)), re.MULTILINE)
            assert anchor in {slugify(h, "-") for h in headings}, f"README.md: {target}#{anchor}: no such heading"
