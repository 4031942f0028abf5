"""`switchboard label` for a newcomer: it names the catalogue it checks labels against and warns when a file's
decisions name ids that catalogue lacks (--catalogue picks another), takes ids in any case and suggests the nearest
for a typo, adds #tags to the row (which eval reads), and undoes the last label, the row back as it was."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from app.cli import cli
from app.dataset.labelling import KEYS, label_file
from app.dataset.locking import locked
from tests.conftest import ROOT
from tests.vapi_payloads import transfer_request

DEALER = {"destinations": [
    {"id": "service", "description": "Car service, repairs and maintenance appointments.",
     "destination": {"type": "number", "number": "+14155550150"}},
    {"id": "parts", "description": "Parts and accessories orders.",
     "destination": {"type": "number", "number": "+14155550151"}},
    {"id": "sales", "description": "New and used car sales, test drives.",
     "destination": {"type": "number", "number": "+14155550152"}},
]}
VALID = {"service", "parts", "sales", "none"}
TURNS = [("bot", "Thanks for calling, how can I help?"), ("user", "My car needs its brakes looked at.")]


def dealer_catalogue(tmp_path: Path) -> Path:
    path = tmp_path / "dealer.json"
    path.write_text(json.dumps(DEALER))
    return path


def calls(path: Path, decided: list[str], tags: list[str] | None = None) -> Path:
    rows = [{"id": f"c{i}", "expected": None, "tags": list(tags or []), "payload": transfer_request(TURNS),
             "decision": {"chosen": chosen, "answered": chosen}} for i, chosen in enumerate(decided)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def label(args: list[str], stdin: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["label", *args], input=stdin, env=env)


def scripted(answers: list[str]) -> tuple[Any, list[str], list[str]]:
    """ask, what was shown, the prompts asked: the answers are typed in turn."""
    given = iter(answers)
    shown: list[str] = []
    prompts: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        return next(given)

    return ask, shown, prompts


# --- which catalogue -----------------------------------------------------------------------------------------------

def test_label_names_its_catalogue_and_warns_once_per_file_about_ids_it_lacks(tmp_path: Path) -> None:
    """Reported: with the wrong catalogue loaded, label refused its own suggestion ('service' is not an id) and
    never said which catalogue it had loaded."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = calls(tmp_path / "a" / "calls.jsonl", ["service", "parts", "service"])
    second = calls(tmp_path / "b" / "calls.jsonl", ["parts"])
    sample = ROOT / "destinations.json"
    result = label([str(first), str(second)], "q\n", env={"SWITCHBOARD_DESTINATIONS": str(sample)})
    assert result.exit_code == 0, result.output
    digest = hashlib.sha256(sample.read_bytes()).hexdigest()[:12]
    entries = len(json.loads(sample.read_text())["destinations"])
    assert result.stdout.startswith(f"Catalogue: {sample} (hash {digest}, {entries} entries)")
    assert KEYS in result.stdout
    warning = (f"{first}: its decisions and labels name 'service', 'parts', which {sample} does not have: were "
               "they recorded with another catalogue? pass --catalogue FILE")
    assert result.stderr.count(warning) == 1, result.stderr
    assert result.stderr.count("does not have") == 1  # q in the first file: the second is not opened

    both = label([str(first), str(second)], "\ns\ns\ns\nq\n", env={"SWITCHBOARD_DESTINATIONS": str(sample)})
    assert both.stderr.count("does not have") == 2 and f"{second}: its decisions and labels name 'parts'," in \
        both.stderr  # once per file
    assert "'service' (what was answered) is not an id in" in both.stdout and "pass --catalogue FILE" in both.stdout
    assert all(r["expected"] is None for r in rows(first))  # nothing saved under the wrong catalogue

    dealer = dealer_catalogue(tmp_path)
    right = label(["--catalogue", str(dealer), str(first), str(second)], "\n" * 4,  # 4 calls
                  env={"SWITCHBOARD_DESTINATIONS": str(sample)})
    assert right.exit_code == 0 and "does not have" not in right.stderr, right.output
    assert right.stdout.startswith(f"Catalogue: {dealer} (hash ")
    assert [r["expected"] for r in rows(first)] == ["service", "parts", "service"]
    assert "labelled 4, skipped 0, left 0" in right.stdout


def test_label_finds_its_catalogue_as_every_command_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reported: label loaded its catalogue its own way: a missing one did not say where it was looked for, and
    the hash shown came from a second read of the file. One load (app.loading.load_catalogue_hashed) gives the
    entries and the hash from the same bytes, and the error of every other command."""
    from app.loading import catalogue_digest, load_catalogue_hashed

    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    path = calls(here / "calls.jsonl", ["service"])
    result = label([str(path)], "\n")
    assert result.exit_code == 2, result.output
    assert f"(looked for it at {here / 'destinations.json'}: the default of SWITCHBOARD_DESTINATIONS, taken from " \
           f"{here})" in result.stderr and "switchboard init" in result.stderr
    result = label(["--catalogue", "dealr.json", str(path)], "\n")
    assert result.exit_code == 2 and f"looked for it at {here / 'dealr.json'}: --catalogue" in result.stderr

    dealer = dealer_catalogue(tmp_path)
    loaded, digest = load_catalogue_hashed(dealer)
    assert loaded.ids == ("service", "parts", "sales") and digest == catalogue_digest(dealer.read_bytes())
    project = tmp_path / "project"  # a .env elsewhere: its folder, as for check and serve
    project.mkdir()
    dealer.rename(project / "dealer.json")
    (project / ".env").write_text("SWITCHBOARD_DESTINATIONS=dealer.json\n")
    result = label([str(path)], "\n", env={"SWITCHBOARD_ENV_FILE": str(project / ".env")})
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Catalogue: {project / 'dealer.json'} (hash {digest}, 3 entries)")


def test_piped_answers_are_one_per_call(tmp_path: Path) -> None:
    """Reported: label asked once more at the end of every file that had labels ("Enter to go on | u | q"), so
    answers piped in (one per call) ran out: the last file's last call ended in Abort, unlabelled. That question
    is for a person at a terminal only."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = calls(tmp_path / "a" / "calls.jsonl", ["service", "parts"])
    second = calls(tmp_path / "b" / "calls.jsonl", ["sales", "parts"])
    result = label(["--catalogue", str(dealer_catalogue(tmp_path)), str(first), str(second)], "\nsales\n\n\n")
    assert result.exit_code == 0, result.output
    assert "end of " not in result.stdout and "stopped" not in result.stdout
    assert [r["expected"] for r in rows(first)] == ["service", "sales"]
    assert [r["expected"] for r in rows(second)] == ["sales", "parts"]
    assert "labelled 4, skipped 0, left 0" in result.stdout

    again = calls(tmp_path / "again.jsonl", ["service"])
    ask, _, prompts = scripted(["parts"])
    assert label_file(again, VALID, ask, lambda _: None, ask_at_end=False)["labelled"] == 1
    assert len(prompts) == 1  # no question at the end
# --- ids in any case, the nearest for a typo -------------------------------------------------------------------------

def test_ids_in_any_case_and_the_nearest_suggested(tmp_path: Path) -> None:
    path = calls(tmp_path / "calls.jsonl", ["sales", "sales"])
    ask, shown, prompts = scripted(["Service", "servce", "PRTS", "PARTS", ""])
    counts = label_file(path, VALID, ask, shown.append, catalogue_name="dealer.json")
    assert counts == {"labelled": 2, "skipped": 0, "remaining": 0}
    assert [r["expected"] for r in rows(path)] == ["service", "parts"]
    # app.errors.did_you_mean's words, as for settings and catalogue fields; any case, as ids are typed
    assert any(s.startswith("'servce' is not an id in dealer.json (did you mean 'service'?). Ids: ") for s in shown)
    assert any(s.startswith("'PRTS' is not an id in dealer.json (did you mean 'parts'?). Ids: ") for s in shown)
    assert len(prompts) == 5 and prompts[-1].startswith("end of ")  # asked again after each typo


# --- tags --------------------------------------------------------------------------------------------------------

def test_tags_are_added_to_the_row_and_eval_reads_them(tmp_path: Path) -> None:
    from app.evaluation.run import iter_cases

    path = calls(tmp_path / "calls.jsonl", ["service", "sales", "parts"], tags=["recorded"])
    ask, shown, _ = scripted(["parts #angry #repeat", "#calm", "#", "Sales service", "s #odd",
                              "service #Angry #angry", ""])
    counts = label_file(path, VALID, ask, shown.append)
    assert counts["labelled"] == 3
    assert [(r["expected"], r["tags"]) for r in rows(path)] == [
        ("parts", ["recorded", "angry", "repeat"]), ("sales", ["recorded", "calm"]),
        ("service", ["recorded", "Angry", "angry"])]
    assert "a tag is # and a word, e.g. #angry" in shown
    assert any(s.startswith("one id at a time") for s in shown)
    assert any(s.startswith("tags go with a label") for s in shown)
    cases = [case for _, case in iter_cases([path])]
    assert cases[0].tags == ["recorded", "angry", "repeat"] and cases[1].expected == "sales"


# --- undo ---------------------------------------------------------------------------------------------------------

def test_undo_puts_the_rows_back_as_they_were_and_asks_again(tmp_path: Path) -> None:
    path = calls(tmp_path / "calls.jsonl", ["service", "sales", "parts"])
    ask, shown, _ = scripted(["u", "parts #x", "s", "sales", "u", "u", "sales", "", "q"])
    counts = label_file(path, VALID, ask, shown.append)
    assert "nothing to undo in " + str(path) in shown
    # c0 labelled parts, c1 skipped, c2 sales; at the end of the file undo c2, then at c2 undo c0 (the file as it
    # was), then c0 sales, c1 accepted, q at c2
    assert any(s == "undone: c2 is as it was before its label" for s in shown)
    assert [r["expected"] for r in rows(path)] == ["sales", "sales", None]
    assert rows(path)[0]["tags"] == []  # the undone label's tag went with it
    assert counts == {"labelled": 2, "skipped": 0, "remaining": 1}
    headers = [s.split()[2] for s in shown if s.startswith("\n--- ")]
    assert headers == ["c0", "c1", "c2", "c2", "c0", "c1", "c2"]

    again = calls(tmp_path / "again.jsonl", ["service", "sales"])
    original = again.read_bytes()
    ask, shown, _ = scripted(["parts #x", "u", "q"])
    label_file(again, VALID, ask, shown.append)
    assert again.read_bytes() == original  # byte for byte


def test_undo_keeps_calls_recorded_meanwhile(tmp_path: Path) -> None:
    path = calls(tmp_path / "calls.jsonl", ["service", "sales"])
    late = {"id": "late", "expected": None, "tags": [], "payload": transfer_request(TURNS)}

    def ask(prompt: str) -> str:
        ask.n += 1  # type: ignore[attr-defined]
        if ask.n == 2:  # the service records a call between the label and its undo
            with locked(path), path.open("a") as f:
                f.write(json.dumps(late) + "\n")
        return {1: "parts", 2: "u", 3: "q"}[ask.n]  # type: ignore[attr-defined]
    ask.n = 0  # type: ignore[attr-defined]

    label_file(path, VALID, ask, lambda _: None)
    assert [(r["id"], r["expected"]) for r in rows(path)] == [("c0", None), ("c1", None), ("late", None)]


def test_undo_through_the_cli_and_the_keys_shown(tmp_path: Path) -> None:
    path = calls(tmp_path / "calls.jsonl", ["service", "sales"])
    result = label(["--catalogue", str(dealer_catalogue(tmp_path)), "--prompt", str(ROOT / "prompts/route.md"),
                    str(path)], "Parts #brakes\nu\n\n\n")  # --prompt: the same flags as every command
    assert result.exit_code == 0, result.output
    assert KEYS in result.stdout and "undone: c0" in result.stdout
    assert [(r["expected"], r["tags"]) for r in rows(path)] == [("service", []), ("sales", [])]
    assert "labelled 2, skipped 0, left 0" in result.stdout
