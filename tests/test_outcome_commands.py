"""The operator's commands on the decision store: `outcomes` (counts per destination and outcome, table, JSON and a
self-contained HTML heat map), `export` (recorded calls as a dataset eval reads), `forget`, and `label` offering the
likely mistakes first. The store is an SQLite file in tmp, filled with the store API as the service fills it."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.loading import load_catalogue
from app.store import DecisionRow, EventRow, event_key, open_store_sync
from app.vapi.outcomes import destination_keys
from tests.conftest import ROOT

CATALOGUE = load_catalogue(ROOT / "destinations.json")
ENTRIES = {e.id: e for e in CATALOGUE.entries}
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
OLD = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)  # a Monday, long before --since 30d
REQUEST = json.loads((ROOT / "examples/transfer-request.json").read_text())


def keys(name: str) -> tuple[str, ...]:
    return destination_keys(ENTRIES[name].destination)


def request_for(call: str) -> str:
    message = json.loads(json.dumps(REQUEST["message"]))
    message["call"]["id"] = call
    return json.dumps({"message": message})


def decision(n: int, call: str, name: str, at: datetime, *, recorded: bool = True,
             confidence: float | None = 0.9) -> DecisionRow:
    return DecisionRow(decision_id=f"dec-{n}", call_id=call, request_id=f"req-{n}", at=at, message_type="transfer",
                       chosen=name, answered=name, destination_keys=keys(name), confidence=confidence,
                       prompt_hash="p1", latency_ms=300.0, catalogue_hash="c1",
                       request_json=request_for(call) if recorded else None)


def transfer(call: str, name: str, status: str, at: datetime, index: int = 1) -> EventRow:
    """An entry of an end-of-call report's artifact.transfers[], as app/vapi/outcomes reads it."""
    source = f"report-{call}"
    return EventRow(event_key(source, index), call, "transfer", at, keys(name), status, source, index)


def report(call: str, at: datetime, reason: str = "customer-ended-call") -> EventRow:
    source = f"report-{call}"
    return EventRow(event_key(source, 0), call, "report", at, (), reason, source, 0)


def fill(db: Path, decisions: list[DecisionRow], events: list[EventRow]) -> None:
    with open_store_sync(f"sqlite:///{db}", retention_days=None) as store:  # OLD is past the default retention
        for d in decisions:
            assert store.add_decision(d)
        for e in events:
            assert store.add_event(e)
        assert store.flush_sync(30)


def hand_built(db: Path) -> None:
    """Every outcome class, on known destinations:
    billing: a reached, a rerouted (reached, then the caller asked again: tech_support, reached);
    sales: an unreachable, a hung up; moving: a pending, an unknown (the report says nothing of it);
    and one old decision (billing, reached) that --since leaves out."""
    t = NOW
    decisions = [
        decision(1, "call-a", "billing", t),
        decision(2, "call-d", "billing", t + timedelta(seconds=1)),
        decision(3, "call-d", "tech_support", t + timedelta(seconds=60)),
        decision(4, "call-b", "sales", t + timedelta(seconds=2), confidence=0.2),
        decision(5, "call-c", "sales", t + timedelta(seconds=3)),
        decision(6, "call-e", "moving", t + timedelta(seconds=4), recorded=False),
        decision(7, "call-f", "moving", t + timedelta(seconds=5)),
        decision(8, "call-old", "billing", OLD),
    ]
    events = [
        transfer("call-a", "billing", "connected", t + timedelta(seconds=30)),
        transfer("call-d", "billing", "connected", t + timedelta(seconds=90), 1),
        transfer("call-d", "tech_support", "completed", t + timedelta(seconds=90), 2),
        transfer("call-b", "sales", "no-answer", t + timedelta(seconds=40)),
        transfer("call-c", "sales", "cancelled", t + timedelta(seconds=40)),
        report("call-f", t + timedelta(seconds=80)),
        transfer("call-old", "billing", "connected", OLD + timedelta(seconds=30)),
    ]
    fill(db, decisions, events)


def run(args: list[str], db: Path | None = None, env: dict[str, str] | None = None, stdin: str | None = None) -> Any:
    base = {"SWITCHBOARD_DESTINATIONS": str(ROOT / "destinations.json"),
            "SWITCHBOARD_PROMPT": str(ROOT / "prompts/route.md"), "SWITCHBOARD_RECORD_DIR": None}
    if db is not None:
        base["SWITCHBOARD_DATABASE_URL"] = f"sqlite:///{db}"
    return CliRunner().invoke(cli, args, env={**base, **(env or {})}, input=stdin)


def counts(**given: int) -> dict[str, int]:
    out = dict.fromkeys(("decisions", "reached", "unreachable", "hung_up", "rerouted", "pending", "unknown"), 0)
    out.update(given)
    out["decisions"] = sum(v for k, v in out.items() if k != "decisions")
    return out


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "store.db"
    hand_built(path)
    return path


# --- outcomes -----------------------------------------------------------------------------------------------------

def test_outcomes_json_counts_each_outcome_class_exactly(db):
    result = run(["outcomes", "--format", "json"], db)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["destinations"] == {
        "sales": counts(unreachable=1, hung_up=1),
        "billing": counts(reached=2, rerouted=1),
        "tech_support": counts(reached=1),
        "moving": counts(pending=1, unknown=1),
    }
    # Worst first: sales (2 of 2 settled not reached), billing (1 of 3), tech_support (0 of 1), moving (none settled).
    assert list(data["destinations"]) == ["sales", "billing", "tech_support", "moving"]
    assert data["total"] == counts(reached=3, unreachable=1, hung_up=1, rerouted=1, pending=1, unknown=1)
    assert all(isinstance(v, int) for c in data["destinations"].values() for v in c.values())
    assert "America/Los_Angeles" in data["time_zone"]  # the catalogue's time zone, and it says so
    old = datetime.fromtimestamp(OLD.timestamp(), CATALOGUE_ZONE)
    assert data["by_hour_of_week"]["billing"][f"mon {old.hour:02d}"] == counts(reached=1)


def _zone() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo("America/Los_Angeles")


CATALOGUE_ZONE = _zone()


def test_outcomes_since_leaves_older_decisions_out(db):
    result = run(["outcomes", "--format", "json", "--since", "30d"], db)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["destinations"]["billing"] == counts(reached=1, rerouted=1)
    assert data["total"]["decisions"] == 7
    since_date = run(["outcomes", "--format", "json", "--since", (NOW + timedelta(seconds=3)).isoformat()], db)
    assert since_date.exit_code == 0, since_date.output
    assert set(json.loads(since_date.stdout)["destinations"]) == {"sales", "moving", "tech_support"}
    assert json.loads(since_date.stdout)["total"]["decisions"] == 4  # dec-5, 6, 7 and the later dec-3


def test_outcomes_table_shows_worst_first_with_shares(db):
    result = run(["outcomes", "--tz", "UTC"], db)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    rows = [line.split()[0] for line in lines[3:8]]
    assert rows == ["sales", "billing", "tech_support", "moving", "(all)"]
    sales = lines[3].split()
    assert sales[1] == "2" and sales[3] == "50%" and sales[4] == "50%"  # unreachable, hung up
    assert "UTC (--tz)" in result.stdout and "Worst hours of the week" in result.stdout


def test_outcomes_html_is_a_self_contained_heat_map(db, tmp_path):
    out = tmp_path / "outcomes.html"
    result = run(["outcomes", "--format", "html", "--out", str(out)], db)
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert page.startswith("<!doctype html>") and "<style>" in page and "<svg" in page
    assert page.count("share not reached by hour of the week") >= 5  # all, and one per destination
    assert "sales, " in page and "1 unreachable, 1 hung up" in page  # a cell's tooltip gives its counts
    # Self-contained: no scripts, nothing fetched.
    assert "<script" not in page.lower() and not re.search(r"(src|href)=['\"]?(https?:)?//", page)
    assert "@import" not in page and "url(" not in page


def test_outcomes_html_escapes_ids(tmp_path):
    db = tmp_path / "store.db"
    row = decision(1, "call-x", "billing", NOW)
    fill(db, [DecisionRow(**{**{f: getattr(row, f) for f in row.__slots__}, "answered": "<b>x</b>"})], [])
    result = run(["outcomes", "--format", "html"], db)
    assert result.exit_code == 0 and "<b>x</b>" not in result.stdout and "&lt;b&gt;x&lt;/b&gt;" in result.stdout


def test_a_store_that_cannot_be_reached_is_one_error_line(tmp_path):
    unreachable = "postgresql://nobody@127.0.0.1:1/switchboard"
    for args in (["outcomes"], ["export", "--out", str(tmp_path / "x.jsonl")], ["forget", "call-1"]):
        result = run([*args, "--database-url", unreachable])
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: cannot reach the store"), lines
        assert "Traceback" not in result.output


def test_an_unreachable_store_is_one_line_in_a_real_terminal_too(tmp_path):
    """Outside pytest nothing captures logging: the store's own `store_unavailable` log line came before the
    Error: line."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "app", "outcomes", "--database-url",
                          "postgresql://nobody@127.0.0.1:1/switchboard"], capture_output=True, text=True, cwd=tmp_path,
                         env={"PATH": "/usr/bin:/bin", "SWITCHBOARD_DESTINATIONS": str(ROOT / "destinations.json"),
                              "PYTHONPATH": str(ROOT)}, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("Error: cannot reach the store")


def test_no_store_yet_is_said_not_created(tmp_path):
    missing = tmp_path / "nothing.db"
    result = run(["outcomes"], missing)
    assert result.exit_code == 2 and f"no store at {missing}" in result.stderr and not missing.exists()
    bad = run(["outcomes", "--since", "yesterday"], tmp_path / "store.db")
    assert bad.exit_code == 2 and "'yesterday' is not a date" in bad.output


# --- export -------------------------------------------------------------------------------------------------------

def test_export_writes_lines_eval_reads(db, tmp_path):
    out = tmp_path / "export.jsonl"
    result = run(["export", "--out", str(out)], db)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by_id = {r["id"]: r for r in rows}
    assert set(by_id) == {f"dec-{n}" for n in (1, 2, 3, 4, 5, 7, 8)}  # dec-6 had no recorded request
    assert "exported 7 recorded calls" in result.stderr
    assert re.search(r"Warning: 1 decision not exported: no request was kept", result.stderr)
    assert by_id["dec-2"]["outcome"] == "rerouted" and "outcome:rerouted" in by_id["dec-2"]["tags"]
    assert by_id["dec-2"]["decision"]["chosen"] == "billing" and by_id["dec-2"]["decision"]["call_id"] == "call-d"
    assert by_id["dec-4"]["outcome"] == "unreachable" and by_id["dec-4"]["decision"]["score"] == 0.2
    assert by_id["dec-7"]["outcome"] == "unknown" and by_id["dec-1"]["expected"] is None
    assert by_id["dec-1"]["payload"]["message"]["call"]["id"] == "call-a"

    for r in rows:  # labelled as a person would
        r["expected"] = "billing"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    scored = run(["eval", str(out), "--router", "offline", "--no-cache", "--cache", str(tmp_path / "c.sqlite"),
                  "--out", str(tmp_path / "eval-out")])
    assert scored.exit_code == 0, scored.output
    results = json.loads((tmp_path / "eval-out/results.json").read_text())
    assert results["combinations"][0]["metrics"]["calls"] == 7, results["combinations"][0]["metrics"]


def test_export_outcome_and_since_filter(db, tmp_path):
    out = tmp_path / "suspects.jsonl"
    result = run(["export", "--out", str(out), "--outcome", "rerouted", "--outcome", "unreachable"], db)
    assert result.exit_code == 0, result.output
    assert sorted(json.loads(line)["id"] for line in out.read_text().splitlines()) == ["dec-2", "dec-4"]
    again = run(["export", "--out", str(out), "--outcome", "reached"], db)
    assert again.exit_code == 2 and "exists" in again.stderr  # a labelled file is not overwritten by accident
    recent = run(["export", "--out", str(out), "--outcome", "reached", "--since", "30d", "--force"], db)
    assert recent.exit_code == 0, recent.output
    assert sorted(json.loads(line)["id"] for line in out.read_text().splitlines()) == ["dec-1", "dec-3"]


# --- forget -------------------------------------------------------------------------------------------------------

def test_forget_deletes_the_call_and_says_what(db, tmp_path):
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    recorded = recordings / "calls-host-1.jsonl"
    lines = [{"id": f"{c}-1", "expected": None, "tags": ["recorded"], "payload": json.loads(request_for(c))}
             for c in ("call-d", "call-a", "call-d")]
    recorded.write_text("".join(json.dumps(x) + "\n" for x in lines))
    env = {"SWITCHBOARD_RECORD_DIR": str(recordings)}
    result = run(["forget", "call-d"], db, env)
    assert result.exit_code == 0, result.output
    assert "deleted 2 decisions and 2 events of call call-d" in result.stdout
    assert f"deleted 2 recorded lines of call call-d from {recorded}" in result.stdout
    assert [json.loads(x)["id"] for x in recorded.read_text().splitlines()] == ["call-a-1"]
    with open_store_sync(f"sqlite:///{db}", retention_days=None) as store:
        record = store.call_sync("call-d")
        assert record.decisions == () and record.events == ()
        assert len(store.call_sync("call-a").decisions) == 1  # other calls are kept
    data = json.loads(run(["outcomes", "--format", "json"], db).stdout)
    assert "tech_support" not in data["destinations"] and data["total"]["decisions"] == 6

    again = run(["forget", "call-d"], db, env)
    assert again.exit_code == 0 and "nothing kept about call call-d" in again.stdout
    assert "nothing was kept about call call-d; nothing deleted" in again.stdout


def test_forget_with_no_store_is_not_an_error(tmp_path):
    result = run(["forget", "call-1"], tmp_path / "none-yet.db")
    assert result.exit_code == 0 and "nothing was kept about call call-1" in result.stdout
    assert not (tmp_path / "none-yet.db").exists()


# --- label: likely mistakes first -----------------------------------------------------------------------------------

def test_label_offers_rerouted_then_low_confidence_then_unreachable_then_the_rest(db, tmp_path):
    out = tmp_path / "export.jsonl"
    assert run(["export", "--out", str(out)], db).exit_code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    extra = [  # recorder rows (no outcome): a low_confidence decision, and a plain one
        {"id": "rec-low", "expected": None, "tags": ["recorded"], "payload": json.loads(request_for("call-r1")),
         "decision": {"chosen": None, "outcome": "low_confidence", "score": 0.31}},
        {"id": "rec-plain", "expected": None, "tags": ["recorded"], "payload": json.loads(request_for("call-r2")),
         "decision": {"chosen": "billing", "outcome": "routed", "score": 0.95}},
        {"id": "rec-unreachable", "expected": None, "tags": [], "payload": json.loads(request_for("call-r4")),
         "decision": {"chosen": "sales", "outcome": "routed", "score": 0.9}, "outcome": "unreachable"},
        {"id": "done", "expected": "billing", "tags": [], "payload": json.loads(request_for("call-r3")),
         "outcome": "rerouted"},
    ]
    out.write_text("".join(json.dumps(r) + "\n" for r in [*extra, *rows]))
    result = run(["label", str(out)], stdin="s\n" * 20)
    assert result.exit_code == 0, result.output
    shown = re.findall(r"^--- \d+/\d+\s+(\S+)", result.stdout, re.MULTILINE)
    # rerouted (dec-2); low confidence (rec-low; dec-4: score 0.2, unreachable too); unreachable; then the rest in
    # file order (export writes calls oldest first). Labelled rows are not offered.
    assert shown == ["dec-2", "rec-low", "dec-4", "rec-unreachable", "rec-plain", "dec-8", "dec-1", "dec-3",
                     "dec-5", "dec-7"], shown


def test_likely_mistakes_first_is_stable_within_each_group():
    from app.dataset.labelling import likely_mistakes_first

    rows: list[dict[str, Any]] = [
        {"id": "a"}, {"id": "b", "outcome": "unreachable"}, {"id": "c", "outcome": "rerouted"},
        {"id": "d", "decision": {"score": 0.1}}, {"id": "e", "outcome": "unreachable"},
        {"id": "f", "outcome": "rerouted"}, {"id": "g", "decision": {"outcome": "low_confidence"}},
        {"id": "h", "decision": {"score": 0.9}, "outcome": "reached"}, {"id": "i", "decision": {"score": "bad"}},
    ]
    assert [r["id"] for r in likely_mistakes_first(rows, 0.5)] == ["c", "f", "d", "g", "b", "e", "a", "h", "i"]
    assert [r["id"] for r in likely_mistakes_first(rows, 0.0)] == ["c", "f", "g", "b", "e", "a", "d", "h", "i"]
