"""`switchboard export --out FILE`: the recorded calls kept in the store as a JSONL dataset that `eval` and `label`
read, each line with its decision and its outcome."""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from app.cli import fail
from app.cli.outcomes import SINCE, command_settings, database_option, joined_records, open_store, records

if TYPE_CHECKING:
    from app.dataset.outcomes import Joined
    from app.store import DecisionRow

OUTCOME_CHOICES = ("pending", "reached", "unreachable", "hung_up", "rerouted", "unknown")  # app.store.OUTCOMES


def payload_of(request_json: str | None) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(payload, recorded line's extra fields) from a decision's kept request; None when there is none to use.
    The service keeps the payload as recording writes it ({"message": ...}); a whole recorded line or a bare
    message are taken too."""
    if not request_json:
        return None
    try:
        value = json.loads(request_json)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("payload"), dict):  # a whole recorded line
        return value["payload"], {k: v for k, v in value.items() if k not in ("payload", "expected")}
    if isinstance(value.get("message"), dict):
        return value, {}
    if isinstance(value.get("type"), str):
        return {"message": value}, {}
    return None


def line_for(row: DecisionRow, joined: Joined, payload: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """A recorder line (id, expected, tags, payload, decision) plus the outcome the join gave."""
    found = extra.get("decision")
    recorded: dict[str, Any] = found if isinstance(found, dict) else {}
    decision = {**recorded, "kind": row.message_type, "chosen": row.chosen, "answered": row.answered,
                "score": row.confidence if row.confidence is not None else recorded.get("score"),
                "decision_id": row.decision_id, "call_id": row.call_id, "at": row.at.isoformat(),
                "prompt_hash": row.prompt_hash, "catalogue_hash": row.catalogue_hash, "latency_ms": row.latency_ms}
    kept = extra.get("tags")
    tags = [t for t in (kept if isinstance(kept, list) else ["recorded"])
            if isinstance(t, str) and not t.startswith("outcome:")]
    row_id = extra.get("id") if isinstance(extra.get("id"), str) and extra.get("id") else row.decision_id
    return {"id": row_id, "expected": None, "tags": [*tags, f"outcome:{joined.outcome}"], "payload": payload,
            "decision": decision, "outcome": joined.outcome, "outcome_evidence": joined.evidence}


@click.command("export")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The dataset file to write (JSON Lines); an existing file is refused unless --force.")
@click.option("--since", type=SINCE, help="Only decisions made at or after this: 2026-05-01, 2026-05-01T09:30 "
              "(UTC unless an offset is given) or an age such as 7d.  [default: everything kept]")
@click.option("--outcome", "wanted", multiple=True, type=click.Choice(OUTCOME_CHOICES),
              help="Only calls with this outcome (repeat for several).")
@click.option("--force", is_flag=True, help="Replace --out if it exists (its labels are lost).")
@database_option
def export(out: Path, since: dt.datetime | None, wanted: tuple[str, ...], force: bool,
           database_url: str | None) -> None:
    """Write the recorded calls kept in the store as a dataset that `eval` and `label` read: one line per
    decision whose request was kept (the service keeps it while recording is on, SWITCHBOARD_RECORD_DIR), with
    the decision, and its outcome as `outcome` and a tag `outcome:<outcome>` (eval reports accuracy per tag).
    `expected` is empty: label the lines, then eval them. Decisions without a kept request are counted on
    standard error, not exported.

    \b
    Examples:
      switchboard export --out recordings/export.jsonl
      switchboard export --out recordings/rerouted.jsonl --since 7d --outcome rerouted --outcome unreachable
      switchboard label recordings/export.jsonl                  # likely mistakes first
    """
    if out.exists() and not force:
        fail(f"{out} exists (it may hold labels); give another --out, or --force to replace it")
    settings = command_settings(database_url)
    store = open_store(settings)
    assert store is not None
    counts: dict[str, int] = {}
    written = no_request = unusable = 0
    directory = out.parent if str(out.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{out.name}.", suffix=".tmp")
    except OSError as exc:
        fail(f"{out}: cannot write in {directory}: {exc.strerror or exc}; choose a writable folder")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f, store:
            for row, joined in joined_records(records(store, since)):
                if wanted and joined.outcome not in wanted:
                    continue
                found = payload_of(row.request_json)
                if found is None:
                    if row.request_json:
                        unusable += 1
                    else:
                        no_request += 1
                    continue
                _write(f, line_for(row, joined, *found))
                written += 1
                counts[joined.outcome] = counts.get(joined.outcome, 0) + 1
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a dataset is for the team that labels it
        os.replace(tmp, out)  # all or nothing: an interrupted export leaves no half dataset
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        fail(f"{out}: cannot write: {exc.strerror or exc}")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    what = ", ".join(f"{n} {o}" for o, n in sorted(counts.items())) or "none"
    click.echo(f"exported {written} recorded call{'s' if written != 1 else ''} to {out} ({what})", err=True)
    if no_request:
        click.secho(f"Warning: {no_request} decision{'s' if no_request != 1 else ''} not exported: no request was "
                    "kept (recording was off; set SWITCHBOARD_RECORD_DIR on serve to keep them)", fg="yellow",
                    err=True)
    if unusable:
        click.secho(f"Warning: {unusable} decision{'s' if unusable != 1 else ''} not exported: the kept request "
                    "is not a webhook body", fg="yellow", err=True)


def _write(f: IO[str], line: dict[str, Any]) -> None:
    try:
        f.write(json.dumps(line, ensure_ascii=False) + "\n")
    except UnicodeEncodeError:  # a lone surrogate: JSON escapes say it in ASCII
        f.write(json.dumps(line) + "\n")
